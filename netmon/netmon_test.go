package netmon

import (
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/corralhq/corral/events"
)

func iface(name, addr string, up bool) events.Interface {
	return events.Interface{Name: name, Addr: netip.MustParsePrefix(addr), Up: up}
}

func TestChanges(t *testing.T) {
	eth := iface("eth0", "10.1.0.5/24", true)
	ethDown := iface("eth0", "10.1.0.5/24", false)
	lo := iface("lo", "127.0.0.1/8", true)
	for _, c := range []struct {
		name        string
		before, now []events.Interface
		want        []events.Descriptor
		failed      []bool // Up of each event's interface
	}{
		{"first scan", nil, []events.Interface{eth, lo}, []events.Descriptor{events.CSInterfaceAdded, events.CSInterfaceAdded}, []bool{true, true}},
		{"no change", []events.Interface{eth}, []events.Interface{eth}, nil, nil},
		{"goes down", []events.Interface{eth}, []events.Interface{ethDown}, []events.Descriptor{events.CSInterfaceFailed}, []bool{false}},
		{"comes up", []events.Interface{ethDown}, []events.Interface{eth}, []events.Descriptor{events.CSInterfaceAdded}, []bool{true}},
		{"disappears", []events.Interface{eth, lo}, []events.Interface{lo}, []events.Descriptor{events.CSInterfaceFailed}, []bool{false}},
		{"found down", nil, []events.Interface{ethDown}, nil, nil},
		{"down one disappears", []events.Interface{ethDown}, nil, nil, nil},
	} {
		got := Changes(c.before, c.now)
		if len(got) != len(c.want) {
			t.Errorf("%s: %d events %v, want %v", c.name, len(got), got, c.want)
			continue
		}
		for i, ev := range got {
			cs := ev.Connectivity()
			if ev.Desc != c.want[i] || ev.Seq != 0 || cs == nil || cs.Interface.Up != c.failed[i] || len(cs.Interfaces) != len(c.now) {
				t.Errorf("%s: event %d = %v %+v, want %v", c.name, i, ev, cs, c.want[i])
			}
		}
	}
}

func TestWatchPublishesOnRescan(t *testing.T) {
	eth := iface("eth0", "10.1.0.5/24", true)
	state := []events.Interface{eth}
	w := New("10.1.0.5")
	w.scan = func() []events.Interface { return state }
	var got []events.Event
	pub := func(ev events.Event) { got = append(got, ev) }
	w.rescan(pub)
	state = []events.Interface{iface("eth0", "10.1.0.5/24", false)}
	w.rescan(pub)
	if len(got) != 2 || got[0].Desc != events.CSInterfaceAdded || got[1].Desc != events.CSInterfaceFailed {
		t.Fatalf("events %v, want ADDED then FAILED", got)
	}
	if l := w.List(); len(l) != 1 || l[0].Up {
		t.Errorf("List() = %v, want eth0 down", l)
	}
}

// TestScanSystemFindsLoopback: an agent bound to 127.0.0.2 watches the
// loopback interface, which holds all of 127.0.0.0/8, and sees it up.
func TestScanSystemFindsLoopback(t *testing.T) {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(ifs, func(i net.Interface) bool { return i.Flags&net.FlagLoopback != 0 && i.Flags&net.FlagUp != 0 }) {
		t.Skip("no loopback interface up on this machine")
	}
	got := New("127.0.0.2").scanSystem()
	if len(got) != 1 || got[0].Addr.Addr() != netip.MustParseAddr("127.0.0.2") || !got[0].Up {
		t.Fatalf("scan for 127.0.0.2 = %+v, want the loopback interface, up, with 127.0.0.2", got)
	}
}

// TestMatchAddrsSeveralLoopback: lo with several loopback addresses
// (127.0.0.1/8 and an added 127.0.1.1/8) is one interface entry for an
// agent bound to 127.0.0.2, not one per address.
func TestMatchAddrsSeveralLoopback(t *testing.T) {
	addrs := []net.Addr{
		&net.IPNet{IP: net.ParseIP("127.0.0.1").To4(), Mask: net.CIDRMask(8, 32)},
		&net.IPNet{IP: net.ParseIP("127.0.1.1").To4(), Mask: net.CIDRMask(8, 32)},
		&net.IPNet{IP: net.ParseIP("10.0.0.2").To4(), Mask: net.CIDRMask(32, 32)},
		&net.IPNet{IP: net.IPv6loopback, Mask: net.CIDRMask(128, 128)},
	}
	got := matchAddrs("lo", true, addrs, netip.MustParseAddr("127.0.0.2"))
	want := []events.Interface{{Name: "lo", Addr: netip.MustParsePrefix("127.0.0.2/8"), Up: true}}
	if !slices.Equal(got, want) {
		t.Fatalf("matchAddrs = %+v, want %+v", got, want)
	}
	if got := matchAddrs("lo", true, addrs, netip.Addr{}); len(got) != 4 {
		t.Fatalf("unbound: %+v, want all four addresses", got)
	}
}
