package cluster

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	gproto "google.golang.org/protobuf/proto"

	"github.com/corralhq/corral/proto/peer"
)

// wire sends c through the RAFTCHUNK encoding, as a link would.
func wire(t *testing.T, c peer.SnapChunk) peer.SnapChunk {
	t.Helper()
	got, err := peer.ParseSnapChunk(peer.AppendSnapChunk(nil, &c))
	if err != nil {
		t.Fatalf("chunk %d does not decode: %v", c.Index, err)
	}
	return got
}

// TestRoundTripLargeSnapshot: a MsgSnap of 64 MiB and change, split into
// chunks, encoded and decoded as RAFTCHUNK bodies, comes out whole.
func TestRoundTripLargeSnapshot(t *testing.T) {
	data := make([]byte, 64<<20+12345)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(data)
	msg := &raftpb.Message{
		Type: raftpb.MsgSnap.Enum(), From: new(uint64(1)), To: new(uint64(2)), Term: new(uint64(9)),
		Snapshot: &raftpb.Snapshot{Data: data, Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(1000)), Term: new(uint64(9))}},
	}
	raw, err := gproto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) <= 64<<20 {
		t.Fatalf("message of %d bytes, want more than 64 MiB", len(raw))
	}
	chunks := SplitMessage(0xabc, raw, 0)
	if want := (len(raw) + peer.MaxChunkSize - 1) / peer.MaxChunkSize; len(chunks) != want {
		t.Fatalf("%d chunks, want %d", len(chunks), want)
	}
	r := NewReassembler(0)
	var whole []byte
	for i, c := range chunks {
		out, err := r.Add(7, wire(t, c))
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		if (out != nil) != (i == len(chunks)-1) {
			t.Fatalf("chunk %d of %d: message complete = %v", i, len(chunks), out != nil)
		}
		whole = out
	}
	if !bytes.Equal(whole, raw) {
		t.Fatal("reassembled bytes differ")
	}
	back := &raftpb.Message{}
	if err := gproto.Unmarshal(whole, back); err != nil || !gproto.Equal(back, msg) {
		t.Fatalf("reassembled message does not decode to the original: %v", err)
	}
	if _, _, _, ok := r.Pending(7); ok {
		t.Fatal("a completed message is still pending")
	}
}

func TestSplitMessage(t *testing.T) {
	raw := []byte("0123456789")
	for _, tc := range []struct {
		chunk int
		sizes []int
	}{
		{3, []int{3, 3, 3, 1}},
		{5, []int{5, 5}},
		{10, []int{10}},
		{64, []int{10}},
		{0, []int{10}},
		{-1, []int{10}},
	} {
		cs := SplitMessage(5, raw, tc.chunk)
		if len(cs) != len(tc.sizes) {
			t.Fatalf("chunk %d: %d chunks, want %d", tc.chunk, len(cs), len(tc.sizes))
		}
		off := 0
		for i, c := range cs {
			if c.SnapID != 5 || c.Index != uint32(i) || c.Total != 10 || c.Offset != uint64(off) || len(c.Data) != tc.sizes[i] {
				t.Fatalf("chunk size %d: chunk %d = %+v", tc.chunk, i, c)
			}
			off += len(c.Data)
		}
	}
	if cs := SplitMessage(1, nil, 3); len(cs) != 0 {
		t.Fatalf("empty message: %d chunks", len(cs))
	}
	big := SplitMessage(1, make([]byte, peer.MaxChunkSize+1), peer.MaxChunkSize*2)
	if len(big) != 2 || len(big[0].Data) != peer.MaxChunkSize {
		t.Fatalf("a chunk size over the limit is not clamped: %d chunks", len(big))
	}
}

func wantChunkErr(t *testing.T, err error, sentinel error, from, id uint64) {
	t.Helper()
	var ce *ChunkError
	if !errors.Is(err, sentinel) || !errors.As(err, &ce) || ce.From != from || ce.SnapID != id {
		t.Fatalf("error %v (%T), want a *ChunkError of %v from node %d, snapshot %#x", err, err, sentinel, from, id)
	}
}

// TestReassemblerErrors plays every refusal: the chunk is refused with its
// typed error, the partial message is dropped, and the rest of that
// snapshot cannot continue it.
func TestReassemblerErrors(t *testing.T) {
	raw := []byte("abcdefghijklmnopqrstuvwxyz")
	cs := SplitMessage(9, raw, 4) // 7 chunks
	mod := func(c peer.SnapChunk, fn func(*peer.SnapChunk)) peer.SnapChunk { fn(&c); return c }
	for _, tc := range []struct {
		name   string
		before []peer.SnapChunk // accepted first
		bad    peer.SnapChunk
		err    error
	}{
		{"first-not-zero", nil, cs[1], ErrChunkOrder},
		{"first-offset", nil, mod(cs[0], func(c *peer.SnapChunk) { c.Offset = 4; c.Data = raw[4:8] }), ErrChunkOrder},
		{"repeat", cs[:2], cs[1], ErrChunkOverlap},
		{"overlap", cs[:2], mod(cs[2], func(c *peer.SnapChunk) { c.Offset = 7; c.Data = raw[7:11] }), ErrChunkOverlap},
		{"gap", cs[:2], cs[3], ErrChunkGap},
		{"index", cs[:2], mod(cs[2], func(c *peer.SnapChunk) { c.Index = 5 }), ErrChunkOrder},
		{"total", cs[:2], mod(cs[2], func(c *peer.SnapChunk) { c.Total = 27 }), ErrChunkTotal},
		{"empty", cs[:2], mod(cs[2], func(c *peer.SnapChunk) { c.Data = nil }), ErrChunkBounds},
		{"past-total", cs[:2], mod(cs[6], func(c *peer.SnapChunk) { c.Data = raw[22:26:26][:4]; c.Offset = 24 }), ErrChunkBounds},
		{"over-1MiB", nil, mod(cs[0], func(c *peer.SnapChunk) { c.Data = make([]byte, peer.MaxChunkSize+1); c.Total = 2 << 20 }), ErrChunkBounds},
		{"over-cap", nil, mod(cs[0], func(c *peer.SnapChunk) { c.Total = 101 }), ErrSnapshotTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReassembler(100)
			for _, c := range tc.before {
				if out, err := r.Add(3, c); err != nil || out != nil {
					t.Fatalf("chunk %d: %v, %q", c.Index, err, out)
				}
			}
			_, err := r.Add(3, tc.bad)
			wantChunkErr(t, err, tc.err, 3, 9)
			if _, _, _, ok := r.Pending(3); ok {
				t.Fatal("the partial message survived the error")
			}
			// The rest of the snapshot cannot continue it.
			next := cs[len(tc.before)+1:]
			if len(next) > 0 && next[0].Index != 0 {
				_, err := r.Add(3, next[0])
				wantChunkErr(t, err, ErrChunkOrder, 3, 9)
			}
			// A fresh transmission goes through.
			var out []byte
			for _, c := range SplitMessage(10, raw, 4) {
				if out, err = r.Add(3, c); err != nil {
					t.Fatalf("resend, chunk %d: %v", c.Index, err)
				}
			}
			if !bytes.Equal(out, raw) {
				t.Fatalf("resend reassembled %q", out)
			}
		})
	}
}

// TestReassemblerNewIDDropsOld: one message in flight per peer; a new
// snapshot id from the same peer replaces it, other peers are untouched.
func TestReassemblerNewIDDropsOld(t *testing.T) {
	a, b := []byte("first message, never finished"), []byte("second message")
	ca, cb := SplitMessage(1, a, 8), SplitMessage(2, b, 8)
	r := NewReassembler(0)
	for _, c := range ca[:2] {
		r.Add(5, c)
	}
	r.Add(6, ca[0]) // another peer's copy of snapshot 1
	if out, err := r.Add(5, cb[0]); err != nil || out != nil {
		t.Fatalf("new id: %v, %q", err, out)
	}
	if id, got, total, ok := r.Pending(5); !ok || id != 2 || got != 8 || total != uint64(len(b)) {
		t.Fatalf("peer 5 pending %#x %d/%d %v, want the new snapshot", id, got, total, ok)
	}
	_, err := r.Add(5, ca[2])
	wantChunkErr(t, err, ErrChunkOrder, 5, 1)
	if id, _, _, ok := r.Pending(6); !ok || id != 1 {
		t.Fatal("peer 6's message was dropped by peer 5's")
	}
	r.Drop(6)
	if _, _, _, ok := r.Pending(6); ok {
		t.Fatal("Drop left the message in flight")
	}
	// The error above dropped snapshot 2 too; the sender starts it again.
	var out []byte
	for _, c := range cb {
		if out, err = r.Add(5, c); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(out, b) {
		t.Fatalf("reassembled %q", out)
	}
}

// TestReassemblerBoundsAllocation: a first chunk claiming a total at the
// cap reserves at most preallocMax, not the claimed size.
func TestReassemblerBoundsAllocation(t *testing.T) {
	r := NewReassembler(0)
	c := peer.SnapChunk{SnapID: 1, Total: peer.DefaultMaxMessage, Data: []byte("x")}
	if _, err := r.Add(1, c); err != nil {
		t.Fatal(err)
	}
	if got := cap(r.inflight[1].buf); got > preallocMax {
		t.Fatalf("reserved %d bytes for a 1-byte chunk", got)
	}
	c.Total++
	c.SnapID = 2
	_, err := r.Add(1, c)
	wantChunkErr(t, err, ErrSnapshotTooLarge, 1, 2)
}
