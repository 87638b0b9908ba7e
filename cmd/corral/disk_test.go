package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fillDisk writes a filler file in dir until the file system is full.
func fillDisk(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatalf("fill %s: %v", dir, err)
		}
	}
}

// Item 3 of the hardening issue: a node whose data dir fills up stops its
// raft node, says why once, and exits non-zero; the others keep a leader
// and remove it from the view. The starved node is the founder, the
// leader as long as nothing moved leadership. Before the fix the raft node
// stopped but the agent went on running with its links up, a member in
// every view, until killed.
func TestFullDiskStopsTheNode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	// The fourth node, joining and leaving, is a non-voter: the three
	// voters keep a quorum whenever the starved one stops.
	nodes := cluster(t, 3, "--remove-after", "2s", "--max-voters", "3")
	nodes[0].args = append(nodes[0].args, "--bootstrap")
	starved, rest := nodes[0], nodes[1:]
	if err := os.MkdirAll(starved.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", starved.dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		starved.kill()
		if out, err := exec.Command("umount", starved.dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", starved.dir, err, out)
		}
	})
	for _, nd := range nodes {
		nd.start()
	}
	for _, nd := range nodes {
		nd.waitView(ids(nodes), 30*time.Second)
	}
	wasLeader := leaderOf(t, nodes) == starved

	fillDisk(t, starved.dir)
	filled := time.Now()
	var exitErr error
	var exitAt time.Time
	gone := make(chan struct{})
	go func(exit chan error) {
		exitErr = <-exit
		exitAt = time.Now()
		exit <- exitErr // for kill
		close(gone)
	}(starved.exit)
	exited := func() bool {
		select {
		case <-gone:
			return true
		default:
			return false
		}
	}
	// Log writes on every member: a fourth node joins, leaves, and joins
	// again on a fresh disk, until the starved node's writes fail (the
	// log file has free pages at first).
	n4 := joiner(t, nodes, 4, rest[0])
	cycles := 0
	for deadline := time.Now().Add(60 * time.Second); !exited(); cycles++ {
		if time.Now().After(deadline) {
			t.Fatalf("n%d still running %v after its disk filled, %d join/leave cycles", starved.id, time.Since(filled), cycles)
		}
		os.RemoveAll(n4.dir)
		n4.start()
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && !exited(); time.Sleep(20 * time.Millisecond) {
			if ids, _, err := rest[0].memberIDs(); err == nil && slices.Contains(ids, 4) {
				break
			}
		}
		if exited() {
			break
		}
		exec.Command(binary, "leave", "--data-dir", n4.dir).Run()
		select {
		case <-n4.exit:
			n4.cmd = nil
		case <-time.After(10 * time.Second):
			n4.kill()
		}
	}
	<-starved.exit
	starved.cmd = nil
	var ee *exec.ExitError
	if !errors.As(exitErr, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("n%d exited with %v, want a non-zero exit code", starved.id, exitErr)
	}
	log := starved.log.String()
	var enospc []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "no space left on device") {
			enospc = append(enospc, l)
		}
	}
	// The first failed write, by the starved node's own clock.
	sinceWrite := "?"
	if len(enospc) > 0 {
		if ts, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(strings.Fields(enospc[0])[0], "time=")); err == nil {
			sinceWrite = exitAt.Sub(ts).Round(time.Millisecond).String()
		}
	}
	t.Logf("n%d (leader when its disk filled: %v) exited (%v) %v after its disk filled (%d join/leave cycles), %s after its first failed write; %d log lines, %d of them name the storage error",
		starved.id, wasLeader, exitErr, exitAt.Sub(filled).Round(time.Millisecond), cycles, sinceWrite, strings.Count(log, "\n"), len(enospc))
	if len(enospc) == 0 || len(enospc) > 2 {
		t.Errorf("%d lines name the storage error, want a log line and the exit message:\n%s", len(enospc), strings.Join(enospc, "\n"))
	}
	lines := strings.Split(strings.TrimSpace(log), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "corral: ") || !strings.Contains(last, "no space left on device") {
		t.Errorf("last line %q: want corral's one-line error", last)
	}

	eventually(t, 30*time.Second, "a leader and a view without the starved node", func() error {
		a, err := agreed(rest)
		if err != nil {
			return err
		}
		if a.leader == uint64(starved.id) || strings.Contains(" "+a.members, fmt.Sprintf(" %d@", starved.id)) {
			return fmt.Errorf("view [%s] leader %d still has n%d", a.members, a.leader, starved.id)
		}
		return nil
	})
	t.Logf("n2 and n3 agree on a leader and a view without n%d %v after its disk filled", starved.id, time.Since(filled).Round(time.Millisecond))
}
