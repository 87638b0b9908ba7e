package cluster_test

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/binfiles"
	"github.com/corralhq/corral/dsvc/cluster"
	"github.com/corralhq/corral/dsvc/cluster/clustertest"
	"github.com/corralhq/corral/dsvc/dsvctest"
	"github.com/corralhq/corral/dsvc/files"
	"github.com/corralhq/corral/dsvc/lock"
	"github.com/corralhq/corral/dsvc/postgres"
	"github.com/corralhq/corral/internal/pgtest"
)

// freshLocation names a location no test used before: the cluster store
// is shared by every test of one agent.
func freshLocation(t testing.TB) string {
	var b [6]byte
	rand.Read(b[:])
	return "/test/" + hex.EncodeToString(b[:])
}

// TestConformance runs the framework's conformance suite on the cluster
// module against a real one-node agent: helper processes (the stress, the
// kill -9 of a writer) speak to the same agent, and conversions go to and
// from files, binfiles and postgres (a real server, when one starts).
func TestConformance(t *testing.T) {
	socket := os.Getenv(envSocket)
	if socket == "" {
		socket = clustertest.Start(t).Socket()
		t.Setenv(envSocket, socket)
	}
	lockDir := os.Getenv("CORRAL_CLUSTER_TEST_LOCKDIR")
	if lockDir == "" {
		lockDir = t.TempDir()
		t.Setenv("CORRAL_CLUSTER_TEST_LOCKDIR", lockDir)
	}
	lk, err := lock.New(lock.Options{Dir: lockDir})
	if err != nil {
		t.Fatal(err)
	}
	mod := cluster.New(nil)
	t.Cleanup(mod.Close)
	if err := mod.Configure("socket=" + socket); err != nil {
		t.Fatal(err)
	}
	pg := postgres.New(nil)
	t.Cleanup(pg.Close)
	reg, err := dsvc.NewRegistry(dsvc.Options{Locker: lk}, mod, files.New(), binfiles.New(nil), pg)
	if err != nil {
		t.Fatal(err)
	}
	peers := map[string]func(testing.TB) dsvc.Datastore{
		files.Name: func(t testing.TB) dsvc.Datastore {
			return dsvc.Datastore{Module: files.Name, Location: filepath.Join(t.TempDir(), "files"), Version: 1}
		},
		binfiles.Name: func(t testing.TB) dsvc.Datastore {
			return dsvc.Datastore{Module: binfiles.Name, Location: filepath.Join(t.TempDir(), "bin"), Version: 1}
		},
	}
	if pgDSN != "" {
		peers[postgres.Name] = func(t testing.TB) dsvc.Datastore {
			return dsvc.Datastore{Module: postgres.Name, Location: pgtest.Schema(t, pgDSN), Version: 1}
		}
	}
	dsvctest.Run(t, dsvctest.Setup{
		Registry: reg,
		Datastore: func(t testing.TB) dsvc.Datastore {
			return dsvc.Datastore{Module: cluster.Name, Location: freshLocation(t), Version: 1}
		},
		MultiProcess:     true,
		Peers:            peers,
		SoakCapacityBits: 16,
	})
}
