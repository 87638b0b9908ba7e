package proto_test

import (
	"fmt"
	"testing"

	"github.com/corralhq/corral/proto"
)

var benchSizes = []int{64, 1 << 10, 64 << 10}

func benchFrame(size int) proto.Frame {
	f := proto.Frame{Header: proto.Header{Proto: proto.ProtoPeer, Version: 1, Opcode: 0x0401, Flags: proto.FlagCreate | proto.FlagDelete, Hops: proto.HopLimit, MsgID: 42}}
	f.Body = make([]byte, size)
	for i := range f.Body {
		f.Body[i] = byte(i)
	}
	return f
}

// BenchmarkAppendFrame encodes one frame into a reused buffer: header,
// both CRCs and the copy of the body.
func BenchmarkAppendFrame(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("body=%d", size), func(b *testing.B) {
			f := benchFrame(size)
			buf := make([]byte, 0, proto.HeaderSize+size)
			b.SetBytes(int64(proto.HeaderSize + size))
			b.ReportAllocs()
			for b.Loop() {
				buf = proto.AppendFrame(buf[:0], &f)
			}
		})
	}
}

// BenchmarkDecoder feeds one encoded frame per iteration and takes it out:
// the copy into the receive buffer, header checks and the payload CRC.
func BenchmarkDecoder(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("body=%d", size), func(b *testing.B) {
			f := benchFrame(size)
			frame := proto.AppendFrame(nil, &f)
			d := proto.NewDecoder(0)
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				d.Feed(frame)
				if _, ok, err := d.Next(); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}
