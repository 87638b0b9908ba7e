package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// dsvcEnv runs the data-service tools of the built binary on one datastore
// (a module and a fresh location) with a private lock directory.
type dsvcEnv struct {
	t        *testing.T
	module   string
	path     string
	lockDir  string
	data     string // $CORRAL_DATA_DIR
	lastOut  string
	lastErr  string
	lastCode int
}

func newDsvcEnv(t *testing.T, module string) *dsvcEnv {
	t.Helper()
	root := t.TempDir()
	e := &dsvcEnv{t: t, module: module, path: filepath.Join(root, "ds"), lockDir: filepath.Join(root, "locks"), data: filepath.Join(root, "data")}
	if module == "cluster" {
		// The cluster module's datastore lives in a one-node cluster's
		// agent, reached through $CORRAL_DATA_DIR.
		e.data, e.path = oneNodeDsvc(t), "/tools"
	}
	return e
}

// run runs `corral tool args...` on e's datastore and returns stdout and
// the exit status.
func (e *dsvcEnv) run(stdin string, tool string, args ...string) (string, int) {
	e.t.Helper()
	full := append([]string{}, strings.Fields(tool)...)
	if tool != "dsvc modules" {
		full = append(full, "-r", e.module, "-p", e.path, "--lock-dir", e.lockDir)
	}
	full = append(full, args...)
	cmd := exec.Command(binary, full...)
	cmd.Env = append(os.Environ(), "CORRAL_DATA_DIR="+e.data)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var xe *exec.ExitError
	if errors.As(err, &xe) {
		code = xe.ExitCode()
	} else if err != nil {
		e.t.Fatalf("corral %v: %v", full, err)
	}
	e.lastOut, e.lastErr, e.lastCode = out.String(), errb.String(), code
	return out.String(), code
}

// ok runs and requires exit status 0.
func (e *dsvcEnv) ok(tool string, args ...string) string {
	e.t.Helper()
	out, code := e.run("", tool, args...)
	if code != 0 {
		e.t.Fatalf("corral %s %v: exit %d\nstdout: %s\nstderr: %s", tool, args, code, out, e.lastErr)
	}
	return out
}

// status runs and requires exit status want and a message on stderr for a
// failure.
func (e *dsvcEnv) status(want int, tool string, args ...string) {
	e.t.Helper()
	out, code := e.run("", tool, args...)
	if code != want {
		e.t.Fatalf("corral %s %v: exit %d, want %d\nstdout: %s\nstderr: %s", tool, args, code, want, out, e.lastErr)
	}
	if want != 0 && strings.TrimSpace(e.lastErr) == "" {
		e.t.Fatalf("corral %s %v: exit %d with nothing on stderr", tool, args, code)
	}
}

func (e *dsvcEnv) dn(network string) []dnJSON {
	e.t.Helper()
	var rs []dnJSON
	if err := json.Unmarshal([]byte(e.ok("pntadm", "-P", "--json", network)), &rs); err != nil {
		e.t.Fatalf("pntadm -P --json: %v\n%s", err, e.lastOut)
	}
	return rs
}

func (e *dsvcEnv) dt() []dtJSON {
	e.t.Helper()
	var rs []dtJSON
	if err := json.Unmarshal([]byte(e.ok("dhtadm", "-P", "--json")), &rs); err != nil {
		e.t.Fatalf("dhtadm -P --json: %v\n%s", err, e.lastOut)
	}
	return rs
}

func (e *dsvcEnv) list() []string {
	e.t.Helper()
	var names []string
	if err := json.Unmarshal([]byte(e.ok("pntadm", "-L", "--json")), &names); err != nil {
		e.t.Fatalf("pntadm -L --json: %v\n%s", err, e.lastOut)
	}
	return names
}

var dsvcModules = []string{"files", "binfiles", "cluster"}

func TestPntadmRoundTrip(t *testing.T) {
	for _, mod := range dsvcModules {
		t.Run(mod, func(t *testing.T) {
			e := newDsvcEnv(t, mod)
			if out := e.ok("pntadm", "-L"); out != "" {
				t.Fatalf("-L on an empty datastore printed %q", out)
			}
			e.ok("pntadm", "-C", "10.1.0.0/24")
			e.ok("pntadm", "--create", "10.2.0.0/16")
			if got := e.list(); !reflect.DeepEqual(got, []string{"10.1.0.0", "10.2.0.0"}) {
				t.Fatalf("-L: %v", got)
			}
			e.ok("pntadm", "-A", "10.1.0.5", "-i", "01aabbccddeeff", "-f", "MANUAL+BOOTP", "-e", "-1",
				"-m", "mac1", "-c", "rack 4", "-s", "10.1.0.1", "10.1.0.0")
			e.ok("pntadm", "-A", "10.1.0.6", "-a", "-i", "host6", "-f", "4", "-s", "10.1.0.1", "10.1.0.0")
			e.ok("pntadm", "--add", "10.1.0.7", "--server", "10.1.0.1", "10.1.0.0/24")
			rs := e.dn("10.1.0.0")
			if len(rs) != 3 {
				t.Fatalf("records: %+v", rs)
			}
			want0 := dnJSON{ClientID: "01AABBCCDDEEFF", Flags: 0x0a, ClientIP: "10.1.0.5", ServerIP: "10.1.0.1", Lease: 0xffffffff, Macro: "mac1", Comment: "rack 4"}
			got0 := rs[0]
			if got0.Signature == 0 {
				t.Fatal("record without a signature")
			}
			got0.Signature = 0
			if got0 != want0 {
				t.Fatalf("record 0: %+v, want %+v", got0, want0)
			}
			if rs[1].ClientID != "686F737436" || rs[1].Flags != 4 || rs[2].ClientID != "00" || rs[2].Macro != "UNKNOWN" || rs[2].Lease != 0 {
				t.Fatalf("records 1, 2: %+v", rs[1:])
			}
			// Modify: only the fields given change; the signature moves on.
			e.ok("pntadm", "-M", "10.1.0.5", "-m", "mac2", "-e", "01/02/2030", "10.1.0.0")
			rs2 := e.dn("10.1.0.0")
			if rs2[0].Macro != "mac2" || rs2[0].Comment != "rack 4" || rs2[0].Lease == 0 || rs2[0].Lease == 0xffffffff || rs2[0].Signature == rs[0].Signature {
				t.Fatalf("after -M: %+v (before %+v)", rs2[0], rs[0])
			}
			e.ok("pntadm", "-M", "10.1.0.7", "-n", "10.1.0.70", "-c", "moved", "10.1.0.0")
			rs3 := e.dn("10.1.0.0")
			if len(rs3) != 3 || rs3[2].ClientIP != "10.1.0.70" || rs3[2].Comment != "moved" {
				t.Fatalf("after -M -n: %+v", rs3)
			}
			// Printing in the three styles.
			if out := e.ok("pntadm", "-P", "10.1.0.0"); !strings.Contains(out, "01AABBCCDDEEFF") || !strings.Contains(out, "Client ID") {
				t.Fatalf("-P:\n%s", out)
			}
			if out := e.ok("pntadm", "-P", "-v", "10.1.0.0"); !strings.Contains(out, "MANUAL+BOOTP") || !strings.Contains(out, "UNUSABLE") {
				t.Fatalf("-P -v:\n%s", out)
			}
			if out := e.ok("pntadm", "-P", "-x", "10.1.0.0"); !strings.Contains(out, "4294967295") && !strings.Contains(out, rs2[0].ClientID) {
				t.Fatalf("-P -x:\n%s", out)
			}
			e.ok("pntadm", "-D", "10.1.0.6", "10.1.0.0")
			if rs := e.dn("10.1.0.0"); len(rs) != 2 {
				t.Fatalf("after -D: %+v", rs)
			}
			e.ok("pntadm", "-R", "10.1.0.0")
			if got := e.list(); !reflect.DeepEqual(got, []string{"10.2.0.0"}) {
				t.Fatalf("-L after -R: %v", got)
			}
			// -h is taken and not stored; the note says so.
			e.ok("pntadm", "-A", "10.2.3.4", "-h", "client4", "-s", "10.2.0.1", "10.2.0.0")
			if !strings.Contains(e.lastErr, "host name is not stored") {
				t.Fatalf("-h: stderr %q", e.lastErr)
			}
			// Without -s the server is this host.
			e.ok("pntadm", "-A", "10.2.3.5", "10.2.0.0")
			if rs := e.dn("10.2.0.0"); len(rs) != 2 || rs[1].ServerIP == "" {
				t.Fatalf("default server: %+v", rs)
			}
		})
	}
}

func TestDhtadmRoundTrip(t *testing.T) {
	for _, mod := range dsvcModules {
		t.Run(mod, func(t *testing.T) {
			e := newDsvcEnv(t, mod)
			e.ok("dhtadm", "-C")
			e.ok("dhtadm", "-A", "-s", "MySym", "-d", "Vendor=SUNW,130,ASCII,1,0")
			e.ok("dhtadm", "-A", "-m", "net1", "-d", ":Subnet=255.255.255.0:Router=10.1.0.1:Broadcst=10.1.0.255:")
			e.ok("dhtadm", "--add", "--macro", "host", "--definition", ":Include=net1:")
			rs := e.dt()
			if len(rs) != 3 || rs[0].Name != "MySym" || rs[0].Type != "s" || rs[1].Name != "host" || rs[2].Value != ":Subnet=255.255.255.0:Router=10.1.0.1:Broadcst=10.1.0.255:" {
				t.Fatalf("-P: %+v", rs)
			}
			e.ok("dhtadm", "-M", "-m", "net1", "-e", "Router=10.1.0.2")
			e.ok("dhtadm", "-M", "-m", "net1", "-e", "Broadcst=")
			e.ok("dhtadm", "-M", "-m", "net1", "-e", "DNSserv=10.1.0.53")
			e.ok("dhtadm", "-M", "-m", "net1", "-e", "BootOnly=_NULL_VALUE_")
			rs2 := e.dt()
			if v := rs2[2].Value; v != ":Subnet=255.255.255.0:Router=10.1.0.2:DNSserv=10.1.0.53:BootOnly:" {
				t.Fatalf("after -e: %q", v)
			}
			if rs2[2].Signature == rs[2].Signature {
				t.Fatal("-M kept the signature")
			}
			e.ok("dhtadm", "-M", "-s", "MySym", "-d", "Vendor=SUNW,131,ASCII,1,0")
			e.ok("dhtadm", "-M", "-m", "host", "-n", "host2")
			rs3 := e.dt()
			if len(rs3) != 3 || rs3[0].Value != "Vendor=SUNW,131,ASCII,1,0" || rs3[1].Name != "host2" || rs3[1].Value != ":Include=net1:" {
				t.Fatalf("after -M -d, -n: %+v", rs3)
			}
			if out := e.ok("dhtadm", "-P"); !strings.Contains(out, "host2") || !strings.Contains(out, "Symbol") {
				t.Fatalf("-P:\n%s", out)
			}
			e.ok("dhtadm", "-D", "-s", "MySym")
			e.ok("dhtadm", "-D", "-m", "host2")
			if rs := e.dt(); len(rs) != 1 || rs[0].Name != "net1" {
				t.Fatalf("after -D: %+v", rs)
			}
			e.ok("dhtadm", "-R")
			e.status(exitNoEnt, "dhtadm", "-P")
		})
	}
}

// snapshot is everything the tools show of a datastore, signatures
// included, and the files of its location.
func (e *dsvcEnv) snapshot(networks ...string) string {
	e.t.Helper()
	var b strings.Builder
	for _, n := range networks {
		js, _ := json.Marshal(e.dn(n))
		b.Write(js)
	}
	js, _ := json.Marshal(e.dt())
	b.Write(js)
	filepath.Walk(e.path, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			b.WriteString("\n" + p + " " + fi.Mode().String())
			if fi.Mode().IsRegular() {
				data, _ := os.ReadFile(p)
				b.Write(data)
			}
		}
		return nil
	})
	return b.String()
}

func TestPntadmExitCodes(t *testing.T) {
	for _, mod := range dsvcModules {
		t.Run(mod, func(t *testing.T) {
			e := newDsvcEnv(t, mod)
			e.status(exitNoEnt, "pntadm", "-P", "10.1.0.0")
			e.ok("pntadm", "-C", "10.1.0.0/24")
			e.ok("dhtadm", "-C")
			e.ok("dhtadm", "-A", "-m", "mac1", "-d", ":Subnet=255.255.255.0:")
			e.ok("pntadm", "-A", "10.1.0.5", "-i", "01AA", "-m", "mac1", "-s", "10.1.0.1", "10.1.0.0")
			e.ok("pntadm", "-A", "10.1.0.6", "-s", "10.1.0.1", "10.1.0.0")
			before := e.snapshot("10.1.0.0")

			e.status(exitExists, "pntadm", "-C", "10.1.0.0/24")
			e.status(exitExists, "pntadm", "-A", "10.1.0.5", "-s", "10.1.0.1", "10.1.0.0")
			e.status(exitExists, "pntadm", "-M", "10.1.0.5", "-n", "10.1.0.6", "10.1.0.0")
			e.status(exitNoEnt, "pntadm", "-D", "10.1.0.9", "10.1.0.0")
			e.status(exitNoEnt, "pntadm", "-M", "10.1.0.9", "-c", "x", "10.1.0.0")
			e.status(exitNoEnt, "pntadm", "-R", "10.9.0.0")
			e.status(exitNoEnt, "pntadm", "-A", "10.9.0.5", "10.9.0.0")
			e.status(exitNoEnt, "pntadm", "-A", "10.1.0.8", "-m", "nomacro", "-y", "-s", "10.1.0.1", "10.1.0.0")
			for _, bad := range [][]string{
				{"-A", "10.2.0.5", "-s", "10.1.0.1", "10.1.0.0"},               // outside the network
				{"-A", "10.1.0.7", "-f", "PERMANENT+SOMETIMES", "10.1.0.0"},    // unknown flag
				{"-A", "10.1.0.7", "-f", "0x10", "-s", "10.1.0.1", "10.1.0.0"}, // flag outside DNAll
				{"-A", "10.1.0.7", "-i", "0g", "-s", "10.1.0.1", "10.1.0.0"},   // not hex
				{"-A", "10.1.0.7", "-e", "13/45/2030", "10.1.0.0"},             // not a date
				{"-A", "10.1.0.7", "-c", strings.Repeat("c", 49), "-s", "10.1.0.1", "10.1.0.0"},
				{"-A", "10.1.0.7", "-s", "::1", "10.1.0.0"},
				{"-A", "300.1.0.6", "10.1.0.0"},
				{"-M", "10.1.0.5", "-n", "10.2.0.5", "10.1.0.0"},
				{"-C", "10.3.0.0"},           // no prefix length
				{"-C", "10.3.0.1/24"},        // host bits
				{"-C", "255.255.255.255/32"}, // refused
				{"-C", "-L", "10.3.0.0/24"},  // two verbs
				{"10.1.0.0"},                 // no verb
				{"-P"},                       // no network
				{"-D", "10.1.0.5", "-c", "x", "10.1.0.0"},
				{"-P", "--no-such-flag", "10.1.0.0"},
			} {
				e.status(exitNonCritical, "pntadm", bad...)
			}
			if after := e.snapshot("10.1.0.0"); after != before {
				t.Fatalf("failed commands changed the datastore:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestDhtadmExitCodes(t *testing.T) {
	for _, mod := range dsvcModules {
		t.Run(mod, func(t *testing.T) {
			e := newDsvcEnv(t, mod)
			e.status(exitNoEnt, "dhtadm", "-P")
			e.status(exitNoEnt, "dhtadm", "-A", "-m", "m", "-d", ":a=1:")
			e.ok("dhtadm", "-C")
			e.ok("dhtadm", "-A", "-m", "m", "-d", ":a=1:")
			e.ok("dhtadm", "-A", "-s", "s", "-d", "Vendor=X,1,ASCII,1,0")
			e.ok("pntadm", "-C", "10.1.0.0/24")
			before := e.snapshot("10.1.0.0")
			e.status(exitExists, "dhtadm", "-C")
			e.status(exitExists, "dhtadm", "-A", "-m", "m", "-d", ":b=2:")
			e.status(exitNoEnt, "dhtadm", "-D", "-m", "nope")
			e.status(exitNoEnt, "dhtadm", "-D", "-s", "m") // a macro, not a symbol
			e.status(exitNoEnt, "dhtadm", "-M", "-m", "nope", "-d", ":x:")
			e.status(exitNoEnt, "dhtadm", "-M", "-m", "m", "-e", "zz=")
			for _, bad := range [][]string{
				{"-A", "-m", "m2"},                      // no definition
				{"-A", "-s", "a", "-m", "b", "-d", "x"}, // both
				{"-A", "-d", "x"},                       // neither
				{"-A", "-m", "m x ", "-d", ":a:"},       // trailing space
				{"-A", "-m", strings.Repeat("k", 129), "-d", ":a:"},
				{"-M", "-m", "m"},              // nothing to change
				{"-M", "-s", "s", "-e", "a=1"}, // -e on a symbol
				{"-M", "-m", "m", "-e", "=1"},
				{"-M", "-m", "m", "-e", "a=1", "-d", ":x:"},
				{"-P", "-m", "m"},
				{"-C", "-P"},
				{"-P", "extra"},
			} {
				e.status(exitNonCritical, "dhtadm", bad...)
			}
			if after := e.snapshot("10.1.0.0"); after != before {
				t.Fatalf("failed commands changed the datastore:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestPntadmBatch(t *testing.T) {
	for _, mod := range dsvcModules {
		t.Run(mod, func(t *testing.T) {
			e := newDsvcEnv(t, mod)
			batch := filepath.Join(t.TempDir(), "batch")
			os.WriteFile(batch, []byte(`# a comment
-C 10.1.0.0/24
-A 10.1.0.1 -s 10.1.0.254 -c 'first one' 10.1.0.0
-A 10.1.0.2 -s 10.1.0.254 -m "mac two" 10.1.0.0

-A 10.1.0.1 -s 10.1.0.254 10.1.0.0
-M 10.1.0.2 -f MANUAL 10.1.0.0
-D 10.1.0.99 10.1.0.0
`), 0o644)
			// Lines 6 and 8 fail (exists, does not exist): the highest status.
			_, code := e.run("", "pntadm", "-B", "-v", batch)
			if code != exitNoEnt {
				t.Fatalf("-B: exit %d, want %d\n%s\n%s", code, exitNoEnt, e.lastOut, e.lastErr)
			}
			if !strings.Contains(e.lastErr, "line 6") || !strings.Contains(e.lastErr, "line 8") || strings.Contains(e.lastErr, "line 7") {
				t.Fatalf("-B stderr: %s", e.lastErr)
			}
			if !strings.Contains(e.lastOut, "pntadm -M 10.1.0.2") {
				t.Fatalf("-B -v did not echo: %s", e.lastOut)
			}
			rs := e.dn("10.1.0.0")
			if len(rs) != 2 || rs[0].Comment != "first one" || rs[1].Macro != "mac two" || rs[1].Flags != 2 {
				t.Fatalf("after -B: %+v", rs)
			}
			// From stdin, all good.
			if _, code := e.run("-D 10.1.0.1 10.1.0.0\n-D 10.1.0.2 10.1.0.0\n", "pntadm", "-B"); code != 0 {
				t.Fatalf("-B from stdin: exit %d: %s", code, e.lastErr)
			}
			if rs := e.dn("10.1.0.0"); len(rs) != 0 {
				t.Fatalf("after -B from stdin: %+v", rs)
			}
			// An unterminated quote is a bad line; a nested -B is refused.
			if _, code := e.run("-A 10.1.0.3 -c 'oops 10.1.0.0\n-B\n", "pntadm", "-B"); code != exitNonCritical {
				t.Fatalf("bad batch: exit %d", code)
			}
			if rs := e.dn("10.1.0.0"); len(rs) != 0 {
				t.Fatalf("bad batch added: %+v", rs)
			}
		})
	}
}

func TestDhtadmBatch(t *testing.T) {
	for _, mod := range dsvcModules {
		t.Run(mod, func(t *testing.T) {
			e := newDsvcEnv(t, mod)
			in := "-C\n-A -s Sym -d 'Vendor=X,1,ASCII,1,0'\n-A -m net -d ':Subnet=255.255.255.0:'\n-A -m net -d ':x:'\n-M -m net -e 'Router=10.0.0.1'\n"
			if _, code := e.run(in, "dhtadm", "-B"); code != exitExists {
				t.Fatalf("-B: exit %d: %s", code, e.lastErr)
			}
			rs := e.dt()
			if len(rs) != 2 || rs[1].Value != ":Subnet=255.255.255.0:Router=10.0.0.1:" {
				t.Fatalf("after -B: %+v", rs)
			}
		})
	}
}

func TestDsvcCLIModules(t *testing.T) {
	e := newDsvcEnv(t, "files")
	out := e.ok("dsvc modules", "--json")
	var ms []struct {
		Name    string `json:"name"`
		Version int    `json:"version"`
		Synch   string `json:"synch"`
	}
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := map[string]bool{"files/1/lock-service": true, "binfiles/1/lock-service": true, "postgres/1/none": true, "cluster/1/none": true}
	for _, m := range ms {
		delete(want, m.Name+"/"+itoa(m.Version)+"/"+m.Synch)
	}
	if len(want) != 0 || len(ms) != 4 {
		t.Fatalf("modules %+v, missing %v", ms, want)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestDsvcCLIConvert(t *testing.T) {
	src := newDsvcEnv(t, "files")
	src.ok("dhtadm", "-C")
	src.ok("dhtadm", "-A", "-s", "Sym", "-d", "Vendor=X,1,ASCII,1,0")
	src.ok("dhtadm", "-A", "-m", "net", "-d", ":Subnet=255.255.255.0:")
	src.ok("dhtadm", "-M", "-m", "net", "-e", "Router=10.1.0.1") // a signature past counter 1
	src.ok("pntadm", "-C", "10.1.0.0/24")
	src.ok("pntadm", "-C", "10.2.0.0/24")
	var batch strings.Builder
	for i := 1; i <= 40; i++ {
		batch.WriteString("-A 10.1.0." + itoa(i) + " -i 01" + strings.Repeat("ab", i%5+1) + " -s 10.1.0.254 -f " + itoa(i%16) + " 10.1.0.0\n")
	}
	batch.WriteString("-M 10.1.0.3 -c modified 10.1.0.0\n-A 10.2.0.9 -s 10.2.0.1 10.2.0.0\n")
	if _, code := src.run(batch.String(), "pntadm", "-B"); code != 0 {
		t.Fatalf("fill: %s", src.lastErr)
	}
	srcBefore := src.snapshot("10.1.0.0", "10.2.0.0")

	dst := newDsvcEnv(t, "binfiles")
	dst.lockDir = src.lockDir
	src.ok("dsvc convert", "--to-resource", "binfiles", "--to-path", dst.path)
	if !strings.Contains(src.lastOut, "converted 43 records") || strings.Contains(src.lastOut, "\r") {
		t.Fatalf("convert output (not a terminal: no bar): %q", src.lastOut)
	}
	if !reflect.DeepEqual(dst.list(), []string{"10.1.0.0", "10.2.0.0"}) {
		t.Fatalf("destination networks: %v", dst.list())
	}
	for _, n := range []string{"10.1.0.0", "10.2.0.0"} {
		if a, b := src.dn(n), dst.dn(n); !reflect.DeepEqual(a, b) {
			t.Fatalf("%s after convert:\nfiles    %+v\nbinfiles %+v", n, a, b)
		}
	}
	if a, b := src.dt(), dst.dt(); !reflect.DeepEqual(a, b) || len(a) != 2 {
		t.Fatalf("dhcptab after convert:\nfiles    %+v\nbinfiles %+v", a, b)
	}
	var vr []verifyResult
	if err := json.Unmarshal([]byte(dst.ok("dsvc verify", "--json")), &vr); err != nil || len(vr) != 3 {
		t.Fatalf("verify: %v %+v", err, vr)
	}
	for _, v := range vr {
		if len(v.Errors) != 0 {
			t.Fatalf("verify: %+v", vr)
		}
	}
	// The converted datastore is written through the tools like any other.
	dst.ok("pntadm", "-M", "10.1.0.3", "-c", "again", "10.1.0.0")

	// Converting onto existing containers fails and changes neither side.
	dstBefore := dst.snapshot("10.1.0.0", "10.2.0.0")
	src.status(exitExists, "dsvc convert", "--to-resource", "binfiles", "--to-path", dst.path)
	src.status(exitNonCritical, "dsvc convert", "--to-path", src.path, "--to-resource", "files") // onto itself
	src.status(exitNonCritical, "dsvc convert")                                                  // no destination
	src.status(exitCritical, "dsvc convert", "--to-resource", "nosuch", "--to-path", t.TempDir())
	if got := dst.snapshot("10.1.0.0", "10.2.0.0"); got != dstBefore {
		t.Fatal("a failed convert changed the destination")
	}
	if got := src.snapshot("10.1.0.0", "10.2.0.0"); got != srcBefore {
		t.Fatal("convert changed the source")
	}
	// Upgrade: files has one registered version here, so there is nothing
	// to upgrade to; it says so and changes nothing.
	src.status(exitNonCritical, "dsvc upgrade")
	if got := src.snapshot("10.1.0.0", "10.2.0.0"); got != srcBefore {
		t.Fatal("a refused upgrade changed the source")
	}
}

func TestDsvcCLIVerifyReportsDamage(t *testing.T) {
	e := newDsvcEnv(t, "files")
	e.ok("pntadm", "-C", "10.1.0.0/24")
	e.ok("pntadm", "-A", "10.1.0.1", "-s", "10.1.0.254", "10.1.0.0")
	e.ok("dsvc verify")
	ents, _ := os.ReadDir(e.path)
	var damaged bool
	for _, ent := range ents {
		if strings.Contains(ent.Name(), "10_1_0_0") {
			p := filepath.Join(e.path, ent.Name())
			data, _ := os.ReadFile(p)
			os.WriteFile(p, append(data, []byte("this is not a record\n")...), 0o644)
			damaged = true
		}
	}
	if !damaged {
		t.Fatalf("no container file in %v", ents)
	}
	_, code := e.run("", "dsvc verify")
	if code == 0 || !strings.Contains(e.lastErr, "10.1.0.0") {
		t.Fatalf("verify of a damaged container: exit %d\n%s\n%s", code, e.lastOut, e.lastErr)
	}
}
