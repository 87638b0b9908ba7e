package logkey_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/logkey"
)

func line(t *testing.T, f func(*slog.Logger)) string {
	t.Helper()
	var b bytes.Buffer
	f(slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})))
	return strings.TrimSpace(b.String())
}

// TestSubsystemOnce: however the layers stack loggers, a line carries one
// subsystem, the innermost one, and keeps every other attribute.
func TestSubsystemOnce(t *testing.T) {
	got := line(t, func(l *slog.Logger) {
		l = l.With(logkey.Node, "vm")
		l = logkey.WithSubsystem(l, "cluster")
		l = logkey.WithSubsystem(l, "raft").With(logkey.RaftID, "1f")
		l = l.With(logkey.Subsystem, "clusterlog.raft")
		l.Info("became follower", logkey.Subsystem, "ignored")
	})
	want := `level=INFO msg="became follower" node=vm raft_id=1f subsystem=clusterlog.raft`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestSubsystemGroup(t *testing.T) {
	got := line(t, func(l *slog.Logger) {
		logkey.WithSubsystem(l, "events").WithGroup("g").Info("m", "k", 1)
	})
	if want := `level=INFO msg=m subsystem=events g.k=1`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestEnabled(t *testing.T) {
	var b bytes.Buffer
	l := logkey.WithSubsystem(slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelWarn})), "x")
	l.Info("dropped")
	if b.Len() != 0 {
		t.Errorf("a record below the level was written: %s", b.String())
	}
}
