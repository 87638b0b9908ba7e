package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/dhcp/dhcptab"
	"github.com/corralhq/corral/dhcp/netio"
	"github.com/corralhq/corral/dsvc"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Errors of New and Run.
var (
	ErrNoOwner   = errors.New("dhcp/server: no owner address")
	ErrNoNetwork = errors.New("dhcp/server: network container missing")
)

// Server answers DHCP and BOOTP requests from the records of a dsvc
// datastore. Handle is its netio.Handler; it is safe for many workers at
// once: each network has its own offer cache and lock, the dhcptab is an
// immutable Table swapped whole by Reload, and nothing else is shared
// but atomic counters.
type Server struct {
	cfg        Config
	reg        *dsvc.Registry
	log        *slog.Logger
	now        func() time.Time
	owners     map[netip.Addr]bool // the SIPs this server allocates
	ownerList  []netip.Addr
	serverIDs  map[netip.Addr]bool // every network's option 54 value
	listenAddr netip.Addr          // invalid for a wildcard listen address
	nets       []*network
	ifNets     sync.Map // ingress interface index → *network (nil: none); filled on first use
	tab        atomic.Pointer[dhcptab.Table]
	dt         *dsvc.Handle // the dhcptab; nil when the datastore has none; guarded by tabs.mu
	tabs       tabState     // Reload's and Rescan's (rescan.go)
	probe      *prober      // nil without Config.ICMPProbe (probe.go)
	ctr        counters
	met        *metrics // ACK latency, the sockets served (metrics.go)

	view   atomic.Pointer[ownership] // the membership view applied (takeover.go); nil: only our own addresses
	viewMu sync.Mutex                // serialises SetView and ClearView
}

// network is one served network: its container, its offer cache.
type network struct {
	prefix   netip.Prefix
	name     string // dotted network: the container's and the network macro's name
	ifIndex  int    // 0: match by the interface's addresses
	serverID netip.Addr
	// sid and mask are option 54's and option 1's values, encoded once:
	// every reply shares them (read-only).
	sid, mask []byte
	owners    []netip.Addr // the owner addresses whose records are searched
	h         *dsvc.Handle
	offers    *offers
	refillMu  sync.Mutex // one store scan for free records at a time
}

// Options of New beyond the Config.
type Options struct {
	Log *slog.Logger     // nil: discard
	Now func() time.Time // nil: time.Now (tests)
}

// New opens the datastore's dhcptab and the configured networks'
// containers on reg and builds the option table. A missing dhcptab is
// served as an empty one (every reply has only the server's own
// options); a missing network container is ErrNoNetwork.
func New(ctx context.Context, cfg Config, reg *dsvc.Registry, opts Options) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:       cfg,
		reg:       reg,
		log:       log.With("subsystem", "dhcp/server"),
		now:       opts.Now,
		owners:    map[netip.Addr]bool{},
		serverIDs: map[netip.Addr]bool{},
		met:       newMetrics(),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if ap, err := netip.ParseAddrPort(cfg.Listen); err == nil && !ap.Addr().IsUnspecified() {
		s.listenAddr = ap.Addr().Unmap()
	}
	if err := s.resolveOwners(); err != nil {
		return nil, err
	}
	if len(cfg.Cluster.Peers) > 0 && s.self() == 0 {
		return nil, fmt.Errorf("%w: cluster: no peer has this server's owners %v", ErrConfig, s.ownerList)
	}
	ds := cfg.Datastore.DS()
	if s.cfg.Workers <= 0 {
		s.cfg.Workers = DefaultWorkersLogged
		for _, mi := range reg.Modules() {
			if mi.Name == ds.Module {
				s.cfg.Workers = DefaultWorkers(mi.Synch)
			}
		}
	}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	for _, nc := range cfg.Networks {
		p := netip.MustParsePrefix(nc.Prefix)
		n := &network{prefix: p, name: p.Addr().String(), offers: newOffers(cfg.OfferTTL.Duration)}
		if nc.Interface != "" {
			ifi, err := net.InterfaceByName(nc.Interface)
			if err != nil {
				return nil, fmt.Errorf("%w: network %s: interface %q: %v", ErrConfig, p, nc.Interface, err)
			}
			n.ifIndex = ifi.Index
			if s.listenAddr.IsValid() {
				// Linux delivers a datagram to 255.255.255.255 only to
				// sockets bound to the wildcard (or that address): the
				// broadcasts of this interface's clients never arrive.
				s.log.Warn("listening on a specific address: broadcasting clients on this network are not heard; listen on \":67\" to serve them",
					"network", p.String(), "interface", nc.Interface, "listen", cfg.Listen)
			}
		}
		for _, o := range s.ownerList {
			if p.Contains(o) {
				n.owners = append(n.owners, o)
			}
		}
		if len(n.owners) == 0 {
			// Relayed networks: the server's addresses are elsewhere.
			n.owners = s.ownerList
		}
		switch {
		case nc.ServerID != "":
			n.serverID = netip.MustParseAddr(nc.ServerID)
		case p.Contains(n.owners[0]):
			n.serverID = n.owners[0]
		case s.listenAddr.IsValid() && s.owners[s.listenAddr]:
			n.serverID = s.listenAddr
		default:
			n.serverID = s.ownerList[0]
		}
		s.serverIDs[n.serverID] = true
		n.sid, n.mask = n.serverID.AsSlice(), net.CIDRMask(p.Bits(), 32)
		h, err := reg.Open(ctx, ds, dsvc.Network, n.name, dsvc.Read|dsvc.Write)
		if err != nil {
			if errors.Is(err, dsvc.ErrNoTable) {
				return nil, fmt.Errorf("%w: %s: %v", ErrNoNetwork, p, err)
			}
			return nil, fmt.Errorf("dhcp/server: open network %s: %w", p, err)
		}
		n.h = h
		if got := h.Prefix(); got.IsValid() && got != p {
			return nil, fmt.Errorf("%w: network %s: the container is %s", ErrConfig, p, got)
		}
		s.nets = append(s.nets, n)
	}
	if err := s.Reload(ctx); err != nil {
		return nil, err
	}
	if err := s.startProbe(); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// resolveOwners fills the owner set: the configured addresses, else the
// listen address, else every IPv4 address of the host's interfaces.
func (s *Server) resolveOwners() error {
	add := func(a netip.Addr) {
		a = a.Unmap()
		if a.Is4() && !s.owners[a] {
			s.owners[a] = true
			s.ownerList = append(s.ownerList, a)
		}
	}
	switch {
	case len(s.cfg.Owners) > 0:
		for _, o := range s.cfg.Owners {
			add(netip.MustParseAddr(o))
		}
	case s.listenAddr.IsValid():
		add(s.listenAddr)
	default:
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			return fmt.Errorf("dhcp/server: interface addresses: %w", err)
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(ipn.IP); ok && !ip.Unmap().IsLoopback() {
					add(ip)
				}
			}
		}
	}
	if len(s.ownerList) == 0 {
		return ErrNoOwner
	}
	return nil
}

// Reload rereads the dhcptab and flushes the offer caches, as in.dhcpd
// does on SIGHUP. Macro errors are logged; the rest of the table is used.
func (s *Server) Reload(ctx context.Context) error {
	s.tabs.mu.Lock()
	defer s.tabs.mu.Unlock()
	if s.dt == nil {
		h, err := s.reg.Open(ctx, s.cfg.Datastore.DS(), dsvc.DHCPTab, "dhcptab", dsvc.Read)
		switch {
		case errors.Is(err, dsvc.ErrNoTable):
			s.log.Warn("no dhcptab: replies carry only the server's options")
		case err != nil:
			return fmt.Errorf("dhcp/server: open dhcptab: %w", err)
		default:
			s.dt = h
		}
	}
	var recs []dsvc.DTRecord
	if s.dt != nil {
		var err error
		recs, err = s.dt.LookupDT(ctx, false, 0, -1, nil)
		if err != nil {
			return fmt.Errorf("dhcp/server: read dhcptab: %w", err)
		}
	}
	t, errs := dhcptab.Build(recs)
	for _, err := range errs {
		s.log.Warn("dhcptab", "err", err)
	}
	s.tab.Store(t)
	s.tabs.sum = tabSum(recs)
	for _, n := range s.nets {
		n.offers.flush()
	}
	return nil
}

// Close closes the containers.
func (s *Server) Close() error {
	var errs []error
	for _, n := range s.nets {
		if n.h != nil {
			errs = append(errs, n.h.Close())
		}
	}
	if s.dt != nil {
		errs = append(errs, s.dt.Close())
	}
	if s.probe != nil {
		errs = append(errs, s.probe.p.close())
	}
	return errors.Join(errs...)
}

// NetConfig is the socket layer's configuration from cfg.
func (c Config) NetConfig() netio.Config {
	return netio.Config{Addr: c.Listen, Sockets: c.Sockets, Batch: c.Batch, RcvBuf: c.RcvBuf,
		Workers: c.Workers, Queue: c.Queue, MaxWait: c.MaxWait.Duration, MaxHops: c.MaxHops,
		Timeout: c.RequestTimeout.Duration}
}

// Run listens on cfg.Listen and serves s until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ns, err := netio.Listen(s.cfg.NetConfig(), s.log)
	if err != nil {
		return fmt.Errorf("dhcp/server: listen %s: %w", s.cfg.Listen, err)
	}
	s.WatchSockets(ns)
	defer s.startRescan(ctx)()
	s.log.Info("serving", "addr", ns.Addr().String(), "networks", len(s.nets), "owners", fmt.Sprint(s.ownerList))
	err = ns.Serve(ctx, s.Handle)
	// How well reads and writes batched: the figures a throughput run
	// needs beside the server's own counters.
	st := ns.Stats()
	s.log.Info("sockets", "received", st.Received, "read_calls", st.Batches, "sent", st.Sent,
		"send_calls", st.SendCalls, "dropped", st.Dropped())
	return err
}

// Handle is the netio.Handler: it parses the packet, answers it from the
// store, and sends the reply before it returns (an ACK after its lease
// is written). ctx bounds its store calls: NetConfig's Timeout is
// RequestTimeout, so that a store that cannot answer (a node cut off from
// the majority: its writes wait for a quorum) does not hold the worker
// past the time the client waits before it retransmits anyway.
func (s *Server) Handle(ctx context.Context, p *netio.Packet, r netio.Reply) {
	if p.Socket != 0 && s.broadcast(p.Dst) {
		// The kernel spreads only unicast datagrams over the SO_REUSEPORT
		// sockets: a broadcast arrives as a copy on every one. Socket 0
		// answers it; else a DISCOVER got one OFFER per socket, each of
		// another address, and a DECLINE was written once per socket.
		s.ctr.duplicates.Add(1)
		return
	}
	if m, rep := s.answer(ctx, p); rep != nil {
		s.send(p, r, m, rep)
		putReply(rep)
	}
}

// answer parses p and returns it with its reply, nil for none.
func (s *Server) answer(ctx context.Context, p *netio.Packet) (*dhcpv4.DHCPv4, *dhcpv4.DHCPv4) {
	m, err := parsePacket(p.Data)
	if err != nil {
		s.ctr.parseErrors.Add(1)
		return nil, nil
	}
	if m.OpCode != dhcpv4.OpcodeBootRequest {
		s.ctr.ignored.Add(1)
		return nil, nil
	}
	mt := m.MessageType()
	s.ctr.received[mt&15].Add(1)
	cid := clientID(m)
	if len(cid) == 0 || len(cid) > dsvc.MaxCIDLen || (len(cid) == 1 && cid[0] == 0) {
		s.ctr.ignored.Add(1)
		return nil, nil
	}
	n := s.networkOf(m, p)
	if n == nil {
		s.ctr.noNetwork.Add(1)
		return nil, nil
	}
	req := &request{m: m, cid: cid, key: string(cid), n: n, now: s.now()}
	var rep *dhcpv4.DHCPv4
	switch mt {
	case dhcpv4.MessageTypeNone:
		rep = s.bootp(ctx, req)
	case dhcpv4.MessageTypeDiscover:
		rep = s.discover(ctx, req)
	case dhcpv4.MessageTypeRequest:
		rep = s.request(ctx, req)
	case dhcpv4.MessageTypeDecline:
		s.decline(ctx, req)
	case dhcpv4.MessageTypeRelease:
		s.release(ctx, req)
	case dhcpv4.MessageTypeInform:
		rep = s.inform(req)
	default:
		s.ctr.ignored.Add(1)
	}
	return m, rep
}

// request is one packet being answered.
type request struct {
	m   *dhcpv4.DHCPv4
	cid []byte
	key string // string(cid): the offer cache's key
	n   *network
	now time.Time
}

// clientID is option 61, else htype followed by chaddr (in.dhcpd's
// default client id).
func clientID(m *dhcpv4.DHCPv4) []byte {
	if v := m.Options.Get(dhcpv4.OptionClientIdentifier); len(v) > 0 {
		return v
	}
	if len(m.ClientHWAddr) == 0 {
		return nil
	}
	return append([]byte{byte(m.HWType)}, m.ClientHWAddr...)
}

// networkOf is the network a request belongs to: giaddr's when relayed,
// else ciaddr's when the client has an address in a served network, else
// the ingress interface's (in.dhcpd's and ISC dhcpd's order). A relayed
// client renews by unicast straight to the server, not through the
// relay: its request arrives on the server's own segment, whose network
// is not the client's.
func (s *Server) networkOf(m *dhcpv4.DHCPv4, p *netio.Packet) *network {
	if gi := addr4(m.GatewayIPAddr); gi.IsValid() && !gi.IsUnspecified() {
		return s.networkFor(gi)
	}
	if ci := addr4(m.ClientIPAddr); ci.IsValid() && !ci.IsUnspecified() {
		if n := s.networkFor(ci); n != nil {
			return n
		}
	}
	if p.IfIndex > 0 {
		return s.ifNetwork(p.IfIndex)
	}
	return nil
}

func (s *Server) networkFor(a netip.Addr) *network {
	var best *network
	for _, n := range s.nets {
		if n.prefix.Contains(a) && (best == nil || n.prefix.Bits() > best.prefix.Bits()) {
			best = n
		}
	}
	return best
}

// ifNetwork maps an interface to the network configured for it, or the
// one an address of the interface is in.
func (s *Server) ifNetwork(ifIndex int) *network {
	if v, ok := s.ifNets.Load(ifIndex); ok {
		return v.(*network)
	}
	var found *network
	for _, n := range s.nets {
		if n.ifIndex == ifIndex {
			found = n
			break
		}
	}
	if found == nil {
		if ifi, err := net.InterfaceByIndex(ifIndex); err == nil {
			addrs, _ := ifi.Addrs()
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok {
					if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
						if n := s.networkFor(ip.Unmap()); n != nil && n.ifIndex == 0 {
							found = n
							break
						}
					}
				}
			}
		}
	}
	s.ifNets.Store(ifIndex, found)
	return found
}

// broadcast says whether dst is the limited broadcast address or the
// directed broadcast address of a served network.
func (s *Server) broadcast(dst netip.Addr) bool {
	if !dst.IsValid() {
		return false
	}
	if dst == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return true
	}
	for _, n := range s.nets {
		if n.prefix.Bits() < 31 && dst == lastAddr(n.prefix) {
			return true
		}
	}
	return false
}

// lastAddr is the highest address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= 1<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func addr4(ip net.IP) netip.Addr {
	if ip4 := ip.To4(); ip4 != nil {
		return netip.AddrFrom4([4]byte(ip4))
	}
	return netip.Addr{}
}

// send addresses the reply as RFC 2131 §4.1 says: through the relay
// (giaddr:67), to ciaddr:68 when the client has an address, else a
// broadcast out of the ingress interface. A NAK is broadcast unless
// relayed (and then with the broadcast flag, for the relay).
func (s *Server) send(p *netio.Packet, r netio.Reply, req, rep *dhcpv4.DHCPv4) {
	nak := rep.MessageType() == dhcpv4.MessageTypeNak
	var to netip.AddrPort
	ifIndex := 0
	gi, ci := addr4(req.GatewayIPAddr), addr4(req.ClientIPAddr)
	switch {
	case gi.IsValid() && !gi.IsUnspecified():
		to = netip.AddrPortFrom(gi, uint16(s.cfg.RelayPort))
		if nak {
			rep.SetBroadcast()
		}
	case !nak && ci.IsValid() && !ci.IsUnspecified():
		to = netip.AddrPortFrom(ci, uint16(s.cfg.ClientPort))
	default:
		to = netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), uint16(s.cfg.ClientPort))
		ifIndex = p.IfIndex
	}
	buf := packetPool.Get().(*[]byte)
	*buf = appendPacket((*buf)[:0], rep)
	err := r.Send(to, ifIndex, *buf)
	packetPool.Put(buf)
	if err != nil {
		s.ctr.sendErrors.Add(1)
		s.log.Debug("send", "to", to.String(), "err", err)
		return
	}
	s.ctr.sent[rep.MessageType()&15].Add(1)
	if rep.MessageType() == dhcpv4.MessageTypeAck && req.MessageType() == dhcpv4.MessageTypeRequest {
		s.met.observeACK(p.Received)
	}
}
