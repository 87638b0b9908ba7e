package clusterlog_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/corralhq/corral/clusterlog"
)

// corruptFileEnv names the file the child process (TestCorruptLogChild)
// opens; the parent, TestCorruptLog, runs one child per damaged copy so
// that a crash (SIGBUS, a panic in a goroutine) fails one case instead of
// the test binary.
const corruptFileEnv = "CLUSTERLOG_CORRUPT_FILE"

// resultPrefix starts the child's one line of result: "ok", or the class
// of the error ("corrupt", "format", "other") and its message.
const resultPrefix = "corrupt-log-result: "

// openAndRead does what a node does with its log at start: opens it, starts
// a node on it (which applies the committed entries after the applied
// index), and reads every stored entry.
func openAndRead(path string) error {
	st, err := clusterlog.OpenStorage(path, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	cfg := clusterlog.Config{ID: 1, Storage: st, Applier: &testApp{}, Sender: nopSender{}}
	fastConfig(&cfg)
	n, err := clusterlog.NewNode(cfg)
	if err != nil {
		return err
	}
	first, _ := st.FirstIndex()
	last, _ := st.LastIndex()
	if last >= first {
		if _, err := st.Entries(first, last+1, math.MaxUint64); err != nil {
			n.Stop(context.Background())
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	// Let the loop apply what is committed: one status change is enough
	// to have run a Ready.
	n.WaitFor(ctx, func(s clusterlog.Status) bool { return s.Applied >= s.Commit })
	if err := n.Stop(ctx); err != nil {
		return err
	}
	return n.Err()
}

func TestCorruptLogChild(t *testing.T) {
	path := os.Getenv(corruptFileEnv)
	if path == "" {
		t.Skip("run by TestCorruptLog")
	}
	err := openAndRead(path)
	class := "ok"
	switch {
	case err == nil:
	case strings.Contains(err.Error(), "\n"):
		class = "multiline"
	case errors.Is(err, clusterlog.ErrCorrupt):
		class = "corrupt"
	case errors.Is(err, clusterlog.ErrFormatVersion):
		class = "format"
	default:
		class = "other"
	}
	if err != nil {
		class += " " + err.Error()
	}
	fmt.Println(resultPrefix + class)
}

// sampleLog writes a log the way a small cluster does — three nodes,
// entries, snapshots and compaction — and returns node 1's file.
func sampleLog(t *testing.T) []byte {
	c := newCluster(t, 3, func(cfg *clusterlog.Config) { cfg.SnapshotEvery, cfg.SnapshotKeep = 16, 4 })
	ctx := testCtx(t)
	c.waitLeader(ctx)
	for i := range 60 {
		c.mustPropose(ctx, 1, fmt.Sprintf("entry %d %s", i, strings.Repeat("x", i*7)))
	}
	c.waitApplied(ctx, c.maxCommit(), 1, 2, 3)
	c.close()
	b, err := os.ReadFile(filepath.Join(c.dir, "node1.db"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCorruptLog truncates a real log at every page boundary and at odd
// offsets, and flips bytes at 40 (CORRAL_LONG=1: 200) seeded offsets: opening each copy, starting
// a node on it and reading it either works or fails with a typed one-line
// error naming the file — never a crash or a panic.
func TestCorruptLog(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process per damaged copy")
	}
	good := sampleLog(t)
	dir := t.TempDir()
	type damaged struct {
		name string
		data []byte
	}
	var cases []damaged
	for off := 0; off < len(good); off += 4096 {
		cases = append(cases, damaged{fmt.Sprintf("truncated at %d", off), good[:off]})
	}
	for _, off := range []int{1, 17, 100, 4095, 4097, 8191, 8193, 12000, len(good) - 1} {
		if off < len(good) {
			cases = append(cases, damaged{fmt.Sprintf("truncated at %d", off), good[:off]})
		}
	}
	// Flip bytes where bbolt has written: the file ends in pages it has
	// allocated but not yet used.
	used := len(good)
	for used > 0 && good[used-1] == 0 {
		used--
	}
	rng := rand.New(rand.NewPCG(7, 7))
	// 200 random flips with CORRAL_LONG=1; 40 in the ordinary run, which
	// starts a process per damaged copy.
	flips := 40
	if os.Getenv("CORRAL_LONG") != "" {
		flips = 200
	}
	for range flips {
		off := rng.IntN(used)
		b := append([]byte(nil), good...)
		b[off] ^= byte(1 + rng.IntN(255))
		cases = append(cases, damaged{fmt.Sprintf("byte %d flipped", off), b})
	}
	// And in each page's header and first elements, where bbolt keeps
	// its structure.
	for page := 0; page*4096 < used; page++ {
		off := page*4096 + rng.IntN(64)
		b := append([]byte(nil), good...)
		b[off] ^= byte(1 + rng.IntN(255))
		cases = append(cases, damaged{fmt.Sprintf("header byte %d flipped", off), b})
	}
	t.Logf("log of %d bytes (%d used), %d damaged copies", len(good), used, len(cases))

	counts := map[string]int{}
	examples := map[string]string{} // a refusal of each kind of damage
	var mu sync.Mutex               // guards counts and examples
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for i, c := range cases {
		path := filepath.Join(dir, fmt.Sprintf("case%03d.db", i))
		if err := os.WriteFile(path, c.data, 0o600); err != nil {
			t.Fatal(err)
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			cmd := exec.Command(os.Args[0], "-test.run=^TestCorruptLogChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), corruptFileEnv+"="+path)
			out, err := cmd.CombinedOutput()
			class, msg := "crash", ""
			if i := strings.Index(string(out), resultPrefix); i >= 0 && err == nil {
				line, _, _ := strings.Cut(string(out[i+len(resultPrefix):]), "\n")
				class, msg, _ = strings.Cut(line, " ")
			}
			kind, _, _ := strings.Cut(c.name, " ")
			mu.Lock()
			counts[kind+" "+class]++
			mu.Unlock()
			switch class {
			case "ok", "format":
			case "corrupt":
				if strings.HasPrefix(msg, "clusterlog: open") && !strings.Contains(msg, path) {
					t.Errorf("%s: error does not name the file: %s", c.name, msg)
				}
				mu.Lock()
				if examples[kind] == "" {
					examples[kind] = c.name + ": " + msg
				}
				mu.Unlock()
			case "crash":
				lines := strings.Split(string(out), "\n")
				t.Errorf("%s: the process crashed (%v):\n%s", c.name, err, strings.Join(lines[:min(len(lines), 15)], "\n"))
			default:
				t.Errorf("%s: untyped error: %s", c.name, msg)
			}
		})
	}
	wg.Wait()
	t.Logf("results: %v", counts)
	for _, e := range examples {
		t.Log(e)
	}
}
