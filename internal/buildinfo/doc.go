// Package buildinfo holds what the build stamps into the binary, so the
// agent, the CLI and the libraries report one version without importing
// each other.
package buildinfo
