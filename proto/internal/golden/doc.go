// Package golden reads and writes the golden vectors of corral's wire
// formats: commented hex files under each proto package's testdata/, one
// frame or message body per file.
//
// A file starts with comment lines ("# …") that say what the bytes are and
// what a decoder must make of them. Each data line is an offset, the bytes
// in hex and, after a second "#", the name of the field that starts there:
//
//	# PING frame, peer protocol version 1
//	# expect: ok
//	0000: 43 4f 52 52                                      # magic "CORR"
//	0004: 8d 1e 5a 07                                      # header CRC32C
//
// Tests build the expected text from the encoder with Format and compare it
// to the file with Check; running the tests with -rewrite
// (go test ./proto/... -rewrite) writes the files instead. Parse reads the
// bytes back so that decoders are tested against the file, not against the
// encoder. The package imports nothing from proto, so proto's own tests can
// use it, and its frame layout table (HeaderFields) is a second, independent
// statement of the header layout.
package golden
