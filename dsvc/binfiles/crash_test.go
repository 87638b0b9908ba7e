package binfiles

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/dsvc"
)

const crashRecords = 32

// crashRecord is record i as written by step k: every field follows k,
// so a torn record shows.
func crashRecord(i, k int) dsvc.DNRecord {
	return dsvc.DNRecord{
		CID:     []byte{byte(k), byte(k >> 8), byte(i)},
		Flags:   dsvc.DNFlags(k % 16),
		CIP:     nthIP(net24, 1+i),
		SIP:     ip("10.0.0.254"),
		Lease:   uint32(k),
		Macro:   fmt.Sprint("m", k),
		Comment: strings.Repeat("c", k%48),
	}
}

// TestHelperCrashWriter is the writer process TestCrashAtomicity kills:
// it modifies, renames, deletes and re-adds records forever, printing
// each step once committed.
func TestHelperCrashWriter(t *testing.T) {
	loc := os.Getenv("BINFILES_CRASH_LOC")
	if loc == "" {
		t.Skip("helper process")
	}
	m := New(nil)
	h, err := m.OpenDN(ctx, loc, "binfiles1_10.0.0.0", net24, rw)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	start, _ := strconv.Atoi(os.Getenv("BINFILES_CRASH_START"))
	for k := start; ; k++ {
		i := k % crashRecords
		cur, err := h.Lookup(ctx, false, dsvc.Query(0).Eq(dsvc.DNQCIP), 1, &dsvc.DNRecord{CIP: nthIP(net24, 1+i)})
		if err != nil || len(cur) != 1 {
			fmt.Println("error", err, len(cur))
			os.Exit(2)
		}
		nr := crashRecord(i, k)
		if k%5 == 0 {
			// Delete and re-add: two transactions, the record may be
			// missing between them; the parent allows that only for
			// the step that was in flight.
			if err = h.Delete(ctx, &cur[0]); err == nil {
				err = h.Add(ctx, &nr)
			}
		} else {
			err = h.Modify(ctx, &cur[0], &nr)
		}
		if err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		fmt.Println("done", k)
	}
}

// TestCrashAtomicity kills a writer process with SIGKILL at arbitrary
// points; after each kill the container must hold every record whole (all
// fields of one step), the index must agree with the records, and no
// acknowledged step may be lost.
func TestCrashAtomicity(t *testing.T) {
	_, loc, h := newDN(t, net24)
	for i := range crashRecords {
		r := crashRecord(i, i)
		if err := h.Add(ctx, &r); err != nil {
			t.Fatal(err)
		}
	}
	next := crashRecords
	lastAcked := map[int]int{} // record → its newest acknowledged step
	for i := range crashRecords {
		lastAcked[i] = i
	}
	for round := range 6 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCrashWriter$")
		cmd.Env = append(os.Environ(), "BINFILES_CRASH_LOC="+loc, "BINFILES_CRASH_START="+strconv.Itoa(next))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := next - 1
		sc := bufio.NewScanner(out)
		target := next + 20 + round*7
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) > 0 && f[0] == "error" {
				t.Fatalf("helper: %s", sc.Text())
			}
			if len(f) == 2 && f[0] == "done" {
				acked, _ = strconv.Atoi(f[1])
				lastAcked[acked%crashRecords] = acked
				if acked >= target {
					break
				}
			}
		}
		// Kill it while it is in the middle of later steps.
		time.AfterFunc(time.Duration(round)*300*time.Microsecond, func() { cmd.Process.Kill() })
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "done" {
				acked, _ = strconv.Atoi(f[1])
				lastAcked[acked%crashRecords] = acked
			}
		}
		cmd.Wait()

		n := verify(t, dnPath(loc, net24))
		got, err := h.Lookup(ctx, false, 0, -1, nil)
		if err != nil {
			t.Fatal(err)
		}
		inflight := acked + 1
		if n != len(got) || (len(got) != crashRecords && !(len(got) == crashRecords-1 && inflight%5 == 0)) {
			t.Fatalf("round %d: %d records (file %d) after acked step %d", round, len(got), n, acked)
		}
		for _, r := range got {
			k := int(r.Lease)
			i := int(r.CIP.As4()[3]) - 1
			if want := crashRecord(i, k); !equalDN(&r, &dsvc.DNRecord{CID: want.CID, Flags: want.Flags, CIP: want.CIP, SIP: want.SIP, Lease: want.Lease, Macro: want.Macro, Comment: want.Comment, Sig: r.Sig}) {
				t.Fatalf("round %d: torn record %+v", round, r)
			}
			// The newest acknowledged step of record i, or the one in flight.
			if k != lastAcked[i] && k != inflight {
				t.Fatalf("round %d: record %d at step %d, but step %d was acknowledged", round, i, k, lastAcked[i])
			}
		}
		if len(got) < crashRecords {
			// Re-add the record whose delete-and-add was cut in half.
			r := crashRecord(inflight%crashRecords, inflight)
			if err := h.Add(ctx, &r); err != nil {
				t.Fatal(err)
			}
		}
		if n, _ := h.Count(ctx, dsvc.Query(0).Eq(dsvc.DNQLease), &dsvc.DNRecord{Lease: uint32(inflight)}); n == 1 {
			lastAcked[inflight%crashRecords] = inflight
		}
		next = inflight + 1
	}
}
