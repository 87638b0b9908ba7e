package postgres_test

import (
	"context"
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

// envDSN names the server the tests use. Unset, TestMain starts a
// throwaway server and sets it, so helper processes use the same one.
const envDSN = "CORRAL_TEST_POSTGRES"

// serverDSN is the test server's connection string; "" with skipWhy set
// when there is none.
var serverDSN, skipWhy string

func TestMain(m *testing.M) {
	stop := func() {}
	if serverDSN = os.Getenv(envDSN); serverDSN == "" {
		dsn, st, err := startServer()
		if err != nil {
			skipWhy = fmt.Sprintf("no PostgreSQL server: %s unset and starting one failed: %v", envDSN, err)
		} else {
			serverDSN, stop = dsn, st
			os.Setenv(envDSN, dsn)
		}
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

// needServer skips t without a server.
func needServer(t testing.TB) string {
	t.Helper()
	if serverDSN == "" {
		t.Skip(skipWhy)
	}
	return serverDSN
}

func findBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	ms, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(ms) == 0 {
		return "", fmt.Errorf("%s not found in PATH or /usr/lib/postgresql/*/bin", name)
	}
	return ms[len(ms)-1], nil
}

// startServer runs initdb and postgres in a temporary directory, as the
// user postgres when this process is root (the server refuses root), on a
// free port of 127.0.0.1, and creates the database corral. The returned
// stop shuts it down and removes the directory.
func startServer() (dsn string, stop func(), err error) {
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
	srv := run(postgres, "-D", data, "-k", sock, "-p", strconv.Itoa(port), "-c", "listen_addresses=127.0.0.1",
		"-c", "max_connections=400", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return "", nil, err
	}
	srv.Stdout, srv.Stderr = logf, logf
	if err := srv.Start(); err != nil {
		return "", nil, fmt.Errorf("postgres: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait(); logf.Close() }()
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

var schemaSeq atomic.Int64

// freshLocation returns a location (the server's DSN with a search_path)
// in a new, empty schema, dropped at the end of the test. The catalog is
// not made: the location does not exist yet.
func freshLocation(t testing.TB) string {
	dsn := needServer(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	schema := fmt.Sprintf("t%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6, schemaSeq.Add(1))
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
	})
	return withSearchPath(dsn, schema)
}

func withSearchPath(dsn, schema string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if strings.Contains(dsn, "?") {
			return dsn + "&search_path=" + schema
		}
		return dsn + "?search_path=" + schema
	}
	return dsn + " search_path=" + schema
}
