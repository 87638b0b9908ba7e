package kernel

import (
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/sharedaddr/ctl"
)

func TestValidate(t *testing.T) {
	vip := netip.MustParseAddr("10.251.0.100")
	good := Plan{Self: 1, Nodes: []Node{{ID: 1}, {ID: 2, IP: netip.MustParseAddr("10.251.0.2")}},
		Addrs: []Addr{{VIP: vip, Policy: ctl.Weighted, Owner: true, Serve: true,
			Services: []Service{{Proto: TCP, Port: 80, Table: []uint64{1, 2, 1}}}}}}
	if err := good.Validate(); err != nil {
		t.Fatalf("good plan: %v", err)
	}
	withIdent := good
	withIdent.Addrs = []Addr{good.Addrs[0]}
	withIdent.Addrs[0].Ident = Ident{Base: 61440, Len: 4096}
	if err := withIdent.Validate(); err != nil {
		t.Fatalf("plan with the last ident block: %v", err)
	}
	for name, mod := range map[string]func(p *Plan){
		"unknown node":   func(p *Plan) { p.Addrs[0].Services[0].Table[1] = 3 },
		"empty table":    func(p *Plan) { p.Addrs[0].Services[0].Table = nil },
		"ipv6":           func(p *Plan) { p.Addrs[0].VIP = netip.MustParseAddr("fd00::1") },
		"twice":          func(p *Plan) { p.Addrs = append(p.Addrs, p.Addrs[0]) },
		"no policy":      func(p *Plan) { p.Addrs[0].Policy = 0 },
		"proto":          func(p *Plan) { p.Addrs[0].Services[0].Proto = 1 },
		"no next hop":    func(p *Plan) { p.Nodes[1].IP = netip.Addr{} },
		"ident overflow": func(p *Plan) { p.Addrs[0].Ident = Ident{Base: 65000, Len: 4096} },
		"ident no len":   func(p *Plan) { p.Addrs[0].Ident = Ident{Base: 4096} },
		"bad exception": func(p *Plan) {
			p.Addrs[0].Exceptions = []Exception{{Client: netip.MustParseAddrPort("10.0.0.1:5"), Node: 9}}
		},
		"affinity < 0":   func(p *Plan) { p.Addrs[0].Affinity = -time.Second },
		"affinity > u32": func(p *Plan) { p.Addrs[0].Affinity = MaxAffinity + time.Millisecond },
	} {
		p := good
		p.Nodes = append([]Node(nil), good.Nodes...)
		p.Addrs = []Addr{good.Addrs[0]}
		p.Addrs[0].Services = []Service{{Proto: TCP, Port: 80, Table: []uint64{1, 2, 1}}}
		mod(&p)
		if err := p.Validate(); !errors.Is(err, ErrPlan) {
			t.Errorf("%s: Validate = %v, want ErrPlan", name, err)
		}
	}
}

// Port groups are the services with equal tables; only Sticky and
// StickyWild addresses with a timeout of at least 1 ms keep affinity.
func TestGroups(t *testing.T) {
	a := Addr{Policy: ctl.Sticky, Affinity: time.Second, Services: []Service{
		{Proto: TCP, Port: 80, Table: []uint64{1, 2, 3}},
		{Proto: TCP, Port: 81, Table: []uint64{1, 2}},
		{Proto: UDP, Port: 80, Table: []uint64{1, 2, 3}},
		{Proto: TCP, Port: 443, Table: []uint64{1, 2}},
		{Proto: TCP, Port: 444, Table: []uint64{2, 1}},
	}}
	if got, want := a.groups(), [][]int{{0, 2}, {1, 3}, {4}}; !reflect.DeepEqual(got, want) {
		t.Errorf("groups = %v, want %v", got, want)
	}
	for _, c := range []struct {
		policy ctl.Policy
		d      time.Duration
		want   bool
	}{{ctl.Sticky, time.Second, true}, {ctl.StickyWild, time.Millisecond, true},
		{ctl.Weighted, time.Second, false}, {ctl.Sticky, 0, false}, {ctl.Sticky, time.Microsecond, false}} {
		a := Addr{Policy: c.policy, Affinity: c.d}
		if a.affine() != c.want {
			t.Errorf("%v with %v: affine = %v", c.policy, c.d, !c.want)
		}
	}
	// A plan without affinity has the fingerprints it had before the
	// field existed: adding it rebuilt no table.
	p := Plan{Self: 1, Addrs: []Addr{{VIP: netip.MustParseAddr("10.0.0.1"), Policy: ctl.Sticky}}}
	b, _ := json.Marshal(p.Addrs[0])
	if strings.Contains(string(b), "Affinity") {
		t.Errorf("an address without affinity marshals as %s", b)
	}
}

// The kernel agreement is checked by the netns tests, connection by
// connection; here: the key is what the policy says, and buckets spread.
func TestBucket(t *testing.T) {
	const m = 251
	a := netip.MustParseAddr("10.251.0.4")
	if Bucket(ctl.Sticky, netip.AddrPortFrom(a, 1), m) != Bucket(ctl.Sticky, netip.AddrPortFrom(a, 2), m) {
		t.Error("sticky: the port changed the bucket")
	}
	if Bucket(ctl.StickyWild, netip.AddrPortFrom(a, 1), m) != Bucket(ctl.Sticky, netip.AddrPortFrom(a, 1), m) {
		t.Error("sticky-wild and sticky hash different keys")
	}
	count := make([]int, m)
	for p := range 251 * 40 {
		b := Bucket(ctl.Weighted, netip.AddrPortFrom(a, uint16(10000+p)), m)
		if b < 0 || b >= m {
			t.Fatalf("bucket %d out of range", b)
		}
		count[b]++
	}
	for b, c := range count {
		if c < 10 || c > 80 { // mean 40; a bucket this far off means a broken hash
			t.Errorf("bucket %d holds %d of %d ports", b, c, m*40)
		}
	}
}

// The frame of a gratuitous ARP, byte by byte (RFC 826 layout).
func TestGARPFrame(t *testing.T) {
	mac := []byte{2, 0, 0, 0, 0, 1}
	got := garp(mac, netip.MustParseAddr("10.251.0.100"))
	want := []byte{
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06,
		0, 1, 0x08, 0x00, 6, 4, 0, 1,
		2, 0, 0, 0, 0, 1, 10, 251, 0, 100,
		0, 0, 0, 0, 0, 0, 10, 251, 0, 100,
	}
	if string(got) != string(want) {
		t.Errorf("garp frame\n got % x\nwant % x", got, want)
	}
}
