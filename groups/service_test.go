package groups_test

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/groups"
	"github.com/corralhq/corral/proto"
	wire "github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/rsm"
	"github.com/corralhq/corral/service"
	"github.com/corralhq/corral/transport"
	"github.com/corralhq/corral/transport/transporttest"
)

// memLog is a one-node cluster log in memory: each proposal applies to
// the machine as the next entry, once gate lets it through.
type memLog struct {
	m    rsm.Machine
	gate chan struct{} // closed: proposals apply

	mu    sync.Mutex // guards the fields below; serialises the entries
	tx    memTx
	index uint64
	req   uint64
}

func (l *memLog) Propose(ctx context.Context, id rsm.ID, cmd []byte) (uint64, []byte, error) {
	return l.ProposeRequest(ctx, id, 0, cmd)
}

func (l *memLog) ReadIndex(context.Context) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.index, nil
}

func (l *memLog) NextRequest() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.req++
	return l.req
}

func (l *memLog) ProposeRequest(ctx context.Context, _ rsm.ID, request uint64, cmd []byte) (uint64, []byte, error) {
	select {
	case <-l.gate:
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.index++
	res, err := l.m.Apply(l.tx, rsm.Entry{Index: l.index, Proposer: 1, Request: request, Cmd: cmd})
	return l.index, res.Reply, err
}

// batchAgent is a groups service with a window of 4 sends on a memLog
// whose gate is closed, and a client link to it.
func batchAgent(t *testing.T) (*memLog, *transport.Link) {
	t.Helper()
	log := &memLog{gate: make(chan struct{}), tx: memTx{}}
	s, err := groups.New(service.Deps{Self: 1, Cluster: log}, groups.Config{Window: 4})
	if err != nil {
		t.Fatal(err)
	}
	log.m = s.Machine()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	agentCfg := transporttest.Config(1, "agent")
	agentCfg.Key, agentCfg.Serve = nil, []proto.ProtoID{proto.ProtoClient}
	appCfg := transporttest.Config(0, "app")
	appCfg.Key = nil
	app, agent := transporttest.PipeReason(t, appCfg, agentCfg, proto.ReasonClient)
	app.Start(func(*transport.Link, *proto.Frame) error { return nil })
	agent.Start(s.ClientHandler())
	t.Cleanup(func() {
		// Run waits for the watchers of its links: end them first.
		app.Close(proto.CodeShutdown, "test over")
		agent.Close(proto.CodeShutdown, "test over")
		cancel()
		<-done
	})
	return log, app
}

func batchOf(n int) []byte {
	b := wire.GroupSendBatch{}
	for i := range n {
		b.Msgs = append(b.Msgs, wire.GroupSend{Kind: wire.KindMulticast, MsgID: uint64(i), Group: "g", Payload: []byte{byte(i)}})
	}
	body, err := wire.AppendGroupSendBatch(nil, &b)
	if err != nil {
		panic(err)
	}
	return body
}

// TestSendBatchWindow: the messages of a GROUP_SEND_BATCH take places in
// the link's window one by one, as GROUP_SENDs would: with a window of 4,
// a batch of 6 has its first 4 admitted and applied in order and its last
// 2 refused with TRY_AGAIN, each counted as a refusal; one reply carries
// the 6 results once the 4 are committed.
func TestSendBatchWindow(t *testing.T) {
	log, l := batchAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := l.StartCall(ctx, &proto.Frame{Header: proto.Header{Opcode: wire.OpGroupSendBatch}, Body: batchOf(6)})
	if err != nil {
		t.Fatal(err)
	}
	// While nothing commits, the window holds the 4 admitted.
	var w wire.GroupWindow
	for {
		rep, err := l.Call(ctx, &proto.Frame{Header: proto.Header{Opcode: wire.OpGroupWindow}})
		if err != nil {
			t.Fatal(err)
		}
		if w, err = wire.ParseGroupWindow(rep.Body); err != nil {
			t.Fatal(err)
		}
		if w.InFlight == 4 || ctx.Err() != nil {
			break
		}
	}
	if w.InFlight != 4 || w.InFlightBytes != 4 || w.Refused != 2 {
		t.Fatalf("window while the batch waits: %+v, want 4 sends (4 bytes) in flight, 2 refused", w)
	}
	close(log.gate)
	rep, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err := wire.ParseGroupSendBatchReply(rep.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Results) != 6 {
		t.Fatalf("%d results for 6 messages", len(r.Results))
	}
	for i, x := range r.Results {
		switch {
		case i < 4 && (x.Code != proto.CodeNone || x.Seq == 0 || i > 0 && x.Seq <= r.Results[i-1].Seq):
			t.Errorf("message %d: %+v, want committed after message %d", i, x, i-1)
		case i >= 4 && x.Code != proto.CodeTryAgain:
			t.Errorf("message %d: %+v, want TRY_AGAIN", i, x)
		}
	}
	if r.Results[0].Member == 0 || r.Results[3].Member != r.Results[0].Member {
		t.Errorf("the messages are not of one member: %+v", r.Results)
	}
}

// TestSendBatchLimits: a GROUP_SEND_BATCH over MaxBatchMsgs ends the link
// with a GOODBYE saying so (CodeTooLarge), before anything is admitted.
func TestSendBatchLimits(t *testing.T) {
	_, l := batchAgent(t)
	body := binary.LittleEndian.AppendUint32(nil, wire.MaxBatchMsgs+1)
	body = append(body, batchOf(1)[4:]...)
	if err := l.Send(context.Background(), &proto.Frame{Header: proto.Header{Opcode: wire.OpGroupSendBatch, Flags: proto.FlagCreate | proto.FlagDelete, MsgID: 3}, Body: body}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the agent kept the link")
	}
	if err := l.Err(); !errors.Is(err, proto.ErrTooLarge) {
		t.Fatalf("link ended with %v, want a GOODBYE with CodeTooLarge", err)
	}
}
