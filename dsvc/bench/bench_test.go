package dsvcbench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/binfiles"
	"github.com/corralhq/corral/dsvc/cluster"
	"github.com/corralhq/corral/dsvc/cluster/clustertest"
	"github.com/corralhq/corral/dsvc/dsvctest"
	"github.com/corralhq/corral/dsvc/files"
	"github.com/corralhq/corral/dsvc/lock"
	"github.com/corralhq/corral/dsvc/postgres"
	"github.com/corralhq/corral/internal/pgtest"
)

// A module under test. setup returns a registry holding it (built as the
// tools build theirs) and a datastore at a fresh location that does not
// exist yet; whatever it starts ends with b.
type module struct {
	name  string
	setup func(b *testing.B) (*dsvc.Registry, dsvc.Datastore)
}

// modules are measured in this order.
var modules = []module{
	{files.Name, func(b *testing.B) (*dsvc.Registry, dsvc.Datastore) {
		return lockedRegistry(b, files.New()), dsvc.Datastore{Module: files.Name, Location: filepath.Join(b.TempDir(), "dhcp"), Version: dsvc.CurrentVersion}
	}},
	{binfiles.Name, func(b *testing.B) (*dsvc.Registry, dsvc.Datastore) {
		return lockedRegistry(b, binfiles.New(nil)), dsvc.Datastore{Module: binfiles.Name, Location: filepath.Join(b.TempDir(), "dhcp"), Version: dsvc.CurrentVersion}
	}},
	{postgres.Name, func(b *testing.B) (*dsvc.Registry, dsvc.Datastore) {
		loc := pgtest.Schema(b, pgtest.Start(b))
		m := postgres.New(nil)
		b.Cleanup(m.Close)
		// One connection per client: the default pool (4 on this
		// machine) would measure the pool, not the server.
		return lockedRegistry(b, m), dsvc.Datastore{Module: postgres.Name, Location: loc, Config: fmt.Sprintf("maxconns=%d", maxClients), Version: dsvc.CurrentVersion}
	}},
	{cluster.Name, func(b *testing.B) (*dsvc.Registry, dsvc.Datastore) {
		// A one-node cluster: the cost of the log (an fsync per write)
		// and of the link to the agent, without peers. BenchmarkDsvcCluster
		// in cmd/corral measures three agents.
		a := clustertest.Start(b)
		m := cluster.New(nil)
		b.Cleanup(m.Close)
		r, err := dsvc.NewRegistry(dsvc.Options{}, m)
		if err != nil {
			b.Fatal(err)
		}
		return r, dsvc.Datastore{Module: cluster.Name, Location: "/bench", Config: "socket=" + a.Socket(), Version: dsvc.CurrentVersion}
	}},
}

func TestMain(m *testing.M) {
	code := m.Run()
	clustertest.Cleanup()
	os.Exit(code)
}

// lockedRegistry is the registry of the tools (cmd/corral's
// newDsvcRegistry): the lock service over a lock directory, here a
// temporary one.
func lockedRegistry(b *testing.B, m dsvc.Module) *dsvc.Registry {
	lk, err := lock.New(lock.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	r, err := dsvc.NewRegistry(dsvc.Options{Locker: lk}, m)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

const (
	preload    = 4096
	maxClients = 16
	// network holds the preloaded records (10.0.0.1 on) and the adds
	// (addBase on), which a DHCP-sized /20 would run out of.
	network = "10.0.0.0/12"
)

var (
	addBase = netip.MustParseAddr("10.8.0.0")
	addEnd  = netip.MustParseAddr("10.15.255.255")
)

var clientCounts = []int{1, maxClients}

// env is one module's container, preloaded, with a handle per client.
type env struct {
	handles [maxClients]*dsvc.Handle
	cips    []netip.Addr // of the preloaded records, by index
	cids    [][]byte
	added   atomic.Uint32 // adds so far, for the next free address
}

func newEnv(b *testing.B, m module) *env {
	ctx := context.Background()
	r, ds := m.setup(b)
	if err := r.MkLocation(ctx, ds); err != nil {
		b.Fatal(err)
	}
	e := &env{}
	rs := make([]dsvc.DNRecord, preload)
	for i := range rs {
		rs[i] = dsvctest.SpecRecord(i)
		e.cips = append(e.cips, rs[i].CIP)
		e.cids = append(e.cids, rs[i].CID)
	}
	h, err := r.Open(ctx, ds, dsvc.Network, network, dsvc.Create|dsvc.Read|dsvc.Write)
	if err != nil {
		b.Fatal(err)
	}
	if h.CanImport() {
		err = h.ImportDN(ctx, rs)
	} else {
		for i := range rs {
			if err = h.AddDN(ctx, &rs[i]); err != nil {
				break
			}
		}
	}
	h.Close()
	if err != nil {
		b.Fatal("preload: ", err)
	}
	for g := range e.handles {
		h, err := r.Open(ctx, ds, dsvc.Network, network, dsvc.Read|dsvc.Write)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { h.Close() })
		e.handles[g] = h
	}
	return e
}

// An op is one client's i-th operation; g is the client (0..15).
type op struct {
	name string
	fn   func(ctx context.Context, e *env, g, i int) error
}

var (
	byCIP = dsvc.Query(0).Eq(dsvc.DNQCIP)
	byCID = dsvc.Query(0).Eq(dsvc.DNQCID)
)

// want1 checks a lookup found exactly one record.
func want1(rs []dsvc.DNRecord, err error) error {
	if err == nil && len(rs) != 1 {
		err = fmt.Errorf("%d records, want 1", len(rs))
	}
	return err
}

// spread picks a client's i-th record of n, different clients on
// different records.
func spread(g, i, n int) int { return (g*251 + i*7) % n }

var ops = []op{
	// The DHCP server's hot path: the record of an address it offers.
	{"lookup", func(ctx context.Context, e *env, g, i int) error {
		t := dsvc.DNRecord{CIP: e.cips[spread(g, i, preload)]}
		return want1(e.handles[g].LookupDN(ctx, false, byCIP, -1, &t))
	}},
	// The client's own lease; the first records share one client id, so
	// these pick among the others.
	{"lookup-cid", func(ctx context.Context, e *env, g, i int) error {
		n := dsvctest.SharedCIDRecords + spread(g, i, preload-dsvctest.SharedCIDRecords)
		t := dsvc.DNRecord{CID: e.cids[n]}
		return want1(e.handles[g].LookupDN(ctx, false, byCID, -1, &t))
	}},
	// Read the record, then Modify it with its signature, again on a
	// collision. Client g owns the records ≡ g mod 16, so collisions need
	// a bug.
	{"modify", func(ctx context.Context, e *env, g, i int) error {
		h := e.handles[g]
		t := dsvc.DNRecord{CIP: e.cips[g+maxClients*(i%(preload/maxClients))]}
		for {
			rs, err := h.LookupDN(ctx, false, byCIP, -1, &t)
			if err := want1(rs, err); err != nil {
				return err
			}
			nr := rs[0]
			nr.Lease = 1800000000 + uint32(i)
			err = h.ModifyDN(ctx, &rs[0], &nr)
			if !errors.Is(err, dsvc.ErrCollision) {
				return err
			}
		}
	}},
	// A new record at the next free address.
	{"add", func(ctx context.Context, e *env, g, i int) error {
		n := e.added.Add(1)
		a := addBase.As4()
		v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) + n
		cip := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		if addEnd.Less(cip) {
			return fmt.Errorf("%d adds fill the network: shorten -benchtime", n)
		}
		r := dsvctest.SpecRecord(preload + int(n)%preload)
		r.CIP = cip
		r.CID = []byte{0x01, 0x03, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
		return e.handles[g].AddDN(ctx, &r)
	}},
}

// BenchmarkModules measures every op of every module with 1 and 16
// concurrent clients. ops/s is the clients' total rate; lat-us the mean
// time one operation took its client.
func BenchmarkModules(b *testing.B) {
	for _, m := range modules {
		b.Run(m.name, func(b *testing.B) {
			e := newEnv(b, m)
			for _, o := range ops {
				b.Run(o.name, func(b *testing.B) {
					for _, n := range clientCounts {
						b.Run(fmt.Sprint("clients=", n), func(b *testing.B) { runClients(b, e, o, n) })
					}
				})
			}
		})
	}
}

// runClients runs b.N operations shared out among n client goroutines,
// each taking the next as it finishes one, and stops them all at the
// first error.
func runClients(b *testing.B, e *env, o op, n int) {
	ctx := context.Background()
	var (
		next, done atomic.Int64
		failed     atomic.Bool
		errOnce    sync.Once
		firstErr   error // set once, read after wg.Wait
		wg         sync.WaitGroup
	)
	b.ResetTimer()
	start := time.Now()
	for g := range n {
		wg.Go(func() {
			for i := 0; !failed.Load() && next.Add(1) <= int64(b.N); i++ {
				if err := o.fn(ctx, e, g, i); err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("client %d, op %d: %w", g, i, err) })
					failed.Store(true)
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	if s := elapsed.Seconds(); s > 0 && done.Load() > 0 {
		b.ReportMetric(float64(done.Load())/s, "ops/s")
		busy := min(int64(n), done.Load()) // clients that had work
		b.ReportMetric(s*1e6*float64(busy)/float64(done.Load()), "lat-us")
	}
}
