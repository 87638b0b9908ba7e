// Package cluster is the data service's cluster module: containers
// replicated through the cluster log of the local corral agent, which any
// process on the node reaches over the agent's client socket (client
// protocol version 4, the data-service range). The agent's side, the
// replicated state machine and the service that answers the module, is
// package dsvc/replicated.
//
// Every write is one command of the log: the signature check and the
// write happen in the machine's Apply, the same on every node, so the
// module needs no lock service (Synch is SynchNone) and several servers on
// several nodes may write the same containers. A write is answered once
// its entry is committed on a majority and applied on this node. Reads are
// linearizable by default (the agent confirms a read index with the
// leader first); Configure("reads=local") reads the local replica only.
//
// A location is a name in the cluster store, not a path on this host: the
// same location on every node names the same containers.
package cluster
