package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the server to use. Unset, Server starts one and sets it,
// so helper processes of the test use the same server.
const EnvDSN = "CORRAL_TEST_POSTGRES"

// EnvDurable, set to 1, makes Launch start a durable server: fsync,
// synchronous_commit and full_page_writes on, PostgreSQL's defaults, so
// that its commits wait for the disk as the files and binfiles modules'
// writes do (benchmarks comparing them). Unset, a launched server runs
// without them: a test server loses nothing that matters.
const EnvDurable = "CORRAL_TEST_POSTGRES_DURABLE"

// Durable reports whether EnvDurable asks for a durable server.
func Durable() bool { return os.Getenv(EnvDurable) == "1" }

// ErrNoBinaries is returned by Launch when initdb or postgres is not
// installed.
var ErrNoBinaries = errors.New("pgtest: PostgreSQL binaries not found")

// Server returns the server EnvDSN names, or launches one and sets EnvDSN
// to it; stop shuts a launched server down (a no-op for EnvDSN's). The
// error says why there is no server, fit for a skip message.
func Server() (dsn string, stop func(), err error) {
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		return dsn, func() {}, nil
	}
	dsn, stop, err = Launch()
	if err != nil {
		return "", nil, fmt.Errorf("no PostgreSQL server: %s unset and starting one failed: %w", EnvDSN, err)
	}
	os.Setenv(EnvDSN, dsn)
	return dsn, stop, nil
}

// Start is Server for one test or benchmark: it skips tb when there is no
// server and stops a launched one when tb ends. It leaves EnvDSN alone.
func Start(tb testing.TB) (dsn string) {
	tb.Helper()
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		return dsn
	}
	dsn, stop, err := Launch()
	if err != nil {
		tb.Skipf("no PostgreSQL server: %s unset and starting one failed: %v", EnvDSN, err)
	}
	tb.Cleanup(stop)
	return dsn
}

func findBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	ms, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(ms) == 0 {
		return "", fmt.Errorf("%w: %s not in PATH or /usr/lib/postgresql/*/bin", ErrNoBinaries, name)
	}
	return ms[len(ms)-1], nil
}

// Launch runs initdb and postgres in a temporary directory, as the user
// postgres when this process is root (the server refuses root), on a free
// port of 127.0.0.1, without fsync (a test server loses nothing that
// matters) unless Durable, and creates the database corral. The returned stop shuts it
// down and removes the directory.
func Launch() (dsn string, stop func(), err error) {
	initdb, err := findBin("initdb")
	if err != nil {
		return "", nil, err
	}
	postgres, err := findBin("postgres")
	if err != nil {
		return "", nil, err
	}
	var cred *syscall.Credential
	dir, err := os.MkdirTemp("", "corral-pg-")
	if err != nil {
		return "", nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	data, sock := filepath.Join(dir, "data"), filepath.Join(dir, "sock")
	for _, d := range []string{data, sock} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return "", nil, err
		}
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return "", nil, fmt.Errorf("running as root and no user postgres to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		for _, d := range []string{dir, data, sock} {
			if err := os.Chown(d, uid, gid); err != nil {
				return "", nil, err
			}
		}
	}
	run := func(path string, args ...string) *exec.Cmd {
		c := exec.Command(path, args...)
		c.Dir = dir
		c.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
		return c
	}
	if out, err := run(initdb, "-D", data, "-U", "corral", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync").CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("initdb: %v: %s", err, lastLines(out))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	durable := "off"
	if Durable() {
		durable = "on"
	}
	srv := run(postgres, "-D", data, "-k", sock, "-p", strconv.Itoa(port), "-c", "listen_addresses=127.0.0.1",
		"-c", "max_connections=400", "-c", "fsync="+durable, "-c", "synchronous_commit="+durable, "-c", "full_page_writes="+durable)
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return "", nil, err
	}
	srv.Stdout, srv.Stderr = logf, logf
	if err := srv.Start(); err != nil {
		return "", nil, fmt.Errorf("postgres: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait(); logf.Close() }() // ends with the server; stop waits for it
	stop = func() {
		srv.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			srv.Process.Kill()
			<-exited
		}
		os.RemoveAll(dir)
	}
	base := fmt.Sprintf("host=127.0.0.1 port=%d user=corral sslmode=disable", port)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var conn *pgx.Conn
	for {
		conn, err = pgx.Connect(ctx, base+" dbname=postgres")
		if err == nil {
			break
		}
		select {
		case e := <-exited:
			exited <- e
			b, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			stop()
			return "", nil, fmt.Errorf("postgres exited (%v): %s", e, lastLines(b))
		case <-ctx.Done():
			stop()
			return "", nil, fmt.Errorf("postgres not accepting connections: %w", err)
		case <-time.After(50 * time.Millisecond): // poll until it accepts
		}
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE corral"); err != nil {
		stop()
		return "", nil, err
	}
	return base + " dbname=corral", stop, nil
}

func lastLines(b []byte) string {
	ls := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(ls) > 5 {
		ls = ls[len(ls)-5:]
	}
	return strings.Join(ls, " | ")
}

// schemaSeq keeps schema names apart within one process.
var schemaSeq atomic.Int64

// Schema returns a location (dsn with a search_path) in a new, empty
// schema of dsn's database, dropped when tb ends.
func Schema(tb testing.TB, dsn string) string {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	schema := fmt.Sprintf("t%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6, schemaSeq.Add(1))
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
	})
	return WithSearchPath(dsn, schema)
}

// WithSearchPath adds search_path=schema to dsn, a URL or a key=value
// string.
func WithSearchPath(dsn, schema string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if strings.Contains(dsn, "?") {
			return dsn + "&search_path=" + schema
		}
		return dsn + "?search_path=" + schema
	}
	return dsn + " search_path=" + schema
}
