// Package wiretest is test support for proto and its sub-protocol
// packages: the golden vector runner, an assertion for typed wire errors,
// and annotators that describe the session message bodies field by field
// for the golden files. Only tests import it.
package wiretest
