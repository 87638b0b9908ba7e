package dsvctest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/dsvc"
)

// The helper-process protocol: the suite runs its own test binary with
// -test.run naming the test that called Run, and these variables set; the
// child's Run does its part and prints lines starting with linePrefix.
const (
	envRole    = "CORRAL_DSVCTEST_ROLE" // "stress" or "crash"
	envDS      = "CORRAL_DSVCTEST_DS"   // the Datastore, JSON
	envArgs    = "CORRAL_DSVCTEST_ARGS" // role arguments, space-separated integers
	linePrefix = "dsvctest: "
)

var (
	stressNet  = netip.MustParsePrefix("10.9.0.0/16")
	counterCIP = netip.MustParseAddr("10.9.255.254")
	nShared    = 5
)

// stressWorker is the spec's case 20 for worker id: open (create, or open
// what another created), add the shared records (skipping those others
// added), add its own four, bump the two shared counters with signature
// retries, modify its first record, delete its fourth and its dhcptab
// record, close. The end state is exact (checkStress).
func stressWorker(ctx context.Context, r *dsvc.Registry, ds dsvc.Datastore, id int) error {
	openC := func(kind dsvc.Kind, name, short string) (*dsvc.Handle, error) {
		h, err := r.Open(ctx, ds, kind, name, crw)
		if errors.Is(err, dsvc.ErrExists) {
			h, err = r.Open(ctx, ds, kind, short, rw)
		}
		return h, err
	}
	dt, err := openC(dsvc.DHCPTab, "dhcptab", "dhcptab")
	if err != nil {
		return err
	}
	defer dt.Close()
	dn, err := openC(dsvc.Network, stressNet.String(), stressNet.Addr().String())
	if err != nil {
		return err
	}
	defer dn.Close()
	for i := range nShared {
		d := dsvc.DTRecord{Key: fmt.Sprintf("Shared%d", i), Type: 'm', Value: ":x:"}
		if err := dt.AddDT(ctx, &d); err != nil && !errors.Is(err, dsvc.ErrExists) {
			return err
		}
		n := dsvc.DNRecord{CID: []byte{0}, CIP: addrAdd(stressNet.Addr(), 65000+i), SIP: specSIP1, Macro: "atlantic"}
		if err := dn.AddDN(ctx, &n); err != nil && !errors.Is(err, dsvc.ErrExists) {
			return err
		}
	}
	mine := make([]dsvc.DNRecord, 4)
	for k := range mine {
		mine[k] = dsvc.DNRecord{CID: []byte{byte(id >> 8), byte(id), byte(k)}, CIP: addrAdd(stressNet.Addr(), 1+4*id+k), SIP: specSIP2, Macro: "atlantic"}
		if err := dn.AddDN(ctx, &mine[k]); err != nil {
			return fmt.Errorf("add own record: %w", err)
		}
	}
	own := dsvc.DTRecord{Key: fmt.Sprintf("W%d", id), Type: 'm', Value: ":w:"}
	if err := dt.AddDT(ctx, &own); err != nil {
		return err
	}
	// The counters: lookup, modify with the signature, retry on collision.
	for {
		rs, err := dt.LookupDT(ctx, false, dsvc.Query(0).Eq(dsvc.DTQKey), -1, &dsvc.DTRecord{Key: "Counter"})
		if err != nil {
			return err
		}
		if len(rs) == 0 {
			c := dsvc.DTRecord{Key: "Counter", Type: 'm', Value: "1"}
			if err := dt.AddDT(ctx, &c); errors.Is(err, dsvc.ErrExists) {
				continue
			} else if err != nil {
				return err
			}
			break
		}
		n, _ := strconv.Atoi(rs[0].Value)
		nr := rs[0]
		nr.Value = strconv.Itoa(n + 1)
		if err := dt.ModifyDT(ctx, &rs[0], &nr); errors.Is(err, dsvc.ErrCollision) {
			continue
		} else if err != nil {
			return err
		}
		break
	}
	for {
		rs, err := dn.LookupDN(ctx, false, dsvc.Query(0).Eq(dsvc.DNQCIP), -1, &dsvc.DNRecord{CIP: counterCIP})
		if err != nil {
			return err
		}
		if len(rs) == 0 {
			c := dsvc.DNRecord{CID: []byte{0}, CIP: counterCIP, SIP: specSIP1, Lease: 1}
			if err := dn.AddDN(ctx, &c); errors.Is(err, dsvc.ErrExists) {
				continue
			} else if err != nil {
				return err
			}
			break
		}
		nr := rs[0]
		nr.Lease++
		if err := dn.ModifyDN(ctx, &rs[0], &nr); errors.Is(err, dsvc.ErrCollision) {
			continue
		} else if err != nil {
			return err
		}
		break
	}
	if _, err := dn.LookupDN(ctx, false, dsvc.Query(0).Eq(dsvc.DNQMacro), -1, &dsvc.DNRecord{Macro: "atlantic"}); err != nil {
		return err
	}
	m := mine[0]
	m.Macro = "done"
	if err := dn.ModifyDN(ctx, &mine[0], &m); err != nil {
		return fmt.Errorf("modify own record: %w", err)
	}
	if err := dn.DeleteDN(ctx, &mine[3]); err != nil {
		return fmt.Errorf("delete own record: %w", err)
	}
	if err := dt.DeleteDT(ctx, &own); err != nil {
		return err
	}
	return nil
}

func checkStress(t testing.TB, s Setup, ds dsvc.Datastore, workers int) {
	ctx := ctxT(t)
	dt := open(t, s, ds, dsvc.DHCPTab, "dhcptab", dsvc.Read)
	dts, err := dt.LookupDT(ctx, false, 0, -1, nil)
	must(t, err, "LookupDT")
	if len(dts) != nShared+1 {
		t.Fatalf("dhcptab has %d records, want %d: %+v", len(dts), nShared+1, head(dts))
	}
	c, _ := findDT(t, dt, "Counter", 'm')
	if c.Value != strconv.Itoa(workers) {
		t.Fatalf("dhcptab counter %q, want %d (a lost update)", c.Value, workers)
	}
	dn := open(t, s, ds, dsvc.Network, stressNet.Addr().String(), dsvc.Read)
	n, err := dn.CountDN(ctx, 0, nil)
	must(t, err, "CountDN")
	if want := nShared + 1 + 3*workers; n != want {
		t.Fatalf("network has %d records, want %d", n, want)
	}
	cr, _ := findDN(t, dn, counterCIP)
	if cr.Lease != uint32(workers) {
		t.Fatalf("network counter %d, want %d (a lost update)", cr.Lease, workers)
	}
	done, err := dn.CountDN(ctx, dsvc.Query(0).Eq(dsvc.DNQMacro), &dsvc.DNRecord{Macro: "done"})
	if err != nil || done != workers {
		t.Fatalf("%d modified records, want %d (%v)", done, workers, err)
	}
	for id := range workers {
		if _, ok := findDN(t, dn, addrAdd(stressNet.Addr(), 1+4*id+3)); ok {
			t.Fatalf("worker %d's deleted record is there", id)
		}
	}
}

func stressSize() (procs, goroutines int) {
	if Soak() {
		return 20, 20
	}
	return 4, 4
}

func testStressGoroutines(t *testing.T, s Setup) {
	ds := fresh(t, s)
	const workers = 16
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for id := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := stressWorker(ctxT(t), s.Registry, ds, id); err != nil {
				errs <- fmt.Errorf("worker %d: %w", id, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if !t.Failed() {
		checkStress(t, s, ds, workers)
	}
}

// child starts a helper process of role with args.
func child(t testing.TB, ds dsvc.Datastore, role string, args ...int) (*exec.Cmd, *bufio.Scanner) {
	exe, err := os.Executable()
	must(t, err, "os.Executable")
	parts := strings.Split(t.Name(), "/")[:1] // the test that called Run
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	cmd := exec.Command(exe, "-test.run="+strings.Join(parts, "/"), "-test.count=1")
	b, _ := json.Marshal(ds)
	var as []string
	for _, a := range args {
		as = append(as, strconv.Itoa(a))
	}
	cmd.Env = append(os.Environ(), envRole+"="+role, envDS+"="+string(b), envArgs+"="+strings.Join(as, " "))
	out, err := cmd.StdoutPipe()
	must(t, err, "StdoutPipe")
	cmd.Stderr = os.Stderr
	must(t, cmd.Start(), "start helper")
	return cmd, bufio.NewScanner(out)
}

func testStressProcesses(t *testing.T, s Setup) {
	if !s.MultiProcess {
		t.Skip("the Registry's Locker does not lock across processes")
	}
	ds := fresh(t, s)
	procs, gs := stressSize()
	type res struct {
		p   int
		out []string
		err error
	}
	results := make(chan res, procs)
	for p := range procs {
		cmd, sc := child(t, ds, "stress", p*gs, gs)
		go func() {
			var lines []string
			for sc.Scan() {
				if l, ok := strings.CutPrefix(sc.Text(), linePrefix); ok {
					lines = append(lines, l)
				}
			}
			results <- res{p, lines, cmd.Wait()}
		}()
	}
	for range procs {
		r := <-results
		if r.err != nil || len(r.out) != 1 || r.out[0] != "ok" {
			t.Errorf("process %d: %v, said %q", r.p, r.err, r.out)
		}
	}
	if !t.Failed() {
		checkStress(t, s, ds, procs*gs)
	}
}

// testKillWriter kills a process that keeps modifying a counter record and
// adding records, then reopens: every record reads, the counter holds the
// last acknowledged value or the one after (a write in flight may or may
// not have happened), and the container's lock was released.
func testKillWriter(t *testing.T, s Setup) {
	if !s.MultiProcess {
		t.Skip("the Registry's Locker does not lock across processes")
	}
	ctx := ctxT(t)
	ds := fresh(t, s)
	h := open(t, s, ds, dsvc.Network, stressNet.String(), crw)
	c := dsvc.DNRecord{CID: []byte{0}, CIP: counterCIP, SIP: specSIP1}
	must(t, h.AddDN(ctx, &c), "Add counter")
	for round := range 3 {
		cmd, sc := child(t, ds, "crash", round)
		acked := -1
		for sc.Scan() {
			l, ok := strings.CutPrefix(sc.Text(), linePrefix)
			if !ok {
				continue
			}
			if n, err := strconv.Atoi(strings.TrimPrefix(l, "acked ")); err == nil {
				acked = n
			}
			if acked >= 20*(round+1)+round*7 {
				break
			}
		}
		cmd.Process.Kill() // SIGKILL
		for sc.Scan() {    // a line written before the kill
			if l, ok := strings.CutPrefix(sc.Text(), linePrefix+"acked "); ok {
				acked, _ = strconv.Atoi(l)
			}
		}
		cmd.Wait()
		if acked < 0 {
			t.Fatal("the writer acknowledged nothing")
		}
		all, err := h.LookupDN(ctx, false, 0, -1, nil)
		must(t, err, "Lookup after kill -9")
		cr, _ := findDN(t, h, counterCIP)
		if int(cr.Lease) != acked && int(cr.Lease) != acked+1 {
			t.Fatalf("round %d: counter %d after acknowledging %d", round, cr.Lease, acked)
		}
		t.Logf("round %d: killed after %d acknowledged writes, counter %d, %d records", round, acked, cr.Lease, len(all))
		// The lock is free again: a write goes through.
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n := cr
		err = h.ModifyDN(wctx, &cr, &n)
		cancel()
		must(t, err, "write after the kill")
	}
}

// runChild is Run in a helper process.
func runChild(t *testing.T, s Setup, role string) {
	var ds dsvc.Datastore
	if err := json.Unmarshal([]byte(os.Getenv(envDS)), &ds); err != nil {
		t.Fatal(err)
	}
	var args []int
	for _, a := range strings.Fields(os.Getenv(envArgs)) {
		n, _ := strconv.Atoi(a)
		args = append(args, n)
	}
	ctx := context.Background()
	switch role {
	case "stress":
		first, n := args[0], args[1]
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for g := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := stressWorker(ctx, s.Registry, ds, first+g); err != nil {
					errs <- fmt.Errorf("worker %d: %w", first+g, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		failed := false
		for err := range errs {
			fmt.Printf("%s%v\n", linePrefix, err)
			failed = true
		}
		if !failed {
			fmt.Println(linePrefix + "ok")
		}
	case "crash":
		h, err := s.Registry.Open(ctx, ds, dsvc.Network, stressNet.Addr().String(), rw)
		if err != nil {
			t.Fatal(err)
		}
		base := 1000 * (args[0] + 1)
		for i := 0; ; i++ {
			rs, err := h.LookupDN(ctx, false, dsvc.Query(0).Eq(dsvc.DNQCIP), -1, &dsvc.DNRecord{CIP: counterCIP})
			if err != nil || len(rs) != 1 {
				t.Fatalf("lookup counter: %v", err)
			}
			n := rs[0]
			n.Lease++
			if err := h.ModifyDN(ctx, &rs[0], &n); err != nil {
				t.Fatal(err)
			}
			fmt.Printf("%sacked %d\n", linePrefix, n.Lease)
			r := dsvc.DNRecord{CID: []byte{1, byte(i)}, CIP: addrAdd(stressNet.Addr(), base+i), SIP: specSIP1, Macro: "crash"}
			if err := h.AddDN(ctx, &r); err != nil {
				t.Fatal(err)
			}
		}
	default:
		t.Fatalf("unknown helper role %q", role)
	}
}
