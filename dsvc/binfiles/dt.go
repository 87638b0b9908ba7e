package binfiles

import (
	"context"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"

	"github.com/corralhq/corral/dsvc"
)

// DTTable is an open dhcptab container. Besides dsvc.DTHandle it
// implements dsvc.DTImporter.
type DTTable struct {
	m      *Module
	f      *file
	flags  dsvc.OpenFlags
	closed atomic.Bool
}

var (
	_ dsvc.DTHandle   = (*DTTable)(nil)
	_ dsvc.DTImporter = (*DTTable)(nil)
)

// OpenDT opens (with Create: creates) the dhcptab container.
func (m *Module) OpenDT(ctx context.Context, location, container string, fl dsvc.OpenFlags) (dsvc.DTHandle, error) {
	if err := checkFlags(fl); err != nil {
		return nil, err
	}
	path, _, err := m.containerPath(location, container, true)
	if err != nil {
		return nil, err
	}
	if fl&dsvc.Create != 0 {
		if err := m.create(ctx, path, meta{kind: kindDHCPTab}); err != nil {
			return nil, err
		}
	}
	f := m.fileFor(path)
	var md meta
	err = m.view(ctx, f, fl&dsvc.NonBlock != 0, func(tx *bolt.Tx) error {
		md, err = readMeta(tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	if md.kind != kindDHCPTab {
		return nil, corrupt("%s holds a container of kind %c", container, md.kind)
	}
	return &DTTable{m: m, f: f, flags: fl}, nil
}

// RemoveDT removes the dhcptab container.
func (m *Module) RemoveDT(ctx context.Context, location, container string) error {
	path, _, err := m.containerPath(location, container, true)
	if err != nil {
		return err
	}
	return m.remove(path)
}

func (h *DTTable) check(need dsvc.OpenFlags) error {
	if h.closed.Load() {
		return dsvc.Errorf(dsvc.CodeInval, "handle closed")
	}
	if h.flags&need == 0 {
		return dsvc.Errorf(dsvc.CodeAccess, "handle not open for %s", map[dsvc.OpenFlags]string{dsvc.Read: "reading", dsvc.Write: "writing"}[need])
	}
	return nil
}

func (h *DTTable) nonblock() bool { return h.flags&dsvc.NonBlock != 0 }

func storableDT(r *dsvc.DTRecord) error {
	switch {
	case r == nil:
		return dsvc.Errorf(dsvc.CodeInval, "no record")
	case len(r.Key) < 1 || len(r.Key) > dsvc.MaxKeyLen:
		return dsvc.Errorf(dsvc.CodeInval, "key of %d bytes", len(r.Key))
	case r.Type != dsvc.DTSymbol && r.Type != dsvc.DTMacro:
		return dsvc.Errorf(dsvc.CodeInval, "type %q", r.Type)
	}
	return nil
}

// scanDT calls fn with every record matching q against t: a key lookup
// when q selects the key equal, a scan of one type's keys when it selects
// the type equal, else a scan of all.
func scanDT(ctx context.Context, tx *bolt.Tx, q dsvc.Query, t *dsvc.DTRecord, fn func(*dsvc.DTRecord) bool) error {
	b := tx.Bucket(bucketDT)
	if b == nil {
		return corrupt("dhcptab container without its bucket")
	}
	try := func(k, v []byte) (bool, error) {
		r, err := decodeDT(k, v)
		if err != nil {
			return false, err
		}
		if !matchDT(q, &r, t) {
			return true, nil
		}
		return fn(&r), nil
	}
	if q.IsEq(dsvc.DTQKey) {
		types := []dsvc.DTType{dsvc.DTMacro, dsvc.DTSymbol}
		if q.IsEq(dsvc.DTQType) {
			types = []dsvc.DTType{t.Type}
		}
		for _, typ := range types {
			k := dtKey(typ, t.Key)
			if v := b.Get(k); v != nil {
				if more, err := try(k, v); err != nil || !more {
					return err
				}
			}
		}
		return nil
	}
	c := b.Cursor()
	k, v := c.First()
	if q.IsEq(dsvc.DTQType) {
		k, v = c.Seek([]byte{byte(t.Type)})
	}
	for n := 1; k != nil; k, v = c.Next() {
		if q.IsEq(dsvc.DTQType) && k[0] != byte(t.Type) {
			break
		}
		if n++; n%1024 == 0 && ctx.Err() != nil {
			return ctxErr(ctx)
		}
		if more, err := try(k, v); err != nil || !more {
			return err
		}
	}
	return nil
}

// Lookup returns at most count (< 0: all) records matching q against t;
// partial as DNTable.Lookup.
func (h *DTTable) Lookup(ctx context.Context, partial bool, q dsvc.Query, count int, t *dsvc.DTRecord) ([]dsvc.DTRecord, error) {
	if err := h.check(dsvc.Read); err != nil {
		return nil, err
	}
	if err := checkQuery(q, dsvc.DTQAll, t != nil); err != nil {
		return nil, err
	}
	if count == 0 {
		return nil, nil
	}
	if t == nil {
		t = &dsvc.DTRecord{}
	}
	var out []dsvc.DTRecord
	err := h.m.view(ctx, h.f, h.nonblock(), func(tx *bolt.Tx) error {
		out = out[:0]
		return scanDT(ctx, tx, q, t, func(r *dsvc.DTRecord) bool {
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
func (h *DTTable) Count(ctx context.Context, q dsvc.Query, t *dsvc.DTRecord) (int, error) {
	if err := h.check(dsvc.Read); err != nil {
		return 0, err
	}
	if err := checkQuery(q, dsvc.DTQAll, t != nil); err != nil {
		return 0, err
	}
	if t == nil {
		t = &dsvc.DTRecord{}
	}
	n := 0
	err := h.m.view(ctx, h.f, h.nonblock(), func(tx *bolt.Tx) error {
		n = 0
		return scanDT(ctx, tx, q, t, func(*dsvc.DTRecord) bool { n++; return true })
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

func getDT(tx *bolt.Tx, typ dsvc.DTType, key string) (*dsvc.DTRecord, error) {
	b := tx.Bucket(bucketDT)
	if b == nil {
		return nil, corrupt("dhcptab container without its bucket")
	}
	k := dtKey(typ, key)
	v := b.Get(k)
	if v == nil {
		return nil, nil
	}
	r, err := decodeDT(k, v)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

func putDT(tx *bolt.Tx, r *dsvc.DTRecord, sig uint64) error {
	s := *r
	s.Sig = sig
	return tx.Bucket(bucketDT).Put(dtKey(r.Type, r.Key), encodeDT(&s))
}

// Add stores r with a new signature, written into r once committed.
func (h *DTTable) Add(ctx context.Context, r *dsvc.DTRecord) error {
	if err := h.check(dsvc.Write); err != nil {
		return err
	}
	if err := storableDT(r); err != nil {
		return err
	}
	sig := dsvc.RandomSig()
	err := h.m.update(ctx, h.f, h.nonblock(), func(tx *bolt.Tx) error {
		old, err := getDT(tx, r.Type, r.Key)
		if err != nil {
			return err
		}
		if old != nil {
			return dsvc.Errorf(dsvc.CodeExists, "%c %q is stored", r.Type, r.Key)
		}
		return putDT(tx, r, sig)
	})
	if err != nil {
		return err
	}
	r.Sig = sig
	return nil
}

// Modify replaces the record orig names, if its signature is orig.Sig, by
// r with the next signature.
func (h *DTTable) Modify(ctx context.Context, orig, r *dsvc.DTRecord) error {
	if err := h.check(dsvc.Write); err != nil {
		return err
	}
	if orig == nil {
		return dsvc.Errorf(dsvc.CodeInval, "no original record")
	}
	if err := storableDT(r); err != nil {
		return err
	}
	var sig uint64
	err := h.m.update(ctx, h.f, h.nonblock(), func(tx *bolt.Tx) error {
		old, err := getDT(tx, orig.Type, orig.Key)
		switch {
		case err != nil:
			return err
		case old == nil:
			return dsvc.Errorf(dsvc.CodeNoEnt, "%c %q is not stored", orig.Type, orig.Key)
		case old.Sig != orig.Sig:
			return dsvc.Errorf(dsvc.CodeCollision, "%c %q changed since it was read", orig.Type, orig.Key)
		}
		if r.Type != old.Type || r.Key != old.Key {
			other, err := getDT(tx, r.Type, r.Key)
			if err != nil {
				return err
			}
			if other != nil {
				return dsvc.Errorf(dsvc.CodeExists, "%c %q is stored", r.Type, r.Key)
			}
			if err := tx.Bucket(bucketDT).Delete(dtKey(old.Type, old.Key)); err != nil {
				return err
			}
		}
		sig = dsvc.NextSig(old.Sig)
		return putDT(tx, r, sig)
	})
	if err != nil {
		return err
	}
	r.Sig = sig
	return nil
}

// Delete removes the record r names; r.Sig 0 skips the signature check.
func (h *DTTable) Delete(ctx context.Context, r *dsvc.DTRecord) error {
	if err := h.check(dsvc.Write); err != nil {
		return err
	}
	if r == nil {
		return dsvc.Errorf(dsvc.CodeInval, "no record")
	}
	return h.m.update(ctx, h.f, h.nonblock(), func(tx *bolt.Tx) error {
		old, err := getDT(tx, r.Type, r.Key)
		switch {
		case err != nil:
			return err
		case old == nil:
			return dsvc.Errorf(dsvc.CodeNoEnt, "%c %q is not stored", r.Type, r.Key)
		case r.Sig != 0 && old.Sig != r.Sig:
			return dsvc.Errorf(dsvc.CodeCollision, "%c %q changed since it was read", r.Type, r.Key)
		}
		return tx.Bucket(bucketDT).Delete(dtKey(old.Type, old.Key))
	})
}

// Import stores rs with their signatures (0: a new one, written back into
// rs) in one
// transaction; a record stored already, or twice in rs, is ErrExists and
// nothing is stored.
func (h *DTTable) Import(ctx context.Context, rs []dsvc.DTRecord) error {
	if err := h.check(dsvc.Write); err != nil {
		return err
	}
	for i := range rs {
		if err := storableDT(&rs[i]); err != nil {
			return err
		}
	}
	// The signatures given reach rs only once the transaction committed.
	sigs := make([]uint64, len(rs))
	err := h.m.update(ctx, h.f, h.nonblock(), func(tx *bolt.Tx) error {
		for i := range rs {
			r := &rs[i]
			old, err := getDT(tx, r.Type, r.Key)
			if err != nil {
				return err
			}
			if old != nil {
				return dsvc.Errorf(dsvc.CodeExists, "%c %q is stored", r.Type, r.Key)
			}
			sig := r.Sig
			if sig == 0 {
				sig = dsvc.RandomSig()
			}
			if err := putDT(tx, r, sig); err != nil {
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

// Close ends the handle.
func (h *DTTable) Close() error {
	if h.closed.Swap(true) {
		return dsvc.Errorf(dsvc.CodeInval, "handle closed twice")
	}
	return nil
}
