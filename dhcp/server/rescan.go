package server

// The periodic dhcptab rescan (in.dhcpd -t rescan_interval,
// Config.RescanInterval): the server rereads the dhcptab as Reload does
// and swaps in a new option table when it changed.

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/corralhq/corral/dhcp/dhcptab"
	"github.com/corralhq/corral/dsvc"
)

// tabState is what Reload and Rescan share: the dhcptab handle and the
// digest of the records the option table was built from.
type tabState struct {
	mu  sync.Mutex // guards the Server's dt and sum; held across the dhcptab read so that a Reload and a Rescan do not interleave
	sum [sha256.Size]byte
}

// tabSum is a digest of the dhcptab's records, independent of the order
// the module returns them in.
func tabSum(recs []dsvc.DTRecord) [sha256.Size]byte {
	rs := slices.Clone(recs)
	slices.SortFunc(rs, func(a, b dsvc.DTRecord) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Key, b.Key), cmp.Compare(a.Value, b.Value))
	})
	h := sha256.New()
	for _, r := range rs {
		fmt.Fprintf(h, "%d\x00%s\x00%s\x00", r.Type, r.Key, r.Value)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// Rescan rereads the dhcptab and, when its records differ from those the
// option table was built from, builds and swaps in a new table. Unlike
// Reload it keeps the offer caches: an offer holds a record, not options
// (they are built at each reply), and a periodic flush would cut every
// client between its OFFER and its REQUEST. changed reports a new table.
func (s *Server) Rescan(ctx context.Context) (changed bool, err error) {
	s.tabs.mu.Lock()
	defer s.tabs.mu.Unlock()
	if s.dt == nil {
		h, err := s.reg.Open(ctx, s.cfg.Datastore.DS(), dsvc.DHCPTab, "dhcptab", dsvc.Read)
		switch {
		case errors.Is(err, dsvc.ErrNoTable):
		case err != nil:
			return false, fmt.Errorf("dhcp/server: open dhcptab: %w", err)
		default:
			s.dt = h
		}
	}
	var recs []dsvc.DTRecord
	if s.dt != nil {
		recs, err = s.dt.LookupDT(ctx, false, 0, -1, nil)
		if err != nil {
			return false, fmt.Errorf("dhcp/server: read dhcptab: %w", err)
		}
	}
	sum := tabSum(recs)
	if sum == s.tabs.sum {
		return false, nil
	}
	t, errs := dhcptab.Build(recs)
	for _, err := range errs {
		s.log.Warn("dhcptab", "err", err)
	}
	s.tab.Store(t)
	s.tabs.sum = sum
	s.log.Info("dhcptab changed: option table rebuilt", "records", len(recs))
	return true, nil
}

// startRescan runs Rescan every Config.RescanInterval until ctx ends or
// the returned stop is called; stop waits for it. Without an interval it
// starts nothing.
func (s *Server) startRescan(ctx context.Context) (stop func()) {
	every := s.cfg.RescanInterval.Duration
	if every <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
				if _, err := s.Rescan(ctx); err != nil && ctx.Err() == nil {
					s.log.Warn("dhcptab rescan", "err", err)
				}
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
