package binfiles

import (
	"bytes"
	"context"
	"net/netip"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"

	"github.com/corralhq/corral/dsvc"
)

// DNTable is an open network container. Besides dsvc.DNHandle it
// implements dsvc.DNImporter.
type DNTable struct {
	m      *Module
	f      *file
	flags  dsvc.OpenFlags
	net    netip.Prefix
	closed atomic.Bool
}

var (
	_ dsvc.DNHandle   = (*DNTable)(nil)
	_ dsvc.DNImporter = (*DNTable)(nil)
	_ dsvc.DNPrefixer = (*DNTable)(nil)
)

// OpenDN opens (with Create: creates) the network container. Creating needs
// net, whose address must be the container's; opening an existing one
// takes its network from the file, and a valid net that differs from it is
// ErrInval.
func (m *Module) OpenDN(ctx context.Context, location, container string, net netip.Prefix, fl dsvc.OpenFlags) (dsvc.DNHandle, error) {
	if err := checkFlags(fl); err != nil {
		return nil, err
	}
	path, addr, err := m.containerPath(location, container, false)
	if err != nil {
		return nil, err
	}
	if fl&dsvc.Create != 0 {
		if !net.IsValid() || !net.Addr().Is4() || net.Bits() < 1 || net.Masked() != net || net.Addr() != addr {
			return nil, dsvc.Errorf(dsvc.CodeInval, "network %v for container %s", net, container)
		}
		if err := m.create(ctx, path, meta{kind: kindNetwork, net: net}); err != nil {
			return nil, err
		}
	}
	f := m.fileFor(path)
	var md meta
	err = m.view(ctx, f, fl&dsvc.NonBlock != 0, func(tx *bolt.Tx) error {
		md, err = readMeta(tx)
		return err
	})
	switch {
	case err != nil:
		return nil, err
	case md.kind != kindNetwork || md.net.Addr() != addr:
		return nil, corrupt("%s holds %c %v", container, md.kind, md.net)
	case net.IsValid() && net != md.net:
		return nil, dsvc.Errorf(dsvc.CodeInval, "container %s is network %v, not %v", container, md.net, net)
	}
	return &DNTable{m: m, f: f, flags: fl, net: md.net}, nil
}

// RemoveDN removes the network container.
func (m *Module) RemoveDN(ctx context.Context, location, container string) error {
	path, _, err := m.containerPath(location, container, false)
	if err != nil {
		return err
	}
	return m.remove(path)
}

func checkFlags(fl dsvc.OpenFlags) error {
	switch {
	case fl&^(dsvc.Create|dsvc.Read|dsvc.Write|dsvc.NonBlock) != 0:
		return dsvc.Errorf(dsvc.CodeInval, "open flags %#x", fl)
	case fl&(dsvc.Read|dsvc.Write) == 0:
		return dsvc.Errorf(dsvc.CodeInval, "open without Read or Write")
	case fl&dsvc.Create != 0 && fl&dsvc.Write == 0:
		return dsvc.Errorf(dsvc.CodeInval, "Create without Write")
	}
	return nil
}

// Prefix is the container's network (dsvc.DNPrefixer).
func (h *DNTable) Prefix() netip.Prefix { return h.net }

func (h *DNTable) check(need dsvc.OpenFlags) error {
	if h.closed.Load() {
		return dsvc.Errorf(dsvc.CodeInval, "handle closed")
	}
	if h.flags&need == 0 {
		return dsvc.Errorf(dsvc.CodeAccess, "handle not open for %s", map[dsvc.OpenFlags]string{dsvc.Read: "reading", dsvc.Write: "writing"}[need])
	}
	return nil
}

func (h *DNTable) nonblock() bool { return h.flags&dsvc.NonBlock != 0 }

// storable refuses what the value encoding cannot hold or the container
// must not hold (the framework has checked it already).
func (h *DNTable) storable(r *dsvc.DNRecord) error {
	switch {
	case r == nil:
		return dsvc.Errorf(dsvc.CodeInval, "no record")
	case !r.CIP.Is4() || !h.net.Contains(r.CIP):
		return dsvc.Errorf(dsvc.CodeInval, "client ip %v not in %v", r.CIP, h.net)
	case r.SIP.IsValid() && !r.SIP.Is4():
		return dsvc.Errorf(dsvc.CodeInval, "server ip %v", r.SIP)
	case len(r.CID) < 1 || len(r.CID) > dsvc.MaxCIDLen:
		return dsvc.Errorf(dsvc.CodeInval, "client id of %d octets", len(r.CID))
	case len(r.Macro) > dsvc.MaxKeyLen:
		return dsvc.Errorf(dsvc.CodeInval, "macro of %d bytes", len(r.Macro))
	case len(r.Comment) > dsvc.MaxCommentLen:
		return dsvc.Errorf(dsvc.CodeInval, "comment of %d bytes", len(r.Comment))
	case r.Flags&^dsvc.DNAll != 0:
		return dsvc.Errorf(dsvc.CodeInval, "flags %#x", r.Flags)
	}
	return nil
}

func checkQuery(q, all dsvc.Query, target bool) error {
	if !q.Valid(all) {
		return dsvc.Errorf(dsvc.CodeInval, "query %#x", uint32(q))
	}
	if q&all != 0 && !target {
		return dsvc.Errorf(dsvc.CodeInval, "query without a target")
	}
	return nil
}

// scanDN calls fn with every record matching q against t, using the CIP
// key or the CID index when q selects one to be equal, until fn returns
// false. A record that does not decode stops it with ErrInternal.
func scanDN(ctx context.Context, tx *bolt.Tx, q dsvc.Query, t *dsvc.DNRecord, fn func(*dsvc.DNRecord) bool) error {
	recs, idx := tx.Bucket(bucketCIP), tx.Bucket(bucketCID)
	if recs == nil || idx == nil {
		return corrupt("network container without its buckets")
	}
	try := func(k, v []byte) (bool, error) {
		r, err := decodeDN(k, v)
		if err != nil {
			return false, err
		}
		if !matchDN(q, &r, t) {
			return true, nil
		}
		return fn(&r), nil
	}
	switch {
	case q.IsEq(dsvc.DNQCIP):
		if !t.CIP.Is4() {
			return nil
		}
		k := cipKey(t.CIP)
		if v := recs.Get(k); v != nil {
			_, err := try(k, v)
			return err
		}
		return nil
	case q.IsEq(dsvc.DNQCID):
		pre := cidPrefix(t.CID)
		c := idx.Cursor()
		for k, _ := c.Seek(pre); k != nil && bytes.HasPrefix(k, pre); k, _ = c.Next() {
			if len(k) != len(pre)+4 {
				continue // a longer client id with this one as its prefix
			}
			cip := k[len(pre):]
			v := recs.Get(cip)
			if v == nil {
				return corrupt("client id index names %v, which is not stored", netip.AddrFrom4([4]byte(cip)))
			}
			more, err := try(cip, v)
			if err != nil || !more {
				return err
			}
		}
		return nil
	}
	c := recs.Cursor()
	n := 0
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if n++; n%1024 == 0 && ctx.Err() != nil {
			return ctxErr(ctx)
		}
		more, err := try(k, v)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// Lookup returns at most count (< 0: all) records matching q against t.
// With partial, a record that does not decode ends the lookup with what
// was found before it and no error, if that is anything.
func (h *DNTable) Lookup(ctx context.Context, partial bool, q dsvc.Query, count int, t *dsvc.DNRecord) ([]dsvc.DNRecord, error) {
	if err := h.check(dsvc.Read); err != nil {
		return nil, err
	}
	if err := checkQuery(q, dsvc.DNQAll, t != nil); err != nil {
		return nil, err
	}
	if count == 0 {
		return nil, nil
	}
	if t == nil {
		t = &dsvc.DNRecord{}
	}
	var out []dsvc.DNRecord
	err := h.m.view(ctx, h.f, h.nonblock(), func(tx *bolt.Tx) error {
		out = out[:0]
		return scanDN(ctx, tx, q, t, func(r *dsvc.DNRecord) bool {
			out = append(out, *r)
			return count < 0 || len(out) < count
		})
	})
	if err != nil && !(partial && len(out) > 0 && dsvc.CodeOf(err) == dsvc.CodeInternal) {
		return nil, err
	}
	return out, nil
}

// Count is the number of records matching q against t.
func (h *DNTable) Count(ctx context.Context, q dsvc.Query, t *dsvc.DNRecord) (int, error) {
	if err := h.check(dsvc.Read); err != nil {
		return 0, err
	}
	if err := checkQuery(q, dsvc.DNQAll, t != nil); err != nil {
		return 0, err
	}
	if t == nil {
		t = &dsvc.DNRecord{}
	}
	n := 0
	err := h.m.view(ctx, h.f, h.nonblock(), func(tx *bolt.Tx) error {
		n = 0
		return scanDN(ctx, tx, q, t, func(*dsvc.DNRecord) bool { n++; return true })
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// putDN stores r with sig under its CIP and indexes its CID.
func putDN(tx *bolt.Tx, r *dsvc.DNRecord, sig uint64) error {
	s := *r
	s.Sig = sig
	if err := tx.Bucket(bucketCIP).Put(cipKey(r.CIP), encodeDN(&s)); err != nil {
		return err
	}
	return tx.Bucket(bucketCID).Put(cidKey(r.CID, r.CIP), nil)
}

// getDN returns the record stored at cip, nil if none.
func getDN(tx *bolt.Tx, cip netip.Addr) (*dsvc.DNRecord, error) {
	recs, idx := tx.Bucket(bucketCIP), tx.Bucket(bucketCID)
	if recs == nil || idx == nil {
		return nil, corrupt("network container without its buckets")
	}
	k := cipKey(cip)
	v := recs.Get(k)
	if v == nil {
		return nil, nil
	}
	r, err := decodeDN(k, v)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

func delDN(tx *bolt.Tx, r *dsvc.DNRecord) error {
	if err := tx.Bucket(bucketCIP).Delete(cipKey(r.CIP)); err != nil {
		return err
	}
	return tx.Bucket(bucketCID).Delete(cidKey(r.CID, r.CIP))
}

// Add stores r with a new signature, written into r once committed.
func (h *DNTable) Add(ctx context.Context, r *dsvc.DNRecord) error {
	if err := h.check(dsvc.Write); err != nil {
		return err
	}
	if err := h.storable(r); err != nil {
		return err
	}
	sig := dsvc.RandomSig()
	err := h.m.update(ctx, h.f, h.nonblock(), func(tx *bolt.Tx) error {
		old, err := getDN(tx, r.CIP)
		if err != nil {
			return err
		}
		if old != nil {
			return dsvc.Errorf(dsvc.CodeExists, "client ip %v is stored", r.CIP)
		}
		return putDN(tx, r, sig)
	})
	if err != nil {
		return err
	}
	r.Sig = sig
	return nil
}

// Modify replaces the record at orig.CIP, if its signature is orig.Sig,
// by r with the next signature.
func (h *DNTable) Modify(ctx context.Context, orig, r *dsvc.DNRecord) error {
	if err := h.check(dsvc.Write); err != nil {
		return err
	}
	if orig == nil {
		return dsvc.Errorf(dsvc.CodeInval, "no original record")
	}
	if err := h.storable(r); err != nil {
		return err
	}
	var sig uint64
	err := h.m.update(ctx, h.f, h.nonblock(), func(tx *bolt.Tx) error {
		old, err := getDN(tx, orig.CIP)
		switch {
		case err != nil:
			return err
		case old == nil:
			return dsvc.Errorf(dsvc.CodeNoEnt, "client ip %v is not stored", orig.CIP)
		case old.Sig != orig.Sig:
			return dsvc.Errorf(dsvc.CodeCollision, "client ip %v changed since it was read", orig.CIP)
		}
		if r.CIP != old.CIP {
			other, err := getDN(tx, r.CIP)
			if err != nil {
				return err
			}
			if other != nil {
				return dsvc.Errorf(dsvc.CodeExists, "client ip %v is stored", r.CIP)
			}
		}
		if err := delDN(tx, old); err != nil {
			return err
		}
		sig = dsvc.NextSig(old.Sig)
		return putDN(tx, r, sig)
	})
	if err != nil {
		return err
	}
	r.Sig = sig
	return nil
}

// Delete removes the record at r.CIP; r.Sig 0 skips the signature check.
func (h *DNTable) Delete(ctx context.Context, r *dsvc.DNRecord) error {
	if err := h.check(dsvc.Write); err != nil {
		return err
	}
	if r == nil {
		return dsvc.Errorf(dsvc.CodeInval, "no record")
	}
	return h.m.update(ctx, h.f, h.nonblock(), func(tx *bolt.Tx) error {
		old, err := getDN(tx, r.CIP)
		switch {
		case err != nil:
			return err
		case old == nil:
			return dsvc.Errorf(dsvc.CodeNoEnt, "client ip %v is not stored", r.CIP)
		case r.Sig != 0 && old.Sig != r.Sig:
			return dsvc.Errorf(dsvc.CodeCollision, "client ip %v changed since it was read", r.CIP)
		}
		return delDN(tx, old)
	})
}

// Import stores rs with the signatures they carry (a record with
// signature 0 gets a new one, written back into rs), all in one transaction: a CIP that is
// stored already, or twice in rs, is ErrExists and nothing is stored.
func (h *DNTable) Import(ctx context.Context, rs []dsvc.DNRecord) error {
	if err := h.check(dsvc.Write); err != nil {
		return err
	}
	for i := range rs {
		if err := h.storable(&rs[i]); err != nil {
			return err
		}
	}
	// The signatures given reach rs only once the transaction committed.
	sigs := make([]uint64, len(rs))
	err := h.m.update(ctx, h.f, h.nonblock(), func(tx *bolt.Tx) error {
		for i := range rs {
			r := &rs[i]
			old, err := getDN(tx, r.CIP)
			if err != nil {
				return err
			}
			if old != nil {
				return dsvc.Errorf(dsvc.CodeExists, "client ip %v is stored", r.CIP)
			}
			sig := r.Sig
			if sig == 0 {
				sig = dsvc.RandomSig()
			}
			if err := putDN(tx, r, sig); err != nil {
				return err
			}
			sigs[i] = sig
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := range rs {
		rs[i].Sig = sigs[i]
	}
	return nil
}

// Close ends the handle; the container needs no closing (each operation
// opens and closes its file).
func (h *DNTable) Close() error {
	if h.closed.Swap(true) {
		return dsvc.Errorf(dsvc.CodeInval, "handle closed twice")
	}
	return nil
}
