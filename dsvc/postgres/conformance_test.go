package postgres_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/dsvctest"
	"github.com/corralhq/corral/dsvc/files"
	"github.com/corralhq/corral/dsvc/lock"
	"github.com/corralhq/corral/dsvc/postgres"
)

// lockDir is for the files module the conversions use (postgres itself
// needs no locks); helper processes inherit it through the environment.
func lockDir(t testing.TB) string {
	const env = "CORRAL_POSTGRES_TEST_LOCKDIR"
	if d := os.Getenv(env); d != "" {
		return d
	}
	d, err := os.MkdirTemp("", "postgres-locks-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	t.Setenv(env, d)
	return d
}

// TestConformance runs the framework's conformance suite on postgres, with
// helper processes (the database serializes them) and conversions to and
// from the files module.
func TestConformance(t *testing.T) {
	needServer(t)
	lk, err := lock.New(lock.Options{Dir: lockDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	mod := postgres.New(nil)
	t.Cleanup(mod.Close)
	reg, err := dsvc.NewRegistry(dsvc.Options{Locker: lk}, mod, files.New())
	if err != nil {
		t.Fatal(err)
	}
	dsvctest.Run(t, dsvctest.Setup{
		Registry: reg,
		Datastore: func(t testing.TB) dsvc.Datastore {
			return dsvc.Datastore{Module: postgres.Name, Location: freshLocation(t), Version: 1}
		},
		MultiProcess: true,
		Peers: map[string]func(testing.TB) dsvc.Datastore{
			files.Name: func(t testing.TB) dsvc.Datastore {
				return dsvc.Datastore{Module: files.Name, Location: filepath.Join(t.TempDir(), "files"), Version: 1}
			},
		},
	})
}
