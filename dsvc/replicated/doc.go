// Package replicated is the data service's replicated state: the rsm
// machine (id rsm.DataSvc) that holds the "cluster" module's locations,
// dhcptab and network containers and their records in the cluster log.
//
// Every write is a Command in a log entry. Apply makes the decision the
// files and binfiles modules make under their locks — exists, no entry,
// collision, rename onto another record, unconditional delete with
// signature 0 — from the command alone and the machine's state, so every
// node gives the same answer: a refused command is a Reply with a dsvc
// code, never an Apply error. New signatures are computed in Apply from the
// generation the proposer drew and put in the command (dsvc.NewSig), or
// from the stored signature (dsvc.NextSig).
//
// The state lives in the machine's rsm.Tx (durable; key layout in SPEC.md)
// and in a mirror in memory that the reads (Status, List, Container,
// LookupDT, LookupDN, CountDT, CountDN) use from any goroutine while the
// node's goroutine applies entries: one sync.RWMutex guards the mirror, and
// Apply holds it for writing only while it changes the mirror. Load
// rebuilds the mirror from the Tx when the node opens its log; Restore
// writes a snapshot into the Tx and rebuilds the mirror from it. Snapshot
// streams the Tx record by record, so a snapshot never holds the whole
// state in memory twice.
//
// Reads are of the local replica: a linearizable read asks the log for a
// read index and waits until this node has applied it before calling them
// (the agent service does that).
//
// Formats (commands, replies, key space, snapshot section) are in SPEC.md.
package replicated
