// Package service is what the agent hands every service and what a
// service may offer the agent.
//
// A service is a value with a name and a Run method that owns its
// goroutines. It may also implement capabilities, found by type assertion:
// a replicated machine on the cluster log, a range of peer, client or
// admin opcodes it serves, HTTP handlers. The agent builds the Deps,
// constructs each service, registers its capabilities, starts the services
// in order and stops them in reverse; adding a service is one line of
// wiring in the agent.
package service
