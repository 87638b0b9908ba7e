package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/events"
)

// Three agents; on each a sender streaming as fast as its window allows
// (two speak version 5 and batch, one speaks version 4 and does not), and
// a version-4 and a version-5 member. Every member delivers every
// message exactly once, all of them in the same order, each sender's in
// the order it sent them; the version-5 senders did batch.
func TestGroupsBatchMixedVersions(t *testing.T) {
	const group, perSender = "b", 1500
	nodes := formed(t, 3)
	var members []*client.Client
	for _, nd := range nodes {
		for _, v := range []uint8{4, 5} {
			c := groupClient(t, nd, client.Options{MaxVersion: v, GroupBuffer: 1 << 16})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if _, err := c.Join(ctx, group); err != nil {
				t.Fatal(err)
			}
			cancel()
			members = append(members, c)
		}
	}
	senderVersion := []uint8{5, 5, 4}
	var senders []*client.Client
	for i, nd := range nodes {
		senders = append(senders, groupClient(t, nd, client.Options{MaxVersion: senderVersion[i]}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sent := make([][]uint64, len(senders)) // per sender, the seq of its i-th message
	var wg sync.WaitGroup
	for n, c := range senders {
		sent[n] = make([]uint64, perSender)
		inflight := make(chan *client.Sending, perSender)
		wg.Go(func() {
			defer close(inflight)
			for i := range perSender {
				s, err := c.SendGroupAsync(ctx, group, fmt.Appendf(nil, "s%d-%d %0100d", n, i, 0))
				if err != nil {
					t.Errorf("sender %d: message %d: %v", n, i, err)
					return
				}
				inflight <- s
			}
		})
		wg.Go(func() {
			i := 0
			for s := range inflight {
				r, err := s.Wait(ctx)
				if err != nil {
					t.Errorf("sender %d: message %d: %v", n, i, err)
				}
				sent[n][i] = r.Seq
				i++
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	var all []uint64
	payload := map[uint64]string{}
	for n := range sent {
		if !slices.IsSorted(sent[n]) {
			t.Errorf("sender %d: its messages were not applied in the order sent", n)
		}
		for i, seq := range sent[n] {
			all = append(all, seq)
			payload[seq] = fmt.Sprintf("s%d-%d %0100d", n, i, 0)
		}
	}
	slices.Sort(all)
	if len(slices.Compact(slices.Clone(all))) != len(all) {
		t.Fatal("two messages committed at one seq")
	}
	for i, c := range members {
		var got []uint64
		for len(got) < len(all) {
			select {
			case ev := <-c.Deliveries():
				g := ev.Group()
				if ev.Desc != events.GSMulticast || g == nil || g.Name != group {
					continue
				}
				if p, ok := payload[ev.Seq]; !ok || string(g.Payload) != p {
					t.Fatalf("member %d: seq %d carries %q, sent %q", i, ev.Seq, g.Payload, p)
				}
				got = append(got, ev.Seq)
			case <-ctx.Done():
				t.Fatalf("member %d delivered %d of %d messages", i, len(got), len(all))
			}
		}
		if !slices.Equal(got, all) {
			t.Fatalf("member %d (version %d) delivered another sequence than the log's", i, 4+i%2)
		}
	}
	var batched uint64
	for n, c := range senders {
		b, m := c.SendBatches()
		batched += m
		t.Logf("sender %d (v%d): %d of %d messages in %d batches", n, senderVersion[n], m, perSender, b)
		if senderVersion[n] < 5 && b != 0 {
			t.Errorf("sender %d batched on a version-4 link", n)
		}
	}
	if batched == 0 {
		t.Error("the version-5 senders streamed without batching")
	}
}
