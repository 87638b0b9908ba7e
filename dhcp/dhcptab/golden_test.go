package dhcptab

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata/*.golden from the current code")

var goldenInputs = []struct {
	name string
	in   Inputs
}{
	{"x86 client with its own macro", Inputs{ClientClass: "SUNW.i86pc", Network: "10.21.0.0", RecordMacro: "atlantic", ClientID: []byte{1, 0, 0x20, 0xed, 0x11, 0x12, 0xb7}}},
	{"other client, no class", Inputs{Network: "10.21.0.0", RecordMacro: "atlantic", ClientID: []byte{1, 0, 0x20, 0xed, 0x11, 0x12, 0xb8}}},
	{"BOOTP client, class ignored", Inputs{ClientClass: "SUNW.i86pc", Network: "10.21.0.0", RecordMacro: "atlantic", BOOTP: true}},
	{"SPARC client on the second network", Inputs{ClientClass: "SUNW.Ultra-1", Network: "10.22.0.0", RecordMacro: "atlantic"}},
	{"macro with a bad entry", Inputs{Network: "10.22.0.0", RecordMacro: "broken"}},
}

func golden(t testing.TB) *Table {
	t.Helper()
	text, err := os.ReadFile(filepath.Join("testdata", "solaris.dhcptab"))
	if err != nil {
		t.Fatal(err)
	}
	tab, _ := Build(records(t, string(text)))
	return tab
}

// TestGolden builds testdata/solaris.dhcptab and prints the Build errors
// and, for each of goldenInputs, every option's bytes and the options
// field of a reply made with Apply.
func TestGolden(t *testing.T) {
	text, err := os.ReadFile(filepath.Join("testdata", "solaris.dhcptab"))
	if err != nil {
		t.Fatal(err)
	}
	tab, errs := Build(records(t, string(text)))
	var buf bytes.Buffer
	fmt.Fprintln(&buf, "# Options of testdata/solaris.dhcptab. Regenerate with: go test ./dhcp/dhcptab -run TestGolden -rewrite")
	fmt.Fprintln(&buf, "errors:")
	for _, e := range errs {
		fmt.Fprintf(&buf, "  %v\n", e)
	}
	names := map[uint8]string{}
	for _, s := range tab.Symbols() {
		if isOption(s.Context) {
			names[s.Code] = s.Name
		}
	}
	names[43] = "(vendor)"
	for _, c := range goldenInputs {
		o := tab.Options(c.in)
		fmt.Fprintf(&buf, "\n## %s\n", c.name)
		fmt.Fprintf(&buf, "inputs: class=%q network=%q macro=%q cid=%X bootp=%v\n", c.in.ClientClass, c.in.Network, c.in.RecordMacro, c.in.ClientID, c.in.BOOTP)
		for _, code := range o.Codes() {
			v, _ := o.Get(code)
			fmt.Fprintf(&buf, "  %3d %-9s %x\n", code, names[code], v)
		}
		lt, _ := o.LeaseTime()
		fmt.Fprintf(&buf, "  lease %v leaseneg=%v hostname-lookup=%v\n", lt, o.LeaseNeg(), o.HostnameLookup())
		for _, f := range []string{SymBootSrvA, SymBootSrvN, SymBootFile} {
			if v, ok := o.Value(f); ok {
				fmt.Fprintf(&buf, "  field %s %x\n", f, v)
			}
		}
		m := &dhcpv4.DHCPv4{OpCode: dhcpv4.OpcodeBootReply, HWType: 1, ClientHWAddr: net.HardwareAddr{0, 0x20, 0xed, 0x11, 0x12, 0xb7},
			Options: dhcpv4.Options{}}
		m.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeAck))
		omitted := o.Apply(m, []uint8{1, 3, 6, 15, 12, 43}, 0)
		fmt.Fprintf(&buf, "  reply options (PRL 1,3,6,15,12,43; 576 octets): %x omitted=%v\n", m.Options.ToBytes(), omitted)
	}
	path := filepath.Join("testdata", "solaris.golden")
	if *rewrite {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("%s differs:\n got:\n%s\nwant:\n%s", path, buf.Bytes(), want)
	}
}
