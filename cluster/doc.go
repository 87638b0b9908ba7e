// Package cluster runs this node's life on the cluster log: its
// incarnation, eviction and rejoin, driving membership.
//
// snapchunk.go splits a raft message too large for one peer frame into
// RAFTCHUNK pieces (proto/peer/SPEC.md) and joins them again on the
// receiving side, without I/O: the caller sends and receives the frames.
package cluster
