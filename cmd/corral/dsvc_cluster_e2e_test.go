package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/corralhq/corral/dsvc"
	dsvccluster "github.com/corralhq/corral/dsvc/cluster"
)

// oneNodeDsvc starts a one-node cluster and returns its data directory
// once its data service answers.
func oneNodeDsvc(t *testing.T) string {
	t.Helper()
	nd := cluster(t, 1)[0]
	nd.args = append(nd.args, "--bootstrap")
	nd.start()
	waitDsvc(t, nd)
	return nd.dir
}

// clusterRegistry is a registry holding the cluster module speaking to
// nd's agent. Reads are linearizable unless the datastore's Config says
// reads=local: the framework configures the module from it on every Open.
func clusterRegistry(t testing.TB, nd *node) *dsvc.Registry {
	t.Helper()
	m := dsvccluster.New(nil)
	t.Cleanup(m.Close)
	if err := m.Configure("socket=" + filepath.Join(nd.dir, "client.sock")); err != nil {
		t.Fatal(err)
	}
	reg, err := dsvc.NewRegistry(dsvc.Options{}, m)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// waitDsvc waits until nd's data service answers a linearizable request.
func waitDsvc(t testing.TB, nd *node) {
	t.Helper()
	reg := clusterRegistry(t, nd)
	ds := dsvc.Datastore{Module: dsvccluster.Name, Location: "/ready", Version: dsvc.CurrentVersion}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := reg.Status(ctx, ds)
		cancel()
		if err == nil || errors.Is(err, dsvc.ErrNoLocation) {
			return
		}
		if err := nd.alive(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("n%d: the data service did not answer in 30 s: %v", nd.id, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDsvcClusterSnapshotCatchUp: a node that was down while the others
// wrote past several snapshots (and compacted their logs) catches up from
// a snapshot, and its replica then holds every record with its signature.
func TestDsvcClusterSnapshotCatchUp(t *testing.T) {
	nodes := formed(t, 3, "--snapshot-every", "64", "--snapshot-keep", "0")
	for _, nd := range nodes {
		waitDsvc(t, nd)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ds := dsvc.Datastore{Module: dsvccluster.Name, Location: "/catchup", Version: dsvc.CurrentVersion}
	reg1 := clusterRegistry(t, nodes[0])
	if err := reg1.MkLocation(ctx, ds); err != nil {
		t.Fatal(err)
	}
	h, err := reg1.Open(ctx, ds, dsvc.Network, "10.40.0.0/22", dsvc.Create|dsvc.Read|dsvc.Write)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nodes[2].stop()
	const n = 400
	for i := range n {
		r := dsvc.DNRecord{CID: []byte{byte(i >> 8), byte(i)}, CIP: netip.AddrFrom4([4]byte{10, 40, byte(i / 250), byte(1 + i%250)}),
			SIP: netip.MustParseAddr("10.40.0.1"), Macro: fmt.Sprintf("m%d", i)}
		if err := h.AddDN(ctx, &r); err != nil {
			t.Fatalf("add %d: %v", i, err)
		}
		if i%2 == 0 {
			nr := r
			nr.Comment = "modified"
			if err := h.ModifyDN(ctx, &r, &nr); err != nil {
				t.Fatalf("modify %d: %v", i, err)
			}
		}
	}
	want, err := h.LookupDN(ctx, false, 0, -1, nil)
	if err != nil || len(want) != n {
		t.Fatalf("n1 holds %d records (%v), want %d", len(want), err, n)
	}
	nodes[2].start()
	// Local reads on n3: its own replica, restored from a snapshot.
	reg3 := clusterRegistry(t, nodes[2])
	ds3 := ds
	ds3.Config = "reads=local"
	var got []dsvc.DNRecord
	deadline := time.Now().Add(30 * time.Second)
	for {
		h3, err := reg3.Open(ctx, ds3, dsvc.Network, "10.40.0.0", dsvc.Read)
		if err == nil {
			got, err = h3.LookupDN(ctx, false, 0, -1, nil)
			h3.Close()
			if err == nil && len(got) == n {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("n3 holds %d of %d records after 30 s (%v)", len(got), n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := range want {
		if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
			t.Fatalf("record %d on n3 %+v, on n1 %+v", i, got[i], want[i])
		}
	}
	nodes[2].waitLog(10*time.Second, "restoring snapshot from leader")
}
