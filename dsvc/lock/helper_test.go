package lock_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/lock"
)

// The helper process: the test binary re-executed with DSVC_LOCK_HELPER=1.
// It reads commands from stdin, one a line, and answers each on stdout:
//
//	lock s|x [nb]      → "ok" (the lock is held, pushed on a stack) or "err <code>"
//	unlock             → unlocks the newest held lock: "ok" or "err <code>"
//	incr PATH N        → N times: lock x, read the decimal in PATH, write it + 1, unlock; "ok"
//	stream N HOLD      → N goroutines lock s, hold HOLD, unlock, again; "streaming" once each has held once
//	stop               → ends the streams: "stopped <locks taken>"
//
// EOF on stdin ends it (its locks go with it).
const helperEnv = "DSVC_LOCK_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

func helperKey() dsvc.LockKey {
	return dsvc.LockKey{LocToken: os.Getenv("DSVC_LOCK_LOC"), Module: "files", Version: 1, Container: os.Getenv("DSVC_LOCK_CONTAINER")}
}

func helperMain() int {
	svc, err := lock.New(lock.Options{Dir: os.Getenv("DSVC_LOCK_DIR")})
	if err != nil {
		fmt.Println("err", dsvc.CodeOf(err))
		return 1
	}
	key := helperKey()
	ctx := context.Background()
	var held []dsvc.Unlocker
	var out sync.Mutex // one line at a time on stdout
	say := func(format string, args ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	var (
		stop    chan struct{}
		streams sync.WaitGroup
		taken   atomic.Int64
	)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "lock":
			u, err := svc.Lock(ctx, key, f[1] == "x", len(f) > 2 && f[2] == "nb")
			if err != nil {
				say("err %d", dsvc.CodeOf(err))
				continue
			}
			held = append(held, u)
			say("ok")
		case "unlock":
			u := held[len(held)-1]
			held = held[:len(held)-1]
			if err := u.Unlock(); err != nil {
				say("err %d", dsvc.CodeOf(err))
				continue
			}
			say("ok")
		case "incr":
			n, _ := strconv.Atoi(f[2])
			for range n {
				u, err := svc.Lock(ctx, key, true, false)
				if err != nil {
					say("err %d", dsvc.CodeOf(err))
					return 1
				}
				b, _ := os.ReadFile(f[1])
				v, _ := strconv.Atoi(strings.TrimSpace(string(b)))
				if err := os.WriteFile(f[1], []byte(strconv.Itoa(v+1)), 0o600); err != nil {
					say("err %v", err)
					return 1
				}
				_ = u.Unlock()
			}
			say("ok")
		case "stream":
			n, _ := strconv.Atoi(f[1])
			hold, _ := time.ParseDuration(f[2])
			stop = make(chan struct{})
			for range n {
				streams.Add(1)
				go func() {
					defer streams.Done()
					first := true
					for {
						select {
						case <-stop:
							return
						default:
						}
						u, err := svc.Lock(ctx, key, false, false)
						if err != nil {
							say("err %d", dsvc.CodeOf(err))
							return
						}
						taken.Add(1)
						if first {
							say("streaming")
							first = false
						}
						time.Sleep(hold) // the work a reader does, not synchronisation
						_ = u.Unlock()
					}
				}()
			}
		case "stop":
			close(stop)
			streams.Wait()
			say("stopped %d", taken.Load())
		}
	}
	return 0
}

// helper is a running helper process.
type helper struct {
	t     *testing.T
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

func startHelper(t *testing.T, dir, loc, container string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "DSVC_LOCK_DIR="+dir, "DSVC_LOCK_LOC="+loc, "DSVC_LOCK_CONTAINER="+container)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{t: t, cmd: cmd, in: in, lines: make(chan string, 64)}
	done := make(chan struct{})
	go func() { // owned by the helper: ends when its stdout closes, waited for in Cleanup
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
	}()
	t.Cleanup(func() {
		in.Close()
		_ = cmd.Process.Kill()
		<-done
		_ = cmd.Wait()
	})
	return h
}

func (h *helper) send(cmd string) {
	h.t.Helper()
	if _, err := fmt.Fprintln(h.in, cmd); err != nil {
		h.t.Fatalf("helper %d: %s: %v", h.cmd.Process.Pid, cmd, err)
	}
}

// expect waits (up to a deadline) for the helper's next line and checks it.
func (h *helper) expect(want string) {
	h.t.Helper()
	if got := h.next(10 * time.Second); got != want {
		h.t.Fatalf("helper %d: got %q, want %q", h.cmd.Process.Pid, got, want)
	}
}

func (h *helper) next(d time.Duration) string {
	h.t.Helper()
	select {
	case l, ok := <-h.lines:
		if !ok {
			h.t.Fatalf("helper %d exited", h.cmd.Process.Pid)
		}
		return l
	case <-time.After(d):
		h.t.Fatalf("helper %d: no answer in %v", h.cmd.Process.Pid, d)
	}
	return ""
}

// quiet asserts the helper says nothing for d: it is still waiting.
func (h *helper) quiet(d time.Duration) {
	h.t.Helper()
	select {
	case l := <-h.lines:
		h.t.Fatalf("helper %d: said %q while it should be waiting", h.cmd.Process.Pid, l)
	case <-time.After(d):
	}
}

func (h *helper) do(cmd, want string) {
	h.t.Helper()
	h.send(cmd)
	h.expect(want)
}

func (h *helper) kill9() {
	h.t.Helper()
	if err := h.cmd.Process.Kill(); err != nil {
		h.t.Fatal(err)
	}
	for range h.lines { // until its stdout closes: the process is gone
	}
}

var (
	busy = fmt.Sprintf("err %d", dsvc.CodeBusy)
)
