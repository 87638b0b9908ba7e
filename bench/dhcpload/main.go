package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/binfiles"
	dsvccluster "github.com/corralhq/corral/dsvc/cluster"
	"github.com/corralhq/corral/dsvc/files"
	"github.com/corralhq/corral/dsvc/lock"
)

func main() {
	module := flag.String("r", "binfiles", "module: files, binfiles or cluster")
	loc := flag.String("p", "", "datastore location")
	conf := flag.String("u", "", "module configuration (cluster: socket=PATH)")
	prefix := flag.String("net", "10.0.0.0/13", "the network")
	n := flag.Int("n", 100000, "records")
	sip := flag.String("sip", "127.0.0.1", "the records' owner (SIP)")
	skip := flag.String("skip", "10.0.0.2", "an address left out (the relay's)")
	lease := flag.Int("lease", 4000, "LeaseTim of the records' macro, seconds")
	batch := flag.Int("batch", 4096, "records per import")
	flag.Parse()
	if err := run(*module, *loc, *conf, *prefix, *n, *sip, *skip, *lease, *batch); err != nil {
		fmt.Fprintln(os.Stderr, "dhcpload:", err)
		os.Exit(1)
	}
}

func run(module, loc, conf, prefix string, n int, sipS, skipS string, lease, batch int) error {
	ctx := context.Background()
	net, err := netip.ParsePrefix(prefix)
	if err != nil || !net.Addr().Is4() || net.Masked() != net {
		return fmt.Errorf("network %q: want an IPv4 network", prefix)
	}
	sip, err := netip.ParseAddr(sipS)
	if err != nil {
		return fmt.Errorf("sip: %w", err)
	}
	skip, _ := netip.ParseAddr(skipS)
	if max := 1<<(32-net.Bits()) - 2; n > max {
		return fmt.Errorf("%d records do not fit %s (%d)", n, net, max)
	}
	lk, err := lock.New(lock.Options{})
	if err != nil {
		return err
	}
	reg, err := dsvc.NewRegistry(dsvc.Options{Locker: lk}, files.New(), binfiles.New(nil), dsvccluster.New(nil))
	if err != nil {
		return err
	}
	ds := dsvc.Datastore{Module: module, Location: loc, Config: conf, Version: dsvc.CurrentVersion}
	// A cluster agent may still be forming: retry the location a while.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err = reg.MkLocation(ctx, ds)
		if err == nil || errors.Is(err, dsvc.ErrExists) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mklocation: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	dt, err := reg.Open(ctx, ds, dsvc.DHCPTab, "dhcptab", dsvc.Create|dsvc.Read|dsvc.Write)
	if err != nil {
		return fmt.Errorf("dhcptab: %w", err)
	}
	m := ^uint32(0) << (32 - net.Bits())
	for _, r := range []dsvc.DTRecord{
		{Key: net.Addr().String(), Type: dsvc.DTMacro, Value: fmt.Sprintf(":Subnet=%d.%d.%d.%d:Router=%s:", byte(m>>24), byte(m>>16), byte(m>>8), byte(m), skip)},
		{Key: "bench", Type: dsvc.DTMacro, Value: fmt.Sprintf(":LeaseTim=%d:", lease)},
	} {
		if err := dt.AddDT(ctx, &r); err != nil {
			return fmt.Errorf("dhcptab %s: %w", r.Key, err)
		}
	}
	dt.Close()
	h, err := reg.Open(ctx, ds, dsvc.Network, net.String(), dsvc.Create|dsvc.Read|dsvc.Write)
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	defer h.Close()
	start := time.Now()
	a := net.Addr().Next()
	rs := make([]dsvc.DNRecord, 0, batch)
	for done := 0; done < n; {
		rs = rs[:0]
		for len(rs) < batch && done+len(rs) < n {
			if a != skip {
				rs = append(rs, dsvc.DNRecord{CID: []byte{0}, CIP: a, SIP: sip, Macro: "bench"})
			}
			a = a.Next()
		}
		if err := h.ImportDN(ctx, rs); err != nil {
			return fmt.Errorf("import: %w", err)
		}
		done += len(rs)
	}
	fmt.Printf("dhcpload: %s %s: %d records in %s\n", module, net, n, time.Since(start).Round(time.Millisecond))
	return nil
}
