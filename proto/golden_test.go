package proto_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/internal/golden"
	"github.com/corralhq/corral/proto/internal/wiretest"
)

// The golden vectors of the frame and the session sub-protocol. Each
// vector's file under testdata/ must equal the encoder's output; the bytes
// read back from the file are decoded by the receiving side's full path.
// Regenerate with: go test ./proto/... -rewrite

// Sample session messages, shared with the unit tests and fuzz seeds.
var (
	// helloKey and helloExporter make the HELLO vector's Auth a real MAC,
	// so the transport package can test its computation against it.
	helloKey      = seq(0x00, 32)
	helloExporter = seq(0x80, 32)

	sampleHello = proto.Hello{
		Reason:   proto.ReasonJoin,
		NodeID:   0x0102030405060708,
		Features: 0x3,
		Ranges: proto.Ranges{
			{Proto: proto.ProtoPeer, Min: 1, Max: 1},
			{Proto: proto.ProtoClient, Min: 1, Max: 1},
			{Proto: proto.ProtoAdmin, Min: 1, Max: 1},
		},
		Cluster:  "prod",
		NodeName: "node-a",
	}
	sampleLocalHello = proto.Hello{
		Reason: proto.ReasonClient,
		Ranges: proto.Ranges{{Proto: proto.ProtoClient, Min: 1, Max: 1}},
	}
	sampleReject = proto.Reject{
		Code:   proto.CodeVersion,
		Local:  proto.Ranges{{Proto: proto.ProtoPeer, Min: 2, Max: 3}},
		Remote: proto.Ranges{{Proto: proto.ProtoPeer, Min: 1, Max: 1}, {Proto: proto.ProtoAdmin, Min: 1, Max: 1}},
		Text:   "peer protocol: we speak 2..3, peer speaks 1..1",
	}
	sampleGoodbye = proto.Status{Code: proto.CodeShutdown, Text: "agent stopping"}

	// sampleClusterID is the cluster id of the HELLO and REJECT vectors
	// with the cluster id extension; otherClusterID the other cluster's.
	sampleClusterID = proto.SessionExt{ClusterID: 0x0123456789abcdef}
	otherClusterID  = proto.SessionExt{ClusterID: 0x00000000c0ffee42}
	// sampleListenAddr is the session extensions of hello_listen_addr.
	sampleListenAddr = proto.SessionExt{ClusterID: 0x0123456789abcdef, ListenAddr: "10.0.0.2:7946"}
	sampleDupReject  = proto.Reject{
		Code:   proto.CodeDupNode,
		Local:  proto.Ranges{{Proto: proto.ProtoPeer, Min: 2, Max: 2}},
		Remote: proto.Ranges{{Proto: proto.ProtoPeer, Min: 2, Max: 2}},
		Text:   `corral: node id in use: node id 2 is in use by "n2" linked from 10.0.0.2:7946; refusing "n2" at 10.0.0.9:7946`,
	}
	sampleIDReject = proto.Reject{
		Code:   proto.CodeClusterID,
		Local:  proto.Ranges{{Proto: proto.ProtoPeer, Min: 2, Max: 2}},
		Remote: proto.Ranges{{Proto: proto.ProtoPeer, Min: 2, Max: 2}},
		Text:   `corral: cluster id mismatch: peer "node-a" is of cluster 0123456789abcdef, this node of cluster 00000000c0ffee42`,
	}
)

func seq(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

// helloMAC computes Auth as the transport package does (proto/SPEC.md,
// "HELLO authentication").
func helloMAC(key []byte, role byte, exporter, before []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("corral hello v1"))
	m.Write([]byte{role})
	m.Write(exporter)
	m.Write(before)
	return m.Sum(nil)
}

// authedHello returns sampleHello with Auth computed for the TLS client
// side (role 1) under helloKey and helloExporter.
func authedHello() proto.Hello {
	h := sampleHello
	h.Auth = make([]byte, proto.AuthLen)
	body, off := proto.AppendHello(nil, &h)
	h.Auth = helloMAC(helloKey, 1, helloExporter, body[:off])
	return h
}

func helloBody(h proto.Hello) []byte { b, _ := proto.AppendHello(nil, &h); return b }

// decoded is what the receiving side makes of a session-level frame.
type decoded struct {
	frame proto.Frame
	msg   any              // proto.Hello, proto.Reject or proto.Status; nil for other protocols
	ext   proto.SessionExt // the session extensions
}

// receive is the receiving side's path for a frame outside a link's
// negotiated protocol: frame checks, extensions (the session's own for a
// session frame; none for others), then the session header check and the
// body.
func receive(b []byte) (decoded, error) {
	f, err := proto.DecodeFrame(b, 0)
	if err != nil {
		return decoded{}, err
	}
	d := decoded{frame: f}
	if f.Proto != proto.ProtoSession {
		return d, proto.CheckTLV(f.Ext, nil)
	}
	if d.ext, err = proto.ParseSessionExt(f.Ext); err != nil {
		return d, err
	}
	if err := proto.CheckSession(&f.Header); err != nil {
		return d, err
	}
	switch f.Opcode {
	case proto.OpHello:
		d.msg, _, err = proto.ParseHello(f.Body)
	case proto.OpReject:
		d.msg, err = proto.ParseReject(f.Body)
	case proto.OpGoodbye:
		d.msg, err = proto.ParseStatus(f.Body, "GOODBYE")
	}
	return d, err
}

// expectFrame decodes with receive and compares with the frame and message
// that were encoded.
func expectFrame(want proto.Frame, msg any) func([]byte) error {
	want.Seal()
	return func(b []byte) error {
		d, err := receive(b)
		if err != nil {
			return err
		}
		if !wiretest.Equal(d.frame, want) {
			return fmt.Errorf("decoded frame %+v, want %+v", d.frame, want)
		}
		if !wiretest.Equal(d.msg, msg) {
			return fmt.Errorf("decoded message %+v, want %+v", d.msg, msg)
		}
		return nil
	}
}

// expectExt is expectFrame that also compares the session extensions.
func expectExt(want proto.Frame, msg any, ext proto.SessionExt) func([]byte) error {
	frame := expectFrame(want, msg)
	return func(b []byte) error {
		if err := frame(b); err != nil {
			return err
		}
		if d, _ := receive(b); d.ext != ext {
			return fmt.Errorf("decoded extensions %+v, want %+v", d.ext, ext)
		}
		return nil
	}
}

func receiveErr(b []byte) error { _, err := receive(b); return err }

// Base frames that the error vectors damage.
var (
	minimalFrame = proto.Frame{Header: proto.Header{
		Proto: proto.ProtoPeer, Version: 1, Opcode: 0x0002,
		Flags: proto.FlagCreate | proto.FlagDelete, Hops: proto.HopLimit, MsgID: 1,
	}}
	fullFrame = proto.Frame{
		Header: proto.Header{
			Proto: proto.ProtoClient, Version: 1, Opcode: 0x0001, Flags: proto.FlagReply,
			Hops: proto.HopLimit, MsgID: 0x1122334455667788, Source: 0x0a, Target: 0x0b,
		},
		Ext:  proto.AppendTLV(proto.AppendTLV(nil, 0x0001, []byte("ab")), 0x0003, nil),
		Body: proto.AppendPing(nil, proto.Ping{Sent: 1700000000123456789}),
	}
)

// mutate encodes f, lets fn change the bytes and returns them.
func mutate(f proto.Frame, fn func(b []byte) []byte) []byte { return fn(wiretest.Frame(f)) }

// swapped writes the header of f as a big-endian peer would, with the
// header CRC a big-endian peer would compute.
func swapped(f proto.Frame) []byte {
	f.Seal()
	b := make([]byte, proto.HeaderSize)
	be := binary.BigEndian
	be.PutUint32(b[0:], proto.Magic)
	b[8], b[9] = byte(f.Proto), f.Version
	be.PutUint16(b[10:], f.Opcode)
	be.PutUint16(b[12:], uint16(f.Flags))
	b[14] = f.Hops
	be.PutUint64(b[16:], f.MsgID)
	be.PutUint64(b[24:], f.Source)
	be.PutUint64(b[32:], f.Target)
	be.PutUint32(b[40:], f.ExtLen)
	be.PutUint32(b[44:], f.BodyLen)
	be.PutUint32(b[48:], f.PayloadCRC)
	be.PutUint32(b[4:], proto.CRC32C(b[8:]))
	return append(append(b, f.Ext...), f.Body...)
}

func le32(b []byte, off int, v uint32) []byte { binary.LittleEndian.PutUint32(b[off:], v); return b }
func le16(b []byte, off int, v uint16) []byte { binary.LittleEndian.PutUint16(b[off:], v); return b }

// frameVector describes a frame vector: the annotation follows the bytes.
func frameVector(name string, about []string, data []byte, body func([]byte) golden.Fields, decode func([]byte) error, want proto.Code, detail string) wiretest.Vector {
	return wiretest.Vector{Name: name, About: about, Data: data, Fields: wiretest.Annotated(data, body), Decode: decode, Want: want, Detail: detail}
}

func bodyVector(name string, about []string, data []byte, fields func([]byte) golden.Fields, decode func([]byte) error, want proto.Code, detail string) wiretest.Vector {
	return wiretest.Vector{Name: name, About: about, Data: data, Fields: fields(data), Decode: decode, Want: want, Detail: detail}
}

func parseHello(b []byte) error  { _, _, err := proto.ParseHello(b); return err }
func parseReject(b []byte) error { _, err := proto.ParseReject(b); return err }
func parseStatus(b []byte) error { _, err := proto.ParseStatus(b, "GOODBYE"); return err }
func parsePing(b []byte) error   { _, err := proto.ParsePing(b); return err }

func frameVectors() []wiretest.Vector {
	hello := authedHello()
	helloF := proto.SessionFrame(proto.OpHello, helloBody(hello))
	localF := proto.SessionFrame(proto.OpHello, helloBody(sampleLocalHello))
	rejectF := proto.SessionFrame(proto.OpReject, proto.AppendReject(nil, &sampleReject))
	goodbyeF := proto.SessionFrame(proto.OpGoodbye, proto.AppendStatus(nil, &sampleGoodbye))
	critical := fullFrame
	critical.Ext = proto.AppendTLV(nil, 0x8001, []byte{1, 2, 3, 4})
	overrun := fullFrame
	overrun.Ext = []byte{0x01, 0x00, 0x0a, 0x00, 'a', 'b'}
	stray := fullFrame
	stray.Ext = []byte{0x01, 0x00, 0x00}
	badOp := proto.SessionFrame(0x0004, nil)
	badVer := proto.SessionFrame(proto.OpGoodbye, proto.AppendStatus(nil, &sampleGoodbye))
	badVer.Version = 1
	helloIDF := helloF
	helloIDF.Ext = proto.AppendSessionExt(nil, sampleClusterID)
	rejectIDF := proto.SessionFrame(proto.OpReject, proto.AppendReject(nil, &sampleIDReject))
	rejectIDF.Ext = proto.AppendSessionExt(nil, otherClusterID)
	idExt := func(ext []byte) proto.Frame { f := helloF; f.Ext = ext; return f }
	idShort := idExt(proto.AppendTLV(nil, proto.ExtClusterID, []byte{1, 2, 3, 4}))
	idZero := idExt(proto.AppendTLV(nil, proto.ExtClusterID, make([]byte, 8)))
	idTwice := idExt(proto.AppendSessionExt(proto.AppendSessionExt(nil, sampleClusterID), otherClusterID))
	idCritical := idExt(proto.AppendTLV(proto.AppendSessionExt(nil, sampleClusterID), 0x8002, nil))
	helloAddrF := idExt(proto.AppendSessionExt(nil, sampleListenAddr))
	rejectDupF := proto.SessionFrame(proto.OpReject, proto.AppendReject(nil, &sampleDupReject))
	rejectDupF.Ext = proto.AppendSessionExt(nil, proto.SessionExt{ListenAddr: "10.0.0.1:7946"})
	addrEmpty := idExt(proto.AppendTLV(nil, proto.ExtListenAddr, nil))
	addrTwice := idExt(proto.AppendTLV(proto.AppendSessionExt(nil, sampleListenAddr), proto.ExtListenAddr, []byte("10.0.0.9:7946")))
	addrLong := idExt(proto.AppendTLV(nil, proto.ExtListenAddr, bytes.Repeat([]byte{'a'}, proto.MaxNameLen+1)))

	return []wiretest.Vector{
		frameVector("frame_minimal", []string{
			"Frame with neither extension area nor body: peer protocol version 1,",
			"opcode 0x0002, flags CREATE|DELETE, hops 16, msg id 1, source and target 0.",
		}, wiretest.Frame(minimalFrame), nil, expectFrame(minimalFrame, nil), 0, ""),
		frameVector("frame_full", []string{
			"Frame using every header field: client protocol version 1, opcode 0x0001,",
			"flags REPLY, msg id 0x1122334455667788, source 0x0a, target 0x0b, an",
			"extension area of two non-critical TLVs (0x0001 \"ab\", 0x0003 empty) and an",
			"8-byte body. The payload CRC covers extension area and body together.",
		}, wiretest.Frame(fullFrame), nil, expectFrame(fullFrame, nil), 0, ""),
		frameVector("hello", []string{
			"Session HELLO (proto 0, version 0, opcode 0x0001) of a node joining cluster",
			"\"prod\" as \"node-a\", node id 0x0102030405060708, features 0x3 (bits v1 does not",
			"define; receivers ignore them), speaking peer, client and admin 1..1.",
			"Auth = HMAC-SHA256(key, \"corral hello v1\" || 0x01 ||",
			"exporter || body bytes before the auth length), role 0x01 = TLS client, with",
			"key      = " + fmt.Sprintf("%x", helloKey),
			"exporter = " + fmt.Sprintf("%x", helloExporter),
		}, wiretest.Frame(helloF), wiretest.HelloFields, func(b []byte) error {
			if err := expectFrame(helloF, hello)(b); err != nil {
				return err
			}
			body := b[proto.HeaderSize:]
			h, off, _ := proto.ParseHello(body)
			if mac := helloMAC(helloKey, 1, helloExporter, body[:off]); !bytes.Equal(h.Auth, mac) {
				return fmt.Errorf("auth %x, recomputed %x", h.Auth, mac)
			}
			return nil
		}, 0, ""),
		frameVector("hello_local", []string{
			"Session HELLO of an application on a local socket: reason client, client",
			"protocol 1..1 only, empty cluster and node name, no Auth (file permissions",
			"authenticate a unix socket).",
		}, wiretest.Frame(localF), wiretest.HelloFields, expectFrame(localF, sampleLocalHello), 0, ""),
		frameVector("reject", []string{
			"Session REJECT: code 34 (version mismatch), the rejecting side speaks peer",
			"2..3, the other side offered peer 1..1 and admin 1..1.",
		}, wiretest.Frame(rejectF), wiretest.RejectFields, expectFrame(rejectF, sampleReject), 0, ""),
		frameVector("goodbye", []string{
			"Session GOODBYE with a Status body: code 37 (shutting down), \"agent stopping\".",
		}, wiretest.Frame(goodbyeF), wiretest.StatusFields, expectFrame(goodbyeF, sampleGoodbye), 0, ""),

		frameVector("hello_cluster_id", []string{
			"The hello vector's HELLO with the session extension 0x0001 (cluster id, not",
			"critical) in the frame's extension area: the sender belongs to cluster",
			"0123456789abcdef. The body and its Auth are those of the hello vector: the",
			"MAC does not cover the extension area, TLS protects it in transit.",
		}, wiretest.Frame(helloIDF), wiretest.HelloFields, expectExt(helloIDF, hello, sampleClusterID), 0, ""),
		frameVector("reject_cluster_id", []string{
			"Session REJECT: code 40 (cluster id mismatch). The rejecting side, of cluster",
			"00000000c0ffee42, names its own cluster id in extension 0x0001 and both ids",
			"in the text, so either side's log says which clusters met.",
		}, wiretest.Frame(rejectIDF), wiretest.RejectFields, expectExt(rejectIDF, sampleIDReject, otherClusterID), 0, ""),
		frameVector("err_cluster_id_len", []string{
			"The hello vector's HELLO with a cluster id extension of 4 bytes; it is 8.",
		}, wiretest.Frame(idShort), wiretest.HelloFields, receiveErr, proto.CodeField, "cluster id is 4 bytes, want 8"),
		frameVector("err_cluster_id_zero", []string{
			"The hello vector's HELLO with a cluster id extension holding 0: a sender",
			"that does not know its cluster id sends no entry.",
		}, wiretest.Frame(idZero), wiretest.HelloFields, receiveErr, proto.CodeField, "cluster id 0"),
		frameVector("err_cluster_id_twice", []string{
			"The hello vector's HELLO with two cluster id extensions (0123456789abcdef,",
			"00000000c0ffee42): the entry appears at most once.",
		}, wiretest.Frame(idTwice), wiretest.HelloFields, receiveErr, proto.CodeField, "two cluster id entries"),
		frameVector("err_session_critical_ext", []string{
			"hello_cluster_id with a second, critical extension 0x8002 that the session",
			"protocol does not define: the HELLO is refused.",
		}, wiretest.Frame(idCritical), wiretest.HelloFields, receiveErr, proto.CodeField, "unknown critical extension 0x8002"),
		frameVector("hello_listen_addr", []string{
			"The hello vector's HELLO with the session extensions 0x0001 (cluster id",
			"0123456789abcdef) and 0x0002 (listen address \"10.0.0.2:7946\", not critical):",
			"the address the sender's peers reach it at, which tells its restart from a",
			"second node started with its id.",
		}, wiretest.Frame(helloAddrF), wiretest.HelloFields, expectExt(helloAddrF, hello, sampleListenAddr), 0, ""),
		frameVector("reject_dup_node", []string{
			"Session REJECT: code 41 (node id in use). The rejecting side (listen address",
			"10.0.0.1:7946 in extension 0x0002) has a live link to node 2 from 10.0.0.2:7946",
			"and refuses a second node 2 at 10.0.0.9:7946; the text names both addresses.",
		}, wiretest.Frame(rejectDupF), wiretest.RejectFields, expectExt(rejectDupF, sampleDupReject, proto.SessionExt{ListenAddr: "10.0.0.1:7946"}), 0, ""),
		frameVector("err_listen_addr_empty", []string{
			"The hello vector's HELLO with an empty listen address extension: a sender",
			"without an address sends no entry.",
		}, wiretest.Frame(addrEmpty), wiretest.HelloFields, receiveErr, proto.CodeField, "listen address of 0 bytes"),
		frameVector("err_listen_addr_long", []string{
			"The hello vector's HELLO with a listen address of 256 bytes; at most 255.",
		}, wiretest.Frame(addrLong), wiretest.HelloFields, receiveErr, proto.CodeField, "listen address of 256 bytes"),
		frameVector("err_listen_addr_twice", []string{
			"hello_listen_addr with a second listen address entry: at most one.",
		}, wiretest.Frame(addrTwice), wiretest.HelloFields, receiveErr, proto.CodeField, "two listen address entries"),

		frameVector("err_bad_magic", []string{
			"frame_minimal whose first four bytes are \"GET \": someone speaks HTTP to the port.",
		}, mutate(minimalFrame, func(b []byte) []byte { copy(b, "GET "); return b }),
			nil, receiveErr, proto.CodeSync, "bad magic"),
		frameVector("err_swapped_magic", []string{
			"frame_minimal as a big-endian writer would send it: every multi-byte field,",
			"the magic included, is byte-swapped. The receiver names the cause.",
		}, swapped(minimalFrame), nil, receiveErr, proto.CodeSync, "byte-swapped"),
		frameVector("err_header_crc", []string{
			"frame_minimal with the low byte of msg id changed and the header CRC left alone.",
		}, mutate(minimalFrame, func(b []byte) []byte { b[16] ^= 0x80; return b }),
			nil, receiveErr, proto.CodeHeaderCRC, "header CRC"),
		frameVector("err_payload_crc", []string{
			"frame_full with the last body byte changed: the header is intact, the payload CRC is not.",
		}, mutate(fullFrame, func(b []byte) []byte { b[len(b)-1] ^= 1; return b }),
			nil, receiveErr, proto.CodePayloadCRC, "payload CRC"),
		frameVector("err_truncated_header", []string{
			"The first 40 bytes of frame_minimal: the stream ends inside the header.",
		}, wiretest.Frame(minimalFrame)[:40], nil, receiveErr, proto.CodeEOF, "header needs 56 bytes"),
		frameVector("err_truncated_payload", []string{
			"frame_full without its last 3 bytes: the stream ends inside the body.",
		}, mutate(fullFrame, func(b []byte) []byte { return b[:len(b)-3] }),
			nil, receiveErr, proto.CodeEOF, "truncated frame"),
		frameVector("err_trailing_bytes", []string{
			"frame_minimal followed by 2 bytes that belong to no frame (DecodeFrame decodes",
			"exactly one frame; a stream decoder would wait for the next header instead).",
		}, append(wiretest.Frame(minimalFrame), 0xde, 0xad), nil, receiveErr, proto.CodeField, "2 bytes after the frame"),
		frameVector("err_oversize_payload", []string{
			"A valid header that announces a 1 GiB body, more than the default 16 MiB",
			"limit. It is refused at header time, before any buffer grows.",
		}, mutate(minimalFrame, func(b []byte) []byte { return wiretest.Reseal(le32(b, 44, 1<<30)) }),
			nil, receiveErr, proto.CodeTooLarge, "exceeds limit 16777216"),
		frameVector("err_oversize_ext", []string{
			"A valid header that announces an extension area of 65540 bytes, more than",
			"the 65536 any frame may carry.",
		}, mutate(minimalFrame, func(b []byte) []byte { return wiretest.Reseal(le32(b, 40, proto.MaxExtSize+4)) }),
			nil, receiveErr, proto.CodeTooLarge, "extension area of 65540 bytes"),
		frameVector("err_unknown_flags", []string{
			"frame_minimal with flag bit 0x0010 set, which v1 does not define; header CRC recomputed.",
		}, mutate(minimalFrame, func(b []byte) []byte { return wiretest.Reseal(le16(b, 12, 0x0013)) }),
			nil, receiveErr, proto.CodeField, "unknown flags 0x0010"),
		frameVector("err_reserved_byte", []string{
			"frame_minimal with the reserved byte at offset 15 set to 1; header CRC recomputed.",
		}, mutate(minimalFrame, func(b []byte) []byte { b[15] = 1; return wiretest.Reseal(b) }),
			nil, receiveErr, proto.CodeField, "reserved header bytes"),
		frameVector("err_reserved_word", []string{
			"frame_minimal with the reserved word at offset 52 set to 1; header CRC recomputed.",
		}, mutate(minimalFrame, func(b []byte) []byte { return wiretest.Reseal(le32(b, 52, 1)) }),
			nil, receiveErr, proto.CodeField, "reserved header bytes"),
		frameVector("err_unknown_proto", []string{
			"frame_minimal with proto id 4, which names no sub-protocol; header CRC recomputed.",
		}, mutate(minimalFrame, func(b []byte) []byte { b[8] = 4; return wiretest.Reseal(b) }),
			nil, receiveErr, proto.CodeField, "unknown sub-protocol id 4"),
		frameVector("err_tlv_overrun", []string{
			"frame_full whose extension entry announces 10 value bytes but holds 2.",
		}, wiretest.Frame(overrun), nil, receiveErr, proto.CodeField, "overruns the area"),
		frameVector("err_tlv_stray", []string{
			"frame_full whose extension area is 3 bytes, too short for an entry header.",
		}, wiretest.Frame(stray), nil, receiveErr, proto.CodeField, "3 stray bytes"),
		frameVector("err_critical_tlv", []string{
			"A well-formed frame with extension 0x8001: the critical bit (0x8000) is set",
			"and this receiver does not know the type, so it must refuse the frame.",
		}, wiretest.Frame(critical), nil, receiveErr, proto.CodeField, "unknown critical extension 0x8001"),
		frameVector("err_session_opcode", []string{
			"A session frame with opcode 0x0004, which the session protocol does not define.",
		}, wiretest.Frame(badOp), nil, receiveErr, proto.CodeOpcode, "session opcode 0x0004"),
		frameVector("err_session_version", []string{
			"A GOODBYE sent with version 1: session frames are always version 0.",
		}, wiretest.Frame(badVer), wiretest.StatusFields, receiveErr, proto.CodeVersion, "session frame of version 1"),
	}
}

// helloWith encodes sampleHello (no Auth), lets fn change the body.
func helloWith(fn func(b []byte) []byte) []byte { return fn(helloBody(sampleHello)) }

// HELLO body offsets used by the vectors below (see SPEC.md).
const (
	helloOffReason  = 4
	helloOffCount   = 5
	helloOffRsvd    = 6
	helloOffRanges  = 24
	helloOffCluster = helloOffRanges + 3*4 // sampleHello has three ranges
)

func bodyVectors() []wiretest.Vector {
	rejectBody := proto.AppendReject(nil, &sampleReject)
	statusBody := proto.AppendStatus(nil, &sampleGoodbye)
	longName := sampleHello
	longName.Cluster = strings.Repeat("c", proto.MaxNameLen+1)
	badAuth := sampleHello
	badAuth.Auth = seq(0x10, 16)
	long := strings.Repeat("x", proto.MaxReasonLen+1)
	manyRanges := make([]byte, 0, 64)
	manyRanges = binary.LittleEndian.AppendUint16(manyRanges, uint16(proto.CodeVersion))
	manyRanges = append(manyRanges, proto.MaxRanges+1, 0)
	for i := 0; i <= proto.MaxRanges; i++ {
		manyRanges = append(manyRanges, 1, 1, 1, 0)
	}
	manyRanges = proto.AppendString16(manyRanges, "")

	return []wiretest.Vector{
		bodyVector("crc32c_check", []string{
			"The CRC32C (Castagnoli, reflected polynomial 0x82f63b78) check value:",
			"CRC32C(\"123456789\") = 0xe3069283.",
		}, []byte("123456789"), func([]byte) golden.Fields {
			return golden.Fields{{Size: 9, Name: `ASCII "123456789"`}}
		}, func(b []byte) error {
			if got := proto.CRC32C(b); got != 0xE3069283 {
				return fmt.Errorf("CRC32C = %#08x, want 0xe3069283", got)
			}
			return nil
		}, 0, ""),
		bodyVector("ping_body", []string{
			"PING/PONG body of every sub-protocol: sent = 1700000000123456789 ns.",
		}, proto.AppendPing(nil, proto.Ping{Sent: 1700000000123456789}), wiretest.PingFields, func(b []byte) error {
			p, err := proto.ParsePing(b)
			if err == nil && p.Sent != 1700000000123456789 {
				return fmt.Errorf("sent = %d", p.Sent)
			}
			return err
		}, 0, ""),
		bodyVector("err_ping_short", []string{"A PING body of 7 bytes."},
			make([]byte, 7), wiretest.PingFields, parsePing, proto.CodeField, "truncated at sent"),
		bodyVector("err_ping_long", []string{"A PING body of 9 bytes."},
			make([]byte, 9), wiretest.PingFields, parsePing, proto.CodeField, "1 unexpected bytes"),

		bodyVector("err_hello_magic", []string{"HELLO body whose magic is \"CHLX\": not a corral hello."},
			helloWith(func(b []byte) []byte { b[3] = 'X'; return b }), wiretest.HelloFields, parseHello, proto.CodeSync, "bad hello magic"),
		bodyVector("err_hello_reason", []string{"HELLO body with reason 9, which names no reason."},
			helloWith(func(b []byte) []byte { b[helloOffReason] = 9; return b }), wiretest.HelloFields, parseHello, proto.CodeField, "unknown reason 9"),
		bodyVector("err_hello_reserved", []string{"HELLO body with a non-zero reserved byte at offset 6."},
			helloWith(func(b []byte) []byte { b[helloOffRsvd] = 1; return b }), wiretest.HelloFields, parseHello, proto.CodeField, "reserved reserved is not zero"),
		bodyVector("err_hello_range_count", []string{"HELLO body announcing 9 version ranges; at most 8 are allowed."},
			helloWith(func(b []byte) []byte { b[helloOffCount] = proto.MaxRanges + 1; return b }), wiretest.HelloFields, parseHello, proto.CodeField, "9 version ranges, limit 8"),
		bodyVector("err_hello_range_order", []string{"HELLO body whose first range is peer 2..1 (min above max)."},
			helloWith(func(b []byte) []byte { b[helloOffRanges+1] = 2; return b }), wiretest.HelloFields, parseHello, proto.CodeField, "bad version range peer 2..1"),
		bodyVector("err_hello_range_proto", []string{"HELLO body with a range for proto id 7, which names no sub-protocol."},
			helloWith(func(b []byte) []byte { b[helloOffRanges] = 7; return b }), wiretest.HelloFields, parseHello, proto.CodeField, "bad version range proto(7)"),
		bodyVector("err_hello_range_dup", []string{"HELLO body with two ranges for the peer protocol."},
			helloWith(func(b []byte) []byte { b[helloOffRanges+4] = byte(proto.ProtoPeer); return b }), wiretest.HelloFields, parseHello, proto.CodeField, "two version ranges for peer"),
		bodyVector("err_hello_name_long", []string{"HELLO body whose cluster name is 256 bytes; the limit is 255."},
			helloBody(longName), wiretest.HelloFields, parseHello, proto.CodeField, "cluster name is 256 bytes, limit 255"),
		bodyVector("err_hello_auth_len", []string{"HELLO body with 16 bytes of Auth; Auth is 0 or 32 bytes."},
			helloBody(badAuth), wiretest.HelloFields, parseHello, proto.CodeKeyFormat, "auth is 16 bytes"),
		bodyVector("err_hello_truncated", []string{"HELLO body cut off inside the cluster name."},
			helloWith(func(b []byte) []byte { return b[:helloOffCluster+4] }), wiretest.HelloFields, parseHello, proto.CodeField, "truncated at cluster name"),
		bodyVector("err_hello_trailing", []string{"HELLO body followed by one extra byte."},
			helloWith(func(b []byte) []byte { return append(b, 0) }), wiretest.HelloFields, parseHello, proto.CodeField, "1 unexpected bytes"),

		bodyVector("err_reject_truncated", []string{"REJECT body cut off inside the remote ranges."},
			rejectBody[:4+4+6], wiretest.RejectFields, parseReject, proto.CodeField, "truncated at range"),
		bodyVector("err_reject_range_count", []string{"REJECT body announcing 9 local ranges; at most 8 are allowed."},
			manyRanges, wiretest.RejectFields, parseReject, proto.CodeField, "9 version ranges, limit 8"),
		bodyVector("err_reject_text_long", []string{"REJECT body with 1025 bytes of text; the limit is 1024."},
			proto.AppendString16(bytes.Clone(rejectBody[:4+3*4]), long), wiretest.RejectFields, parseReject, proto.CodeField, "text is 1025 bytes, limit 1024"),
		bodyVector("err_reject_trailing", []string{"REJECT body followed by one extra byte."},
			append(bytes.Clone(rejectBody), 0), wiretest.RejectFields, parseReject, proto.CodeField, "1 unexpected bytes"),

		bodyVector("err_status_truncated", []string{"Status body of a single byte."},
			statusBody[:1], wiretest.StatusFields, parseStatus, proto.CodeField, "truncated at code"),
		bodyVector("err_status_text_long", []string{"Status body with 1025 bytes of text; the limit is 1024."},
			proto.AppendString16(bytes.Clone(statusBody[:2]), long), wiretest.StatusFields, parseStatus, proto.CodeField, "text is 1025 bytes, limit 1024"),
		bodyVector("err_status_trailing", []string{"Status body followed by one extra byte."},
			append(bytes.Clone(statusBody), 0), wiretest.StatusFields, parseStatus, proto.CodeField, "1 unexpected bytes"),
	}
}

func TestGolden(t *testing.T) {
	wiretest.Run(t, "testdata", append(append(frameVectors(), bodyVectors()...), txVectors()...))
}
