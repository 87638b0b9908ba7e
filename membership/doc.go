// Package membership is the deterministic core of corral's membership: the
// commands that the cluster log carries to change the view (JOIN, LEAVE),
// the view they produce, and the local judgement of quorum contact that
// turns into SUSPECT and RECOVERED. It does no I/O: the agent feeds it
// committed log entries and link states and publishes what it returns.
//
// A view is identified by its instance, the log index of the entry that
// made it, so it is the same on every node. Each member carries born-on,
// the instance of the view in which it joined; ordering members by
// (born-on, id) gives every node the same age order.
//
// The byte layout of commands and of the state kept in snapshots is in
// SPEC.md beside this file.
package membership
