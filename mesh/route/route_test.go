package route_test

import (
	"errors"
	"testing"

	"github.com/corralhq/corral/mesh/route"
)

func TestSeqnoNewer(t *testing.T) {
	for _, c := range []struct {
		s, t route.Seqno
		want bool
	}{
		{2, 1, true}, {1, 2, false}, {1, 1, false},
		{0, 65535, true}, {65535, 0, false},
		{32767, 0, true}, {32768, 0, false}, // exactly half way round is older
	} {
		if got := c.s.Newer(c.t); got != c.want {
			t.Errorf("%d.Newer(%d) = %v, want %v", c.s, c.t, got, c.want)
		}
	}
}

func TestInputErrors(t *testing.T) {
	r := route.New(route.Config{Self: 1}, 1)
	for _, c := range []struct {
		name string
		err  error
		want error
	}{
		{"cost 0", r.LinkUp(2, 0), route.ErrCost},
		{"cost Inf", r.LinkUp(2, route.Inf), route.ErrCost},
		{"self", r.LinkUp(1, 10), route.ErrPeer},
		{"node 0", r.LinkUp(0, 10), route.ErrPeer},
		{"no link", r.LinkCost(2, 10), route.ErrNoLink},
		{"step without link", r.Step(2, route.Message{}), route.ErrNoLink},
	} {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.err, c.want)
		}
	}
	if r.HasReady() {
		t.Fatalf("refused inputs produced output: %+v", r.Ready())
	}
	if err := r.LinkUp(2, 10); err != nil {
		t.Fatal(err)
	}
	if err := r.LinkUp(2, 10); !errors.Is(err, route.ErrLinkUp) {
		t.Fatalf("second LinkUp: %v", err)
	}
	r.Advance()
	for name, m := range map[string]route.Message{
		"origin 0":          {Updates: []route.Update{{Origin: 0, Seqno: 1, Metric: 5, Hops: 1}}},
		"metric below hops": {Updates: []route.Update{{Origin: 3, Seqno: 1, Metric: 1, Hops: 2}}},
		"0 hops, not peer":  {Updates: []route.Update{{Origin: 3, Seqno: 1, Metric: 0, Hops: 0}}},
		"peer over 1 hop":   {Updates: []route.Update{{Origin: 2, Seqno: 1, Metric: 7, Hops: 1}}},
		"0 hops, metric 9":  {Updates: []route.Update{{Origin: 2, Seqno: 1, Metric: 9, Hops: 0}}},
		"request hc 0":      {Requests: []route.SeqnoRequest{{Origin: 3, Seqno: 1}}},
		// A good update before a bad one: the message is refused whole.
		"partly bad": {Updates: []route.Update{{Origin: 2, Seqno: 1}, {Origin: 0, Seqno: 1, Metric: 5, Hops: 1}}},
	} {
		if err := r.Step(2, m); !errors.Is(err, route.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	if r.HasReady() || len(r.Table()) != 0 {
		t.Fatalf("refused messages changed state: %+v %+v", r.Ready(), r.Table())
	}
	// A retraction may carry any hop count.
	if err := r.Step(2, route.Message{Updates: []route.Update{{Origin: 3, Seqno: 1, Metric: route.Inf}}}); err != nil {
		t.Fatal(err)
	}
}

// TestRequestForSelf: a node raises its seqno to the one requested, once;
// a request for an older or equal seqno changes nothing.
func TestRequestForSelf(t *testing.T) {
	r := route.New(route.Config{Self: 1}, 10)
	if err := r.LinkUp(2, 1); err != nil {
		t.Fatal(err)
	}
	r.Advance()
	step := func(s route.Seqno) {
		t.Helper()
		if err := r.Step(2, route.Message{Requests: []route.SeqnoRequest{{Origin: 1, Seqno: s, HopCount: 16}}}); err != nil {
			t.Fatal(err)
		}
	}
	step(9)
	step(10)
	if r.Seqno() != 10 || r.HasReady() {
		t.Fatalf("old requests moved seqno to %d / sent %+v", r.Seqno(), r.Ready())
	}
	step(15)
	if r.Seqno() != 15 {
		t.Fatalf("seqno %d, want 15", r.Seqno())
	}
	rd := r.Ready()
	if len(rd.Msgs) != 1 || len(rd.Msgs[0].Msg.Updates) != 1 || rd.Msgs[0].Msg.Updates[0] != (route.Update{Origin: 1, Seqno: 15}) {
		t.Fatalf("after the bump: %+v", rd)
	}
	r.Advance()
	step(15)
	if r.Seqno() != 15 || r.HasReady() {
		t.Fatal("a duplicate request bumped again")
	}
}
