package kernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/corralhq/corral/sharedaddr"
)

// Dataplane installs plans into one network stack.
type Dataplane struct {
	ns     *os.File // the namespace's nsfs file; nil for the process's own
	ifname string
	log    *slog.Logger

	// mu serialises Apply, Drop and Close; it guards nl and applied.
	mu      sync.Mutex
	nl      *netlink.Handle
	applied *applied // nil until an Apply's nft batch, and after Drop

	// The shared interface as Open found it, for Announce, which must not
	// wait for mu: an Apply of a new table holds it for a large part of a
	// second, and a takeover's gratuitous ARPs would wait behind it.
	ifindex int
	mac     net.HardwareAddr

	nsMu   sync.RWMutex // guards ns and closed against Close
	closed bool
}

// Open returns the data path of the stack whose nsfs file is path
// (/run/netns/NAME, /proc/PID/ns/net; "" for the process's own), with
// ifname its shared interface. log may be nil.
func Open(path, ifname string, log *slog.Logger) (*Dataplane, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(ifname)+len(addrLabel) > unix.IFNAMSIZ-1 {
		return nil, fmt.Errorf("%w: interface name %q too long for its address label", ErrPlan, ifname)
	}
	d := &Dataplane{ifname: ifname, log: log.With("subsystem", "sharedaddr/kernel")}
	var err error
	if path == "" {
		d.nl, err = netlink.NewHandle()
	} else {
		if d.ns, err = os.Open(path); err != nil {
			return nil, fmt.Errorf("kernel: open stack: %w", err)
		}
		d.nl, err = netlink.NewHandleAt(netns.NsHandle(d.ns.Fd()))
	}
	if err != nil {
		d.closeNS()
		return nil, fmt.Errorf("kernel: netlink: %w", err)
	}
	link, err := d.nl.LinkByName(ifname)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("kernel: interface %s: %w", ifname, err)
	}
	d.ifindex, d.mac = link.Attrs().Index, link.Attrs().HardwareAddr
	return d, nil
}

// Close releases the data path's handles; the kernel state stays.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nl != nil {
		d.nl.Close()
		d.nl = nil
	}
	return d.closeNS()
}

func (d *Dataplane) closeNS() error {
	d.nsMu.Lock()
	defer d.nsMu.Unlock()
	d.closed = true
	if d.ns == nil {
		return nil
	}
	err := d.ns.Close()
	d.ns = nil
	return err
}

// Apply makes the stack hold exactly what p says: sysctls first (so a new
// address is never answered for by ARP where it must not be), then the
// routes and rules for every node, the nft table in one batch, the
// addresses, and last the removal of what p no longer names. Applying the
// same plan again changes nothing; applying it over any state corral left
// (a crash half way) converges.
func (d *Dataplane) Apply(ctx context.Context, p Plan) error {
	if err := p.Validate(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nl == nil {
		return fmt.Errorf("kernel: apply: %w", net.ErrClosed)
	}
	link, err := d.nl.LinkByName(d.ifname)
	if err != nil {
		return fmt.Errorf("kernel: interface %s: %w", d.ifname, err)
	}
	lo, err := d.nl.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("kernel: lo: %w", err)
	}
	if err := d.sysctls(p); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	owns := p.owns()
	marks := p.marks()
	wantTables := map[int]bool{}
	if owns {
		for _, n := range p.Nodes {
			if i := marks[n.ID]; i != 0 {
				wantTables[TableBase+int(i)] = true
				rt := &netlink.Route{
					LinkIndex: link.Attrs().Index, Table: TableBase + int(i), Gw: net.IP(n.IP.AsSlice()),
					Flags: int(netlink.FLAG_ONLINK), Protocol: RTProto, Family: netlink.FAMILY_V4,
				}
				if err := d.nl.RouteReplace(rt); err != nil {
					return fmt.Errorf("kernel: route table %d via %v: %w", rt.Table, n.IP, err)
				}
			}
		}
		if err := d.addRules(wantTables); err != nil {
			return err
		}
		if err := d.moveLocal(); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := d.nft(p, marks); err != nil {
		return err
	}
	if err := d.addrs(p, link, lo); err != nil {
		return err
	}
	if !owns {
		if err := d.restoreLocal(); err != nil {
			return err
		}
	}
	if err := d.delRules(wantTables); err != nil {
		return err
	}
	return d.delRoutes(wantTables)
}

// Drop removes everything corral installed in the stack, the addresses
// first: fencing, where an owner cut off from the majority must stop
// answering ARP for its addresses before the majority picks a new owner.
func (d *Dataplane) Drop(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nl == nil {
		return fmt.Errorf("kernel: drop: %w", net.ErrClosed)
	}
	var errs []error
	if link, err := d.nl.LinkByName(d.ifname); err != nil {
		errs = append(errs, fmt.Errorf("kernel: interface %s: %w", d.ifname, err))
	} else if lo, err := d.nl.LinkByName("lo"); err != nil {
		errs = append(errs, fmt.Errorf("kernel: lo: %w", err))
	} else {
		errs = append(errs, d.addrs(Plan{}, link, lo))
	}
	errs = append(errs, ctx.Err(), d.dropTable(), d.restoreLocal(), d.delRules(nil), d.delRoutes(nil))
	return errors.Join(errs...)
}

// sysctls sets what the plan's roles need. Values are only ever raised
// to the setting corral needs, never reset: they are harmless without the
// addresses.
func (d *Dataplane) sysctls(p Plan) error {
	set := map[string]string{}
	for _, a := range p.Addrs {
		if a.holds(p.Self) {
			set["net/ipv4/conf/"+d.ifname+"/arp_ignore"] = "1"
			set["net/ipv4/conf/"+d.ifname+"/arp_announce"] = "2"
		}
		if a.Owner {
			// The kernel sends a redirect when either is on: a client
			// that took one would bypass the dispatch.
			set["net/ipv4/conf/all/send_redirects"] = "0"
			set["net/ipv4/conf/"+d.ifname+"/send_redirects"] = "0"
			set["net/ipv4/ip_forward"] = "1"
		}
	}
	if len(set) == 0 {
		return nil
	}
	return d.in(func() error {
		for k, v := range set {
			cur, err := os.ReadFile("/proc/sys/" + k)
			if err != nil {
				return fmt.Errorf("kernel: sysctl %s: %w", k, err)
			}
			if strings.TrimSpace(string(cur)) == v {
				continue
			}
			if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0); err != nil {
				return fmt.Errorf("kernel: sysctl %s=%s: %w", k, v, err)
			}
		}
		return nil
	})
}

// addrs makes the labelled addresses equal to the plan's: the owner's on
// the shared interface, a serving non-owner's on lo. New ones are added
// before stale ones go, so an address moving from lo to the interface
// (a serving node becoming owner) is local at every instant and its
// connections live on.
func (d *Dataplane) addrs(p Plan, link, lo netlink.Link) error {
	type want struct {
		link  netlink.Link
		label string
	}
	desired := map[string]want{} // "ip@ifindex"
	key := func(ip netip.Addr, l netlink.Link) string { return fmt.Sprintf("%v@%d", ip, l.Attrs().Index) }
	for _, a := range p.Addrs {
		switch {
		case a.Owner:
			desired[key(a.VIP, link)] = want{link, d.ifname + addrLabel}
		case a.holds(p.Self):
			desired[key(a.VIP, lo)] = want{lo, "lo" + addrLabel}
		}
	}
	have := map[string]bool{}
	var stale []struct {
		link netlink.Link
		addr netlink.Addr
	}
	for _, l := range []netlink.Link{link, lo} {
		list, err := d.nl.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return fmt.Errorf("kernel: addresses of %s: %w", l.Attrs().Name, err)
		}
		for _, ad := range list {
			ip, _ := netip.AddrFromSlice(ad.IP.To4())
			k := key(ip, l)
			w, ok := desired[k]
			switch {
			case ok:
				have[k] = true
				if ad.Label != w.label {
					d.log.Warn("shared address held without corral's label; kept", "addr", ip, "link", l.Attrs().Name)
				}
			case ad.Label == l.Attrs().Name+addrLabel:
				stale = append(stale, struct {
					link netlink.Link
					addr netlink.Addr
				}{l, ad})
			}
		}
	}
	for _, a := range p.Addrs {
		for _, l := range []netlink.Link{link, lo} {
			k := key(a.VIP, l)
			w, ok := desired[k]
			if !ok || have[k] {
				continue
			}
			ad := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(a.VIP.AsSlice()), Mask: net.CIDRMask(32, 32)}, Label: w.label}
			if err := d.nl.AddrAdd(w.link, ad); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("kernel: add %v to %s: %w", a.VIP, w.link.Attrs().Name, err)
			}
			have[k] = true
		}
	}
	for _, s := range stale {
		if err := d.nl.AddrDel(s.link, &s.addr); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("kernel: remove %v from %s: %w", s.addr.IP, s.link.Attrs().Name, err)
		}
	}
	return nil
}

func fwRule(table int) *netlink.Rule {
	r := netlink.NewRule()
	r.Family = netlink.FAMILY_V4
	r.Priority = RulePref
	r.Table = table
	r.Mark = MarkBase + uint32(table-TableBase)
	mask := uint32(0xffffffff)
	r.Mask = &mask
	r.Protocol = RTProto
	return r
}

func (d *Dataplane) rules() ([]netlink.Rule, error) {
	rs, err := d.nl.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("kernel: rules: %w", err)
	}
	return rs, nil
}

// addRules adds the fwmark rule of every wanted table that lacks one.
func (d *Dataplane) addRules(tables map[int]bool) error {
	rs, err := d.rules()
	if err != nil {
		return err
	}
	have := map[int]bool{}
	for _, r := range rs {
		if r.Priority == RulePref && r.Protocol == RTProto && r.Mark == MarkBase+uint32(r.Table-TableBase) {
			have[r.Table] = true
		}
	}
	for t := range tables {
		if !have[t] {
			if err := d.nl.RuleAdd(fwRule(t)); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("kernel: rule fwmark table %d: %w", t, err)
			}
		}
	}
	return nil
}

// delRules removes corral's fwmark rules for tables not wanted.
func (d *Dataplane) delRules(tables map[int]bool) error {
	rs, err := d.rules()
	if err != nil {
		return err
	}
	for _, r := range rs {
		if r.Priority != RulePref || r.Protocol != RTProto || tables[r.Table] {
			continue
		}
		del := netlink.NewRule()
		del.Family, del.Priority, del.Table, del.Mark, del.Mask = netlink.FAMILY_V4, r.Priority, r.Table, r.Mark, r.Mask
		if err := d.nl.RuleDel(del); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("kernel: delete rule table %d: %w", r.Table, err)
		}
	}
	return nil
}

func localRule(pref int, proto uint8) *netlink.Rule {
	r := netlink.NewRule()
	r.Family = netlink.FAMILY_V4
	r.Priority = pref
	r.Table = unix.RT_TABLE_LOCAL
	r.Protocol = proto
	return r
}

// localRules reports whether the kernel's local rule is at priority 0 and
// whether corral's is at LocalPref.
func (d *Dataplane) localRules() (at0, moved bool, err error) {
	rs, err := d.rules()
	if err != nil {
		return false, false, err
	}
	for _, r := range rs {
		if r.Table == unix.RT_TABLE_LOCAL && r.Priority == 0 && r.Mark == 0 {
			at0 = true
		}
		if r.Table == unix.RT_TABLE_LOCAL && r.Priority == LocalPref && r.Protocol == RTProto {
			moved = true
		}
	}
	return at0, moved, nil
}

// moveLocal puts the local rule behind the fwmark rules: the new one is
// added before the old one goes.
func (d *Dataplane) moveLocal() error {
	at0, moved, err := d.localRules()
	if err != nil {
		return err
	}
	if !moved {
		if err := d.nl.RuleAdd(localRule(LocalPref, RTProto)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("kernel: add local rule at %d: %w", LocalPref, err)
		}
	}
	if at0 {
		if err := d.nl.RuleDel(localRule(0, 0)); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("kernel: remove local rule at 0: %w", err)
		}
		d.log.Info("local rule moved behind the dispatch rules", "pref", LocalPref)
	}
	return nil
}

// restoreLocal undoes moveLocal: the rule at 0 is back before corral's
// goes.
func (d *Dataplane) restoreLocal() error {
	at0, moved, err := d.localRules()
	if err != nil {
		return err
	}
	if !moved {
		return nil
	}
	if !at0 {
		if err := d.nl.RuleAdd(localRule(0, unix.RTPROT_KERNEL)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("kernel: restore local rule at 0: %w", err)
		}
	}
	if err := d.nl.RuleDel(localRule(LocalPref, RTProto)); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("kernel: remove local rule at %d: %w", LocalPref, err)
	}
	return nil
}

// delRoutes removes corral's routes in tables not wanted.
func (d *Dataplane) delRoutes(tables map[int]bool) error {
	rs, err := d.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC, Protocol: RTProto},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("kernel: routes: %w", err)
	}
	for _, r := range rs {
		if r.Table < TableBase || r.Table > TableBase+255 || tables[r.Table] {
			continue
		}
		if err := d.nl.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("kernel: delete route table %d: %w", r.Table, err)
		}
	}
	return nil
}

// in runs fn on a thread inside the stack's namespace (sysctls under
// /proc/sys/net are those of the opening thread's namespace). A thread
// that cannot return is never handed back to the scheduler.
func (d *Dataplane) in(fn func() error) error {
	d.nsMu.RLock()
	defer d.nsMu.RUnlock()
	if d.closed {
		return fmt.Errorf("kernel: %w", net.ErrClosed)
	}
	if d.ns == nil {
		return fn()
	}
	return sharedaddr.InNamespace(d.ns, fn)
}
