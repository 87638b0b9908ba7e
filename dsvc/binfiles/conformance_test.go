package binfiles_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/binfiles"
	"github.com/corralhq/corral/dsvc/dsvctest"
	"github.com/corralhq/corral/dsvc/files"
	"github.com/corralhq/corral/dsvc/lock"
)

// lockDir is shared with the helper processes the suite starts: they
// inherit it through the environment, so they lock each other out.
func lockDir(t testing.TB) string {
	const env = "CORRAL_BINFILES_TEST_LOCKDIR"
	if d := os.Getenv(env); d != "" {
		return d
	}
	d, err := os.MkdirTemp("", "binfiles-locks-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	t.Setenv(env, d)
	return d
}

// TestConformance runs the framework's conformance suite on binfiles, with
// the real lock service, helper processes, and conversions to and from the
// files module.
func TestConformance(t *testing.T) {
	lk, err := lock.New(lock.Options{Dir: lockDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := dsvc.NewRegistry(dsvc.Options{Locker: lk}, binfiles.New(nil), files.New())
	if err != nil {
		t.Fatal(err)
	}
	dsvctest.Run(t, dsvctest.Setup{
		Registry: reg,
		Datastore: func(t testing.TB) dsvc.Datastore {
			return dsvc.Datastore{Module: binfiles.Name, Location: filepath.Join(t.TempDir(), "dhcp"), Version: 1}
		},
		Locker:       lk,
		MultiProcess: true,
		Peers: map[string]func(testing.TB) dsvc.Datastore{
			files.Name: func(t testing.TB) dsvc.Datastore {
				return dsvc.Datastore{Module: files.Name, Location: filepath.Join(t.TempDir(), "files"), Version: 1}
			},
		},
		SoakCapacityBits: 16,
	})
}
