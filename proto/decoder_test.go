package proto_test

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/internal/wiretest"
)

// streamResult is everything a decoder produced from a stream: the frames
// (copied), the first error from Next and the result of Close.
type streamResult struct {
	frames   []proto.Frame
	err      error
	closeErr error
}

func copyFrame(f proto.Frame) proto.Frame {
	f.Ext, f.Body = bytes.Clone(f.Ext), bytes.Clone(f.Body)
	return f
}

// drain calls Next until it needs more input or fails.
func drain(d *proto.Decoder, res *streamResult) {
	for res.err == nil {
		f, ok, err := d.Next()
		if err != nil {
			res.err = err
			return
		}
		if !ok {
			return
		}
		res.frames = append(res.frames, copyFrame(f))
	}
}

// decodeChunks feeds the chunks one at a time, draining after each.
func decodeChunks(max int, chunks [][]byte) streamResult {
	var res streamResult
	d := proto.NewDecoder(max)
	for _, c := range chunks {
		d.Feed(c)
		drain(d, &res)
	}
	res.closeErr = d.Close()
	return res
}

// randomSplit cuts b into pieces, mostly small, sometimes large.
func randomSplit(r *rand.Rand, b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := 1 + r.IntN(16)
		switch r.IntN(4) {
		case 0:
			n = 1 + r.IntN(len(b))
		case 1:
			n = 1 + r.IntN(200)
		}
		n = min(n, len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

func sameResult(t *testing.T, what string, got, want streamResult) {
	t.Helper()
	if len(got.frames) != len(want.frames) {
		t.Fatalf("%s: %d frames, one-shot decode gave %d", what, len(got.frames), len(want.frames))
	}
	for i := range got.frames {
		if !wiretest.Equal(got.frames[i], want.frames[i]) {
			t.Fatalf("%s: frame %d = %+v, one-shot decode gave %+v", what, i, got.frames[i], want.frames[i])
		}
	}
	if errString(got.err) != errString(want.err) || errString(got.closeErr) != errString(want.closeErr) {
		t.Fatalf("%s: errors (%v, close %v), one-shot decode gave (%v, close %v)", what, got.err, got.closeErr, want.err, want.closeErr)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// testStream is a sequence of frames that exercises buffer growth and
// compaction: small frames, one above the initial buffer size, and a
// frame whose header straddles the end of the buffer.
func testStream() ([]byte, []proto.Frame) {
	big := proto.Frame{Header: proto.Header{Proto: proto.ProtoPeer, Version: 1, Opcode: 9}, Body: bytes.Repeat([]byte("0123456789abcdef"), 5000)}
	hello := authedHello()
	frames := []proto.Frame{
		minimalFrame,
		fullFrame,
		proto.SessionFrame(proto.OpHello, helloBody(hello)),
		big,
		fullFrame,
		proto.SessionFrame(proto.OpGoodbye, proto.AppendStatus(nil, &sampleGoodbye)),
	}
	var stream []byte
	for i := range frames {
		stream = proto.AppendFrame(stream, &frames[i])
	}
	return stream, frames
}

func TestDecoderSplits(t *testing.T) {
	stream, frames := testStream()
	one := decodeChunks(0, [][]byte{stream})
	if one.err != nil || one.closeErr != nil || len(one.frames) != len(frames) {
		t.Fatalf("one-shot: %d frames, err %v, close %v", len(one.frames), one.err, one.closeErr)
	}
	for i := range frames {
		if !wiretest.Equal(one.frames[i], frames[i]) {
			t.Fatalf("frame %d: got %+v, want %+v", i, one.frames[i], frames[i])
		}
	}

	bytewise := make([][]byte, len(stream))
	for i := range stream {
		bytewise[i] = stream[i : i+1]
	}
	sameResult(t, "byte by byte", decodeChunks(0, bytewise), one)

	r := rand.New(rand.NewPCG(3, 4))
	for i := range 50 {
		sameResult(t, "random split", decodeChunks(0, randomSplit(r, stream)), one)
		_ = i
	}
}

// TestDecoderBufferAdvance drives the decoder the way a link's reader
// does: read straight into Buffer, then Advance.
func TestDecoderBufferAdvance(t *testing.T) {
	stream, frames := testStream()
	r := rand.New(rand.NewPCG(5, 6))
	d := proto.NewDecoder(0)
	var got []proto.Frame
	for src := stream; len(src) > 0; {
		buf := d.Buffer()
		if len(buf) == 0 {
			t.Fatal("Buffer returned no room")
		}
		n := copy(buf[:min(len(buf), 1+r.IntN(3000))], src)
		d.Advance(n)
		src = src[n:]
		for {
			f, ok, err := d.Next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			got = append(got, copyFrame(f))
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if !wiretest.Equal(got, frames) {
		t.Fatalf("got %d frames, want %d", len(got), len(frames))
	}
}

// TestDecoderFeedPastFrame feeds, while a frame's payload is awaited, a
// chunk that fills the buffer and runs past the frame's end. Feed used to
// loop forever once Buffer had no room and the frame was complete.
func TestDecoderFeedPastFrame(t *testing.T) {
	small := wiretest.Frame(fullFrame)
	var stream []byte
	for len(stream) < 3*proto.MinDecoderBuf {
		stream = append(stream, small...)
	}
	done := make(chan streamResult, 1)
	go func() {
		done <- decodeChunks(0, [][]byte{stream[:proto.HeaderSize], stream[proto.HeaderSize:]})
	}()
	select {
	case res := <-done:
		if res.err != nil || res.closeErr != nil || len(res.frames) != len(stream)/len(small) {
			t.Fatalf("%d frames, err %v, close %v", len(res.frames), res.err, res.closeErr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Feed did not return within 10s")
	}
}

// TestDecoderFrameAppend: appending to a returned frame's Body must not
// corrupt the frame after it in the buffer.
func TestDecoderFrameAppend(t *testing.T) {
	d := proto.NewDecoder(0)
	d.Feed(append(wiretest.Frame(fullFrame), wiretest.Frame(fullFrame)...))
	f, ok, err := d.Next()
	if !ok || err != nil {
		t.Fatalf("first frame: %v %v", ok, err)
	}
	_ = append(f.Body, bytes.Repeat([]byte{0xff}, 64)...)
	_ = append(f.Ext, bytes.Repeat([]byte{0xff}, 64)...)
	if _, ok, err := d.Next(); !ok || err != nil {
		t.Fatalf("second frame after appending to the first: ok=%v err=%v", ok, err)
	}
}

func TestDecoderStickyError(t *testing.T) {
	bad := wiretest.Frame(minimalFrame)
	bad[20] ^= 1 // header CRC no longer matches
	d := proto.NewDecoder(0)
	d.Feed(append(bad, wiretest.Frame(minimalFrame)...))
	_, ok, err := d.Next()
	if ok {
		t.Fatal("a frame with a bad header CRC was returned")
	}
	wiretest.Expect(t, err, proto.CodeHeaderCRC, "header CRC")
	if d.State() != proto.StateError || d.Err() != err {
		t.Fatalf("state %s, Err %v after a failure", d.State(), d.Err())
	}
	d.Feed(wiretest.Frame(minimalFrame))
	for range 3 {
		if _, ok, err2 := d.Next(); ok || err2 != err {
			t.Fatalf("Next after the error = %v, %v; want the first error again", ok, err2)
		}
	}
	if cerr := d.Close(); cerr != err {
		t.Fatalf("Close = %v, want the first error", cerr)
	}
}

func TestDecoderStates(t *testing.T) {
	b := wiretest.Frame(fullFrame)
	d := proto.NewDecoder(0)
	if d.State() != proto.StateHeader {
		t.Fatalf("new decoder in %s", d.State())
	}
	d.Feed(b[:proto.HeaderSize+1])
	if _, ok, err := d.Next(); ok || err != nil {
		t.Fatalf("partial payload: %v %v", ok, err)
	}
	if d.State() != proto.StatePayload || d.Buffered() != proto.HeaderSize+1 {
		t.Fatalf("state %s with %d buffered, want payload with %d", d.State(), d.Buffered(), proto.HeaderSize+1)
	}
	if got, want := len(d.Buffer()), len(b)-proto.HeaderSize-1; got < want {
		t.Fatalf("Buffer has room for %d bytes, the frame needs %d more", got, want)
	}
	d.Feed(b[proto.HeaderSize+1:])
	if _, ok, err := d.Next(); !ok || err != nil {
		t.Fatalf("complete frame: %v %v", ok, err)
	}
	if d.State() != proto.StateHeader || d.Buffered() != 0 {
		t.Fatalf("state %s with %d buffered after a frame", d.State(), d.Buffered())
	}
	for s, want := range map[proto.State]string{proto.StateHeader: "header", proto.StatePayload: "payload", proto.StateError: "error", 9: "state?"} {
		if s.String() != want {
			t.Errorf("State(%d) = %q, want %q", s, s, want)
		}
	}
}

func TestDecoderClose(t *testing.T) {
	b := wiretest.Frame(fullFrame)
	for _, c := range []struct {
		name   string
		feed   []byte
		want   proto.Code
		detail string
	}{
		{"clean end", b, proto.CodeNone, ""},
		{"nothing at all", nil, proto.CodeNone, ""},
		{"inside the header", b[:20], proto.CodeEOF, "(header, 20 bytes buffered)"},
		{"inside the payload", b[:len(b)-1], proto.CodeEOF, "(payload, "},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := proto.NewDecoder(0)
			d.Feed(c.feed)
			var res streamResult
			drain(d, &res)
			err := d.Close()
			if c.want == proto.CodeNone {
				if err != nil || res.err != nil {
					t.Fatalf("Close = %v, Next error %v", err, res.err)
				}
				return
			}
			wiretest.Expect(t, err, c.want, c.detail)
			if d.State() != proto.StateError {
				t.Fatalf("state %s after Close on a cut frame", d.State())
			}
		})
	}
}

// TestDecoderOversizeHeader: a header claiming a 1 GiB payload fails at
// header time and the buffer does not grow.
func TestDecoderOversizeHeader(t *testing.T) {
	b := wiretest.Frame(minimalFrame)
	le32(b, 44, 1<<30)
	wiretest.Reseal(b)
	d := proto.NewDecoder(0)
	before := d.BufCap()
	d.Feed(b)
	_, _, err := d.Next()
	wiretest.Expect(t, err, proto.CodeTooLarge, "1073741824 bytes exceeds limit")
	_ = d.Buffer()
	if d.BufCap() != before || before > proto.MinDecoderBuf {
		t.Fatalf("buffer capacity %d after a 1 GiB header, was %d", d.BufCap(), before)
	}
}

// TestDecoderGrowthBounded: a frame of exactly the limit makes the buffer
// grow to the frame's size, not beyond.
func TestDecoderGrowthBounded(t *testing.T) {
	const limit = 1 << 20
	f := proto.Frame{Header: minimalFrame.Header, Body: make([]byte, limit)}
	b := wiretest.Frame(f)
	d := proto.NewDecoder(limit)
	d.Feed(b[:proto.HeaderSize])
	if _, ok, err := d.Next(); ok || err != nil {
		t.Fatal(ok, err)
	}
	_ = d.Buffer()
	if c := d.BufCap(); c > proto.HeaderSize+limit {
		t.Fatalf("buffer capacity %d for a frame of %d bytes", c, proto.HeaderSize+limit)
	}
	d.Feed(b[proto.HeaderSize:])
	if _, ok, err := d.Next(); !ok || err != nil {
		t.Fatal(ok, err)
	}

	f.Body = append(f.Body, 0)
	d = proto.NewDecoder(limit)
	d.Feed(wiretest.Frame(f)[:proto.HeaderSize])
	_, _, err := d.Next()
	wiretest.Expect(t, err, proto.CodeTooLarge, "exceeds limit 1048576")
}

// TestDecoderGoldenErrors feeds every golden frame error to a stream
// decoder: it fails with the code DecodeFrame gives, or for a frame cut
// off waits for more and fails at Close.
func TestDecoderGoldenErrors(t *testing.T) {
	for _, v := range frameVectors() {
		if v.Want == proto.CodeNone {
			continue
		}
		t.Run(v.Name, func(t *testing.T) {
			_, frameErr := proto.DecodeFrame(v.Data, 0)
			d := proto.NewDecoder(0)
			d.Feed(v.Data)
			var res streamResult
			drain(d, &res)
			res.closeErr = d.Close()
			switch {
			case frameErr == nil:
				// The frame is sound; the session or extension check refuses it.
				if res.err != nil || len(res.frames) != 1 {
					t.Fatalf("decoder: %d frames, %v", len(res.frames), res.err)
				}
			case v.Name == "err_trailing_bytes" || v.Want == proto.CodeEOF:
				wiretest.Expect(t, res.closeErr, proto.CodeEOF, "stream ended inside a frame")
			default:
				wiretest.Expect(t, res.err, v.Want, v.Detail)
			}
		})
	}
}

// TestDecoderSetMaxPayload: the limit applies to headers read after the
// change; a frame whose header was accepted is delivered whatever the new
// limit (a link raises the limit once the HELLO is verified).
func TestDecoderSetMaxPayload(t *testing.T) {
	big := wiretest.Frame(proto.Frame{Header: minimalFrame.Header, Body: make([]byte, 2000)})

	d := proto.NewDecoder(1024)
	d.Feed(big)
	_, _, err := d.Next()
	wiretest.Expect(t, err, proto.CodeTooLarge, "exceeds limit 1024")

	d = proto.NewDecoder(1024)
	d.SetMaxPayload(4096)
	d.Feed(big[:proto.HeaderSize])
	if _, ok, err := d.Next(); ok || err != nil {
		t.Fatalf("header under the raised limit: %v %v", ok, err)
	}
	d.SetMaxPayload(100) // lowered while the frame's payload is awaited
	d.Feed(big[proto.HeaderSize:])
	if _, ok, err := d.Next(); !ok || err != nil {
		t.Fatalf("frame accepted at header time was not delivered: %v %v", ok, err)
	}
	d.Feed(big)
	_, _, err = d.Next()
	wiretest.Expect(t, err, proto.CodeTooLarge, "exceeds limit 100")

	d = proto.NewDecoder(1024)
	d.SetMaxPayload(0) // back to the default
	d.Feed(big)
	if _, ok, err := d.Next(); !ok || err != nil {
		t.Fatalf("default limit: %v %v", ok, err)
	}
}
