package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/corralhq/corral/mesh"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/admin"
	"github.com/corralhq/corral/proto/peer"
	"github.com/corralhq/corral/transport"
)

// The echo service and MESH_ECHO (proto/admin SPEC.md): a stream through
// the mesh and back, so that operators and the netns tests can drive a
// real transaction across relays, lost links and resumes.

// echoFirst is the first body of an echo stream.
const echoFirst = "echo"

// echoSlack is what an echo may take beyond Count × Interval before the
// agent ends it: room for a resume and a slow path.
const echoSlack = 30 * time.Second

// serveEchoOn serves echo streams on m's peer.OpStream transactions; it
// must be called before m runs.
func (a *Agent) serveEchoOn(m *mesh.Mesh) { m.HandleTx(peer.OpStream, peer.OpStream, a.serveEcho) }

// serveEcho serves a peer.OpStream transaction: one whose first body is
// "echo" gets every frame back, in order, and is closed when the other
// end closes. Others are refused.
func (a *Agent) serveEcho(t *mesh.Tx) {
	ctx := context.Background() // the transaction's end ends every call
	f, err := t.Recv(ctx)
	if err != nil {
		return
	}
	if string(f.Body) != echoFirst {
		t.Abort(ctx, proto.CodeOpcode, "no stream service "+quoteBody(f.Body))
		return
	}
	for {
		f, err := t.Recv(ctx)
		switch {
		case errors.Is(err, io.EOF):
			t.Close(ctx)
			return
		case err != nil:
			return
		}
		if err := t.Send(ctx, f.Body); err != nil {
			return
		}
	}
}

func quoteBody(b []byte) string {
	if len(b) > 32 {
		b = b[:32]
	}
	return "\"" + string(b) + "\""
}

// adminMeshEcho answers MESH_ECHO once the echo is over: from a goroutine
// the local server waits for, since an echo may run for minutes; the
// admin link's end ends it.
func (a *Agent) adminMeshEcho(l *transport.Link, f *proto.Frame) error {
	req, err := admin.ParseMeshEcho(f.Body)
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		l.Abort(ctx, f, err)
		return nil
	}
	hdr := proto.Frame{Header: f.Header}
	a.leaves.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), echoTimeout(req))
		defer cancel()
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel() // before the Wait: it ends the watcher
		wg.Go(func() {
			select {
			case <-l.Done():
				cancel()
			case <-ctx.Done():
			}
		})
		res := a.meshEcho(ctx, req)
		l.Reply(context.Background(), &hdr, admin.AppendMeshEchoResult(nil, &res))
	})
	return nil
}

// echoTimeout is how long the agent lets an echo run.
func echoTimeout(req admin.MeshEcho) time.Duration {
	run := time.Duration(min(uint64(req.Count)*uint64(req.Interval), uint64(24*time.Hour/time.Microsecond))) * time.Microsecond
	return run + echoSlack
}

// meshEcho runs one echo to req.Target and counts what came back.
func (a *Agent) meshEcho(ctx context.Context, req admin.MeshEcho) admin.MeshEchoResult {
	log := a.log.With("subsystem", "echo", "target", req.Target)
	start := time.Now()
	var res admin.MeshEchoResult
	end := func(err error) admin.MeshEchoResult {
		res.Elapsed = uint64(time.Since(start).Microseconds())
		if err != nil {
			res.Status = statusOf(err)
			log.Info("mesh echo ended", "sent", res.Sent, "received", res.Received, "err", err)
		}
		return res
	}
	t, err := a.mesh.Open(ctx, req.Target, peer.OpStream, []byte(echoFirst), nil)
	if err != nil {
		return end(err)
	}
	var (
		wg   sync.WaitGroup
		sent uint32
		serr error
	)
	sctx, scancel := context.WithCancel(ctx)
	wg.Go(func() { sent, serr = echoSend(sctx, t, req, start) })

	seen := make([]bool, req.Count)
	var high int64 = -1
	var rerr error
	for rerr == nil {
		f, err := t.Recv(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			rerr = err
			break
		}
		if len(f.Body) < admin.MinEchoSize {
			rerr = proto.Errorf(proto.CodeField, "echo of %d bytes, shorter than its sequence number", len(f.Body))
			break
		}
		seq := binary.LittleEndian.Uint32(f.Body)
		switch {
		case seq >= req.Count:
			rerr = proto.Errorf(proto.CodeField, "echo of sequence number %d of %d sent", seq, req.Count)
		case seen[seq]:
			res.Duplicates++
		default:
			seen[seq] = true
			res.Received++
			if int64(seq) < high {
				res.OutOfOrder++
			}
			high = max(high, int64(seq))
		}
	}
	if rerr != nil {
		// Tell the other end, unless the transaction is over already.
		var pe *proto.Error
		code := proto.CodeTimeout
		if errors.As(rerr, &pe) {
			code = pe.Code
		}
		actx, acancel := context.WithTimeout(context.Background(), time.Second)
		t.Abort(actx, code, "mesh echo: "+rerr.Error())
		acancel()
	}
	scancel()
	wg.Wait()
	res.Sent = sent
	if rerr == nil && serr != nil {
		rerr = serr
	}
	if rerr == nil {
		rerr = t.Err()
	}
	return end(rerr)
}

// echoSend sends req.Count frames on t, the i-th at start + i·Interval,
// then closes its direction. It returns how many it sent.
func echoSend(ctx context.Context, t *mesh.Tx, req admin.MeshEcho, start time.Time) (uint32, error) {
	iv := time.Duration(req.Interval) * time.Microsecond
	var timer *time.Timer
	if iv > 0 {
		timer = time.NewTimer(0)
		defer timer.Stop()
		<-timer.C
	}
	for i := uint32(0); i < req.Count; i++ {
		if iv > 0 && i > 0 {
			// Paced from the start: a send that waited for window does
			// not push every later one back.
			if d := time.Until(start.Add(time.Duration(i) * iv)); d > 0 {
				timer.Reset(d)
				select {
				case <-timer.C:
				case <-ctx.Done():
					return i, ctx.Err()
				}
			}
		}
		// A fresh body each time: the transaction keeps unacknowledged
		// frames for a resume.
		b := make([]byte, req.Size)
		binary.LittleEndian.PutUint32(b, i)
		if err := t.Send(ctx, b); err != nil {
			return i, err
		}
	}
	return req.Count, t.Close(ctx)
}

// statusOf is the status a MESH_ECHO reply carries for err.
func statusOf(err error) proto.Status {
	var pe *proto.Error
	switch {
	case errors.As(err, &pe):
		return proto.Status{Code: pe.Code, Text: err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return proto.Status{Code: proto.CodeTimeout, Text: "mesh echo: timed out: " + err.Error()}
	case errors.Is(err, mesh.ErrNoRoute):
		return proto.Status{Code: proto.CodeNoRoute, Text: err.Error()}
	}
	return proto.Status{Code: proto.CodeState, Text: err.Error()}
}
