// Package protos lists the sub-protocols this build speaks (peer, client,
// admin), for callers that fill transport.Config.Protocols and announce
// version ranges. It is the one place a new sub-protocol is added to, so
// transport, the one-link package, does not depend on any of them.
package protos
