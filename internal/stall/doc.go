// Package stall tells when this process was not running: starved of CPU,
// paused by SIGSTOP, or suspended with its machine. It is fed the due and
// actual wake-up times of a periodic timer; a wake-up later than a
// threshold means that nothing of the process ran between the two, since
// the runtime would have delivered the timer otherwise.
//
// A failure detector uses it so that silence it did not observe is not
// blamed on the peer: a peer is declared dead only after a full timeout of
// wall time during which this process ran (Detector.Deadline). The package
// does no I/O and reads no clock; callers pass the times in, and tests
// inject them.
package stall
