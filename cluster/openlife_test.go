package cluster

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/clusterlog"
)

// openOnce opens the life in dir as an agent's start does, and closes it.
func openOnce(t *testing.T, dir string, found bool) (inc uint64, log string, err error) {
	t.Helper()
	buf := &logBuf{}
	c, err := New(Config{
		Self: 1, Name: "n1", Addr: "127.0.0.1:1", DataDir: dir, Bootstrap: found,
		Tick: 10 * time.Millisecond, ElectionTicks: 10, Heartbeat: 50 * time.Millisecond,
		Events: &recorder{}, Logger: slog.New(slog.NewTextHandler(buf, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Open(); err != nil {
		return 0, buf.String(), err
	}
	inc = c.Incarnation()
	if found {
		// The founder's first vote and entries are on disk once it leads.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.WaitFor(ctx, func(s clusterlog.Status) bool { return s.IsLeader() && s.Applied > 0 }); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	return inc, buf.String(), nil
}

// Item 4 of the hardening issue: a life whose log is missing, empty or holds
// no raft state starts a new life, saying why, instead of going on under
// the old raft id with no vote record; a damaged log is refused with the
// way out. Before the fix the empty and the stateless logs kept the life.
func TestOpenLifeLostOrDamagedLog(t *testing.T) {
	tests := []struct {
		name    string
		damage  func(t *testing.T, path string)
		newLife string // the reason logged, "" for the same life
		refused bool
	}{
		{"intact", func(*testing.T, string) {}, "", false},
		{"missing", func(t *testing.T, path string) { must(t, os.Remove(path)) }, "is missing", false},
		{"empty", func(t *testing.T, path string) { must(t, os.Truncate(path, 0)) }, "is empty", false},
		{"no raft state", func(t *testing.T, path string) {
			must(t, os.Remove(path))
			st, err := clusterlog.OpenStorage(path, nil)
			must(t, err)
			must(t, st.Close())
		}, "holds no raft state", false},
		{"truncated", func(t *testing.T, path string) { must(t, os.Truncate(path, 3*4096+5)) }, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			old, _, err := openOnce(t, dir, true)
			must(t, err)
			path := filepath.Join(dir, LogFile)
			tt.damage(t, path)
			inc, log, err := openOnce(t, dir, false)
			if tt.refused {
				if !errors.Is(err, clusterlog.ErrCorrupt) || strings.Contains(err.Error(), "\n") ||
					!strings.Contains(err.Error(), "move it away to rejoin the cluster as a new member") || !strings.Contains(err.Error(), path) {
					t.Fatalf("open: %v; want a one-line ErrCorrupt naming %s and the way out", err, path)
				}
				t.Logf("refused: %v", err)
				return
			}
			must(t, err)
			switch {
			case tt.newLife == "" && inc != old:
				t.Fatalf("a new life %x replaced %x with the log intact", inc, old)
			case tt.newLife != "" && inc == old:
				t.Fatalf("life %x kept with a log that %s", old, tt.newLife)
			case tt.newLife != "" && strings.Count(log, "starting a new life: the cluster log of this life "+tt.newLife) != 1:
				t.Fatalf("the new life is not explained once (%q):\n%s", tt.newLife, log)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
