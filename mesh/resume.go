package mesh

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/transport"
)

// Resume (proto/peer/SPEC.md, "Sessions and resume"): a lost link whose
// session can resume suspends the transactions pinned to it for
// Config.ResumeWindow. Their frames go into the session's replay buffer
// meanwhile (txns.out). A new link that resumes the session ends the
// suspension with nothing lost; a fresh session, an overflowing replay
// buffer or the window's end fail them with LINKFAIL as without resume.

// DefaultResumeWindow is Config.ResumeWindow's default: twice the
// default heartbeat timeout.
const DefaultResumeWindow = time.Second

// ResumeStats counts link resumes at this node.
type ResumeStats struct {
	Suspended int    // peers whose transactions wait for their link now
	Resumes   uint64 // lost links that came back within the window, nothing lost
	Failures  uint64 // suspensions that ended in LINKFAIL: window over, fresh session, overflow
}

type resumes struct {
	m *Mesh

	mu   sync.Mutex               // guards wait
	wait map[uint64]chan struct{} // peers suspended; closed when the suspension ends

	expired atomic.Uint64 // suspensions whose window ran out
}

// counts returns the resumes and the failures: links that resumed their
// session (the store counts them, whether or not the old link's end was
// seen first), and sessions lost by expiry or replaced by a fresh one.
func (r *resumes) counts() (resumes, fails uint64) {
	ss := r.sessions()
	if ss == nil {
		return 0, 0
	}
	st := ss.Stats()
	return st.Resumes, st.Fresh + r.expired.Load()
}

func (r *resumes) init(m *Mesh) {
	r.m = m
	r.wait = map[uint64]chan struct{}{}
	if ss := r.sessions(); ss != nil {
		ss.OnSession = r.onSession
	}
}

func (r *resumes) sessions() *transport.Sessions {
	if r.m.cfg.ResumeWindow < 0 || r.m.cfg.Link == nil {
		return nil
	}
	return r.m.cfg.Link.Sessions
}

// session returns the resumable session with peer, or nil: frames of
// the transactions pinned to its lost link go there.
func (r *resumes) session(peer uint64) *transport.Session {
	ss := r.sessions()
	if ss == nil {
		return nil
	}
	s := ss.Lookup(peer)
	if s == nil || !s.Resumable() {
		return nil
	}
	return s
}

// suspend starts the window for the peer of the ended link l, unless its
// session cannot resume; false: fail its transactions now.
func (r *resumes) suspend(ctx context.Context, l *transport.Link) bool {
	peer := l.Peer().NodeID
	s := l.Session()
	if s == nil || r.sessions() == nil {
		return false
	}
	if ctx.Err() != nil || errors.Is(l.Err(), proto.ErrShutdown) || !s.Resumable() {
		// A goodbye: the peer is going, or this node is, and the
		// session with it; a later link starts fresh, not resending
		// frames of transactions that failed now.
		s.Expire()
		return false
	}
	if s.Active() {
		return true // a newer link carries the session already
	}
	r.mu.Lock()
	if _, ok := r.wait[peer]; ok {
		r.mu.Unlock()
		return true
	}
	done := make(chan struct{})
	r.wait[peer] = done
	r.mu.Unlock()
	r.m.log.Info("link lost: its transactions wait for it to resume", "peer_id", peer, "window", r.m.cfg.ResumeWindow, "err", l.Err().Error())
	r.m.wg.Go(func() {
		t := time.NewTimer(r.m.cfg.ResumeWindow)
		defer t.Stop()
		select {
		case <-done:
			return
		case <-ctx.Done():
		case <-t.C:
		}
		if !r.end(peer, done) {
			return
		}
		if s.Expire() {
			r.expired.Add(1)
			r.m.log.Warn("link did not resume within the window: its transactions fail", "peer_id", peer, "window", r.m.cfg.ResumeWindow)
			r.m.tx.linkDown(peer)
		}
	})
	return true
}

// end removes the suspension of peer if it is done; false if another
// ended it first.
func (r *resumes) end(peer uint64, done chan struct{}) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.wait[peer] != done {
		return false
	}
	delete(r.wait, peer)
	close(done)
	return true
}

// onSession is the sessions' hook: a new link resumed the session with
// peer, or started a fresh one, which loses what the old one carried.
func (r *resumes) onSession(peer uint64, resumed bool) {
	r.mu.Lock()
	done, waiting := r.wait[peer]
	r.mu.Unlock()
	if waiting && r.end(peer, done) && resumed {
		r.m.log.Info("link resumed: its transactions go on", "peer_id", peer)
	}
	if !resumed {
		// Whatever was pinned to the old session is lost with it.
		r.m.tx.linkDown(peer)
	}
}

// ResumeStats returns the resume counters.
func (m *Mesh) ResumeStats() ResumeStats {
	m.res.mu.Lock()
	n := len(m.res.wait)
	m.res.mu.Unlock()
	res, fails := m.res.counts()
	return ResumeStats{Suspended: n, Resumes: res, Failures: fails}
}
