package binfiles

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/corralhq/corral/dsvc"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata/ from the current encoders")

// goldenDN and goldenDT are the records of the golden containers, with
// fixed signatures.
var goldenDN = []dsvc.DNRecord{
	{CID: []byte{0}, Flags: dsvc.DNDynamic, CIP: ip("10.0.0.1"), SIP: ip("10.0.0.254"), Lease: 0, Macro: "10.0.0.0", Sig: dsvc.NewSig(0x1234)},
	{CID: []byte{0x01, 0x08, 0x00, 0x20, 0x11, 0x12, 0xb7}, Flags: dsvc.DNManual | dsvc.DNBootpOnly, CIP: ip("10.0.0.2"), SIP: ip("10.0.0.254"), Lease: dsvc.LeasePermanent, Macro: "atlantic", Comment: "printer", Sig: dsvc.NewSig(0xffff) + 41},
	{CID: []byte{0x01, 0x08, 0x00, 0x20, 0x11, 0x12, 0xb7}, Flags: dsvc.DNAutomatic | dsvc.DNUnusable, CIP: ip("10.0.0.3"), SIP: ip("0.0.0.0"), Lease: 1700000000, Sig: 0x0001_0000_0000_0002},
}

var goldenDT = []dsvc.DTRecord{
	{Key: "Locale", Type: dsvc.DTMacro, Value: ":UTCoffst=-18000:", Sig: dsvc.NewSig(0x0a0b)},
	{Key: "SrootIP4", Type: dsvc.DTSymbol, Value: "Vendor=SUNW.Ultra-1 SUNW.i86pc,2,IP,1,1", Sig: dsvc.NewSig(0x0c0d) + 1},
	{Key: "empty", Type: dsvc.DTMacro, Sig: 1},
}

// TestGoldenValues pins the value encoding byte for byte (FORMAT.md).
func TestGoldenValues(t *testing.T) {
	var buf bytes.Buffer
	fmt.Fprintln(&buf, "# binfiles record values (FORMAT.md). Lines: name<TAB>key hex<TAB>value hex.")
	fmt.Fprintln(&buf, "# Regenerate with: go test ./dsvc/binfiles -run TestGolden -rewrite")
	fmt.Fprintf(&buf, "meta-dhcptab\t%x\t%x\n", keyMeta, encodeMeta(meta{kind: kindDHCPTab}))
	fmt.Fprintf(&buf, "meta-10.0.0.0/24\t%x\t%x\n", keyMeta, encodeMeta(meta{kind: kindNetwork, net: net24}))
	for i := range goldenDN {
		r := &goldenDN[i]
		fmt.Fprintf(&buf, "dn-%v\t%x\t%x\n", r.CIP, cipKey(r.CIP), encodeDN(r))
		fmt.Fprintf(&buf, "cid-%v\t%x\t\n", r.CIP, cidKey(r.CID, r.CIP))
	}
	for i := range goldenDT {
		r := &goldenDT[i]
		fmt.Fprintf(&buf, "dt-%c-%s\t%x\t%x\n", r.Type, r.Key, dtKey(r.Type, r.Key), encodeDT(r))
	}
	compareGolden(t, "values.golden", buf.Bytes())
	// Every vector decodes back to its record.
	for _, l := range strings.Split(buf.String(), "\n") {
		f := strings.Split(l, "\t")
		if len(f) != 3 || f[2] == "" {
			continue
		}
		k, _ := hex.DecodeString(f[1])
		v, _ := hex.DecodeString(f[2])
		var err error
		switch {
		case strings.HasPrefix(f[0], "dn-"):
			var r dsvc.DNRecord
			r, err = decodeDN(k, v)
			if err == nil && !slices.ContainsFunc(goldenDN, func(g dsvc.DNRecord) bool { return equalDN(&g, &r) }) {
				err = fmt.Errorf("decoded to %+v", r)
			}
		case strings.HasPrefix(f[0], "dt-"):
			var r dsvc.DTRecord
			r, err = decodeDT(k, v)
			if err == nil && !slices.Contains(goldenDT, r) {
				err = fmt.Errorf("decoded to %+v", r)
			}
		case strings.HasPrefix(f[0], "meta-"):
			_, err = decodeMeta(v)
		}
		if err != nil {
			t.Errorf("%s: %v", f[0], err)
		}
	}
}

func compareGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *rewrite {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (a format change needs a new version):\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

// dump lists every bucket, key and value of a container file, sorted as
// bbolt keeps them.
func dump(t *testing.T, path string) []byte {
	t.Helper()
	db, err := bolt.Open(path, 0o644, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# %s: bucket<TAB>key hex<TAB>value hex (FORMAT.md)\n", filepath.Base(path))
	db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				fmt.Fprintf(&buf, "%s\t%x\t%x\n", name, k, v)
				return nil
			})
		})
	})
	return buf.Bytes()
}

// TestGoldenContainers opens the container files in testdata, written by
// an earlier build: this version must read them as they are, and their
// contents are pinned by the .dump files.
func TestGoldenContainers(t *testing.T) {
	if *rewrite {
		loc := t.TempDir()
		m := New(nil)
		dn, err := m.OpenDN(ctx, loc, "binfiles1_10.0.0.0", net24, create)
		if err != nil {
			t.Fatal(err)
		}
		if err := dn.(dsvc.DNImporter).Import(ctx, slices.Clone(goldenDN)); err != nil {
			t.Fatal(err)
		}
		dt, _ := m.OpenDT(ctx, loc, "binfiles1_dhcptab", create)
		if err := dt.(dsvc.DTImporter).Import(ctx, slices.Clone(goldenDT)); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"binfiles1_10_0_0_0", "binfiles1_dhcptab"} {
			copyFile(t, filepath.Join(loc, n), filepath.Join("testdata", "golden", n))
		}
	}
	loc := t.TempDir()
	for _, n := range []string{"binfiles1_10_0_0_0", "binfiles1_dhcptab"} {
		src := filepath.Join("testdata", "golden", n)
		compareGolden(t, "golden/"+n+".dump", dump(t, src))
		copyFile(t, src, filepath.Join(loc, n))
	}
	m := New(nil)
	dn, err := m.OpenDN(ctx, loc, "binfiles1_10.0.0.0", netip.Prefix{}, dsvc.Read)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dn.Lookup(ctx, false, 0, -1, nil)
	if err != nil || len(got) != len(goldenDN) {
		t.Fatalf("golden network: %v %v", got, err)
	}
	for i := range got {
		if !equalDN(&got[i], &goldenDN[i]) {
			t.Errorf("golden network record %d: %+v, want %+v", i, got[i], goldenDN[i])
		}
	}
	dt, err := m.OpenDT(ctx, loc, "binfiles1_dhcptab", dsvc.Read)
	if err != nil {
		t.Fatal(err)
	}
	dg, err := dt.Lookup(ctx, false, 0, -1, nil)
	slices.SortFunc(dg, func(a, b dsvc.DTRecord) int { return strings.Compare(a.Key, b.Key) })
	if err != nil || !slices.Equal(dg, goldenDT) {
		t.Fatalf("golden dhcptab: %v %v", dg, err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	os.MkdirAll(filepath.Dir(to), 0o755)
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// FuzzDecodeDN: stored bytes that encodeDN cannot have written are
// ErrInternal, never a panic; what decodes re-encodes to the same bytes.
func FuzzDecodeDN(f *testing.F) {
	for i := range goldenDN {
		f.Add(cipKey(goldenDN[i].CIP), encodeDN(&goldenDN[i]))
	}
	f.Add([]byte{10, 0, 0, 1}, []byte{1})                         // truncated fixed part
	f.Add([]byte{10, 0, 0, 1}, []byte{2, 0, 0, 0, 0, 0, 0, 0, 1}) // unknown version
	f.Add([]byte{10, 0, 0}, encodeDN(&goldenDN[0]))               // short key
	f.Fuzz(func(t *testing.T, k, v []byte) {
		r, err := decodeDN(k, v)
		if err != nil {
			if dsvc.CodeOf(err) != dsvc.CodeInternal {
				t.Fatalf("error %v is not ErrInternal", err)
			}
			return
		}
		if again := encodeDN(&r); !bytes.Equal(again, v) || !bytes.Equal(cipKey(r.CIP), k) {
			t.Fatalf("%x decodes to %+v, which encodes to %x", v, r, again)
		}
	})
}

// FuzzDecodeDT is FuzzDecodeDN for dhcptab records and the container meta.
func FuzzDecodeDT(f *testing.F) {
	for i := range goldenDT {
		f.Add(dtKey(goldenDT[i].Type, goldenDT[i].Key), encodeDT(&goldenDT[i]))
	}
	f.Add([]byte("xKey"), encodeDT(&goldenDT[0]))                     // bad type
	f.Add(encodeMeta(meta{kind: kindNetwork, net: net24}), []byte{1}) // meta as a key
	f.Fuzz(func(t *testing.T, k, v []byte) {
		if _, err := decodeMeta(v); err != nil && dsvc.CodeOf(err) != dsvc.CodeInternal {
			t.Fatalf("meta error %v is not ErrInternal", err)
		}
		r, err := decodeDT(k, v)
		if err != nil {
			if dsvc.CodeOf(err) != dsvc.CodeInternal {
				t.Fatalf("error %v is not ErrInternal", err)
			}
			return
		}
		if again := encodeDT(&r); !bytes.Equal(again, v) || !bytes.Equal(dtKey(r.Type, r.Key), k) {
			t.Fatalf("%x decodes to %+v, which encodes to %x", v, r, again)
		}
	})
}
