package admin_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/admin"
	"github.com/corralhq/corral/proto/internal/golden"
	"github.com/corralhq/corral/proto/internal/wiretest"
)

var (
	sampleVersion = admin.VersionInfo{
		Binary: "corral v0.1.0",
		Ranges: proto.Ranges{
			{Proto: proto.ProtoPeer, Min: 1, Max: 1},
			{Proto: proto.ProtoClient, Min: 1, Max: 1},
			{Proto: proto.ProtoAdmin, Min: 1, Max: 1},
		},
	}
	sampleMembers = []admin.Member{
		{ID: 0x0102030405060708, State: admin.StateSelf, PeerVersion: 0, Since: 1700000000000000000, Name: "node-a", Addr: "127.0.0.1:7946"},
		{ID: 0x0a, State: admin.StateUp, PeerVersion: 1, RTT: 250, Since: 1700000001000000000, Name: "node-b", Addr: "127.0.0.2:7946"},
		{ID: 0, State: admin.StateDown, Name: "", Addr: "127.0.0.3:7946"},
	}
	sampleAbort = proto.Status{Code: proto.CodeState, Text: "membership has not started"}
)

// VersionFields annotates a VERSION reply body.
func versionFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.String16("binary version")
	n := w.U8("range count")
	for i := 0; i < n && !w.Done(); i++ {
		w.Fixed(3, "range[%d]: proto id, min, max", i)
	}
	return w.Fields
}

// membersFields annotates a MEMBERS reply body.
func membersFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	n := w.U32("member count")
	for i := uint64(0); i < n && !w.Done(); i++ {
		w.U64(fmt.Sprintf("member[%d] node id", i))
		w.U8("  state")
		w.U8("  peer version")
		w.Fixed(2, "  reserved, zero")
		w.U32("  rtt in microseconds")
		w.Fixed(8, "  since: unix nanoseconds (i64 LE)")
		w.String16("  name")
		w.String16("  addr")
	}
	return w.Fields
}

// request is an admin request at the version that defined op (version 1
// for an undefined op), so that a version's vectors stay as released.
func request(op uint16, body []byte) proto.Frame {
	v := uint8(1)
	if o, ok := admin.Ops().Lookup(op); ok {
		v = o.Since
	}
	return proto.Frame{Header: proto.Header{Proto: proto.ProtoAdmin, Version: v, Opcode: op,
		Flags: proto.FlagCreate | proto.FlagDelete, Hops: proto.HopLimit, MsgID: 0x10}, Body: body}
}

func reply(op uint16, body []byte) proto.Frame {
	f := request(op, body)
	f.Flags |= proto.FlagReply
	return f
}

// receive is the admin tool's and the agent's receive path on a link
// that agreed on the frame's version (or the highest, for one this build
// does not speak): frame and opcode checks, then the body the opcode and
// flags call for.
func receive(b []byte) (proto.Frame, any, error) {
	v := admin.MaxVersion
	if f, err := proto.DecodeFrame(b, 0); err == nil && f.Version >= admin.MinVersion && f.Version <= admin.MaxVersion {
		v = f.Version
	}
	f, err := wiretest.Receive(admin.Ops(), v, b)
	if err != nil {
		return f, nil, err
	}
	if f.Flags&proto.FlagAbort != 0 {
		st, err := proto.ParseStatus(f.Body, "ABORT")
		return f, st, err
	}
	isReply := f.Flags&proto.FlagReply != 0
	switch {
	case f.Opcode == admin.OpPing || f.Opcode == admin.OpPong:
		p, err := proto.ParsePing(f.Body)
		return f, p, err
	case f.Opcode == admin.OpVersion && isReply:
		v, err := admin.ParseVersionInfo(f.Body)
		return f, v, err
	case f.Opcode == admin.OpMembers && isReply:
		ms, err := admin.ParseMembers(f.Body)
		return f, ms, err
	case f.Opcode == admin.OpView && isReply:
		v, err := admin.ParseViewInfo(f.Body)
		return f, v, err
	case f.Opcode == admin.OpQuorum && isReply:
		q, err := admin.ParseQuorumInfo(f.Body)
		return f, q, err
	case f.Opcode == admin.OpRoutes && isReply:
		rs, err := admin.ParseRoutes(f.Body)
		return f, rs, err
	case f.Opcode == admin.OpRaftPeers && isReply:
		p, err := admin.ParseRaftPeers(f.Body)
		return f, p, err
	case f.Opcode == admin.OpRemove && !isReply:
		q, err := admin.ParseRemoveRequest(f.Body)
		return f, q, err
	case f.Opcode == admin.OpAddrAdd && !isReply:
		a, err := admin.ParseAddrAdd(f.Body)
		return f, a, err
	case f.Opcode == admin.OpAddrDel && !isReply:
		d, err := admin.ParseAddrDel(f.Body)
		return f, d, err
	case f.Opcode == admin.OpAddrList && isReply:
		rows, err := admin.ParseAddrListAt(f.Body, f.Version)
		return f, rows, err
	case f.Opcode == admin.OpMeshEcho && !isReply:
		e, err := admin.ParseMeshEcho(f.Body)
		return f, e, err
	case f.Opcode == admin.OpMeshEcho && isReply:
		m, err := admin.ParseMeshEchoResult(f.Body)
		return f, m, err
	case f.Opcode == admin.OpJoin && !isReply:
		j, err := admin.ParseJoinRequest(f.Body)
		return f, j, err
	}
	// Other requests and JOIN and LEAVE replies have an empty body.
	return f, nil, proto.NewReader(f.Body, admin.Ops().Name(f.Opcode)+" request").Err()
}

func expect(want proto.Frame, msg any) func([]byte) error {
	want.Seal()
	return func(b []byte) error {
		f, got, err := receive(b)
		if err != nil {
			return err
		}
		if !wiretest.Equal(f, want) || !wiretest.Equal(got, msg) {
			return fmt.Errorf("decoded %+v / %+v, want %+v / %+v", f, got, want, msg)
		}
		return nil
	}
}

func receiveErr(b []byte) error { _, _, err := receive(b); return err }

func frameVector(name string, about []string, f proto.Frame, body func([]byte) golden.Fields, decode func([]byte) error, want proto.Code, detail string) wiretest.Vector {
	b := wiretest.Frame(f)
	return wiretest.Vector{Name: name, About: about, Data: b, Fields: wiretest.Annotated(b, body), Decode: decode, Want: want, Detail: detail}
}

func bodyVector(name, about string, b []byte, fields func([]byte) golden.Fields, decode func([]byte) error, detail string) wiretest.Vector {
	return wiretest.Vector{Name: name, About: []string{about}, Data: b, Fields: fields(b), Decode: decode, Want: proto.CodeField, Detail: detail}
}

func parseMembers(b []byte) error { _, err := admin.ParseMembers(b); return err }
func parseVersion(b []byte) error { _, err := admin.ParseVersionInfo(b); return err }

func membersWith(fn func(b []byte) []byte) []byte {
	return fn(admin.AppendMembers(nil, sampleMembers))
}

func viewFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.U64("view instance")
	w.U64("leader node id")
	w.U64("term")
	w.U64("applied index")
	n := w.U32("member count")
	for i := uint64(0); i < n && !w.Done(); i++ {
		w.U64(fmt.Sprintf("member[%d] node id", i))
		w.U64("  born-on")
		w.U8("  flags: bit 0 voter")
		w.String16("  name")
		w.String16("  addr")
	}
	return w.Fields
}

var sampleView = admin.ViewInfo{Instance: 12, Leader: 1, Term: 3, Applied: 14, Members: []admin.ViewMember{
	{ID: 1, BornOn: 2, Voter: true, Name: "n1", Addr: "127.0.0.1:7946"},
	{ID: 7, BornOn: 12, Voter: false, Name: "n7", Addr: "127.0.0.7:7946"},
}}

func viewVectors() []wiretest.Vector {
	vrep := reply(admin.OpView, admin.AppendViewInfo(nil, &sampleView))
	jreq := request(admin.OpJoin, admin.AppendJoinRequest(nil, admin.JoinRequest{Addr: "127.0.0.1:7946"}))
	lreq := request(admin.OpLeave, nil)
	badFlags := admin.AppendViewInfo(nil, &sampleView)
	badFlags[4*8+4+16] = 2
	huge := admin.AppendViewInfo(nil, &admin.ViewInfo{})
	binary.LittleEndian.PutUint32(huge[32:], 1000)
	return []wiretest.Vector{
		frameVector("view_reply", []string{
			"Admin VIEW reply: view 12 led by node 1 in term 3, applied up to 14; members n1",
			"(voter, born in view 2) and n7 (non-voter, born in view 12).",
		}, vrep, viewFields, expect(vrep, sampleView), 0, ""),
		frameVector("join_request", []string{"Admin JOIN request: reach the cluster through 127.0.0.1:7946."},
			jreq, nil, expect(jreq, admin.JoinRequest{Addr: "127.0.0.1:7946"}), 0, ""),
		frameVector("leave_request", []string{"Admin LEAVE request: empty body."}, lreq, nil, expect(lreq, nil), 0, ""),
		bodyVector("err_view_flags", "VIEW reply whose first member has flags 0x02, which is not defined.",
			badFlags, viewFields, func(b []byte) error { _, err := admin.ParseViewInfo(b); return err }, "member 0: unknown flags"),
		bodyVector("err_view_count", "VIEW reply announcing 1000 members in a body that holds none: refused before allocating.",
			huge, viewFields, func(b []byte) error { _, err := admin.ParseViewInfo(b); return err }, "member count 1000 does not fit"),
	}
}

func vectors() []wiretest.Vector {
	vreq, mreq := request(admin.OpVersion, nil), request(admin.OpMembers, nil)
	vrep := reply(admin.OpVersion, admin.AppendVersionInfo(nil, &sampleVersion))
	mrep := reply(admin.OpMembers, admin.AppendMembers(nil, sampleMembers))
	empty := reply(admin.OpMembers, admin.AppendMembers(nil, nil))
	abort := reply(admin.OpMembers, proto.AppendStatus(nil, &sampleAbort))
	abort.Flags |= proto.FlagAbort
	// 0x0012 is ROUTES since version 3; as a frame of version 1 it is
	// still undefined, and the vector keeps its bytes.
	undefined := request(0x0012, nil)
	undefined.Version = 1
	withBody := request(admin.OpVersion, []byte{1, 2, 3})
	manyRanges := append(proto.AppendString16(nil, "v"), proto.MaxRanges+1)
	for range proto.MaxRanges + 1 {
		manyRanges = append(manyRanges, 1, 1, 1)
	}
	longName := slices.Clone(sampleMembers)
	longName[0].Name = strings.Repeat("n", admin.MaxStringLen+1)
	longBinary := sampleVersion
	longBinary.Binary = strings.Repeat("v", admin.MaxStringLen+1)
	huge := make([]byte, 4+(admin.MaxMembers+1)*28)
	binary.LittleEndian.PutUint32(huge, admin.MaxMembers+1)

	vs := wiretest.PingVectors(admin.Ops(), admin.OpPing, admin.OpPong, 0x0013)
	vs = vs[:2] // the PING and PONG; the refusals are below, with admin framing
	return append(vs,
		frameVector("version_request", []string{
			"Admin VERSION request: CREATE|DELETE, msg id 0x10, empty body.",
		}, vreq, nil, expect(vreq, nil), 0, ""),
		frameVector("version_reply", []string{
			"Admin VERSION reply: same opcode and msg id, flags CREATE|DELETE|REPLY, the",
			"agent's build \"corral v0.1.0\" and the versions it speaks of peer, client, admin.",
		}, vrep, versionFields, expect(vrep, sampleVersion), 0, ""),
		frameVector("members_request", []string{
			"Admin MEMBERS request: CREATE|DELETE, msg id 0x10, empty body.",
		}, mreq, nil, expect(mreq, nil), 0, ""),
		frameVector("members_reply", []string{
			"Admin MEMBERS reply with three members: the answering agent (self), a peer",
			"linked at peer version 1 with a 250 us round trip, and a configured peer that",
			"never answered (node id 0, link down, no name yet).",
		}, mrep, membersFields, expect(mrep, sampleMembers), 0, ""),
		frameVector("members_reply_empty", []string{
			"Admin MEMBERS reply with no members.",
		}, empty, membersFields, expect(empty, []admin.Member{}), 0, ""),
		frameVector("abort_reply", []string{
			"A failed MEMBERS request: flags CREATE|DELETE|REPLY|ABORT and a Status body,",
			"code 8 (bad state), \"membership has not started\".",
		}, abort, wiretest.StatusFields, expect(abort, sampleAbort), 0, ""),
		frameVector("err_unknown_opcode", []string{
			"An admin request with opcode 0x0012, which admin version 1 does not define.",
		}, undefined, nil, receiveErr, proto.CodeOpcode, "admin protocol version 1 has no opcode 0x0012"),
		frameVector("err_request_body", []string{
			"A VERSION request with a 3-byte body; requests of VERSION and MEMBERS are empty.",
		}, withBody, nil, receiveErr, proto.CodeField, "VERSION request: 3 unexpected bytes"),

		bodyVector("err_members_count", "MEMBERS reply announcing 4 members but holding 3: the reader runs out at the fourth.",
			membersWith(func(b []byte) []byte { b[0] = 4; return b }), membersFields, parseMembers, "truncated at id (offset 142"),
		bodyVector("err_members_count_short", "MEMBERS reply announcing 6 members in 138 bytes, less than 6 members' minimum of 28 each.",
			membersWith(func(b []byte) []byte { b[0] = 6; return b }), membersFields, parseMembers, "member count 6 does not fit a body of 142 bytes"),
		bodyVector("err_members_count_huge", "MEMBERS reply announcing 0xffffffff members in a body of 8 bytes: refused before allocating.",
			[]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, membersFields, parseMembers, "member count 4294967295"),
		bodyVector("err_members_over_limit", "MEMBERS reply of 4097 members (all zero): more than MaxMembers = 4096, though the body holds them.",
			huge, func([]byte) golden.Fields {
				return golden.Fields{{Size: 4, Name: "member count (u32 LE)"}, {Size: len(huge) - 4, Name: "4097 members of 28 zero bytes"}}
			},
			parseMembers, "member count 4097"),
		bodyVector("err_members_state", "MEMBERS reply whose first member has link state 3, which is not defined.",
			membersWith(func(b []byte) []byte { b[12] = 3; return b }), membersFields, parseMembers, "member 0: unknown state 3"),
		bodyVector("err_members_reserved", "MEMBERS reply whose first member has a non-zero reserved byte.",
			membersWith(func(b []byte) []byte { b[14] = 1; return b }), membersFields, parseMembers, "reserved reserved is not zero"),
		bodyVector("err_members_truncated", "MEMBERS reply cut off inside the last member's address.",
			membersWith(func(b []byte) []byte { return b[:len(b)-3] }), membersFields, parseMembers, "truncated at addr"),
		bodyVector("err_members_name_long", "MEMBERS reply whose first member's name is 256 bytes; the limit is 255.",
			admin.AppendMembers(nil, longName), membersFields, parseMembers, "name is 256 bytes, limit 255"),
		bodyVector("err_members_trailing", "MEMBERS reply followed by one extra byte.",
			membersWith(func(b []byte) []byte { return append(b, 0) }), membersFields, parseMembers, "1 unexpected bytes"),
		bodyVector("err_version_range_count", "VERSION reply announcing 9 ranges; at most 8 are allowed.",
			manyRanges, versionFields, parseVersion, "9 ranges, limit 8"),
		bodyVector("err_version_truncated", "VERSION reply cut off inside its last range.",
			admin.AppendVersionInfo(nil, &sampleVersion)[:24], versionFields, parseVersion, "truncated at max"),
		bodyVector("err_version_binary_long", "VERSION reply whose binary version is 256 bytes; the limit is 255.",
			admin.AppendVersionInfo(nil, &longBinary), versionFields, parseVersion, "binary version is 256 bytes, limit 255"),
		bodyVector("err_version_trailing", "VERSION reply followed by one extra byte.",
			append(admin.AppendVersionInfo(nil, &sampleVersion), 0), versionFields, parseVersion, "1 unexpected bytes"),
	)
}

// Regenerate the golden files with: go test ./proto/... -rewrite
func TestGolden(t *testing.T) {
	wiretest.Run(t, "testdata", slices.Concat(vectors(), viewVectors(), operatorVectors(), routesVectors(), addrVectors(), addrV6Vectors(), meshEchoVectors()))
}

func TestOps(t *testing.T) {
	if err := wiretest.CheckOps(admin.Ops()); err != nil {
		t.Fatal(err)
	}
	if admin.Ops().Proto() != proto.ProtoAdmin || admin.Ops().Range().Min != admin.MinVersion || admin.Ops().Range().Max != admin.MaxVersion {
		t.Fatalf("Ops declares %s %d..%d", admin.Ops().Proto(), admin.Ops().Range().Min, admin.Ops().Range().Max)
	}
	for _, op := range admin.Ops().Opcodes() {
		if op >= 0x0200 && op <= 0x0FFF {
			t.Errorf("opcode %#04x lies in the range SPEC.md reserves", op)
		}
	}
	wiretest.CheckOpTable(t, admin.Ops(), "Opcode table of the admin protocol (proto/admin/SPEC.md).")
}

func TestVersionInfoRoundTrip(t *testing.T) {
	full := make(proto.Ranges, proto.MaxRanges)
	for i := range full {
		full[i] = proto.Range{Proto: proto.ProtoID(i % 4), Min: uint8(i), Max: 255}
	}
	for _, v := range []admin.VersionInfo{sampleVersion, {}, {Binary: strings.Repeat("b", admin.MaxStringLen), Ranges: full}} {
		b := admin.AppendVersionInfo(nil, &v)
		got, err := admin.ParseVersionInfo(b)
		if err != nil || !wiretest.Equal(got, v) {
			t.Fatalf("round trip of %+v: %+v, %v", v, got, err)
		}
	}
}

func TestMembersRoundTrip(t *testing.T) {
	most := make([]admin.Member, admin.MaxMembers)
	for i := range most {
		most[i] = admin.Member{ID: uint64(i), State: admin.LinkState(i % 3), PeerVersion: uint8(i), RTT: uint32(i) * 7, Since: -int64(i)}
	}
	most[9].Name, most[9].Addr = strings.Repeat("n", admin.MaxStringLen), strings.Repeat("a", admin.MaxStringLen)
	for _, ms := range [][]admin.Member{sampleMembers, nil, most} {
		b := admin.AppendMembers(nil, ms)
		got, err := admin.ParseMembers(b)
		if err != nil || !wiretest.Equal(got, ms) {
			t.Fatalf("round trip of %d members: %d, %v", len(ms), len(got), err)
		}
	}
}

// TestMembersCountCheckedBeforeAllocation: a count the body cannot hold is
// refused without allocating room for the members it claims.
func TestMembersCountCheckedBeforeAllocation(t *testing.T) {
	b := []byte{0x00, 0x10, 0, 0, 0, 0, 0, 0} // 4096 members claimed, 4 bytes of them
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const runs = 100
	for range runs {
		if _, err := admin.ParseMembers(b); err == nil {
			t.Fatal("accepted")
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 4<<10 {
		t.Fatalf("%d bytes allocated per refused body; room for 4096 members would be ~%d", per, 4096*80)
	}
}

func TestLinkStateString(t *testing.T) {
	for s, want := range map[admin.LinkState]string{admin.StateDown: "down", admin.StateUp: "up", admin.StateSelf: "self", 7: "unknown"} {
		if s.String() != want {
			t.Errorf("LinkState(%d) = %q, want %q", s, s, want)
		}
	}
}

func FuzzParseMembers(f *testing.F) {
	f.Add(admin.AppendMembers(nil, sampleMembers))                    // the members_reply body: three members
	f.Add(admin.AppendMembers(nil, nil))                              // no members
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})                 // a huge count in a short body
	f.Add(membersWith(func(b []byte) []byte { b[12] = 3; return b })) // an unknown link state
	f.Add(membersWith(func(b []byte) []byte { return b[:40] }))       // cut inside the first member's name
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := admin.ParseMembers(b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		if len(ms) > admin.MaxMembers {
			t.Fatalf("%d members accepted", len(ms))
		}
		if out := admin.AppendMembers(nil, ms); !bytes.Equal(out, b) {
			t.Fatalf("re-encoded members differ:\n%x\n%x", out, b)
		}
	})
}

func FuzzParseVersionInfo(f *testing.F) {
	f.Add(admin.AppendVersionInfo(nil, &sampleVersion))       // the version_reply body
	f.Add(admin.AppendVersionInfo(nil, &admin.VersionInfo{})) // empty binary version, no ranges
	f.Add(append(proto.AppendString16(nil, "v"), 9, 1, 1, 1)) // 9 ranges announced
	f.Add(admin.AppendVersionInfo(nil, &sampleVersion)[:10])  // cut inside the binary version
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := admin.ParseVersionInfo(b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		if len(v.Ranges) > proto.MaxRanges || len(v.Binary) > admin.MaxStringLen {
			t.Fatalf("accepted %+v beyond its limits", v)
		}
		if out := admin.AppendVersionInfo(nil, &v); !bytes.Equal(out, b) {
			t.Fatalf("re-encoded version info differs:\n%x\n%x", out, b)
		}
	})
}

// FuzzReceiveAdmin runs the admin receive path over one frame.
func FuzzReceiveAdmin(f *testing.F) {
	for _, v := range slices.Concat(vectors(), viewVectors(), operatorVectors(), routesVectors(), addrVectors(), addrV6Vectors(), meshEchoVectors()) {
		if len(v.Data) >= proto.HeaderSize && string(v.Data[:4]) == "CORR" {
			f.Add(v.Data) // every admin frame vector (see the names in testdata/)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, _, err := receive(b)
		wiretest.Typed(t, err)
		if err == nil && !bytes.Equal(proto.AppendFrame(nil, &fr), b) {
			t.Fatal("re-encoded frame differs")
		}
	})
}

func FuzzParseViewInfo(f *testing.F) {
	f.Add(admin.AppendViewInfo(nil, &sampleView))       // two members
	f.Add(admin.AppendViewInfo(nil, &admin.ViewInfo{})) // no members
	f.Add([]byte{1, 2, 3})                              // truncated
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := admin.ParseViewInfo(b)
		wiretest.Typed(t, err)
		if err == nil && !bytes.Equal(admin.AppendViewInfo(nil, &v), b) {
			t.Fatal("re-encoded VIEW reply differs")
		}
	})
}
