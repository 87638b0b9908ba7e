package files

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/corralhq/corral/dsvc"
)

const envCrashStep = "CORRAL_FILES_CRASH_STEP"

// TestCrashSteps kills (SIGKILL) a writer at each step of the atomic
// replace (halfway through writing .new, after its fsync, after the
// rename) during an Add, a Modify and a Delete, and checks the container
// then holds the old or the new record set, never a torn file, and that
// the next write overwrites the leftover .new.
func TestCrashSteps(t *testing.T) {
	if step := os.Getenv(envCrashStep); step != "" {
		crashChild(t, step)
		return
	}
	ctx := context.Background()
	for _, op := range []string{"add", "modify", "delete"} {
		for _, step := range []string{"write", "synced", "renamed"} {
			dir := t.TempDir()
			r := registry(t)
			ds := dsvc.Datastore{Location: dir, Version: 1}
			h, err := r.Open(ctx, ds, dsvc.Network, "10.0.0.0/24", dsvc.Create|dsvc.Read|dsvc.Write)
			if err != nil {
				t.Fatal(err)
			}
			rec := dsvc.DNRecord{CID: []byte{1}, CIP: netip.MustParseAddr("10.0.0.1"), SIP: netip.MustParseAddr("10.0.0.9"), Macro: "old"}
			if err := h.AddDN(ctx, &rec); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashSteps$", "-test.count=1")
			cmd.Env = append(os.Environ(), envCrashStep+"="+op+" "+step, "CORRAL_FILES_CRASH_DIR="+dir)
			err = cmd.Run()
			if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("%s at %s: child ended with %v, want killed", op, step, err)
			}
			all, err := h.LookupDN(ctx, false, 0, -1, nil)
			if err != nil {
				t.Fatalf("%s killed at %s: %v", op, step, err)
			}
			newDone := step == "renamed"
			var want int
			switch {
			case op == "add" && newDone:
				want = 2
			case op == "delete" && newDone:
				want = 0
			default:
				want = 1
			}
			if len(all) != want {
				t.Fatalf("%s killed at %s: %d records, want %d", op, step, len(all), want)
			}
			if op == "modify" {
				if m := all[0].Macro; newDone != (m == "new") {
					t.Fatalf("modify killed at %s: macro %q", step, m)
				}
			}
			// The next write goes through over any leftover .new.
			x := dsvc.DNRecord{CID: []byte{3}, CIP: netip.MustParseAddr("10.0.0.3"), SIP: rec.SIP}
			if err := h.AddDN(ctx, &x); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, "files1_10_0_0_0.new")); !os.IsNotExist(err) {
				t.Fatalf("leftover .new after a write: %v", err)
			}
			h.Close()
		}
	}
}

func crashChild(t *testing.T, spec string) {
	var op, step string
	for i := range spec {
		if spec[i] == ' ' {
			op, step = spec[:i], spec[i+1:]
		}
	}
	m := New()
	m.hook = func(s string) {
		if s == step {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
	r := registry(t, m)
	ctx := context.Background()
	h, err := r.Open(ctx, dsvc.Datastore{Location: os.Getenv("CORRAL_FILES_CRASH_DIR"), Version: 1}, dsvc.Network, "10.0.0.0", dsvc.Read|dsvc.Write)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := h.LookupDN(ctx, false, 0, -1, nil)
	if err != nil || len(rs) != 1 {
		t.Fatal(err)
	}
	switch op {
	case "add":
		n := rs[0]
		n.CIP = netip.MustParseAddr("10.0.0.2")
		err = h.AddDN(ctx, &n)
	case "modify":
		n := rs[0]
		n.Macro = "new"
		err = h.ModifyDN(ctx, &rs[0], &n)
	case "delete":
		err = h.DeleteDN(ctx, &rs[0])
	}
	t.Fatalf("not killed: %v", err)
}
