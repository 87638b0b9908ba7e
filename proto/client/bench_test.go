package client_test

import (
	"bytes"
	"testing"

	"github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/types/event"
)

// benchGroupEvent is what BenchmarkGroupMulticast delivers: a 100-byte
// MULTICAST of a named sender.
func benchGroupEvent(seq uint64) event.Event {
	return event.Event{Seq: seq, Desc: event.GSMulticast, Data: &event.Group{
		Name:    "bench",
		From:    event.GroupMember{Node: 1, Member: 7, BornOn: 3, Pid: 4242, Name: "sender-1"},
		MsgID:   seq,
		Payload: bytes.Repeat([]byte{'x'}, 100),
	}}
}

func benchEventBody(b *testing.B, seq uint64) []byte {
	ev := benchGroupEvent(seq)
	body, err := client.AppendEvent(nil, &ev)
	if err != nil {
		b.Fatal(err)
	}
	return body
}

func benchBatchBody(b *testing.B, n int) []byte {
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = benchEventBody(b, uint64(i+1))
	}
	batch, err := client.AppendEventBatch(nil, bodies)
	if err != nil {
		b.Fatal(err)
	}
	return batch
}

func BenchmarkParseEventGroup(b *testing.B) {
	body := benchEventBody(b, 1)
	b.ReportAllocs()
	for range b.N {
		if _, _, err := client.ParseEventAt(client.MaxVersion, body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseEventBatch16 reports per batch of 16 group events.
func BenchmarkParseEventBatch16(b *testing.B) {
	body := benchBatchBody(b, 16)
	b.ReportAllocs()
	for range b.N {
		if _, err := client.ParseEventBatch(client.MaxVersion, body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEventDecoderGroup is BenchmarkParseEventGroup with the
// decoder a client keeps per link.
func BenchmarkEventDecoderGroup(b *testing.B) {
	body := benchEventBody(b, 1)
	var d client.EventDecoder
	b.ReportAllocs()
	for range b.N {
		if _, _, err := d.Event(client.MaxVersion, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEventDecoderBatch16(b *testing.B) {
	body := benchBatchBody(b, 16)
	var d client.EventDecoder
	b.ReportAllocs()
	for range b.N {
		if _, err := d.Batch(client.MaxVersion, body); err != nil {
			b.Fatal(err)
		}
	}
}
