package files_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/dsvctest"
	"github.com/corralhq/corral/dsvc/files"
	"github.com/corralhq/corral/dsvc/lock"
)

// lockDir is shared with the helper processes the suite starts: they
// inherit it through the environment, so they lock each other out.
func lockDir(t testing.TB) string {
	const env = "CORRAL_FILES_TEST_LOCKDIR"
	if d := os.Getenv(env); d != "" {
		return d
	}
	d, err := os.MkdirTemp("", "files-locks-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	t.Setenv(env, d)
	return d
}

func TestConformance(t *testing.T) {
	lk, err := lock.New(lock.Options{Dir: lockDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := files.NewVersion(2)
	reg, err := dsvc.NewRegistry(dsvc.Options{Locker: lk}, files.New(), v2)
	if err != nil {
		t.Fatal(err)
	}
	dsvctest.Run(t, dsvctest.Setup{
		Registry: reg,
		Datastore: func(t testing.TB) dsvc.Datastore {
			return dsvc.Datastore{Module: files.Name, Location: filepath.Join(t.TempDir(), "dhcp"), Version: 1}
		},
		Locker:       lk,
		MultiProcess: true,
		// The files module rewrites the whole file on every update: a /16
		// modified record by record is 65536 rewrites of 3 MB.
		SoakCapacityBits: 20,
	})
}

// TestConformanceMemLocker runs the suite with the in-process locker (the
// multi-process checks skip themselves) on the newest version.
func TestConformanceMemLocker(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	lk := &dsvctest.MemLocker{}
	reg, err := dsvc.NewRegistry(dsvc.Options{Locker: lk}, files.New())
	if err != nil {
		t.Fatal(err)
	}
	dsvctest.Run(t, dsvctest.Setup{
		Registry: reg,
		Datastore: func(t testing.TB) dsvc.Datastore {
			return dsvc.Datastore{Location: filepath.Join(t.TempDir(), "dhcp"), Version: dsvc.CurrentVersion}
		},
		Locker: lk,
	})
}
