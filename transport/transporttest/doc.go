// Package transporttest gives tests established transport links without
// sockets: two ends of a unix socket pair that ran the real handshake (TLS 1.3
// and the cluster-key proof, or a local link without a key), ready for
// their owners to Start.
package transporttest
