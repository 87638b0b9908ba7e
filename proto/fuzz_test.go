package proto_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/internal/wiretest"
)

// Fuzz targets for every decoder in proto. Each never panics, returns only
// *proto.Error, and where it succeeds the format is canonical: encoding
// the decoded value reproduces the input byte for byte.
//
// Run one with: go test -run='^$' -fuzz='^FuzzDecoderStream$' ./proto

// typed fails unless err is nil or a *proto.Error.
func typed(t *testing.T, err error) {
	t.Helper()
	var pe *proto.Error
	if err != nil && !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *proto.Error", err, err)
	}
}

// fixCRCs returns a copy of b in which every frame that starts with a good
// magic has correct CRCs, so that mutated inputs reach the checks behind
// the CRCs instead of all failing there.
func fixCRCs(b []byte) []byte {
	b = bytes.Clone(b)
	le := binary.LittleEndian
	for off := 0; len(b)-off >= proto.HeaderSize; {
		h := b[off:]
		if le.Uint32(h) != proto.Magic {
			break
		}
		n := uint64(le.Uint32(h[40:])) + uint64(le.Uint32(h[44:]))
		if n <= uint64(len(h)-proto.HeaderSize) {
			le.PutUint32(h[48:], proto.CRC32C(h[proto.HeaderSize:proto.HeaderSize+n]))
		}
		wiretest.Reseal(h)
		if n > uint64(len(h)-proto.HeaderSize) {
			break
		}
		off += proto.HeaderSize + int(n)
	}
	return b
}

func sessionFrameBytes(op uint16, body []byte) []byte {
	return wiretest.Frame(proto.SessionFrame(op, body))
}

func FuzzParseHeader(f *testing.F) {
	f.Add(wiretest.Frame(minimalFrame))                                         // frame_minimal: a bare header
	f.Add(wiretest.Frame(fullFrame)[:proto.HeaderSize])                         // the header of frame_full: every field set
	f.Add(swapped(minimalFrame))                                                // a big-endian writer's header
	f.Add(wiretest.Frame(minimalFrame)[:proto.HeaderSize-1])                    // one byte short
	f.Add([]byte("GET / HTTP/1.1\r\nHost: corral\r\n\r\n0123456789abcdef0123")) // HTTP on the wrong port
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := proto.ParseHeader(b, 0)
		typed(t, err)
		if err != nil {
			return
		}
		if h.PayloadLen() > proto.DefaultMaxPayload || h.ExtLen > proto.MaxExtSize {
			t.Fatalf("accepted a header with %d+%d payload bytes", h.ExtLen, h.BodyLen)
		}
		out := make([]byte, proto.HeaderSize)
		proto.PutHeader(out, &h)
		if !bytes.Equal(out, b[:proto.HeaderSize]) {
			t.Fatalf("re-encoded header differs:\n%x\n%x", out, b[:proto.HeaderSize])
		}
	})
}

func FuzzDecodeFrame(f *testing.F) {
	f.Add(wiretest.Frame(minimalFrame), false)                                              // frame_minimal
	f.Add(wiretest.Frame(fullFrame), false)                                                 // frame_full: TLVs and body
	f.Add(sessionFrameBytes(proto.OpHello, helloBody(authedHello())), false)                // the HELLO vector
	f.Add(sessionFrameBytes(proto.OpReject, proto.AppendReject(nil, &sampleReject)), false) // the REJECT vector
	f.Add(append(wiretest.Frame(minimalFrame), 1, 2), false)                                // trailing bytes
	f.Add(wiretest.Frame(fullFrame)[:70], true)                                             // truncated payload, CRCs fixed up
	f.Add([]byte{0x43, 0x4f, 0x52, 0x52}, true)                                             // magic only
	f.Fuzz(func(t *testing.T, b []byte, fix bool) {
		if fix {
			b = fixCRCs(b)
		}
		fr, err := proto.DecodeFrame(b, 0)
		typed(t, err)
		if err != nil {
			return
		}
		if out := proto.AppendFrame(nil, &fr); !bytes.Equal(out, b) {
			t.Fatalf("re-encoded frame differs:\n%x\n%x", out, b)
		}
		d := proto.NewDecoder(0)
		d.Feed(b)
		got, ok, err := d.Next()
		if !ok || err != nil || !wiretest.Equal(got, fr) || d.Close() != nil {
			t.Fatalf("stream decoder disagrees with DecodeFrame: ok=%v err=%v", ok, err)
		}
	})
}

// FuzzDecoderStream feeds the input in random pieces (drawn from seed) and
// compares with a one-shot decode: same frames, same errors. The limit is
// small so oversize frames are common, and the buffer must never grow
// beyond what one frame under the limit and one piece of input need.
func FuzzDecoderStream(f *testing.F) {
	stream, _ := testStream()
	two := append(wiretest.Frame(minimalFrame), wiretest.Frame(fullFrame)...)
	f.Add(two, uint64(1), false)                                                                                        // two good frames
	f.Add(stream[:4000], uint64(2), false)                                                                              // the start of a mixed stream, cut inside a frame
	f.Add(append(bytes.Clone(two), 0x47, 0x45, 0x54), uint64(3), false)                                                 // good frames, then garbage
	f.Add(append(wiretest.Frame(fullFrame), swapped(minimalFrame)...), uint64(4), false)                                // a good frame, then a byte-swapped one
	f.Add(mutate(minimalFrame, func(b []byte) []byte { return wiretest.Reseal(le32(b, 44, 1<<30)) }), uint64(5), false) // a 1 GiB claim
	f.Add(mutate(minimalFrame, func(b []byte) []byte { return le32(b, 44, 5000) }), uint64(6), true)                    // over the fuzz limit, CRCs fixed up
	f.Fuzz(func(t *testing.T, data []byte, seed uint64, fix bool) {
		const limit = 4096
		if fix {
			data = fixCRCs(data)
		}
		one := decodeChunks(limit, [][]byte{data})
		typed(t, one.err)
		typed(t, one.closeErr)

		r := rand.New(rand.NewPCG(seed, seed>>32|1))
		chunks := randomSplit(r, data)
		var res streamResult
		d := proto.NewDecoder(limit)
		for _, c := range chunks {
			d.Feed(c)
			drain(d, &res)
			if bound := max(proto.MinDecoderBuf, 2*(proto.HeaderSize+limit+len(c))); d.BufCap() > bound {
				t.Fatalf("buffer grew to %d bytes, bound %d", d.BufCap(), bound)
			}
		}
		res.closeErr = d.Close()
		sameResult(t, "random split", res, one)
		for _, fr := range one.frames {
			if fr.PayloadLen() > limit {
				t.Fatalf("frame of %d payload bytes passed a limit of %d", fr.PayloadLen(), limit)
			}
		}
	})
}

func FuzzParseHello(f *testing.F) {
	f.Add(helloBody(authedHello()))                                // hello vector: join with Auth
	f.Add(helloBody(sampleLocalHello))                             // local client hello, no Auth
	f.Add(helloBody(helloCases()[3]))                              // every limit at its maximum
	f.Add(helloWith(func(b []byte) []byte { b[5] = 9; return b })) // 9 ranges
	f.Add(helloWith(func(b []byte) []byte { return b[:30] }))      // cut inside the ranges
	f.Add([]byte("CHLO"))                                          // magic only
	f.Fuzz(func(t *testing.T, b []byte) {
		h, off, err := proto.ParseHello(b)
		typed(t, err)
		if err != nil {
			return
		}
		if len(h.Ranges) > proto.MaxRanges || len(h.Cluster) > proto.MaxNameLen || len(h.NodeName) > proto.MaxNameLen ||
			(len(h.Auth) != 0 && len(h.Auth) != proto.AuthLen) {
			t.Fatalf("accepted a hello beyond its limits: %+v", h)
		}
		out, off2 := proto.AppendHello(nil, &h)
		if !bytes.Equal(out, b) || off != off2 {
			t.Fatalf("re-encoded hello differs (auth offset %d vs %d):\n%x\n%x", off2, off, out, b)
		}
	})
}

func FuzzParseReject(f *testing.F) {
	f.Add(proto.AppendReject(nil, &sampleReject))                                                          // reject vector
	f.Add(proto.AppendReject(nil, &proto.Reject{Code: proto.CodeCluster}))                                 // no ranges, no text
	f.Add(proto.AppendReject(nil, &proto.Reject{Local: fullRanges(), Remote: fullRanges(), Text: "full"})) // many ranges
	f.Add([]byte{34, 0, 9, 0})                                                                             // 9 local ranges announced
	f.Fuzz(func(t *testing.T, b []byte) {
		rj, err := proto.ParseReject(b)
		typed(t, err)
		if err != nil {
			return
		}
		if out := proto.AppendReject(nil, &rj); !bytes.Equal(out, b) {
			t.Fatalf("re-encoded reject differs:\n%x\n%x", out, b)
		}
		_ = rj.Err().Error()
	})
}

// FuzzParseStatus also encodes (code, text) and decodes it back.
func FuzzParseStatus(f *testing.F) {
	f.Add(proto.AppendStatus(nil, &sampleGoodbye), uint16(37), "agent stopping")         // goodbye vector
	f.Add([]byte{8, 0, 0, 0}, uint16(8), "")                                             // bad state, no text
	f.Add([]byte{4, 0, 5, 0, 'a'}, uint16(4), strings.Repeat("x", proto.MaxReasonLen+1)) // text cut short; text over the limit
	f.Fuzz(func(t *testing.T, b []byte, code uint16, text string) {
		st, err := proto.ParseStatus(b, "STATUS")
		typed(t, err)
		if err == nil {
			if out := proto.AppendStatus(nil, &st); !bytes.Equal(out, b) {
				t.Fatalf("re-encoded status differs:\n%x\n%x", out, b)
			}
		}
		if len(text) > 0xffff {
			return
		}
		x := proto.Status{Code: proto.Code(code), Text: text}
		got, err := proto.ParseStatus(proto.AppendStatus(nil, &x), "STATUS")
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", x, err)
		}
		if x.Text = text[:min(len(text), proto.MaxReasonLen)]; got != x {
			t.Fatalf("decode(encode(x)) = %+v, want %+v", got, x)
		}
	})
}

// FuzzParseTLV also encodes one entry (typ, value) and decodes it back.
func FuzzParseTLV(f *testing.F) {
	f.Add(fullFrame.Ext, uint16(1), []byte("ab"))                                     // two entries, one empty
	f.Add(proto.AppendTLV(nil, 0x8001, []byte{1, 2, 3, 4}), uint16(0x8001), []byte{}) // a critical entry
	f.Add([]byte{1, 0, 10, 0, 'a'}, uint16(0), []byte(nil))                           // value overruns the area
	f.Add([]byte{1, 0, 0}, uint16(0xffff), []byte{0})                                 // stray bytes
	f.Fuzz(func(t *testing.T, ext []byte, typ uint16, value []byte) {
		es, err := proto.ParseTLV(ext)
		typed(t, err)
		verr := proto.ValidateTLV(ext)
		cerr := proto.CheckTLV(ext, nil)
		typed(t, cerr)
		if (err == nil) != (verr == nil) {
			t.Fatalf("ParseTLV %v, ValidateTLV %v", err, verr)
		}
		if err == nil {
			var out []byte
			critical := false
			for _, e := range es {
				out = proto.AppendTLV(out, e.Type, e.Value)
				critical = critical || e.Type&proto.TLVCritical != 0
			}
			if !bytes.Equal(out, ext) {
				t.Fatalf("re-encoded area differs:\n%x\n%x", out, ext)
			}
			if (cerr != nil) != critical {
				t.Fatalf("CheckTLV(nil) = %v with critical entries: %v", cerr, critical)
			}
			if proto.CheckTLV(ext, func(uint16) bool { return true }) != nil {
				t.Fatal("CheckTLV refused an area whose types are all known")
			}
		}
		if len(value) > 0xffff {
			return
		}
		got, err := proto.ParseTLV(proto.AppendTLV(nil, typ, value))
		if err != nil || len(got) != 1 || got[0].Type != typ || !bytes.Equal(got[0].Value, value) {
			t.Fatalf("decode(encode(%#x, %x)) = %+v, %v", typ, value, got, err)
		}
	})
}

func FuzzParsePing(f *testing.F) {
	f.Add(proto.AppendPing(nil, proto.Ping{Sent: 1700000000123456789})) // ping vector
	f.Add(make([]byte, 7))                                              // one byte short
	f.Add(make([]byte, 9))                                              // one byte long
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := proto.ParsePing(b)
		typed(t, err)
		if (err == nil) != (len(b) == proto.PingSize) {
			t.Fatalf("ParsePing of %d bytes: %v", len(b), err)
		}
		if err == nil && !bytes.Equal(proto.AppendPing(nil, p), b) {
			t.Fatal("re-encoded ping differs")
		}
	})
}

// FuzzParseSessionExt also encodes a cluster id and decodes it back, and
// every extension set it accepted.
func FuzzParseSessionExt(f *testing.F) {
	f.Add(proto.AppendSessionExt(nil, sampleClusterID), uint64(0x0123456789abcdef))                       // hello_cluster_id
	f.Add(proto.AppendTLV(nil, proto.ExtClusterID, make([]byte, 8)), uint64(0))                           // id 0
	f.Add(proto.AppendTLV(nil, proto.ExtClusterID, []byte{1, 2, 3, 4}), uint64(1))                        // 4-byte id
	f.Add(proto.AppendTLV(proto.AppendSessionExt(nil, sampleClusterID), 0x0007, []byte("x")), ^uint64(0)) // unknown, not critical
	f.Add(proto.AppendTLV(proto.AppendSessionExt(nil, otherClusterID), 0x8002, nil), uint64(0x42))        // unknown critical
	f.Add(proto.AppendSessionExt(nil, sampleListenAddr), uint64(7))                                       // hello_listen_addr
	f.Add(proto.AppendTLV(nil, proto.ExtListenAddr, nil), uint64(7))                                      // empty address
	f.Add(proto.AppendTLV(nil, proto.ExtListenAddr, []byte{0xff, 0xfe}), uint64(7))                       // not UTF-8
	f.Fuzz(func(t *testing.T, ext []byte, id uint64) {
		e, err := proto.ParseSessionExt(ext)
		typed(t, err)
		if err == nil && proto.ValidateTLV(ext) != nil {
			t.Fatal("accepted a malformed extension area")
		}
		if err == nil {
			// Unknown optional entries are dropped, so compare values.
			back, err := proto.ParseSessionExt(proto.AppendSessionExt(nil, e))
			if err != nil || back != e {
				t.Fatalf("decode(encode(%+v)) = %+v, %v", e, back, err)
			}
		}
		want := proto.SessionExt{ClusterID: id}
		enc := proto.AppendSessionExt(nil, want)
		if got, err := proto.ParseSessionExt(enc); err != nil || got != want || (id == 0) != (len(enc) == 0) {
			t.Fatalf("decode(encode(%#x)) = %+v, %v (%d bytes)", id, got, err, len(enc))
		}
	})
}
