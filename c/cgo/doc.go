// Package ocwire tests the C implementation of the client protocol
// (c/src/wire.c and wire_event.c, the wire layer of liboc_event.so)
// against the Go reference decoders of proto and proto/client: the golden
// vectors of proto/client/testdata, event data decoded field by field into
// the structs of c/include/ocf/oc_event.h, and a differential fuzz target
// that holds the C frame check to the Go receive path.
//
// The package compiles the C sources with cgo. They are symbolic links to
// the files under c/src and c/include rather than a .c file that includes
// them: the go command caches builds by the content of the package's own
// files and would not notice a change to a file only #included from
// outside the package, so the tests would run stale C code. Its Go API
// exists only for its tests and is not meant for other packages.
package ocwire
