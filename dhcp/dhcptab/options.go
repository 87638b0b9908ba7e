package dhcptab

import (
	"encoding/binary"
	"encoding/hex"
	"net"
	"slices"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Inputs name the macros of one reply.
type Inputs struct {
	// ClientClass is the client's class identifier (option 60, as
	// in.dhcpd uses it): the class macro's name and the class Vendor
	// symbols are matched against. "" none.
	ClientClass string
	Network     string // the dotted network, e.g. "10.0.0.0": the network macro's name
	RecordMacro string // the network record's Macro (the server or IP address macro)
	ClientID    []byte // the client id; its macro is named by its uppercase hex
	// BOOTP replies skip the class macro and vendor options.
	BOOTP bool
}

// Options is the combined option set of one reply. The zero value is
// empty.
type Options struct {
	t  *Table
	lv [4][]item // the expanded macros combined, in order
	// refs point into lv (level<<24 | index), sorted by key, one per
	// symbol, no deletions, vendor items of other classes left out.
	// Indices rather than copies keep the per-packet allocation small and
	// free of pointers.
	refs   []uint32
	vendor []byte // option 43 from the Vendor symbols, nil none
}

func (o *Options) at(r uint32) *item { return &o.lv[r>>24][r&0xffffff] }

// Options combines the macros in.dhcpd's order: the client class macro,
// the network macro, the record's macro, the client id macro; a later one
// overrides (or, with sym=, deletes) what an earlier one set. Macros that
// do not exist are skipped. Each macro was expanded at Build, so this is a
// merge of at most four sorted lists.
func (t *Table) Options(in Inputs) Options {
	o := Options{t: t}
	levels := &o.lv
	n := 0
	add := func(name string) {
		if f, ok := t.macros[name]; ok && len(f.items) > 0 {
			levels[n] = f.items
			n++
		}
	}
	if !in.BOOTP && in.ClientClass != "" {
		add(in.ClientClass)
	}
	if in.Network != "" {
		add(in.Network)
	}
	if in.RecordMacro != "" {
		add(in.RecordMacro)
	}
	if len(in.ClientID) > 0 && len(in.ClientID) <= 64 {
		var buf [128]byte
		hexUpper(buf[:], in.ClientID)
		if f, ok := t.macros[string(buf[:2*len(in.ClientID)])]; ok && len(f.items) > 0 {
			levels[n] = f.items
			n++
		}
	}
	total := 0
	for _, l := range levels[:n] {
		total += len(l)
	}
	if total == 0 {
		return o
	}
	o.refs = make([]uint32, 0, total)
	var pos [4]int
	vendorSize := 0
	for {
		// The smallest key at the heads; the last level holding it wins.
		best, win := -1, -1
		for i := range n {
			if pos[i] < len(levels[i]) {
				k := int(levels[i][pos[i]].key)
				if best < 0 || k < best {
					best, win = k, i
				} else if k == best {
					win = i
				}
			}
		}
		if best < 0 {
			break
		}
		ref := uint32(win)<<24 | uint32(pos[win])
		it := &levels[win][pos[win]]
		for i := range n {
			if pos[i] < len(levels[i]) && int(levels[i][pos[i]].key) == best {
				pos[i]++
			}
		}
		if it.op == Delete {
			continue
		}
		if it.vend {
			if in.BOOTP || !slices.Contains(t.syms[it.key].Vendor, in.ClientClass) {
				continue
			}
			vendorSize += 2 + len(it.val)
		}
		o.refs = append(o.refs, ref)
	}
	if vendorSize > 0 {
		o.vendor = make([]byte, 0, vendorSize)
		for _, r := range o.refs {
			if it := o.at(r); it.vend {
				o.vendor = append(o.vendor, t.syms[it.key].Code, byte(len(it.val)))
				o.vendor = append(o.vendor, it.val...)
			}
		}
	}
	return o
}

func hexUpper(dst, src []byte) {
	const digits = "0123456789ABCDEF"
	for i, b := range src {
		dst[2*i], dst[2*i+1] = digits[b>>4], digits[b&0xf]
	}
}

// ClientIDMacro returns the name of the macro of a client id.
func ClientIDMacro(cid []byte) string {
	b := make([]byte, hex.EncodedLen(len(cid)))
	hexUpper(b, cid)
	return string(b)
}

// find returns the item of key k.
func (o Options) find(k uint16) (item, bool) {
	i, ok := slices.BinarySearchFunc(o.refs, k, func(r uint32, k uint16) int { return int(o.at(r).key) - int(k) })
	if !ok {
		return item{}, false
	}
	return *o.at(o.refs[i]), true
}

// Get returns the encoded value of option code (43: the vendor
// sub-options of the client's class). The bytes are shared with the
// Table: do not modify them.
func (o Options) Get(code uint8) ([]byte, bool) {
	if code == dhcpv4.OptionVendorSpecificInformation.Code() && o.vendor != nil {
		return o.vendor, true
	}
	if o.t == nil || o.t.optKey[code] < 0 {
		return nil, false
	}
	it, ok := o.find(uint16(o.t.optKey[code]))
	if !ok || it.op != Set {
		return nil, false
	}
	return it.val, true
}

// Value returns the encoded value of a symbol by name (Field symbols
// too); false when it is not set or valueless.
func (o Options) Value(name string) ([]byte, bool) {
	if o.t == nil {
		return nil, false
	}
	k, ok := o.t.byName[name]
	if !ok {
		return nil, false
	}
	it, ok := o.find(k)
	if !ok || it.op != Set {
		return nil, false
	}
	return it.val, true
}

// Has reports whether a symbol is present, with or without a value.
func (o Options) Has(name string) bool {
	if o.t == nil {
		return false
	}
	k, ok := o.t.byName[name]
	if !ok {
		return false
	}
	_, ok = o.find(k)
	return ok
}

// Codes returns the option codes set, ascending (43 included when vendor
// sub-options apply).
func (o Options) Codes() []uint8 {
	var out []uint8
	for _, r := range o.refs {
		if it := o.at(r); int(it.key) < o.t.nOpt && it.op == Set {
			out = append(out, o.t.syms[it.key].Code)
		}
	}
	if o.vendor != nil {
		i, _ := slices.BinarySearch(out, 43)
		out = slices.Insert(out, i, 43)
	}
	return out
}

// LeaseTime returns LeaseTim (option 51). 0xffffffff seconds is an
// infinite lease.
func (o Options) LeaseTime() (time.Duration, bool) {
	v, ok := o.Get(dhcpv4.OptionIPAddressLeaseTime.Code())
	if !ok || len(v) != 4 {
		return 0, false
	}
	return time.Duration(binary.BigEndian.Uint32(v)) * time.Second, true
}

// LeaseNeg reports whether the client may negotiate its lease time.
func (o Options) LeaseNeg() bool { return o.t != nil && o.flag(o.t.kLeaseNeg) }

// EchoVC reports whether the reply echoes the client's class identifier.
func (o Options) EchoVC() bool { return o.t != nil && o.flag(o.t.kEchoVC) }

// HostnameLookup reports whether Hostname is present without a value:
// the server sends the name the name service has for the address.
func (o Options) HostnameLookup() bool {
	if o.t == nil {
		return false
	}
	it, ok := o.find(o.t.kHostname)
	return ok && it.op == Flag
}

func (o Options) flag(k uint16) bool {
	_, ok := o.find(k)
	return ok
}

// Option space of a reply (RFC 2131 §2, RFC 2132 §9.10): a DHCP message
// of 576 octets (the least every client accepts) leaves 312 for the
// options field, the magic cookie and the End option included.
const (
	MinMessageSize = 576
	headerOverhead = 20 + 8 + 236 + 4 + 1 // IP, UDP, BOOTP, cookie, End
)

// optionSize is the wire size of an option value, split as RFC 3396 does.
func optionSize(n int) int {
	if n == 0 {
		return 2
	}
	return n + 2*((n+254)/255)
}

// Apply sets the options on a reply. Options already on m are kept
// (the server's own 53, 54, 51…) and count against the space. requested
// is the client's parameter request list (option 55): those options go
// first, in its order, then the rest by code, each only if it fits in
// maxMessage octets (the client's option 57; below 576 or 0 means 576).
// The options field is not overloaded into sname/file (option 52): those
// carry BootSrvN/BootFile. Field symbols fill siaddr, sname and file when
// m has none. It returns the codes left out for want of space.
//
// The dhcpv4 codec writes options sorted by code, so "first" decides
// which options are sent, not their order in the packet.
func (o Options) Apply(m *dhcpv4.DHCPv4, requested []uint8, maxMessage int) (omitted []uint8) {
	if m.Options == nil {
		m.Options = make(dhcpv4.Options)
	}
	room := max(maxMessage, MinMessageSize) - headerOverhead
	for _, v := range m.Options {
		room -= optionSize(len(v))
	}
	put := func(code uint8) {
		if code == 0 || code == 255 {
			return
		}
		if _, ok := m.Options[code]; ok {
			return
		}
		v, ok := o.Get(code)
		if !ok {
			return
		}
		if sz := optionSize(len(v)); sz <= room {
			m.Options[code] = v
			room -= sz
		} else if !slices.Contains(omitted, code) {
			omitted = append(omitted, code)
		}
	}
	for _, c := range requested {
		put(c)
	}
	for _, c := range o.Codes() {
		put(c)
	}
	if o.t == nil {
		return omitted
	}
	if v, ok := o.Value(SymBootSrvA); ok && (m.ServerIPAddr == nil || m.ServerIPAddr.IsUnspecified()) {
		m.ServerIPAddr = net.IP(slices.Clone(v))
	}
	if v, ok := o.Value(SymBootSrvN); ok && m.ServerHostName == "" {
		m.ServerHostName = string(v)
	}
	if v, ok := o.Value(SymBootFile); ok && m.BootFileName == "" {
		m.BootFileName = string(v)
	}
	return omitted
}
