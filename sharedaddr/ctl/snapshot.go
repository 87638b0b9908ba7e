package ctl

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"
	"time"

	"github.com/corralhq/corral/rsm"
)

// Tx keys (SPEC.md, "Key space"). Keys are big endian so that a Scan
// walks them in order; values are little endian.
var keyView = []byte("v")

const (
	prefixAddr     = 'a'
	prefixListener = 'n'
	prefixLease    = 'l'
	prefixGen      = 'g'
	prefixReport   = 'r'
	prefixExcept   = 'x'
	prefixOwner    = 'o'
)

// prefixes is the key space's order: an address before what refers to it.
var prefixes = []byte{'v', prefixAddr, prefixOwner, prefixGen, prefixListener, prefixLease, prefixReport, prefixExcept}

func appendKeyAddr(b []byte, a Addr) []byte {
	b = binary.BigEndian.AppendUint64(b, a.Stack)
	ip := a.IP.As16()
	if !a.IP.IsValid() {
		ip = [16]byte{}
	}
	return append(b, ip[:]...)
}

func addrKey(a Addr) []byte { return appendKeyAddr([]byte{prefixAddr}, a) }

func listenerKey(l Listener) []byte {
	b := appendKeyAddr([]byte{prefixListener}, l.Addr)
	b = append(b, l.Proto)
	b = binary.BigEndian.AppendUint16(b, l.Port)
	return binary.BigEndian.AppendUint64(b, l.Node)
}

func leaseTxKey(k leaseKey) []byte {
	b := appendKeyAddr([]byte{prefixLease, byte(k.kind)}, k.addr)
	b = append(b, k.proto)
	return binary.BigEndian.AppendUint16(b, k.index)
}

func genKey(a Addr) []byte { return appendKeyAddr([]byte{prefixGen}, a) }

func ownerKey(a Addr) []byte { return appendKeyAddr([]byte{prefixOwner}, a) }

func reportTxKey(k reportKey) []byte {
	return binary.BigEndian.AppendUint64(appendKeyAddr([]byte{prefixReport}, k.addr), k.node)
}

func exceptTxKey(k exceptKey) []byte {
	b := appendKeyAddr([]byte{prefixExcept}, k.addr)
	b = append(b, k.flow.Proto)
	b = binary.BigEndian.AppendUint16(b, k.flow.Port)
	ip := k.flow.Client.Addr().As16()
	b = append(b, ip[:]...)
	return binary.BigEndian.AppendUint16(b, k.flow.Client.Port())
}

func leaseValue(node uint64) []byte { return binary.LittleEndian.AppendUint64(nil, node) }

func addrValue(as *addrState) []byte {
	le := binary.LittleEndian
	b := []byte{byte(as.policy)}
	b = le.AppendUint32(b, affinityMS(as.affinity))
	b = le.AppendUint16(b, uint16(len(as.weights)))
	for _, w := range as.weights {
		b = le.AppendUint32(le.AppendUint64(b, w.Node), w.Weight)
	}
	return b
}

func viewValue(v view) []byte {
	le := binary.LittleEndian
	b := le.AppendUint64(nil, v.instance)
	b = le.AppendUint32(b, uint32(len(v.members)))
	for _, m := range v.members {
		b = le.AppendUint64(le.AppendUint64(b, m.id), m.bornOn)
	}
	return b
}

// keyAddr reads a key's stack and IP (big endian stack, 16 bytes IP).
func keyAddr(r *reader) Addr {
	s := binary.BigEndian.Uint64(r.take(8))
	return Addr{Stack: s, IP: r.ip()}
}

// decode adds one key and value to st; it is the check Restore and Load
// make of every record.
func (st *state) decode(k, v []byte) error {
	if len(k) == 0 {
		return fmt.Errorf("%w: empty key", ErrField)
	}
	kr, vr := &reader{b: k[1:]}, &reader{b: v}
	switch {
	case bytes.Equal(k, keyView):
		nv := view{instance: vr.u64()}
		n := int(vr.u32())
		if vr.err == nil && len(vr.b) != 16*n {
			return fmt.Errorf("%w: view of %d members in %d bytes", ErrField, n, len(vr.b))
		}
		for range n {
			nv.members = append(nv.members, member{id: vr.u64(), bornOn: vr.u64()})
		}
		if err := vr.end(); err != nil {
			return err
		}
		st.view = nv
		return nil
	case k[0] == prefixAddr:
		a := keyAddr(kr)
		as := &addrState{policy: Policy(vr.u8()), affinity: time.Duration(vr.u32()) * time.Millisecond}
		n := int(vr.u16())
		if vr.err == nil && len(vr.b) != 12*n {
			return fmt.Errorf("%w: %d weights in %d bytes", ErrField, n, len(vr.b))
		}
		for range n {
			as.weights = append(as.weights, Weight{Node: vr.u64(), Weight: vr.u32()})
		}
		if err := errors.Join(kr.end(), vr.end()); err != nil {
			return err
		}
		if !a.IP.IsValid() || as.policy < Weighted || as.policy > StickyWild {
			return fmt.Errorf("%w: address record %x", ErrField, k)
		}
		st.addrs[a] = as
		return nil
	case k[0] == prefixListener:
		l := Listener{Addr: keyAddr(kr), Proto: kr.u8()}
		l.Port = binary.BigEndian.Uint16(kr.take(2))
		l.Node = binary.BigEndian.Uint64(kr.take(8))
		if err := errors.Join(kr.end(), (&reader{b: v, err: nil}).expect(1)); err != nil {
			return err
		}
		if st.addrs[l.Addr] == nil {
			return fmt.Errorf("%w: listener of no address %v", ErrField, l.Addr)
		}
		st.listeners[l] = struct{}{}
		return nil
	case k[0] == prefixLease:
		lk := leaseKey{kind: Kind(kr.u8())}
		lk.addr = keyAddr(kr)
		lk.proto = kr.u8()
		lk.index = binary.BigEndian.Uint16(kr.take(2))
		node := vr.u64()
		if err := errors.Join(kr.end(), vr.end()); err != nil {
			return err
		}
		if int(lk.index) >= lk.kind.count() || (lk.kind != SPI && st.addrs[lk.addr] == nil) {
			return fmt.Errorf("%w: lease record %x", ErrField, k)
		}
		st.leases[lk] = node
		return nil
	case k[0] == prefixGen:
		a := keyAddr(kr)
		g := vr.u64()
		if err := errors.Join(kr.end(), vr.end()); err != nil {
			return err
		}
		if st.addrs[a] == nil {
			return fmt.Errorf("%w: generation of no address %v", ErrField, a)
		}
		st.gens[a] = g
		return nil
	case k[0] == prefixOwner:
		a := keyAddr(kr)
		node := vr.u64()
		if err := errors.Join(kr.end(), vr.end()); err != nil {
			return err
		}
		if st.addrs[a] == nil || node == 0 {
			return fmt.Errorf("%w: owner record %x", ErrField, k)
		}
		st.owners[a] = node
		return nil
	case k[0] == prefixReport:
		rk := reportKey{addr: keyAddr(kr)}
		rk.node = binary.BigEndian.Uint64(kr.take(8))
		g := vr.u64()
		if err := errors.Join(kr.end(), vr.end()); err != nil {
			return err
		}
		if st.addrs[rk.addr] == nil {
			return fmt.Errorf("%w: report of no address %v", ErrField, rk.addr)
		}
		st.reports[rk] = g
		return nil
	case k[0] == prefixExcept:
		ek := exceptKey{addr: keyAddr(kr)}
		ek.flow.Proto = kr.u8()
		ek.flow.Port = binary.BigEndian.Uint16(kr.take(2))
		ip := kr.ip()
		ek.flow.Client = netip.AddrPortFrom(ip, binary.BigEndian.Uint16(kr.take(2)))
		node := vr.u64()
		if err := errors.Join(kr.end(), vr.end()); err != nil {
			return err
		}
		if st.addrs[ek.addr] == nil || !ip.IsValid() || (ek.flow.Proto != TCP && ek.flow.Proto != UDP) || ek.flow.Port == 0 {
			return fmt.Errorf("%w: exception record %x", ErrField, k)
		}
		if st.nexcept[ek.addr] >= MaxExceptions {
			return fmt.Errorf("%w: more than %d exceptions of %v", ErrField, MaxExceptions, ek.addr)
		}
		st.excepts[ek] = node
		st.nexcept[ek.addr]++
		return nil
	}
	return fmt.Errorf("%w: key %x", ErrField, k)
}

func (r *reader) expect(n int) error {
	r.take(n)
	return r.end()
}

// Load implements rsm.Loader: it rebuilds the mirror from the Tx.
func (m *Machine) Load(tx rsm.Tx) error {
	st := newState()
	if err := scanAll(tx, func(k, v []byte) error { return st.decode(k, v) }); err != nil {
		return fmt.Errorf("sharedaddr: load: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st = st
	clear(m.tables)
	return nil
}

// scanAll visits the key space in the order decode needs: the view and
// the addresses before the listeners and leases that refer to them.
func scanAll(tx rsm.Tx, fn func(k, v []byte) error) error {
	for _, p := range prefixes {
		if err := tx.Scan([]byte{p}, fn); err != nil {
			return err
		}
	}
	return nil
}

// Snapshot magic and layout (SPEC.md, "Snapshot").
// SnapshotVersion is the snapshot's version (the magic's last byte): 2
// added generations, reports and exceptions, 3 the owners. A version 1
// or 2 snapshot, which holds none of what came later, still restores.
const SnapshotVersion = 3

var snapMagic = [4]byte{'C', 'S', 'A', SnapshotVersion}

// Snapshot implements rsm.Machine: the magic, then every record of the
// key space as (key length u16, key, value length u32, value) in
// scanAll's order, then a zero key length and the CRC-32C of everything
// before it.
func (m *Machine) Snapshot(tx rsm.Tx, w io.Writer) error {
	var kvs []KV
	err := scanAll(tx, func(k, v []byte) error {
		kvs = append(kvs, KV{bytes.Clone(k), bytes.Clone(v)})
		return nil
	})
	if err != nil {
		return fmt.Errorf("sharedaddr: snapshot: %w", err)
	}
	if _, err := w.Write(AppendSnapshot(nil, kvs)); err != nil {
		return fmt.Errorf("sharedaddr: snapshot: %w", err)
	}
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrSnapshot is returned for a snapshot that does not decode.
var ErrSnapshot = errors.New("ctl: bad snapshot")

// KV is one record of a snapshot.
type KV struct{ Key, Value []byte }

// ParseSnapshot decodes and checks a snapshot: its records, in order,
// each a valid record of the key space.
func ParseSnapshot(b []byte) ([]KV, error) {
	if len(b) < 4+2+4 || [3]byte(b[:3]) != [3]byte(snapMagic[:3]) || b[3] < 1 || b[3] > SnapshotVersion {
		return nil, fmt.Errorf("%w: no magic", ErrSnapshot)
	}
	version := b[3]
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, fmt.Errorf("%w: CRC mismatch", ErrSnapshot)
	}
	r := &reader{b: body[4:]}
	st := newState()
	var kvs []KV
	for {
		n := int(r.u16())
		if r.err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSnapshot, r.err)
		}
		if n == 0 {
			break
		}
		k := bytes.Clone(r.take(n))
		v := bytes.Clone(r.take(int(r.u32())))
		if r.err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSnapshot, r.err)
		}
		if (version < 2 && (k[0] == prefixGen || k[0] == prefixReport || k[0] == prefixExcept)) || (version < 3 && k[0] == prefixOwner) {
			return nil, fmt.Errorf("%w: version %d has no key %x", ErrSnapshot, version, k)
		}
		if len(kvs) > 0 && kvOrder(kvs[len(kvs)-1].Key, k) >= 0 {
			return nil, fmt.Errorf("%w: records out of order", ErrSnapshot)
		}
		if err := st.decode(k, v); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSnapshot, err)
		}
		kvs = append(kvs, KV{k, v})
	}
	if err := r.end(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSnapshot, err)
	}
	return kvs, nil
}

// kvOrder compares keys in scanAll's order: by prefix rank, then bytes.
func kvOrder(a, b []byte) int {
	rank := func(k []byte) int { return bytes.IndexByte(prefixes, k[0]) }
	if ra, rb := rank(a), rank(b); ra != rb {
		return ra - rb
	}
	return bytes.Compare(a, b)
}

// AppendSnapshot encodes records as Snapshot does (for tests and tools).
func AppendSnapshot(b []byte, kvs []KV) []byte {
	start := len(b)
	b = append(b, snapMagic[:]...)
	for _, kv := range kvs {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(kv.Key)))
		b = append(b, kv.Key...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(kv.Value)))
		b = append(b, kv.Value...)
	}
	b = binary.LittleEndian.AppendUint16(b, 0)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// Restore implements rsm.Machine.
func (m *Machine) Restore(tx rsm.Tx, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("sharedaddr: restore: %w", err)
	}
	kvs, err := ParseSnapshot(b)
	if err != nil {
		return fmt.Errorf("sharedaddr: restore: %w", err)
	}
	var old [][]byte
	if err := scanAll(tx, func(k, _ []byte) error { old = append(old, bytes.Clone(k)); return nil }); err != nil {
		return fmt.Errorf("sharedaddr: restore: %w", err)
	}
	for _, k := range old {
		if err := tx.Delete(k); err != nil {
			return fmt.Errorf("sharedaddr: restore: %w", err)
		}
	}
	for _, kv := range kvs {
		if err := tx.Put(kv.Key, kv.Value); err != nil {
			return fmt.Errorf("sharedaddr: restore: %w", err)
		}
	}
	return m.Load(tx)
}
