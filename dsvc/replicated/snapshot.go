package replicated

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/rsm"
)

// Key space (SPEC.md, "State"). Keys are big-endian, so the Tx's byte
// order is the order the reads and the snapshot want.
const (
	tagLoc       = 'l'
	tagContainer = 'c'
	tagDT        = 't'
	tagDN        = 'n'
)

func locKey(loc string) []byte { return append([]byte{tagLoc}, loc...) }

func containerPrefix(loc string) []byte {
	b := binary.BigEndian.AppendUint16([]byte{tagContainer}, uint16(len(loc)))
	return append(b, loc...)
}

func containerKey(loc string, kind dsvc.Kind, name string) []byte {
	return append(append(containerPrefix(loc), byte(kind)), name...)
}

// containerValue: id u64 LE, then the network (4 bytes + bits; 0xFF none).
func containerValue(id uint64, net netip.Prefix) []byte {
	b := binary.LittleEndian.AppendUint64(nil, id)
	if net.IsValid() {
		a := net.Addr().As4()
		return append(append(b, a[:]...), byte(net.Bits()))
	}
	return append(b, 0, 0, 0, 0, prefixNone)
}

func recPrefix(tag byte, id uint64) []byte { return binary.BigEndian.AppendUint64([]byte{tag}, id) }

// dtRecKey ends the key with NUL and the type: keys are printable ASCII,
// so byte order is (Key, Type) order.
func dtRecKey(id uint64, key string, typ dsvc.DTType) []byte {
	return append(append(append(recPrefix(tagDT, id), key...), 0), byte(typ))
}

func dnRecKey(id uint64, cip uint32) []byte {
	return binary.BigEndian.AppendUint32(recPrefix(tagDN, id), cip)
}

// Record values are the records' command encoding.
func dtRecValue(r *dsvc.DTRecord) []byte {
	b, err := appendDT(nil, r)
	if err != nil {
		panic(err) // parsed or restored within the limits
	}
	return b
}

func dnRecValue(r *dsvc.DNRecord) []byte {
	b, err := appendDN(nil, r)
	if err != nil {
		panic(err)
	}
	return b
}

// ErrState is returned (wrapped) by Load for a key space it cannot read;
// ErrSnapshot by Restore for a snapshot it refuses.
var (
	ErrState    = errors.New("replicated: bad state")
	ErrSnapshot = errors.New("replicated: bad snapshot")
)

func parseDT(b []byte) (dsvc.DTRecord, error) {
	d := &dec{b: b}
	r := d.dt()
	return r, d.end()
}

func parseDN(b []byte) (dsvc.DNRecord, error) {
	d := &dec{b: b}
	r := d.dn()
	return r, d.end()
}

func parseNet(b []byte) (netip.Prefix, bool) {
	a := netip.AddrFrom4([4]byte(b[:4]))
	switch {
	case b[4] == prefixNone && a == netip.AddrFrom4([4]byte{}):
		return netip.Prefix{}, true
	case b[4] <= 32:
		return netip.PrefixFrom(a, int(b[4])), true
	}
	return netip.Prefix{}, false
}

// Load implements rsm.Loader: it rebuilds the mirror from the Tx.
func (m *Machine) Load(tx rsm.Tx) error {
	st, err := load(tx)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.st = st
	m.mu.Unlock()
	return nil
}

func load(tx rsm.Tx) (state, error) {
	st := newState()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrState, fmt.Sprintf(format, args...))
	}
	err := tx.Scan([]byte{tagLoc}, func(k, v []byte) error {
		if !bytes.Equal(v, []byte{1}) {
			return bad("location %q: value %x", k[1:], v)
		}
		st.locs[string(k[1:])] = newLocation()
		return nil
	})
	if err != nil {
		return st, err
	}
	dts, dns := map[uint64]*dtTable{}, map[uint64]*dnTable{}
	err = tx.Scan([]byte{tagContainer}, func(k, v []byte) error {
		if len(k) < 4 || len(k) < 4+int(binary.BigEndian.Uint16(k[1:])) || len(v) != 13 {
			return bad("container key %x", k)
		}
		n := int(binary.BigEndian.Uint16(k[1:]))
		loc, kind, name := string(k[3:3+n]), dsvc.Kind(k[3+n]), string(k[4+n:])
		l := st.locs[loc]
		id := binary.LittleEndian.Uint64(v)
		net, ok := parseNet(v[8:])
		switch {
		case l == nil:
			return bad("container %q of no location %q", name, loc)
		case !ok || id == 0 || dts[id] != nil || dns[id] != nil:
			return bad("container %q: value %x", name, v)
		case kind == dsvc.DHCPTab:
			dts[id] = newDT(id)
			l.dt[name] = dts[id]
		case kind == dsvc.Network:
			dns[id] = newDN(id, net)
			l.dn[name] = dns[id]
		default:
			return bad("container %q of kind %d", name, kind)
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	err = tx.Scan([]byte{tagDT}, func(k, v []byte) error {
		var t *dtTable
		if len(k) >= 9 {
			t = dts[binary.BigEndian.Uint64(k[1:])]
		}
		r, err := parseDT(v)
		if t == nil || err != nil || !bytes.Equal(k, dtRecKey(t.id, r.Key, r.Type)) {
			return bad("dhcptab record %x (%v)", k, err)
		}
		t.put(&r, true)
		return nil
	})
	if err != nil {
		return st, err
	}
	err = tx.Scan([]byte{tagDN}, func(k, v []byte) error {
		var t *dnTable
		if len(k) == 13 {
			t = dns[binary.BigEndian.Uint64(k[1:])]
		}
		r, err := parseDN(v)
		if t == nil || err != nil || !bytes.Equal(k, dnRecKey(t.id, ip4(r.CIP))) {
			return bad("network record %x (%v)", k, err)
		}
		t.put(&r, true)
		return nil
	})
	if err != nil {
		return st, err
	}
	for _, t := range dts {
		t.reorder()
	}
	for _, t := range dns {
		t.reorder()
	}
	return st, nil
}

// Snapshot section (SPEC.md, "Snapshot"): a header, then items, each tag
// u8, length u32 LE, body; tag 0 ends it.
const (
	snapshotVersion = 1
	itemEnd         = 0
	itemLocation    = 1
	itemContainer   = 2
	itemDT          = 3
	itemDN          = 4
	maxItem         = 1 << 17
)

type itemWriter struct {
	w   *bufio.Writer
	hdr [5]byte
}

func (iw *itemWriter) item(tag byte, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	iw.hdr[0] = tag
	binary.LittleEndian.PutUint32(iw.hdr[1:], uint32(n))
	if _, err := iw.w.Write(iw.hdr[:]); err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := iw.w.Write(p); err != nil {
			return err
		}
	}
	return nil
}

type containerRow struct {
	kind  dsvc.Kind
	name  string
	value []byte // id, network
}

// Snapshot implements rsm.Machine: it streams the Tx, location by
// location, container by container, record by record; only the names of
// one location's containers are held at once.
func (m *Machine) Snapshot(tx rsm.Tx, w io.Writer) error {
	iw := &itemWriter{w: bufio.NewWriterSize(w, 64<<10)}
	if _, err := iw.w.Write([]byte{snapshotVersion, 0, 0, 0}); err != nil {
		return err
	}
	var locs []string
	err := tx.Scan([]byte{tagLoc}, func(k, _ []byte) error {
		locs = append(locs, string(k[1:]))
		return nil
	})
	if err != nil {
		return err
	}
	for _, loc := range locs {
		if err := iw.item(itemLocation, []byte(loc)); err != nil {
			return err
		}
		pre := containerPrefix(loc)
		var rows []containerRow
		err := tx.Scan(pre, func(k, v []byte) error {
			if len(k) <= len(pre) || len(v) != 13 {
				return fmt.Errorf("%w: container key %x", ErrState, k)
			}
			rows = append(rows, containerRow{dsvc.Kind(k[len(pre)]), string(k[len(pre)+1:]), bytes.Clone(v)})
			return nil
		})
		if err != nil {
			return err
		}
		for _, c := range rows {
			if err := iw.item(itemContainer, []byte{byte(c.kind), 0}, c.value, []byte(c.name)); err != nil {
				return err
			}
			tag, item := byte(tagDT), byte(itemDT)
			if c.kind == dsvc.Network {
				tag, item = tagDN, itemDN
			}
			err := tx.Scan(recPrefix(tag, binary.LittleEndian.Uint64(c.value)), func(_, v []byte) error {
				return iw.item(item, v)
			})
			if err != nil {
				return err
			}
		}
	}
	if err := iw.w.WriteByte(itemEnd); err != nil {
		return err
	}
	return iw.w.Flush()
}

// itemReader reads a snapshot section item by item.
type itemReader struct {
	r   *bufio.Reader
	off int64
}

func (ir *itemReader) bad(format string, args ...any) error {
	return fmt.Errorf("%w: offset %d: %s", ErrSnapshot, ir.off, fmt.Sprintf(format, args...))
}

func (ir *itemReader) full(b []byte, what string) error {
	n, err := io.ReadFull(ir.r, b)
	ir.off += int64(n)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return ir.bad("truncated in %s", what)
	}
	return err
}

// next returns the next item's tag and body (a new slice: the Tx keeps it).
func (ir *itemReader) next() (byte, []byte, error) {
	var hdr [5]byte
	if err := ir.full(hdr[:1], "item tag"); err != nil {
		return 0, nil, err
	}
	if hdr[0] == itemEnd {
		return itemEnd, nil, nil
	}
	if err := ir.full(hdr[1:], "item length"); err != nil {
		return 0, nil, err
	}
	n := binary.LittleEndian.Uint32(hdr[1:])
	if n > maxItem {
		return 0, nil, ir.bad("item of %d bytes (at most %d)", n, maxItem)
	}
	body := make([]byte, n)
	return hdr[0], body, ir.full(body, "item body")
}

// Restore implements rsm.Machine: the Tx is empty (the Mux empties it); it
// checks and writes the snapshot into it item by item, then rebuilds the
// mirror. An empty section is the empty state. On an error the mirror is
// unchanged.
func (m *Machine) Restore(tx rsm.Tx, r io.Reader) error {
	if err := restore(tx, r); err != nil {
		return err
	}
	return m.Load(tx)
}

func restore(tx rsm.Tx, rd io.Reader) error {
	ir := &itemReader{r: bufio.NewReaderSize(rd, 64<<10)}
	var hdr [4]byte
	n, err := io.ReadFull(ir.r, hdr[:])
	ir.off += int64(n)
	switch {
	case n == 0 && errors.Is(err, io.EOF):
		return nil
	case err != nil && !errors.Is(err, io.ErrUnexpectedEOF):
		return err
	case err != nil:
		return ir.bad("truncated header")
	case hdr[0] != snapshotVersion:
		return ir.bad("version %d (this build reads %d)", hdr[0], snapshotVersion)
	case hdr[1]|hdr[2]|hdr[3] != 0:
		return ir.bad("reserved header bytes not 0")
	}
	var (
		loc, lastLoc  string
		haveLoc       bool
		lastContainer []byte // within loc
		kind          dsvc.Kind
		id            uint64
		net           netip.Prefix
		lastRec       []byte // within the container
		ids           = map[uint64]bool{}
	)
	for {
		start := ir.off
		tag, body, err := ir.next()
		if err != nil {
			return err
		}
		end := ir.off
		ir.off = start // errors below name the item's offset
		var k []byte
		switch tag {
		case itemEnd:
			ir.off = end
			if _, err := ir.r.ReadByte(); err != io.EOF {
				return ir.bad("data after the end")
			}
			return nil
		case itemLocation:
			loc = string(body)
			if err := checkName("location", loc); err != nil || len(loc) > MaxLocation {
				return ir.bad("location %q: %v", loc, err)
			}
			if haveLoc && loc <= lastLoc {
				return ir.bad("location %q after %q", loc, lastLoc)
			}
			haveLoc, lastLoc, lastContainer, id = true, loc, nil, 0
			k = locKey(loc)
			body = []byte{1}
		case itemContainer:
			if !haveLoc || len(body) < 15 || body[1] != 0 {
				return ir.bad("container item of %d bytes, or before a location", len(body))
			}
			kind, id = dsvc.Kind(body[0]), binary.LittleEndian.Uint64(body[2:])
			name := string(body[15:])
			var ok bool
			net, ok = parseNet(body[10:15])
			switch {
			case kind != dsvc.DHCPTab && kind != dsvc.Network:
				return ir.bad("container %q of kind %d", name, kind)
			case checkName("container name", name) != nil || len(name) > MaxContainer:
				return ir.bad("container name %q", name)
			case !ok || kind == dsvc.DHCPTab && net.IsValid() || kind == dsvc.Network && checkNet(net) != nil:
				return ir.bad("container %q: network %x", name, body[10:15])
			case id == 0 || ids[id]:
				return ir.bad("container %q: id %d zero or repeated", name, id)
			}
			ids[id] = true
			k = containerKey(loc, kind, name)
			if lastContainer != nil && bytes.Compare(k, lastContainer) <= 0 {
				return ir.bad("container %q out of order", name)
			}
			lastContainer, lastRec = k, nil
			body = body[2:15]
		case itemDT:
			if id == 0 || kind != dsvc.DHCPTab {
				return ir.bad("dhcptab record outside a dhcptab container")
			}
			r, err := parseDT(body)
			if err == nil {
				err = dsvc.ValidateDT(&r, true)
			}
			if err != nil || r.Sig == 0 {
				return ir.bad("dhcptab record: %v (signature %#x)", err, r.Sig)
			}
			k = dtRecKey(id, r.Key, r.Type)
		case itemDN:
			if id == 0 || kind != dsvc.Network {
				return ir.bad("network record outside a network container")
			}
			r, err := parseDN(body)
			if err == nil {
				err = dsvc.ValidateDN(&r, net, true)
			}
			if err != nil || r.Sig == 0 {
				return ir.bad("network record: %v (signature %#x)", err, r.Sig)
			}
			k = dnRecKey(id, ip4(r.CIP))
		default:
			return ir.bad("item tag %d", tag)
		}
		if tag == itemDT || tag == itemDN {
			if lastRec != nil && bytes.Compare(k, lastRec) <= 0 {
				return ir.bad("record out of order")
			}
			lastRec = k
		}
		ir.off = end
		if err := tx.Put(k, body); err != nil {
			return err
		}
	}
}
