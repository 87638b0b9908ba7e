// Package logkey names the attribute keys of corral's logs, so that one
// concept has one key in every package, and sets the component attribute,
// subsystem, so that it appears once per line however many layers a logger
// passes through.
package logkey
