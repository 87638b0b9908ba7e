// Package wireconv converts between the data service's records and queries
// (package dsvc) and their client-protocol encodings (package
// proto/client, version 4), for the cluster module and the agent service
// behind it. proto/client cannot import dsvc (it is a leaf), so its
// record types mirror dsvc's field for field; this is the one place that
// maps them.
package wireconv
