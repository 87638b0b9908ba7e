package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corralhq/corral/internal/logkey"
	"github.com/corralhq/corral/membership"
	"github.com/corralhq/corral/sharedaddr"
	"github.com/corralhq/corral/sharedaddr/addrsvc"
	"github.com/corralhq/corral/sharedaddr/ctl"
	"github.com/corralhq/corral/sharedaddr/userspace"
)

// The user-space fallback of the shared addresses' data path (issue 13
// item 7, --shared-userspace): where the agent may not install the kernel
// path, the owner of an address runs a sharedaddr/userspace proxy on each
// of its TCP service ports. The proxy dispatches by the same table as the
// kernel path and dials the serving node's own address (the host of its
// peer address) on the service port, with a PROXY v2 header naming the
// client. So there an application listens on its node's own address, not
// on the shared one, and reads the header (userspace.Listener, nginx
// proxy_protocol, HAProxy accept-proxy); the agent takes such a socket
// for a listener of the port on every shared address of its stack.
//
// The agent does not hold the address, answer ARP or fence it: keepalived
// or the cloud brings the address's packets to the host, and the proxy
// binds it with IP_FREEBIND (no privilege needed) whether or not it is
// there yet, or binds the address given instead.

// bindShared is the --shared-userspace value that binds the shared
// address itself.
const bindShared = "shared"

// errBind marks a --shared-userspace value that is neither "shared" nor
// an IP address.
var errBind = errors.New(`want "shared" or an IP address of this host`)

// userspaceBind parses a --shared-userspace value: the address the proxy
// binds, invalid for the shared address itself.
func userspaceBind(s string) (netip.Addr, error) {
	if s == bindShared {
		return netip.Addr{}, nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" || ip.IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("%q: %w", s, errBind)
	}
	return ip.Unmap(), nil
}

// usKey is one proxied port of a shared address.
type usKey struct {
	vip  netip.Addr
	port uint16
}

// usWant is what the proxy of a usKey should be: where it listens and
// what it dispatches by.
type usWant struct {
	bind  netip.AddrPort
	table userspace.Table
}

// userspaceWants is the proxies this node runs for state st: one per TCP
// service port of every address of stack it owns (none when fenced),
// each with its table and every node's backend (its next hop's address
// on the service port). A sticky-wild table (port 0) is proxied on the
// ports its listeners listen on. bind, when valid, replaces the shared
// address as the address listened on. It returns, as text, what it had
// to leave out because a node has no address.
func userspaceWants(self, stack uint64, st *addrsvc.State, ips map[uint64]netip.Addr, bind netip.Addr, fenced bool) (map[usKey]usWant, []string) {
	out := map[usKey]usWant{}
	var skipped []string
	if fenced {
		return out, nil
	}
	for _, a := range st.Addrs {
		if a.Addr.Stack != stack || a.Owner != self {
			continue
		}
		for _, t := range a.Tables {
			if t.Proto != ctl.TCP || len(t.Buckets) == 0 {
				continue
			}
			ports := []uint16{t.Port}
			if t.Port == 0 {
				ports = nil
				for _, l := range a.Listeners {
					if l.Proto == ctl.TCP && !slices.Contains(ports, l.Port) {
						ports = append(ports, l.Port)
					}
				}
			}
			for _, port := range ports {
				backends := map[uint64]netip.AddrPort{}
				ok := true
				for _, n := range t.Buckets {
					if _, done := backends[n]; done {
						continue
					}
					ip, has := ips[n]
					if !has {
						ok = false
						skipped = append(skipped, fmt.Sprintf("%v port %d: node %d has no address", a.Addr, port, n))
						break
					}
					backends[n] = netip.AddrPortFrom(ip, port)
				}
				if !ok {
					continue
				}
				on := a.Addr.IP
				if bind.IsValid() {
					on = bind
				}
				out[usKey{a.Addr.IP, port}] = usWant{bind: netip.AddrPortFrom(on, port),
					table: userspace.Table{Policy: a.Policy, Buckets: t.Buckets, Backends: backends}}
			}
		}
	}
	return out, skipped
}

// userspaceWalk wraps the walk the shared-address service observes
// listeners with, for the fallback: a socket listening on this node's own
// address (self) stands for a listener of its port on every shared
// address of stack — except the agent's own (its peer and HTTP ports,
// agentPorts), which would otherwise be proxied — and sockets listening
// on a shared address or on bind are the proxy's own, not an
// application's. Other sockets pass as they are.
func userspaceWalk(walk addrsvc.Walker, stack uint64, bind netip.Addr, self func() (netip.Addr, bool), agentPorts func() []uint16, state func() *addrsvc.State) addrsvc.Walker {
	return func(ctx context.Context, fn func(sharedaddr.TCPInfo) bool) error {
		skip := agentPorts()
		var vips []netip.Addr
		for _, a := range state().Addrs {
			if a.Addr.Stack == stack {
				vips = append(vips, a.Addr.IP)
			}
		}
		own, hasOwn := self()
		return walk(ctx, func(ti sharedaddr.TCPInfo) bool {
			if ti.State != sharedaddr.StateListen {
				return fn(ti)
			}
			ip := ti.Local.Addr().Unmap()
			if slices.Contains(vips, ip) || (bind.IsValid() && ip == bind) {
				return true
			}
			if !hasOwn || ip != own || slices.Contains(skip, ti.Local.Port()) {
				return fn(ti)
			}
			for _, v := range vips {
				c := ti
				c.Local = netip.AddrPortFrom(v, ti.Local.Port())
				if !fn(c) {
					return false
				}
			}
			return true
		})
	}
}

// usProxy is one running proxy; done closes when its Serve returned.
type usProxy struct {
	key  usKey
	bind netip.AddrPort
	p    *userspace.Proxy
	done chan struct{}
}

// userspacePath runs the proxies of the addresses this node owns, as the
// state says, and follows the state: a table change is a SetTable, an
// address lost (or a fence) drains its proxy — its port closes at once,
// the relayed connections finish — and a new one starts a proxy.
type userspacePath struct {
	self, stack uint64
	bind        netip.Addr // invalid: the shared address
	src         addrsvc.Source
	quorate     func() bool
	caughtUp    func() bool
	members     func() []membership.Member
	log         *slog.Logger
	plog        *slog.Logger // the proxies', which name their subsystem
	listen      func(ctx context.Context, addr netip.AddrPort) (net.Listener, error)
	stats       *usStats
}

// usStats is the proxies' counters for the metrics: live proxies' read
// at scrape, those of ended ones kept summed.
type usStats struct {
	mu      sync.Mutex // guards live, ended, serving
	live    map[*userspace.Proxy]bool
	ended   userspace.Stats // Active unused
	serving int             // proxies accepting now
}

func (s *usStats) add(p *userspace.Proxy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.live[p] = true
}

func (s *usStats) end(p *userspace.Proxy) {
	st := p.Stats()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.live, p)
	s.ended.Accepted += st.Accepted
	s.ended.Refused += st.Refused
	s.ended.DialFailed += st.DialFailed
	s.ended.Aborted += st.Aborted
	s.ended.BytesUp += st.BytesUp
	s.ended.BytesDown += st.BytesDown
}

func (s *usStats) setServing(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.serving = n
}

// total is the counters of every proxy this agent ran, and how many
// accept now.
func (s *usStats) total() (userspace.Stats, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.ended
	for p := range s.live {
		st := p.Stats()
		t.Accepted += st.Accepted
		t.Active += st.Active
		t.Refused += st.Refused
		t.DialFailed += st.DialFailed
		t.Aborted += st.Aborted
		t.BytesUp += st.BytesUp
		t.BytesDown += st.BytesDown
	}
	return t, s.serving
}

// usCollector exports usStats as corral_sharedaddr_userspace_*.
type usCollector struct {
	s                                      *usStats
	conns, active, bytes, errors, listener *prometheus.Desc
}

func newUSCollector(s *usStats) *usCollector {
	return &usCollector{s: s,
		conns:    prometheus.NewDesc("corral_sharedaddr_userspace_connections_total", "Connections the user-space proxy accepted on shared addresses this node owned.", nil, nil),
		active:   prometheus.NewDesc("corral_sharedaddr_userspace_active_connections", "Connections the user-space proxy relays now.", nil, nil),
		bytes:    prometheus.NewDesc("corral_sharedaddr_userspace_bytes_total", "Bytes relayed by the user-space proxy, up (client to node, header excluded) or down.", []string{"direction"}, nil),
		errors:   prometheus.NewDesc("corral_sharedaddr_userspace_errors_total", "Relays that failed: refused (connection cap), dial (node unreachable or header not sent), aborted (ended by an error or shutdown).", []string{"kind"}, nil),
		listener: prometheus.NewDesc("corral_sharedaddr_userspace_listeners", "Shared address ports the user-space proxy accepts on now.", nil, nil),
	}
}

func (c *usCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.conns
	ch <- c.active
	ch <- c.bytes
	ch <- c.errors
	ch <- c.listener
}

func (c *usCollector) Collect(ch chan<- prometheus.Metric) {
	t, serving := c.s.total()
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.CounterValue, float64(t.Accepted))
	ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(t.Active))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(t.BytesUp), "up")
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(t.BytesDown), "down")
	ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(t.Refused), "refused")
	ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(t.DialFailed), "dial")
	ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(t.Aborted), "aborted")
	ch <- prometheus.MustNewConstMetric(c.listener, prometheus.GaugeValue, float64(serving))
}

// listenFreebind listens on addr with IP_FREEBIND.
func listenFreebind(ctx context.Context, addr netip.AddrPort) (net.Listener, error) {
	lc := net.ListenConfig{Control: freebind}
	network := "tcp4"
	if !addr.Addr().Is4() {
		network = "tcp6"
	}
	return lc.Listen(ctx, network, addr.String())
}

// run keeps the proxies equal to what the state says until ctx ends,
// then stops them all (their relayed connections with them) and returns
// once they have ended. It never fails: a port that cannot be bound is
// logged and tried again with backoff.
func (u *userspacePath) run(ctx context.Context) error {
	changes, stop := u.src.Watch()
	defer stop()
	var wg sync.WaitGroup // every proxy's Serve; drained ones too
	defer wg.Wait()
	running := map[usKey]*usProxy{}
	var (
		fenced  = true // as the kernel path: owner roles wait for quorum contact and a current state
		dirty   = true
		retryAt time.Time
		failed  int
	)
	tick := time.NewTicker(fenceCheck)
	defer tick.Stop()
	for {
		if !fenced && !u.quorate() {
			fenced, dirty = true, true
			u.log.Warn("shared addresses: lost contact with a quorum; draining the user-space proxies", "proxies", len(running))
		} else if fenced && u.quorate() && u.caughtUp() {
			fenced, dirty = false, true
		}
		for k, r := range running {
			select {
			case <-r.done: // Serve failed: start it again
				delete(running, k)
				dirty = true
			default:
			}
		}
		if dirty && !time.Now().Before(retryAt) {
			wants, skipped := userspaceWants(u.self, u.stack, u.src.State(), nodeIPs(u.members()), u.bind, fenced)
			for _, s := range skipped {
				u.log.Warn("shared addresses: a node has no address; the proxy leaves the port out", "what", s)
			}
			if err := u.reconcile(ctx, &wg, running, wants); err != nil {
				failed++
				wait := min(applyBackoff<<min(failed-1, 6), applyBackoffMx)
				retryAt = time.Now().Add(wait)
				if failed%10 == 1 {
					u.log.Error("shared addresses: user-space proxy not started; retrying", "err", err.Error(), "attempt", failed, "retry_in", wait)
				}
			} else {
				failed, dirty = 0, false
			}
			u.stats.setServing(len(running))
		}
		var retry <-chan time.Time
		if dirty {
			retry = time.After(time.Until(retryAt))
		}
		select {
		case <-ctx.Done():
			// The proxies' contexts are ctx: they close what they relay.
			return nil
		case <-changes:
			dirty = true
		case <-tick.C:
		case <-retry:
		}
	}
}

// reconcile drains the proxies that are not wanted (or bind elsewhere),
// retables those that stay and starts the missing ones. It returns the
// first error of a start; the others are still tried.
func (u *userspacePath) reconcile(ctx context.Context, wg *sync.WaitGroup, running map[usKey]*usProxy, wants map[usKey]usWant) error {
	for _, k := range slices.SortedFunc(maps.Keys(running), cmpKey) {
		r := running[k]
		if w, ok := wants[k]; ok && w.bind == r.bind {
			continue
		}
		r.p.Drain()
		delete(running, k)
		u.log.Info("shared addresses: no longer owner; the user-space proxy drains", "addr", k.vip, "port", k.port)
	}
	var first error
	for _, k := range slices.SortedFunc(maps.Keys(wants), cmpKey) {
		w := wants[k]
		if r, ok := running[k]; ok {
			if err := r.p.SetTable(w.table); err != nil {
				u.log.Error("shared addresses: user-space proxy table refused", "addr", k.vip, "port", k.port, "err", err.Error())
			}
			continue
		}
		p, err := userspace.New(userspace.Config{Table: w.table, Log: u.plog.With("addr", k.vip, "port", k.port)})
		if err == nil {
			var ln net.Listener
			if ln, err = u.listen(ctx, w.bind); err == nil {
				r := &usProxy{key: k, bind: w.bind, p: p, done: make(chan struct{})}
				running[k] = r
				u.stats.add(p)
				wg.Go(func() {
					defer close(r.done)
					defer u.stats.end(p)
					if err := p.Serve(ctx, ln); err != nil {
						u.log.Error("shared addresses: user-space proxy stopped", "addr", k.vip, "port", k.port, "err", err.Error())
					}
				})
				u.log.Info("shared addresses: now owner; the user-space proxy listens", "addr", k.vip, "port", k.port, "on", w.bind)
				continue
			}
		}
		if first == nil {
			first = fmt.Errorf("%v port %d on %v: %w", k.vip, k.port, w.bind, err)
		}
	}
	return first
}

func cmpKey(a, b usKey) int {
	if c := a.vip.Compare(b.vip); c != 0 {
		return c
	}
	return int(a.port) - int(b.port)
}

// newUserspacePath is the fallback data path of the agent's own stack
// over sa's state; its metrics go to the agent's registry.
func (a *Agent) newUserspacePath(sa *addrsvc.Service, bind netip.Addr) *userspacePath {
	st := &usStats{live: map[*userspace.Proxy]bool{}}
	a.registry.MustRegister(newUSCollector(st))
	return &userspacePath{
		self:    a.cfg.ID,
		stack:   sa.Stack(),
		bind:    bind,
		src:     sa.Source(),
		quorate: a.inContact,
		caughtUp: func() bool {
			st := a.cluster.Status()
			return st.QuorumContact && st.Leader != 0 && st.Applied >= st.Commit
		},
		members: func() []membership.Member { return a.cluster.View().Members },
		log:     logkey.WithSubsystem(a.log, "sharedaddr/userspace"),
		plog:    a.log,
		listen:  listenFreebind,
		stats:   st,
	}
}

// selfIP is this node's own address as the view gives it: what an owner's
// proxy dials for this node.
func (a *Agent) selfIP() (netip.Addr, bool) {
	ip, ok := nodeIPs(a.cluster.View().Members)[a.cfg.ID]
	return ip, ok
}

// agentPorts are the TCP ports the agent itself listens on: a socket of
// its own is never an application's.
func (a *Agent) agentPorts() []uint16 {
	var out []uint16
	for _, ad := range []net.Addr{a.mesh.Addr(), a.httpAddr()} {
		if t, ok := ad.(*net.TCPAddr); ok {
			out = append(out, uint16(t.Port))
		}
	}
	return out
}

func (a *Agent) httpAddr() net.Addr {
	if a.http == nil {
		return nil
	}
	return a.http.Addr()
}
