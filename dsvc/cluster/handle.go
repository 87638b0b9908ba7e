package cluster

import (
	"context"
	"net/netip"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/internal/wireconv"
	wire "github.com/corralhq/corral/proto/client"
)

// handle is an open container: just its name, since the agent keeps no
// per-handle state (every request names its container).
type handle struct {
	m   *Module
	t   wire.DSTarget // Flags 0
	net netip.Prefix  // networks only
}

type (
	dtHandle handle
	dnHandle handle
)

var (
	_ dsvc.DTHandle   = (*dtHandle)(nil)
	_ dsvc.DNHandle   = (*dnHandle)(nil)
	_ dsvc.DTImporter = (*dtHandle)(nil)
	_ dsvc.DNImporter = (*dnHandle)(nil)
	_ dsvc.DNPrefixer = (*dnHandle)(nil)
)

// readFlags are the DS_LOOKUP/DS_COUNT flags for this module's reads.
func (h *handle) readFlags(partial bool) uint8 {
	var f uint8
	if h.m.local.Load() {
		f |= wire.DSLocal
	}
	if partial {
		f |= wire.DSPartial
	}
	return f
}

func (h *handle) request(op uint16, flags uint8) wire.DSRequest {
	t := h.t
	t.Flags = flags
	return wire.DSRequest{Op: op, Target: t}
}

func count32(n int) int32 {
	if n < 0 || n > 1<<31-1 {
		return -1
	}
	return int32(n)
}

// Lookup implements dsvc.DTHandle.
func (h *dtHandle) Lookup(ctx context.Context, partial bool, q dsvc.Query, count int, t *dsvc.DTRecord) ([]dsvc.DTRecord, error) {
	req := (*handle)(h).request(wire.OpDSLookup, (*handle)(h).readFlags(partial))
	req.Query, req.Count = uint32(q), count32(count)
	if t != nil {
		req.HasTarget, req.DT = true, []wire.DSDTRecord{wireconv.DT(t)}
	}
	rep, err := h.m.call(ctx, "lookup", &req)
	if err != nil {
		return nil, err
	}
	return wireconv.FromDTs(rep.DT), nil
}

// Count implements dsvc.DTHandle.
func (h *dtHandle) Count(ctx context.Context, q dsvc.Query, t *dsvc.DTRecord) (int, error) {
	req := (*handle)(h).request(wire.OpDSCount, (*handle)(h).readFlags(false))
	req.Query, req.Count = uint32(q), -1
	if t != nil {
		req.HasTarget, req.DT = true, []wire.DSDTRecord{wireconv.DT(t)}
	}
	rep, err := h.m.call(ctx, "count", &req)
	return int(rep.Count), err
}

// Add implements dsvc.DTHandle.
func (h *dtHandle) Add(ctx context.Context, r *dsvc.DTRecord) error {
	req := (*handle)(h).request(wire.OpDSAdd, 0)
	req.DT = []wire.DSDTRecord{wireconv.DT(r)}
	rep, err := h.m.call(ctx, "add", &req)
	if err == nil {
		r.Sig = rep.Sig
	}
	return err
}

// Modify implements dsvc.DTHandle.
func (h *dtHandle) Modify(ctx context.Context, orig, r *dsvc.DTRecord) error {
	req := (*handle)(h).request(wire.OpDSModify, 0)
	req.DT = []wire.DSDTRecord{wireconv.DT(orig), wireconv.DT(r)}
	rep, err := h.m.call(ctx, "modify", &req)
	if err == nil {
		r.Sig = rep.Sig
	}
	return err
}

// Delete implements dsvc.DTHandle.
func (h *dtHandle) Delete(ctx context.Context, r *dsvc.DTRecord) error {
	req := (*handle)(h).request(wire.OpDSDelete, 0)
	req.DT = []wire.DSDTRecord{wireconv.DT(r)}
	_, err := h.m.call(ctx, "delete", &req)
	return err
}

// Import implements dsvc.DTImporter: the records keep their signatures.
func (h *dtHandle) Import(ctx context.Context, rs []dsvc.DTRecord) error {
	for len(rs) > 0 {
		n := min(len(rs), importBatch)
		req := (*handle)(h).request(wire.OpDSImport, 0)
		req.DT = wireconv.DTs(rs[:n])
		// A record without a signature gets one here, as the other
		// modules give it, written back once stored.
		for i := range req.DT {
			if req.DT[i].Sig == 0 {
				req.DT[i].Sig = dsvc.RandomSig()
			}
		}
		if _, err := h.m.call(ctx, "import", &req); err != nil {
			return err
		}
		for i := range req.DT {
			rs[i].Sig = req.DT[i].Sig
		}
		rs = rs[n:]
	}
	return nil
}

// Close implements dsvc.DTHandle; the module's link stays for other
// handles.
func (h *dtHandle) Close() error { return nil }

// Prefix implements dsvc.DNPrefixer: the network the agent stores.
func (h *dnHandle) Prefix() netip.Prefix { return h.net }

// Lookup implements dsvc.DNHandle.
func (h *dnHandle) Lookup(ctx context.Context, partial bool, q dsvc.Query, count int, t *dsvc.DNRecord) ([]dsvc.DNRecord, error) {
	req := (*handle)(h).request(wire.OpDSLookup, (*handle)(h).readFlags(partial))
	req.Query, req.Count = uint32(q), count32(count)
	if t != nil {
		req.HasTarget, req.DN = true, []wire.DSDNRecord{wireconv.DN(t)}
	}
	rep, err := h.m.call(ctx, "lookup", &req)
	if err != nil {
		return nil, err
	}
	return wireconv.FromDNs(rep.DN), nil
}

// Count implements dsvc.DNHandle.
func (h *dnHandle) Count(ctx context.Context, q dsvc.Query, t *dsvc.DNRecord) (int, error) {
	req := (*handle)(h).request(wire.OpDSCount, (*handle)(h).readFlags(false))
	req.Query, req.Count = uint32(q), -1
	if t != nil {
		req.HasTarget, req.DN = true, []wire.DSDNRecord{wireconv.DN(t)}
	}
	rep, err := h.m.call(ctx, "count", &req)
	return int(rep.Count), err
}

// Add implements dsvc.DNHandle.
func (h *dnHandle) Add(ctx context.Context, r *dsvc.DNRecord) error {
	req := (*handle)(h).request(wire.OpDSAdd, 0)
	req.DN = []wire.DSDNRecord{wireconv.DN(r)}
	rep, err := h.m.call(ctx, "add", &req)
	if err == nil {
		r.Sig = rep.Sig
	}
	return err
}

// Modify implements dsvc.DNHandle.
func (h *dnHandle) Modify(ctx context.Context, orig, r *dsvc.DNRecord) error {
	req := (*handle)(h).request(wire.OpDSModify, 0)
	req.DN = []wire.DSDNRecord{wireconv.DN(orig), wireconv.DN(r)}
	rep, err := h.m.call(ctx, "modify", &req)
	if err == nil {
		r.Sig = rep.Sig
	}
	return err
}

// Delete implements dsvc.DNHandle.
func (h *dnHandle) Delete(ctx context.Context, r *dsvc.DNRecord) error {
	req := (*handle)(h).request(wire.OpDSDelete, 0)
	req.DN = []wire.DSDNRecord{wireconv.DN(r)}
	_, err := h.m.call(ctx, "delete", &req)
	return err
}

// Import implements dsvc.DNImporter: the records keep their signatures.
func (h *dnHandle) Import(ctx context.Context, rs []dsvc.DNRecord) error {
	for len(rs) > 0 {
		n := min(len(rs), importBatch)
		req := (*handle)(h).request(wire.OpDSImport, 0)
		req.DN = wireconv.DNs(rs[:n])
		// A record without a signature gets one here, as the other
		// modules give it, written back once stored.
		for i := range req.DN {
			if req.DN[i].Sig == 0 {
				req.DN[i].Sig = dsvc.RandomSig()
			}
		}
		if _, err := h.m.call(ctx, "import", &req); err != nil {
			return err
		}
		for i := range req.DN {
			rs[i].Sig = req.DN[i].Sig
		}
		rs = rs[n:]
	}
	return nil
}

// Close implements dsvc.DNHandle.
func (h *dnHandle) Close() error { return nil }
