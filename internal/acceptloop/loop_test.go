package acceptloop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeListener returns the queued results of Accept in order, then blocks
// until closed.
type fakeListener struct {
	mu      sync.Mutex // guards results and calls
	results []error    // nil: a connection
	calls   []time.Time
	closed  chan struct{}
	once    sync.Once
}

func newFake(results ...error) *fakeListener {
	return &fakeListener{results: results, closed: make(chan struct{})}
}

func (f *fakeListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	f.calls = append(f.calls, time.Now())
	if len(f.results) > 0 {
		err := f.results[0]
		f.results = f.results[1:]
		f.mu.Unlock()
		if err != nil {
			return nil, err
		}
		c, _ := net.Pipe()
		return c, nil
	}
	f.mu.Unlock()
	<-f.closed
	return nil, &net.OpError{Op: "accept", Net: "tcp", Err: net.ErrClosed}
}

func (f *fakeListener) Close() error { f.once.Do(func() { close(f.closed) }); return nil }
func (f *fakeListener) Addr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7946}
}

// emfile is the error Accept returns when the process is out of
// descriptors.
var emfile = &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}

// syncWriter is a log sink safe for the test and Serve's goroutine.
type syncWriter struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func TestServeRetriesEMFILE(t *testing.T) {
	const fails = 4
	var results []error
	for range fails {
		results = append(results, emfile)
	}
	ln := newFake(append(results, nil, nil)...)
	var out syncWriter
	log := slog.New(slog.NewTextHandler(&out, nil))
	got := make(chan net.Conn, 2)
	done := make(chan error, 1)
	go func() {
		done <- Serve(context.Background(), ln, log, func(c net.Conn) { got <- c })
	}()
	for range 2 {
		select {
		case c := <-got:
			c.Close()
		case err := <-done:
			t.Fatalf("Serve returned %v before the listener recovered", err)
		case <-time.After(10 * time.Second):
			t.Fatal("no connection handed on after the EMFILE burst")
		}
	}
	ln.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve returned %v after Close, want net.ErrClosed", err)
	}
	// One line for the burst, one for the recovery.
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "too many open files") ||
		!strings.Contains(lines[1], "accept recovered") || !strings.Contains(lines[1], fmt.Sprintf("errors=%d", fails)) {
		t.Fatalf("log of the burst:\n%s", out.String())
	}
	// The waits double from MinDelay.
	ln.mu.Lock()
	defer ln.mu.Unlock()
	for i := 1; i <= fails; i++ {
		want := MinDelay << (i - 1)
		if gap := ln.calls[i].Sub(ln.calls[i-1]); gap < want {
			t.Errorf("accept %d came %v after the error, want at least %v", i+1, gap, want)
		}
	}
}

func TestServeEndsWithContext(t *testing.T) {
	// A listener failing for good keeps Serve retrying until ctx ends it.
	var results []error
	for range 1000 {
		results = append(results, emfile)
	}
	ln := newFake(results...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, slog.New(slog.DiscardHandler), func(c net.Conn) { c.Close() })
	}()
	for deadline := time.Now().Add(5 * time.Second); ; {
		ln.mu.Lock()
		n := len(ln.calls)
		ln.mu.Unlock()
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d accepts in 5 s", n)
		}
		select {
		case err := <-done:
			t.Fatalf("Serve returned %v on a transient error", err)
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Serve returned %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not end with its context")
	}
}

func TestServeRealListenerClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- Serve(context.Background(), ln, slog.New(slog.DiscardHandler), func(c net.Conn) { c.Close() })
	}()
	ln.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Serve returned %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not end when its listener closed")
	}
}

func TestNextDelay(t *testing.T) {
	var d time.Duration
	var got []time.Duration
	for range 10 {
		d = nextDelay(d)
		got = append(got, d)
	}
	want := "[5ms 10ms 20ms 40ms 80ms 160ms 320ms 640ms 1s 1s]"
	if fmt.Sprint(got) != want {
		t.Fatalf("delays %v, want %s", got, want)
	}
}
