package dsvc

import (
	"context"
	"errors"
	"fmt"
)

// importBatch is how many records Convert hands a destination at once; it
// bounds the progress steps, not correctness.
const importBatch = 512

// Convert copies every container at from into to (dhcpconfig -C): the
// dhcptab and every network container, every record, and every signature
// when the destination module implements DTImporter/DNImporter (else the
// records are added and get new ones). The destination location is created
// if missing; a container that already exists there stops the conversion
// with ErrTableExists. The source is only read: on any failure the
// destination containers this call created are removed and the source is as
// it was. The application serving from the source should be stopped (as
// dhcpconfig stops in.dhcpd): records written to the source during the
// copy may be missed. progress, if not nil, is called with records copied
// and the total, ending with done == total.
func Convert(ctx context.Context, from, to Datastore, reg *Registry, progress func(done, total int)) (err error) {
	const op = "convert"
	fm, from, err := reg.resolve(op, from)
	if err != nil {
		return err
	}
	tm, to, err := reg.resolve(op, to)
	if err != nil {
		return err
	}
	if from.Module == to.Module && from.Version == to.Version {
		ft, err1 := fm.LocToken(from.Location)
		tt, err2 := tm.LocToken(to.Location)
		if err1 == nil && err2 == nil && ft == tt {
			return &Error{Code: CodeInval, Op: op, Detail: fmt.Sprintf("source and destination are the same datastore (%s%d at %s)", from.Module, from.Version, from.Location)}
		}
	}
	if err := reg.Status(ctx, from); err != nil {
		return err
	}
	if err := reg.MkLocation(ctx, to); err != nil && !errors.Is(err, ErrExists) {
		return err
	}

	type source struct {
		kind Kind
		name string
		h    *Handle
		n    int
	}
	var srcs []*source
	var created []*source // destination containers made by this call
	defer func() {
		for _, s := range srcs {
			s.h.Close()
		}
		if err == nil {
			return
		}
		// Undo on a context that still works when ctx is what failed.
		uctx := context.WithoutCancel(ctx)
		for _, c := range created {
			if rerr := reg.Remove(uctx, to, c.kind, c.name); rerr != nil {
				reg.log.Warn("convert: removing a partly converted container", "container", c.name, "err", rerr)
			}
		}
	}()

	for _, kind := range []Kind{DHCPTab, Network} {
		names, err := reg.List(ctx, from, kind)
		if err != nil {
			return err
		}
		for _, n := range names {
			h, err := reg.Open(ctx, from, kind, n, Read)
			if err != nil {
				return err
			}
			s := &source{kind: kind, name: n, h: h}
			srcs = append(srcs, s)
			if kind == DHCPTab {
				s.n, err = h.CountDT(ctx, 0, nil)
			} else {
				s.n, err = h.CountDN(ctx, 0, nil)
			}
			if err != nil {
				return err
			}
		}
	}
	total := 0
	for _, s := range srcs {
		total += s.n
	}
	done := 0
	report := func() {
		if progress != nil {
			progress(done, total)
		}
	}
	report()

	for _, s := range srcs {
		name := s.name
		if s.kind == Network {
			name = s.h.Prefix().String()
		}
		d, err := reg.Open(ctx, to, s.kind, name, Create|Write)
		if err != nil {
			return decorate(op, s.name, err)
		}
		created = append(created, s)
		err = copyContainer(ctx, s.h, d, func(n int) { done += n; report() })
		cerr := d.Close()
		if err != nil {
			return err
		}
		if cerr != nil {
			return cerr
		}
	}
	if done != total {
		// The source changed under the copy; report the truth once more.
		total = done
		report()
	}
	return nil
}

func copyContainer(ctx context.Context, src, dst *Handle, step func(int)) error {
	if src.kind == DHCPTab {
		rs, err := src.LookupDT(ctx, false, 0, -1, nil)
		if err != nil {
			return err
		}
		return copyRecords(ctx, rs, dst.CanImport(), dst.ImportDT, dst.AddDT, step)
	}
	rs, err := src.LookupDN(ctx, false, 0, -1, nil)
	if err != nil {
		return err
	}
	return copyRecords(ctx, rs, dst.CanImport(), dst.ImportDN, dst.AddDN, step)
}

func copyRecords[R any](ctx context.Context, rs []R, canImport bool,
	imp func(context.Context, []R) error, add func(context.Context, *R) error, step func(int)) error {
	for len(rs) > 0 {
		n := min(len(rs), importBatch)
		if canImport {
			if err := imp(ctx, rs[:n]); err != nil {
				return err
			}
		} else {
			for i := range rs[:n] {
				if err := add(ctx, &rs[i]); err != nil {
					return err
				}
			}
		}
		step(n)
		rs = rs[n:]
	}
	return nil
}

// Upgrade copies every container of ds (at its version) to container
// version toVersion of the same module at the same location, keeping every
// record and signature; CurrentVersion is the newest registered. The old
// containers stay until removed (the versions coexist; Remove them with
// ds.Version set to the old one). A failure removes what it created.
func (r *Registry) Upgrade(ctx context.Context, ds Datastore, toVersion int) error {
	const op = "upgrade"
	_, from, err := r.resolve(op, ds)
	if err != nil {
		return err
	}
	to := from
	to.Version = toVersion
	_, to, err = r.resolve(op, to)
	if err != nil {
		return err
	}
	if to.Version == from.Version {
		return &Error{Code: CodeInval, Op: op, Detail: fmt.Sprintf("containers are at version %d already", from.Version)}
	}
	return Convert(ctx, from, to, r, nil)
}
