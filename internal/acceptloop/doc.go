// Package acceptloop serves a listener the way a long-lived daemon must:
// the loop outlives transient accept errors and ends only when the
// listener is closed or its context is done.
//
// Serve is the loop. An accept error other than a closed listener (EMFILE
// and ENFILE when descriptors run out, ECONNABORTED, timeouts) is waited
// out with a backoff of 5 ms doubling to 1 s, as net/http's Server.Serve
// does, and logged once per burst: the first error, then one line when an
// accept succeeds again.
//
// Gate bounds the connections that have not authenticated yet, in all and
// per source IP, so that junk connections cannot take memory and the
// handshake slots real peers need; beyond the bound a connection is closed
// before any TLS work. RateLog lets one line a period through for events a
// remote party can cause at will, and counts the rest.
package acceptloop
