package admin_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/admin"
	"github.com/corralhq/corral/proto/internal/golden"
	"github.com/corralhq/corral/proto/internal/wiretest"
)

// sampleAddrAdd: 192.0.2.10 in the agent's own stack, sticky, 30 s
// affinity, node 2 at weight 3 and node 5 drained (weight 0).
var sampleAddrAdd = admin.AddrAdd{IP: netip.MustParseAddr("192.0.2.10"), Policy: admin.PolicySticky, Affinity: 30000,
	Weights: []admin.AddrWeight{{Node: 2, Weight: 3}, {Node: 5, Weight: 0}}}

var sampleAddrDel = admin.AddrDel{Stack: 0xf0000001, IP: netip.MustParseAddr("2001:db8::7")}

// sampleAddrRows: one weighted IPv4 address owned by node 1, nodes 1 and
// 2 listening on TCP 80, each with its TCP and UDP slices and an ident
// block, node 1 with an SPI block; a table of 7 buckets 4:3; and one
// sticky-wild IPv6 address in another stack with nothing yet.
var sampleAddrRows = []admin.AddrRow{
	{IP: netip.MustParseAddr("192.0.2.10"), Stack: 0xf0000001, Policy: admin.PolicyWeighted, Owner: 1,
		Weights:   []admin.AddrWeight{{Node: 2, Weight: 3}},
		Listeners: []admin.AddrListener{{Node: 1, Proto: 6, Port: 80}, {Node: 2, Proto: 6, Port: 80}},
		Leases: []admin.AddrLease{
			{Node: 1, Kind: admin.LeaseSlice, Proto: 6, Index: 0, First: 1024, Last: 2047},
			{Node: 2, Kind: admin.LeaseSlice, Proto: 6, Index: 1, First: 2048, Last: 3071},
			{Node: 1, Kind: admin.LeaseIdent, Index: 0, First: 0, Last: 4095},
			{Node: 1, Kind: admin.LeaseSPI, Index: 0, First: 1 << 24, Last: 1<<25 - 1},
		},
		Tables: []admin.AddrTable{{Proto: 6, Port: 80, Buckets: 7, Shares: []admin.AddrShare{{Node: 1, Buckets: 4}, {Node: 2, Buckets: 3}}}}},
	{IP: netip.MustParseAddr("2001:db8::7"), Stack: 0xf0000002, Policy: admin.PolicyStickyWild, Affinity: 1000},
}

// sampleAddrRowsV6 is sampleAddrRows with what version 6 adds: the first
// address at generation 3 with two exceptions, both listed; the second at
// generation 1 with none.
var sampleAddrRowsV6 = func() []admin.AddrRow {
	rows := slices.Clone(sampleAddrRows)
	rows[0].Gen, rows[0].ExceptionCount = 3, 2
	rows[0].Exceptions = []admin.AddrException{
		{Client: netip.MustParseAddrPort("198.51.100.7:40000"), Proto: 6, Port: 80, Node: 2},
		{Client: netip.MustParseAddrPort("[2001:db8::9]:40001"), Proto: 6, Port: 80, Node: 1},
	}
	rows[1].Gen = 1
	return rows
}()

func addrAddFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.U64("stack: nsfs inode, 0 = the agent's own")
	w.Fixed(16, "ip (IPv6, IPv4 v4-mapped)")
	w.U8("policy: 1 weighted, 2 sticky, 3 sticky-wild")
	w.U8("flags: bit 0 replace")
	w.Fixed(2, "reserved, zero")
	w.U32("affinity timeout in ms")
	weightFields(w)
	return w.Fields
}

func weightFields(w *golden.Walker) {
	n := w.U16("weight count")
	for i := 0; i < n && !w.Done(); i++ {
		w.U64(fmt.Sprintf("weight[%d] node id", i))
		w.U32("  weight")
	}
}

func addrDelFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.U64("stack")
	w.Fixed(16, "ip")
	return w.Fields
}

func addrListFields(b []byte) golden.Fields { return addrListFieldsAt(4)(b) }

func addrListFieldsAt(v uint8) func(b []byte) golden.Fields {
	return func(b []byte) golden.Fields { return addrListWalk(b, v) }
}

func addrListWalk(b []byte, v uint8) golden.Fields {
	w := golden.NewWalker(b)
	n := w.U32("address count")
	for i := uint64(0); i < n && !w.Done(); i++ {
		w.U64(fmt.Sprintf("address[%d] stack", i))
		w.Fixed(16, "  ip")
		w.U8("  policy")
		w.Fixed(3, "  reserved, zero")
		w.U32("  affinity timeout in ms")
		w.U64("  owner node id, 0 if none")
		weightFields(w)
		k := w.U16("  listener count")
		for j := 0; j < k && !w.Done(); j++ {
			w.U64(fmt.Sprintf("  listener[%d] node id", j))
			w.U8("    proto")
			w.U8("    reserved, zero")
			w.U16("    port")
		}
		k = w.U16("  lease count")
		for j := 0; j < k && !w.Done(); j++ {
			w.U64(fmt.Sprintf("  lease[%d] node id", j))
			w.U8("    kind: 1 slice, 2 ident, 3 spi")
			w.U8("    proto (slices)")
			w.U16("    index")
			w.U32("    first")
			w.U32("    last")
		}
		k = w.U16("  table count")
		for j := 0; j < k && !w.Done(); j++ {
			w.U8(fmt.Sprintf("  table[%d] proto", j))
			w.U8("    reserved, zero")
			w.U16("    port, 0 = every port (sticky-wild)")
			w.U32("    buckets")
			s := w.U16("    share count")
			for x := 0; x < s && !w.Done(); x++ {
				w.U64(fmt.Sprintf("    share[%d] node id", x))
				w.U32("      buckets")
			}
		}
		if v < admin.AddrExceptionsVersion {
			continue
		}
		w.U64("  table generation (version 6)")
		w.U32("  exception count")
		k = w.U16("  listed exception count, <= 1024")
		for j := 0; j < k && !w.Done(); j++ {
			w.Fixed(16, "  exception[%d] client ip", j)
			w.U16("    client port")
			w.U8("    proto")
			w.U8("    reserved, zero")
			w.U16("    port")
			w.U64("    node id")
		}
	}
	return w.Fields
}

func parseAddrAdd(b []byte) error  { _, err := admin.ParseAddrAdd(b); return err }
func parseAddrDel(b []byte) error  { _, err := admin.ParseAddrDel(b); return err }
func parseAddrList(b []byte) error { _, err := admin.ParseAddrList(b); return err }
func parseAddrListV6(b []byte) error {
	_, err := admin.ParseAddrListAt(b, admin.AddrExceptionsVersion)
	return err
}

func addrAddWith(fn func(b []byte) []byte) []byte {
	return fn(admin.AppendAddrAdd(nil, &sampleAddrAdd))
}
func addrListWith(fn func(b []byte) []byte) []byte {
	return fn(admin.AppendAddrList(nil, sampleAddrRows))
}
func addrListV6With(fn func(b []byte) []byte) []byte {
	return fn(admin.AppendAddrListAt(nil, admin.AddrExceptionsVersion, sampleAddrRowsV6))
}

// addrV6Vectors are the ADDR_LIST reply of admin version 6: the rows end
// with the generation and the exceptions.
func addrV6Vectors() []wiretest.Vector {
	listRep := reply(admin.OpAddrList, admin.AppendAddrListAt(nil, admin.AddrExceptionsVersion, sampleAddrRowsV6))
	listRep.Version = admin.AddrExceptionsVersion
	// The first exception's proto, and the first row's listed count.
	first := bytes.Index(listRep.Body, []byte{0x40, 0x9c, 6, 0}) + 2
	fields := addrListFieldsAt(admin.AddrExceptionsVersion)
	return []wiretest.Vector{
		frameVector("addr_list_reply_v6", []string{
			"Admin ADDR_LIST reply at version 6: addr_list_reply's two addresses, the first at",
			"generation 3 with two exceptions (198.51.100.7:40000 tcp/80 kept on node 2,",
			"[2001:db8::9]:40001 tcp/80 on node 1), the second at generation 1 with none.",
		}, listRep, fields, expect(listRep, sampleAddrRowsV6), 0, ""),
		bodyVector("err_addr_list_exception_proto", "Version 6 ADDR_LIST reply whose first exception has protocol 1.",
			addrListV6With(func(b []byte) []byte { b[first] = 1; return b }), fields, parseAddrListV6, "address 0 exception 0: node 2 proto 1 port 80"),
		bodyVector("err_addr_list_exception_listed", "Version 6 ADDR_LIST reply listing two exceptions of a count of one.",
			addrListV6With(func(b []byte) []byte {
				i := bytes.Index(b, []byte{2, 0, 0, 0, 2, 0}) // the first row's count and listed count
				b[i] = 1
				return b
			}), fields, parseAddrListV6, "address 0: 2 exceptions listed of 1"),
		bodyVector("err_addr_list_v6_truncated", "Version 6 ADDR_LIST reply cut off inside the second row's generation.",
			addrListV6With(func(b []byte) []byte { return b[:len(b)-10] }), fields, parseAddrListV6, "generation"),
	}
}

// addrVectors are the messages of admin version 4.
func addrVectors() []wiretest.Vector {
	add := request(admin.OpAddrAdd, admin.AppendAddrAdd(nil, &sampleAddrAdd))
	addRep := reply(admin.OpAddrAdd, nil)
	del := request(admin.OpAddrDel, admin.AppendAddrDel(nil, sampleAddrDel))
	list := request(admin.OpAddrList, nil)
	listRep := reply(admin.OpAddrList, admin.AppendAddrList(nil, sampleAddrRows))
	listEmpty := reply(admin.OpAddrList, admin.AppendAddrList(nil, nil))
	refused := reply(admin.OpAddrAdd, proto.AppendStatus(nil, &proto.Status{Code: proto.CodeState,
		Text: "exists: ADD: 192.0.2.10@0xf0000001 exists"}))
	refused.Flags |= proto.FlagAbort
	old := list
	old.Version = 3
	const policy = 8 + 16                                // offset of ADDR_ADD's policy
	const listener = 4 + 8 + 16 + 4 + 4 + 8 + 2 + 12 + 2 // the first listener
	return []wiretest.Vector{
		frameVector("addr_add_request", []string{
			"Admin ADDR_ADD request (version 4): 192.0.2.10 in the agent's own stack (0),",
			"sticky, affinity 30 s, node 2 at weight 3, node 5 at weight 0 (drained).",
		}, add, addrAddFields, expect(add, sampleAddrAdd), 0, ""),
		frameVector("addr_add_reply", []string{"Admin ADDR_ADD reply: empty, the address is applied."},
			addRep, nil, expect(addRep, nil), 0, ""),
		frameVector("addr_add_refused", []string{
			"A refused ADDR_ADD: ABORT with code 8 (bad state) and the machine's reply code",
			"and text, \"exists: ADD: …\".",
		}, refused, wiretest.StatusFields, expect(refused, proto.Status{Code: proto.CodeState, Text: "exists: ADD: 192.0.2.10@0xf0000001 exists"}), 0, ""),
		frameVector("addr_del_request", []string{"Admin ADDR_DEL request: 2001:db8::7 in stack 0xf0000001."},
			del, addrDelFields, expect(del, sampleAddrDel), 0, ""),
		frameVector("addr_list_request", []string{"Admin ADDR_LIST request: empty body."}, list, nil, expect(list, nil), 0, ""),
		frameVector("addr_list_reply", []string{
			"Admin ADDR_LIST reply with two addresses: 192.0.2.10, weighted, owned by node 1,",
			"nodes 1 and 2 listening on TCP 80, slices, an ident and an SPI block, a table of",
			"7 buckets shared 4:3; and 2001:db8::7, sticky-wild, with nothing yet.",
		}, listRep, addrListFields, expect(listRep, sampleAddrRows), 0, ""),
		frameVector("addr_list_reply_empty", []string{"Admin ADDR_LIST reply with no addresses."},
			listEmpty, addrListFields, expect(listEmpty, []admin.AddrRow{}), 0, ""),
		frameVector("err_addr_list_v3", []string{"An ADDR_LIST request sent as admin version 3, which does not define it."},
			old, nil, receiveErr, proto.CodeOpcode, "admin protocol version 3 has no opcode 0x0015"),
		bodyVector("err_addr_add_policy", "ADDR_ADD request with policy 4, which is not defined.",
			addrAddWith(func(b []byte) []byte { b[policy] = 4; return b }), addrAddFields, parseAddrAdd, "unknown policy 4"),
		bodyVector("err_addr_add_flags", "ADDR_ADD request with flag bit 1 set, which is not defined.",
			addrAddWith(func(b []byte) []byte { b[policy+1] = 2; return b }), addrAddFields, parseAddrAdd, "unknown flags"),
		bodyVector("err_addr_add_unspecified", "ADDR_ADD request for the unspecified address (all zeros).",
			addrAddWith(func(b []byte) []byte { clear(b[8:24]); return b }), addrAddFields, parseAddrAdd, "ip is unspecified"),
		bodyVector("err_addr_add_weight_order", "ADDR_ADD request whose weights are not in increasing node order.",
			addrAddWith(func(b []byte) []byte { b[policy+10+12] = 1; return b }), addrAddFields, parseAddrAdd, "weight 1: nodes not in increasing order"),
		bodyVector("err_addr_add_weight_count", "ADDR_ADD request announcing 1025 weights: more than MaxAddrWeights = 1024.",
			addrAddWith(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[policy+8:], 1025); return b }), addrAddFields, parseAddrAdd, "weight count 1025"),
		bodyVector("err_addr_add_truncated", "ADDR_ADD request cut off inside its last weight.",
			addrAddWith(func(b []byte) []byte { return b[:len(b)-1] }), addrAddFields, parseAddrAdd, "weight count 2 does not fit 23 bytes"),
		bodyVector("err_addr_del_trailing", "ADDR_DEL request followed by one extra byte.",
			append(admin.AppendAddrDel(nil, sampleAddrDel), 0), addrDelFields, parseAddrDel, "1 unexpected bytes"),
		bodyVector("err_addr_list_count", "ADDR_LIST reply announcing 1000 addresses in a body that holds two: refused before allocating.",
			addrListWith(func(b []byte) []byte { binary.LittleEndian.PutUint32(b, 1000); return b }), addrListFields, parseAddrList, "address count 1000 does not fit"),
		bodyVector("err_addr_list_listener", "ADDR_LIST reply whose first listener has protocol 1, neither TCP nor UDP.",
			addrListWith(func(b []byte) []byte { b[listener+8] = 1; return b }), addrListFields, parseAddrList, "address 0 listener 0: node 1 proto 1 port 80"),
		bodyVector("err_addr_list_shares", "ADDR_LIST reply whose table's shares do not sum to its buckets.",
			addrListWith(func(b []byte) []byte {
				i := bytes.Index(b, []byte{7, 0, 0, 0, 2, 0}) // the table's buckets and share count
				b[i] = 8
				return b
			}), addrListFields, parseAddrList, "address 0 table 0: shares sum to 7 of 8 buckets"),
		bodyVector("err_addr_list_trailing", "ADDR_LIST reply followed by one extra byte.",
			addrListWith(func(b []byte) []byte { return append(b, 0) }), addrListFields, parseAddrList, "1 unexpected bytes"),
	}
}

func TestAddrRoundTrip(t *testing.T) {
	for _, a := range []admin.AddrAdd{sampleAddrAdd, {Stack: 1, IP: netip.MustParseAddr("2001:db8::1"), Policy: admin.PolicyWeighted, Replace: true}} {
		got, err := admin.ParseAddrAdd(admin.AppendAddrAdd(nil, &a))
		if err != nil || !wiretest.Equal(got, a) {
			t.Fatalf("ADDR_ADD round trip: %+v, %v; want %+v", got, err, a)
		}
	}
	got, err := admin.ParseAddrList(admin.AppendAddrList(nil, sampleAddrRows))
	if err != nil || !wiretest.Equal(got, sampleAddrRows) {
		t.Fatalf("ADDR_LIST round trip: %+v, %v", got, err)
	}
	got, err = admin.ParseAddrListAt(admin.AppendAddrListAt(nil, 6, sampleAddrRowsV6), 6)
	if err != nil || !wiretest.Equal(got, sampleAddrRowsV6) {
		t.Fatalf("ADDR_LIST v6 round trip: %+v, %v", got, err)
	}
	// A version 5 reply leaves them out: an agent answering an older
	// tool sends the layout that tool reads.
	if v5 := admin.AppendAddrListAt(nil, 5, sampleAddrRowsV6); !bytes.Equal(v5, admin.AppendAddrList(nil, sampleAddrRows)) {
		t.Fatal("a version 5 ADDR_LIST carries version 6's fields")
	}
}

// TestAddrListCountCheckedBeforeAllocation: a count the body cannot hold
// is refused without allocating the rows it claims.
func TestAddrListCountCheckedBeforeAllocation(t *testing.T) {
	b := []byte{0x00, 0x10, 0, 0, 0, 0, 0, 0}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const runs = 100
	for range runs {
		if _, err := admin.ParseAddrList(b); err == nil {
			t.Fatal("accepted")
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 4<<10 {
		t.Fatalf("%d bytes allocated per refused body", per)
	}
}

func FuzzParseAddrAdd(f *testing.F) {
	f.Add(admin.AppendAddrAdd(nil, &sampleAddrAdd))
	f.Add(addrAddWith(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[32:], 0xffff); return b }))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := admin.ParseAddrAdd(b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		if a.Policy < admin.PolicyWeighted || a.Policy > admin.PolicyStickyWild || !a.IP.IsValid() || len(a.Weights) > admin.MaxAddrWeights {
			t.Fatalf("accepted %+v", a)
		}
		if out := admin.AppendAddrAdd(nil, &a); !bytes.Equal(out, b) {
			t.Fatalf("re-encoded ADDR_ADD differs:\n%x\n%x", out, b)
		}
	})
}

func FuzzParseAddrDel(f *testing.F) {
	f.Add(admin.AppendAddrDel(nil, sampleAddrDel))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := admin.ParseAddrDel(b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		if out := admin.AppendAddrDel(nil, d); !bytes.Equal(out, b) {
			t.Fatalf("re-encoded ADDR_DEL differs:\n%x\n%x", out, b)
		}
	})
}

func FuzzParseAddrList(f *testing.F) {
	f.Add(admin.AppendAddrList(nil, sampleAddrRows))
	f.Add(admin.AppendAddrList(nil, nil))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		rows, err := admin.ParseAddrList(b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		if len(rows) > admin.MaxAddrs {
			t.Fatalf("%d rows accepted", len(rows))
		}
		if out := admin.AppendAddrList(nil, rows); !bytes.Equal(out, b) {
			t.Fatalf("re-encoded ADDR_LIST differs:\n%x\n%x", out, b)
		}
	})
}

func FuzzParseAddrListV6(f *testing.F) {
	f.Add(admin.AppendAddrListAt(nil, admin.AddrExceptionsVersion, sampleAddrRowsV6))
	f.Add(admin.AppendAddrListAt(nil, admin.AddrExceptionsVersion, nil))
	f.Add(addrListV6With(func(b []byte) []byte { return b[:len(b)-3] }))
	f.Fuzz(func(t *testing.T, b []byte) {
		rows, err := admin.ParseAddrListAt(b, admin.AddrExceptionsVersion)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		for _, r := range rows {
			if len(r.Exceptions) > admin.MaxAddrExceptions || uint32(len(r.Exceptions)) > r.ExceptionCount {
				t.Fatalf("accepted %d exceptions listed of %d", len(r.Exceptions), r.ExceptionCount)
			}
		}
		if out := admin.AppendAddrListAt(nil, admin.AddrExceptionsVersion, rows); !bytes.Equal(out, b) {
			t.Fatalf("re-encoded ADDR_LIST differs:\n%x\n%x", out, b)
		}
	})
}
