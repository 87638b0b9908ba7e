package dsvctest

import (
	"fmt"
	"net/netip"

	"github.com/corralhq/corral/dsvc"
)

// The Solaris test specification's data: a dhcptab of 15 symbols and the
// usual macros, and a network of records with a spread of every field.

var specSymbols = []string{"SrootOpt", "SrootIP4", "SrootNM", "SrootPTH", "SswapIP4", "SswapPTH",
	"SbootFIL", "Stz", "SbootRS", "SinstIP4", "SinstNM", "SinstPTH", "SsysidCF", "SjumpsCF", "Sterm"}

func specDhcptab() []dsvc.DTRecord {
	var rs []dsvc.DTRecord
	for i, s := range specSymbols {
		rs = append(rs, dsvc.DTRecord{Key: s, Type: dsvc.DTSymbol, Value: fmt.Sprintf("Vendor=SUNW.Ultra-1 SUNW.i86pc,%d,ASCII,1,0", i+1)})
	}
	for _, m := range []struct{ k, v string }{
		{"Locale", ":UTCoffst=-18000:"},
		{"Solaris", ":SrootIP4=10.0.0.1:SrootNM=\"atlantic\":"},
		{"sparc", ":SrootPTH=\"/export/sparc\":"},
		{"sun4u", ":Include=Solaris:Include=sparc:"},
		{"i86pc", ":Include=Solaris:SbootFIL=\"/platform/i86pc/kernel/unix\":"},
		{"SUNW.i86pc", ":Include=i86pc:"},
		{"SUNW.Ultra-1", ":Include=sun4u:"},
		{"10.0.0.0", ":Broadcst=10.0.15.255:Subnet=255.255.240.0:MTU=1500:Router=10.0.0.1:"},
		{"atlantic", ":Include=Locale:Timeserv=10.0.0.1:LeaseTim=86400:LeaseNeg:DNSdmain=\"example.com\":"},
		{"01080020FFFFFF", ":BootFile=\"special\":"},
	} {
		rs = append(rs, dsvc.DTRecord{Key: m.k, Type: dsvc.DTMacro, Value: m.v})
	}
	return rs
}

var (
	specNet    = netip.MustParsePrefix("10.0.0.0/20")
	sharedCID  = []byte{0x01, 0x08, 0x00, 0x20, 0xaa, 0xbb, 0xcc}
	specSIP1   = netip.MustParseAddr("10.0.0.1")
	specSIP2   = netip.MustParseAddr("10.0.0.2")
	nSharedCID = SharedCIDRecords
)

func addrAdd(a netip.Addr, n int) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// specRecord is record i of the network: cip 10.0.0.(1+i); the first 216
// share one client id; flags cycle through all 16 combinations; SIP
// alternates; every third lease is permanent.
func specRecord(i int) dsvc.DNRecord {
	r := dsvc.DNRecord{
		CIP:     addrAdd(specNet.Addr(), 1+i),
		Flags:   dsvc.DNFlags(i%16) & dsvc.DNAll,
		SIP:     specSIP1,
		Lease:   1700000000 + uint32(i),
		Macro:   "atlantic",
		Comment: fmt.Sprintf("record %d", i),
	}
	if i%2 == 1 {
		r.SIP = specSIP2
	}
	if i%3 == 0 {
		r.Lease = dsvc.LeasePermanent
	}
	if i < nSharedCID {
		r.CID = sharedCID
	} else {
		r.CID = []byte{0x01, 0x02, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}
	}
	return r
}

// SpecRecord is record i of the suite's network, for benchmarks that want
// its shapes. Past i = 4093 the addresses run on beyond the /20, so the
// container must be wider.
func SpecRecord(i int) dsvc.DNRecord { return specRecord(i) }

// SharedCIDRecords is how many of the first records share one client id.
const SharedCIDRecords = 216
