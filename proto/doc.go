// Package proto holds corral's wire formats and nothing else: the frame
// codec shared by the three sub-protocols, the streaming receive state
// machine, the extension area (TLV), the version-independent session
// messages (HELLO, REJECT, GOODBYE) and the typed errors every decoder
// returns. It does no I/O: callers feed it bytes and hand its output to a
// socket, which keeps every parser deterministic and fuzzable.
//
// The byte layout is specified in SPEC.md beside this file. Every field is
// little-endian and is read and written by explicit code (encoding/binary),
// never by casting memory. The sub-protocols live in proto/peer,
// proto/client and proto/admin, each with its own version number and
// spec.
//
// A frame on the wire is a fixed 56-byte header, then the extension area
// (ExtLen bytes of TLVs), then the body (BodyLen bytes). The header carries
// a CRC32C of itself and a CRC32C of extension area and body together.
// Decoders check sizes against their limit before allocating anything.
package proto
