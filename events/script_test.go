package events_test

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/corralhq/corral/events"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata/*.golden from the scripts")

// TestScripts runs the dispatcher through testdata/*.txt and compares the
// trace with testdata/*.golden (go test -run Scripts -rewrite regenerates
// them). Every handle uses the channel style and HandleEvent runs in the
// script's goroutine, so the trace is deterministic.
//
// Commands, one a line, # starts a comment:
//
//	register H                 new handle H
//	set H PRI CLASS MODE       callback of H for CLASS; MODE is done
//	                           (CallbackDone inside), hold (complete later
//	                           with "done H"), unreg (Unregister inside,
//	                           no CallbackDone) or nil (disable)
//	activate H                 ActivateChan
//	publish SEQ EVENT          Publish; EVENT is a name like NEWVIEW
//	handle H                   HandleEvent
//	done H                     CallbackDone of H's oldest held cookie
//	unregister H
//
// After each command the trace shows the callbacks it ran, errors, and
// which handles have a callback pending.
func TestScripts(t *testing.T) {
	scripts, _ := filepath.Glob("testdata/*.txt")
	if len(scripts) == 0 {
		t.Fatal("no scripts")
	}
	for _, path := range scripts {
		t.Run(filepath.Base(path), func(t *testing.T) {
			got := runScript(t, path)
			golden := strings.TrimSuffix(path, ".txt") + ".golden"
			if *rewrite {
				must(t, os.WriteFile(golden, []byte(got), 0o644))
				return
			}
			want, err := os.ReadFile(golden)
			must(t, err)
			if got != string(want) {
				t.Errorf("trace differs from %s (rerun with -rewrite and diff):\n%s", golden, got)
			}
		})
	}
}

type scriptHandle struct {
	h    *events.Handle
	ch   <-chan struct{}
	held []events.Cookie
}

func runScript(t *testing.T, path string) string {
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	s := events.New(events.Options{})
	defer s.Close()
	hs := map[string]*scriptHandle{}
	var order []string // handle names in registration order
	var out strings.Builder
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fmt.Fprintf(&out, "> %s\n", text)
		args := strings.Fields(text)
		fail := func(format string, a ...any) {
			t.Fatalf("%s:%d: %s", path, line, fmt.Sprintf(format, a...))
		}
		get := func() *scriptHandle {
			if len(args) < 2 || hs[args[1]] == nil {
				fail("unknown handle in %q", text)
			}
			return hs[args[1]]
		}
		report := func(err error) {
			if err != nil {
				fmt.Fprintf(&out, "error: %v\n", err)
			}
		}
		switch args[0] {
		case "register":
			h, err := s.Register()
			if err != nil {
				fail("%v", err)
			}
			hs[args[1]] = &scriptHandle{h: h}
			order = append(order, args[1])
		case "set":
			sh := get()
			if len(args) != 5 {
				fail("want set H PRI CLASS MODE")
			}
			pri, err := strconv.Atoi(args[2])
			if err != nil {
				fail("%v", err)
			}
			class, err := events.ParseClass(args[3])
			if err != nil {
				fail("%v", err)
			}
			report(sh.h.SetCallback(events.Priority(pri), class, scriptCallback(&out, args[1], args[4], sh)))
		case "activate":
			sh := get()
			ch, err := sh.h.ActivateChan()
			report(err)
			sh.ch = ch
		case "publish":
			if len(args) != 3 {
				fail("want publish SEQ EVENT")
			}
			seq, err := strconv.ParseUint(args[1], 10, 64)
			if err != nil {
				fail("%v", err)
			}
			d, err := events.ParseDescriptor(args[2])
			if err != nil {
				fail("%v", err)
			}
			report(s.Publish(events.Event{Seq: seq, Desc: d}))
		case "handle":
			report(get().h.HandleEvent())
		case "done":
			sh := get()
			if len(sh.held) == 0 {
				fail("%s holds no cookie", args[1])
			}
			c := sh.held[0]
			sh.held = sh.held[1:]
			report(events.CallbackDone(c))
		case "unregister":
			report(get().h.Unregister())
		default:
			fail("unknown command %q", args[0])
		}
		var pending []string
		for _, name := range order {
			if ch := hs[name].ch; ch != nil && ready(ch) {
				pending = append(pending, name)
			}
		}
		if len(pending) > 0 {
			fmt.Fprintf(&out, "pending: %s\n", strings.Join(pending, " "))
		}
	}
	must(t, sc.Err())
	return out.String()
}

func scriptCallback(out *strings.Builder, name, mode string, sh *scriptHandle) events.Callback {
	if mode == "nil" {
		return nil
	}
	return func(ev events.Event, c events.Cookie) {
		fmt.Fprintf(out, "%s: %v (%s)\n", name, ev, mode)
		var err error
		switch mode {
		case "done":
			err = events.CallbackDone(c)
		case "hold":
			sh.held = append(sh.held, c)
		case "unreg":
			err = sh.h.Unregister()
		}
		if err != nil {
			fmt.Fprintf(out, "%s: error: %v\n", name, err)
		}
	}
}
