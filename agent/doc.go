// Package agent wires corral's services into the daemon that runs on every
// node. It owns the sockets and the configuration: the TCP listener for
// peer links, one dialer per configured peer (reconnecting with backoff and
// jitter), the table of known nodes, and the unix sockets in the data
// directory that serve the admin protocol (admin.sock, mode 0600) and the
// client protocol (client.sock, mode 0660).
//
// Between two agents exactly one link is kept: when both dial each other,
// each side keeps the link opened by the node with the smaller id and
// closes the other with GOODBYE (duplicate), so both make the same choice
// without talking about it.
package agent
