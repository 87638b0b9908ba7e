package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// waitLog waits until a line of nd's log holds every one of subs.
func (nd *node) waitLog(within time.Duration, subs ...string) {
	nd.t.Helper()
	deadline := time.Now().Add(within)
	for {
		log := nd.log.String()
		for _, line := range strings.Split(log, "\n") {
			n := 0
			for _, s := range subs {
				if strings.Contains(line, s) {
					n++
				}
			}
			if n == len(subs) {
				return
			}
		}
		if time.Now().After(deadline) {
			nd.t.Fatalf("n%d: no line with %q in the log within %v:\n%s", nd.id, subs, within, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An agent out of file descriptors stops accepting only while it is out:
// its peer and local listeners serve again once the descriptors are back.
func TestAcceptSurvivesEMFILE(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit not installed")
	}
	nodes := nodesAt(t, []string{fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.2:%d", freePort(t))},
		func(i int, args []string) *exec.Cmd {
			if i == 1 {
				return exec.Command(prlimit, append([]string{"--nofile=64:64", binary}, args...)...)
			}
			return exec.Command(binary, args...)
		})
	// n1 dials nobody, so a link between the two can only come in through
	// its peer listener.
	n1 := nodes[0]
	for i, a := range n1.args {
		if a == "--peers" {
			n1.args = append(n1.args[:i:i], n1.args[i+2:]...)
			break
		}
	}
	n1.args = append(n1.args, "--bootstrap")
	n1.start()
	n1.waitState(1, "self", 15*time.Second)

	// 100 idle connections from a few addresses (under the per-address
	// bound of handshakes) exhaust its 64 descriptors.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 100 {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%5))}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", n1.addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	emfile := "too many open files"
	n1.waitLog(10*time.Second, "accept tcp "+n1.addr, emfile)
	// Connections queued on both sockets meet the same error.
	for _, sock := range []string{"admin.sock", "client.sock"} {
		for range 3 {
			c, err := net.Dial("unix", filepath.Join(n1.dir, sock))
			if err != nil {
				t.Fatalf("%s: %v", sock, err)
			}
			conns = append(conns, c)
		}
		n1.waitLog(10*time.Second, "accept unix "+filepath.Join(n1.dir, sock), emfile)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil

	// Afterwards: corral members (admin socket), a client connection, and
	// a peer that joins through the peer listener.
	n1.waitState(1, "self", 10*time.Second)
	c, err := net.Dial("unix", filepath.Join(n1.dir, "client.sock"))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("not a frame at all, just words on the client socket....................."))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	reply, _ := io.ReadAll(c)
	c.Close()
	if !bytes.Contains(reply, []byte("bad magic")) {
		t.Errorf("client socket after EMFILE: agent answered %q, want a REJECT naming the bad magic", reply)
	}
	nodes[1].start()
	n1.waitState(2, "up", 20*time.Second)
	for _, l := range []string{n1.addr, "admin.sock", "client.sock"} {
		n1.waitLog(5*time.Second, "accept recovered", l)
	}
	t.Logf("n1 log of the burst:\n%s", grepLines(n1.log.String(), "accept"))
}

// grepLines returns the lines of s that hold sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
