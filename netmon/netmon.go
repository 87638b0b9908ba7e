package netmon

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/corralhq/corral/events"
)

// Poll is how often the interfaces are scanned.
const Poll = time.Second

// Watch watches the interface that carries one address.
type Watch struct {
	host string // the bind host; empty or unspecified means all interfaces
	scan func() []events.Interface

	mu    sync.Mutex // guards state
	state []events.Interface
}

// New watches the interfaces holding host (an IP; empty or unspecified for
// every interface with an address).
func New(host string) *Watch {
	w := &Watch{host: host}
	w.scan = w.scanSystem
	return w
}

// List returns the interfaces as last scanned.
func (w *Watch) List() []events.Interface {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]events.Interface(nil), w.state...)
}

// Run publishes INTERFACE_ADDED for each interface found and then a change
// whenever one appears, comes up, goes down or disappears, until ctx is
// done.
func (w *Watch) Run(ctx context.Context, publish func(events.Event)) {
	t := time.NewTicker(Poll)
	defer t.Stop()
	for {
		w.rescan(publish)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Watch) rescan(publish func(events.Event)) {
	now := w.scan()
	w.mu.Lock()
	before := w.state
	w.state = now
	w.mu.Unlock()
	for _, ev := range Changes(before, now) {
		publish(ev)
	}
}

// scanSystem returns the interfaces cluster traffic uses: the one holding
// the bind address, or every interface with an address when bound to all.
func (w *Watch) scanSystem() []events.Interface {
	want, _ := netip.ParseAddr(w.host)
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []events.Interface
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		// Up and running: administratively up with a carrier.
		up := ifc.Flags&net.FlagUp != 0 && ifc.Flags&net.FlagRunning != 0
		out = append(out, matchAddrs(ifc.Name, up, addrs, want)...)
	}
	return out
}

// matchAddrs returns the interface entries of one interface's addresses
// that an agent bound to want watches (every one when want is not set),
// each once.
func matchAddrs(name string, up bool, addrs []net.Addr, want netip.Addr) []events.Interface {
	var out []events.Interface
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, _ := netip.AddrFromSlice(ipn.IP)
		ip = ip.Unmap()
		ones, _ := ipn.Mask.Size()
		match := !want.IsValid() || want.IsUnspecified() || ip == want
		// 127.0.0.0/8 is all on lo: an agent bound to 127.0.0.2 uses it,
		// whichever loopback addresses lo holds (several map to one).
		if !match && want.IsLoopback() && ip.IsLoopback() && ip.Is4() == want.Is4() {
			match, ip = true, want
		}
		i := events.Interface{Name: name, Addr: netip.PrefixFrom(ip, ones), Up: up}
		if match && !slices.Contains(out, i) {
			out = append(out, i)
		}
	}
	return out
}

// Changes returns the events that tell the change from before to now.
func Changes(before, now []events.Interface) []events.Event {
	find := func(l []events.Interface, x events.Interface) (events.Interface, bool) {
		for _, y := range l {
			if y.Name == x.Name && y.Addr == x.Addr {
				return y, true
			}
		}
		return events.Interface{}, false
	}
	var out []events.Event
	ev := func(d events.Descriptor, i events.Interface) {
		out = append(out, events.Event{Desc: d, Data: &events.Connectivity{Interface: i, Interfaces: now}})
	}
	for _, i := range now {
		old, ok := find(before, i)
		switch {
		case i.Up && (!ok || !old.Up):
			ev(events.CSInterfaceAdded, i)
		case !i.Up && ok && old.Up:
			ev(events.CSInterfaceFailed, i)
		}
	}
	for _, i := range before {
		if _, ok := find(now, i); !ok && i.Up {
			i.Up = false
			ev(events.CSInterfaceFailed, i)
		}
	}
	return out
}
