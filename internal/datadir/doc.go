// Package datadir is the layout of an agent's data directory: where the
// default directory is, the environment variable that names another, and
// the names of the files inside it (the admin and client sockets, the node
// id, the cluster key).
//
// The agent creates these files; the CLI and the client library only find
// them. Keeping the layout in a leaf lets both agree on it without the
// client side importing the daemon.
package datadir
