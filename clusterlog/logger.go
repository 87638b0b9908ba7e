package clusterlog

import (
	"context"
	"fmt"
	"log/slog"
)

// raftID formats a raft member id as raft's own messages print it, so a
// line's raft_id matches the ids in its text.
func raftID(id uint64) string { return fmt.Sprintf("%x", id) }

// raftLogger adapts a *slog.Logger to raft.Logger. raft's Info and Debug
// levels go to Debug: its Info is chatter (every vote, term and
// campaign) and clusterlog logs elections and configuration changes at
// Info itself, in corral's words.
type raftLogger struct{ l *slog.Logger }

func (r raftLogger) out(level slog.Level, msg string) {
	r.l.Log(context.Background(), level, msg)
}

func (r raftLogger) Debug(v ...any)   { r.out(slog.LevelDebug, fmt.Sprint(v...)) }
func (r raftLogger) Info(v ...any)    { r.out(slog.LevelDebug, fmt.Sprint(v...)) }
func (r raftLogger) Warning(v ...any) { r.out(slog.LevelWarn, fmt.Sprint(v...)) }
func (r raftLogger) Error(v ...any)   { r.out(slog.LevelError, fmt.Sprint(v...)) }

func (r raftLogger) Debugf(f string, v ...any)   { r.out(slog.LevelDebug, fmt.Sprintf(f, v...)) }
func (r raftLogger) Infof(f string, v ...any)    { r.out(slog.LevelDebug, fmt.Sprintf(f, v...)) }
func (r raftLogger) Warningf(f string, v ...any) { r.out(slog.LevelWarn, fmt.Sprintf(f, v...)) }
func (r raftLogger) Errorf(f string, v ...any)   { r.out(slog.LevelError, fmt.Sprintf(f, v...)) }

// Fatal and Panic mean raft found a broken invariant and expect not to
// return. Panicking rather than exiting lets the process's own handling see
// it.
func (r raftLogger) Fatal(v ...any)            { r.panic(fmt.Sprint(v...)) }
func (r raftLogger) Fatalf(f string, v ...any) { r.panic(fmt.Sprintf(f, v...)) }
func (r raftLogger) Panic(v ...any)            { r.panic(fmt.Sprint(v...)) }
func (r raftLogger) Panicf(f string, v ...any) { r.panic(fmt.Sprintf(f, v...)) }

func (r raftLogger) panic(s string) {
	r.out(slog.LevelError, s)
	panic("raft: " + s)
}
