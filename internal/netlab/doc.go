// Package netlab builds test hosts in Linux network namespaces, so that
// multi-node tests can cut links and partition the network between agents
// that run as separate processes, without touching the machine's own
// network.
//
// New(t, n) makes n hosts and one switch. Every namespace of a lab carries
// the lab's name, "crl" followed by a random id, so labs of concurrent test
// runs never collide. Host i (1..n) is the namespace NAME-hI with one
// interface, eth0, holding Addr(i) = 10.251.0.i/24, and lo up; the other end
// of its veth, vI, sits in the switch namespace NAME-sw, enslaved to a
// bridge. Nothing of a lab lives in the root namespace, and its addresses
// exist only inside its own namespaces, so two labs may both use 10.251.0.1.
//
// Processes run in a host with Command(i, ...), a wrapper around
// "ip netns exec". Faults are made at the switch:
//
//   - Partition(groups...) moves each group's ports to a bridge of its
//     own (br1, br2, ...); hosts named in no group stay together on br0.
//     Hosts on different bridges cannot reach each other, while their
//     links stay up: it is a partition, not a link failure.
//   - Heal puts every port back on br0.
//   - Cut(i) sets host i's switch port down: host i sees its carrier go and
//     reaches nobody. Restore(i) sets it up again. Cut and Partition are
//     independent; Heal does not Restore and Restore does not Heal.
//
// New skips the test, with a message that says why, when it does not run
// as root, when the ip command (iproute2) is missing, or when the kernel
// refuses to create a network namespace. It registers, before creating
// anything, a cleanup that kills by pid every process still inside the
// lab's namespaces and deletes the namespaces, so a failed or aborted test
// leaves nothing behind. The methods report failures with t.Fatalf and so
// must be called from the test's goroutine.
package netlab
