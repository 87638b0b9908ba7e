package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/dsvc"
	dscluster "github.com/corralhq/corral/dsvc/cluster"
	"github.com/corralhq/corral/dsvc/dsvctest"
	"github.com/corralhq/corral/internal/datadir"
	"github.com/corralhq/corral/internal/netlab"
)

// The cluster data-service module is linearizable under kill -9 and
// partitions: six clients (two per agent, each with its own module and so
// its own link) run random lookups, adds, modifies and deletes with
// signatures on five records of one network container while a nemesis
// kills agents or cuts them off; porcupine checks the history, and every
// acknowledged write is still visible at the end.

const (
	linLocation  = "/linear"
	linNetwork   = "10.9.0.0/24"
	linKeys      = 5
	linClients   = 2 // per node
	linOpTimeout = 3 * time.Second
	linCheck     = 30 * time.Second // porcupine's budget
)

// linRun is one run: its agents, the history and what the clients saw.
type linRun struct {
	t     *testing.T
	nodes []*node
	h     *dsvctest.History
	down  []atomic.Bool // by node index: the nemesis has it down; its clients wait
	lease atomic.Uint32 // every write gets a lease of its own, so effects tell writes apart

	mu    sync.Mutex     // guards odd
	odd   map[string]int // failures that are neither answers nor unknown outcomes, by code
	skips atomic.Int64   // calls never sent (no agent to dial)
}

func newLinRun(t *testing.T, nodes []*node) *linRun {
	return &linRun{t: t, nodes: nodes, h: dsvctest.NewHistory(), down: make([]atomic.Bool, len(nodes)), odd: map[string]int{}}
}

func linDatastore(nd *node) dsvc.Datastore {
	return dsvc.Datastore{Module: dscluster.Name, Location: linLocation, Version: dscluster.Version,
		Config: "socket=" + datadir.ClientSocket(nd.dir)}
}

// linRegistry is a registry of its own cluster module (its own link).
func linRegistry(t *testing.T) *dsvc.Registry {
	mod := dscluster.New(nil)
	t.Cleanup(mod.Close)
	reg, err := dsvc.NewRegistry(dsvc.Options{}, mod)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func linIP(k int) netip.Addr { return netip.AddrFrom4([4]byte{10, 9, 0, byte(k + 1)}) }

// linCID is key k's client id. Modify's original and delete's record
// carry it too: the wire refuses a record without one outside a query.
func linCID(k int) []byte { return []byte{0x01, byte(k + 1)} }

// setup makes the location and the container through node 1, retrying
// while the cluster settles (a retried make may find its own earlier
// attempt done).
func (r *linRun) setup() {
	t := r.t
	reg := linRegistry(t)
	ds := linDatastore(r.nodes[0])
	eventually(t, 30*time.Second, "the location and container made", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), linOpTimeout)
		defer cancel()
		if err := reg.MkLocation(ctx, ds); err != nil && !errors.Is(err, dsvc.ErrExists) {
			return err
		}
		h, err := reg.Open(ctx, ds, dsvc.Network, linNetwork, dsvc.Create|dsvc.Read|dsvc.Write)
		if errors.Is(err, dsvc.ErrTableExists) {
			h, err = reg.Open(ctx, ds, dsvc.Network, linNetwork, dsvc.Read|dsvc.Write)
		}
		if err != nil {
			return err
		}
		return h.Close()
	})
}

// notSent: the module failed before sending the request (no agent
// listening to dial, or no handshake), so it cannot have taken effect.
func notSent(err error) bool {
	var e *dsvc.Error
	return errors.As(err, &e) && e.Code == dsvc.CodeUnavailable &&
		(strings.HasPrefix(e.Detail, "no cluster agent at ") || strings.HasPrefix(e.Detail, "handshake with the agent at "))
}

// result maps err to an outcome, noting failures that should not happen.
func (r *linRun) result(err error) dsvctest.LinResult {
	res := dsvctest.ResultOf(err)
	if res == dsvctest.LinUnknown {
		if c := dsvc.CodeOf(err); c != dsvc.CodeUnavailable && c != dsvc.CodeBusy {
			r.mu.Lock()
			if r.odd[c.String()] == 0 {
				r.t.Errorf("an operation failed with neither an answer nor an unknown outcome: %v", err)
			}
			r.odd[c.String()]++
			r.mu.Unlock()
		}
	}
	return res
}

func (r *linRun) record(k int) dsvc.DNRecord {
	return dsvc.DNRecord{CID: linCID(k), CIP: linIP(k), SIP: netip.MustParseAddr("10.9.0.254"),
		Lease: r.lease.Add(1), Macro: "lin", Comment: "linearizability"}
}

// lookup reads key k through h and records it as client c.
func (r *linRun) lookup(ctx context.Context, c int, h *dsvc.Handle, k int) (dsvctest.LinOutput, error) {
	p := r.h.Call(c, dsvctest.LinInput{Op: dsvctest.LinLookup, CIP: linIP(k)})
	rs, err := h.LookupDN(ctx, false, dsvc.Query(0).Eq(dsvc.DNQCIP), -1, &dsvc.DNRecord{CIP: linIP(k)})
	if notSent(err) {
		r.skips.Add(1)
		return dsvctest.LinOutput{Result: dsvctest.LinUnknown}, err
	}
	out := dsvctest.LinOutput{Result: r.result(err)}
	switch {
	case err != nil:
	case len(rs) > 1:
		r.t.Errorf("lookup of %v: %d records", linIP(k), len(rs))
		out.Result = dsvctest.LinUnknown
	case len(rs) == 1:
		if rs[0].CIP != linIP(k) {
			r.t.Errorf("lookup of %v returned %v", linIP(k), rs[0].CIP)
		}
		out.Found, out.Lease, out.Sig = true, rs[0].Lease, rs[0].Sig
	}
	p.End(out)
	return out, err
}

// client runs random operations as client c through node nd until ctx
// ends. Modify and delete use the signature of this client's last lookup
// of the key, so both collisions and successes happen.
func (r *linRun) client(ctx context.Context, c int, ni int, rng *rand.Rand) {
	reg := linRegistry(r.t)
	ds := linDatastore(r.nodes[ni])
	var h *dsvc.Handle
	defer func() {
		if h != nil {
			h.Close()
		}
	}()
	sigs := make([]uint64, linKeys) // the last lookup's signature, by key
	for ctx.Err() == nil {
		if r.down[ni].Load() {
			sleepCtx(ctx, 50*time.Millisecond)
			continue
		}
		octx, cancel := context.WithTimeout(ctx, linOpTimeout)
		if h == nil {
			var err error
			if h, err = r.open(octx, reg, ds); err != nil {
				cancel()
				sleepCtx(ctx, 100*time.Millisecond)
				continue
			}
		}
		err := r.op(octx, c, h, rng, sigs)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil && dsvctest.ResultOf(err) == dsvctest.LinUnknown {
			sleepCtx(ctx, 100*time.Millisecond) // the agent is busy recovering: do not pile on
		}
	}
}

func (r *linRun) open(ctx context.Context, reg *dsvc.Registry, ds dsvc.Datastore) (*dsvc.Handle, error) {
	return reg.Open(ctx, ds, dsvc.Network, linNetwork, dsvc.Read|dsvc.Write)
}

// op does one random operation.
func (r *linRun) op(ctx context.Context, c int, h *dsvc.Handle, rng *rand.Rand, sigs []uint64) error {
	k := rng.IntN(linKeys)
	ip := linIP(k)
	switch n := rng.IntN(100); {
	case n < 40:
		out, err := r.lookup(ctx, c, h, k)
		if err == nil && out.Found {
			sigs[k] = out.Sig
		}
		return err
	case n < 60:
		rec := r.record(k)
		p := r.h.Call(c, dsvctest.LinInput{Op: dsvctest.LinAdd, CIP: ip, Lease: rec.Lease})
		err := h.AddDN(ctx, &rec)
		return r.end(p, err, rec.Sig)
	case n < 85:
		rec := r.record(k)
		orig := dsvc.DNRecord{CID: linCID(k), CIP: ip, Sig: sigs[k]}
		p := r.h.Call(c, dsvctest.LinInput{Op: dsvctest.LinModify, CIP: ip, Sig: orig.Sig, Lease: rec.Lease})
		err := h.ModifyDN(ctx, &orig, &rec)
		return r.end(p, err, rec.Sig)
	default:
		sig := sigs[k]
		if rng.IntN(5) == 0 {
			sig = 0 // unconditional
		}
		p := r.h.Call(c, dsvctest.LinInput{Op: dsvctest.LinDelete, CIP: ip, Sig: sig})
		err := h.DeleteDN(ctx, &dsvc.DNRecord{CID: linCID(k), CIP: ip, Sig: sig})
		return r.end(p, err, 0)
	}
}

// end records a write's outcome; sig is the new signature of a successful
// add or modify.
func (r *linRun) end(p *dsvctest.Pending, err error, sig uint64) error {
	if notSent(err) {
		r.skips.Add(1)
		return err
	}
	out := dsvctest.LinOutput{Result: r.result(err)}
	if out.Result == dsvctest.LinOK {
		out.Sig = sig
	}
	p.End(out)
	return err
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// run starts the clients, runs nemesis for about d in the test goroutine,
// stops the clients and does the final checks. nemesis must leave every
// node running and connected when it returns.
func (r *linRun) run(d time.Duration, rng *rand.Rand, nemesis func(end time.Time)) {
	t := r.t
	started := time.Now()
	r.setup()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for ni := range r.nodes {
		for j := range linClients {
			c := ni*linClients + j
			crng := rand.New(rand.NewPCG(rng.Uint64(), uint64(c)))
			wg.Go(func() { r.client(ctx, c, ni, crng) })
		}
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			wg.Wait()
		}
	}
	defer stop() // a Fatal in the nemesis must not leave clients running
	nemesis(time.Now().Add(d))
	stop()
	for _, nd := range r.nodes {
		nd.waitView(ids(r.nodes), 30*time.Second)
	}
	workload := time.Since(started)
	final := r.final()
	counts := r.h.Counts()
	t.Logf("%d clients, %v of workload and nemesis; operations: %v; %d calls not sent (no agent listening)",
		len(r.nodes)*linClients, workload.Round(time.Millisecond), counts, r.skips.Load())
	r.mu.Lock()
	if len(r.odd) > 0 {
		t.Logf("other failures: %v", r.odd)
	}
	r.mu.Unlock()
	for _, op := range []dsvctest.LinOp{dsvctest.LinAdd, dsvctest.LinModify, dsvctest.LinDelete} {
		if counts[op][dsvctest.LinOK] == 0 {
			t.Errorf("no %v succeeded: the run shows nothing", op)
		}
	}
	if counts[dsvctest.LinModify][dsvctest.LinCollision] == 0 {
		t.Errorf("no modify collided: the run does not exercise signatures")
	}
	dsvctest.CheckLinearizable(t, r.h, linCheck)
	dsvctest.CheckNoLostWrites(t, r.h, final)
	t.Logf("run took %v in all", time.Since(started).Round(time.Millisecond))
}

// final reads every key on every node with a linearizable lookup
// (recorded in the history, as clients after everyone else), checks the
// nodes agree, and returns what they read.
func (r *linRun) final() map[netip.Addr]dsvctest.LinOutput {
	t := r.t
	final := map[netip.Addr]dsvctest.LinOutput{}
	for ni, nd := range r.nodes {
		reg := linRegistry(t)
		ds := linDatastore(nd)
		c := len(r.nodes)*linClients + ni
		var h *dsvc.Handle
		eventually(t, 30*time.Second, fmt.Sprintf("n%d opens the container", nd.id), func() (err error) {
			ctx, cancel := context.WithTimeout(context.Background(), linOpTimeout)
			defer cancel()
			h, err = r.open(ctx, reg, ds)
			return err
		})
		for k := range linKeys {
			var out dsvctest.LinOutput
			eventually(t, 30*time.Second, fmt.Sprintf("n%d reads %v", nd.id, linIP(k)), func() (err error) {
				ctx, cancel := context.WithTimeout(context.Background(), linOpTimeout)
				defer cancel()
				out, err = r.lookup(ctx, c, h, k)
				return err
			})
			if prev, ok := final[linIP(k)]; ok && prev != out {
				t.Errorf("%v: n%d reads %v, n%d %v", linIP(k), r.nodes[0].id, prev, nd.id, out)
			}
			final[linIP(k)] = out
		}
		h.Close()
	}
	var keys []string
	for k, v := range final {
		what := "absent"
		if v.Found {
			what = v.String()
		}
		keys = append(keys, fmt.Sprintf("%v: %s", k, what))
	}
	sort.Strings(keys)
	t.Logf("final records: %s", strings.Join(keys, "; "))
	return final
}

// TestDsvcLinearizableKill: every 2–3 s one agent (never two at once, so
// a majority stays) is killed with SIGKILL and restarted.
func TestDsvcLinearizableKill(t *testing.T) {
	dur := soak(t, 15*time.Second)
	rng := seeded(t)
	nodes := formed(t, 3)
	r := newLinRun(t, nodes)
	kills := 0
	r.run(dur, rng, func(end time.Time) {
		for time.Now().Before(end) {
			time.Sleep(time.Duration(2000+rng.IntN(1001)) * time.Millisecond)
			i := rng.IntN(len(nodes))
			nd := nodes[i]
			r.down[i].Store(true)
			nd.kill()
			kills++
			t.Logf("%v: kill -9 n%d", time.Since(end.Add(-dur)).Round(time.Millisecond), nd.id)
			time.Sleep(time.Duration(300+rng.IntN(700)) * time.Millisecond)
			nd.start()
			r.down[i].Store(false)
			// The next kill waits for all three in the view again, so
			// that a majority is always up.
			for _, other := range nodes {
				other.waitView(ids(nodes), 30*time.Second)
			}
		}
	})
	t.Logf("%d kills", kills)
}

// TestDsvcLinearizablePartition: one node at a time cut off (a minority)
// and healed, and the leader cut off. Needs root for the network
// namespaces.
func TestDsvcLinearizablePartition(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the partitions are between network namespaces (CI runs as root)")
	}
	dur := soak(t, 15*time.Second)
	rng := seeded(t)
	lab, nodes := labCluster(t, 3)
	r := newLinRun(t, nodes)
	var cuts []string
	r.run(dur, rng, func(end time.Time) {
		defer lab.Heal()
		for step := 0; time.Now().Before(end); step++ {
			time.Sleep(time.Duration(500+rng.IntN(1000)) * time.Millisecond)
			var victim *node
			if step%2 == 1 {
				victim = leaderOf(t, nodes)
				cuts = append(cuts, fmt.Sprintf("leader n%d", victim.id))
			} else {
				victim = nodes[rng.IntN(len(nodes))]
				cuts = append(cuts, fmt.Sprintf("n%d", victim.id))
			}
			partition(lab, victim)
			// Sometimes past the clients' timeout, so that writes on the
			// cut-off node end unknown and apply (or not) after the heal.
			time.Sleep(time.Duration(1500+rng.IntN(3000)) * time.Millisecond)
			lab.Heal()
			for _, nd := range nodes {
				nd.waitView(ids(nodes), 30*time.Second)
			}
		}
	})
	t.Logf("cut off, one at a time: %s", strings.Join(cuts, ", "))
}

// partition cuts nd off from the other nodes.
func partition(lab *netlab.Lab, nd *node) { lab.Partition([]int{nd.id}) }
