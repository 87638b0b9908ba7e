// Command dhcpload fills a datastore for bench/dhcp.sh: the location, a
// dhcptab with the network macro and the records' macro, and one network
// container of free dynamic records owned by one server, imported in
// batches (pntadm -A would write them one at a time).
//
//	dhcpload -r binfiles -p DIR -net 10.0.0.0/13 -n 300000 -sip 127.0.0.1 -skip 10.0.0.2
package main
