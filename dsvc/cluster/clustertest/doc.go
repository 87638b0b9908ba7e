// Package clustertest starts real corral agents for the tests and
// benchmarks of the cluster data-service module (package dsvc/cluster):
// the corral binary, built once per test process, and one-node clusters
// whose data service answers. It is for tests only.
package clustertest
