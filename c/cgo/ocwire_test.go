//go:build cgo

package ocwire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/types/event"
)

const testdata = "../../proto/client/testdata"

// vector is one golden file: its bytes, the code it expects (0: ok) and
// the link version its comment names (0: none).
type vector struct {
	name string
	data []byte
	want int
	link uint8
}

func (v vector) frame() bool { return len(v.data) >= proto.HeaderSize && string(v.data[:4]) == "CORR" }

// readVectors reads every .hex file: "# expect: ok" or "# expect: error
// code N (...)", data lines "OFFSET: hex bytes  # comment", and a comment
// "... on a link that agreed on version N" that sets link.
func readVectors(t testing.TB) []vector {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testdata, "*.hex"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no vectors in %s: %v", testdata, err)
	}
	var vs []vector
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		v := vector{name: strings.TrimSuffix(filepath.Base(f), ".hex"), want: -1}
		sc := bufio.NewScanner(bytes.NewReader(raw))
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(line, "# expect: "); ok {
				switch {
				case strings.HasPrefix(rest, "ok"):
					v.want = 0
				case strings.HasPrefix(rest, "error code "):
					n, _, _ := strings.Cut(strings.TrimPrefix(rest, "error code "), " ")
					v.want, _ = strconv.Atoi(n)
				}
				continue
			}
			if strings.HasPrefix(line, "#") {
				if _, after, ok := strings.Cut(line, "agreed on version "); ok && v.link == 0 {
					n, _, _ := strings.Cut(after, ".")
					l, _ := strconv.Atoi(strings.TrimRight(n, ",; "))
					v.link = uint8(l)
				}
				continue
			}
			_, data, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			data, _, _ = strings.Cut(data, "#")
			b, err := hex.DecodeString(strings.ReplaceAll(data, " ", ""))
			if err != nil {
				t.Fatalf("%s: %q: %v", v.name, line, err)
			}
			v.data = append(v.data, b...)
		}
		if v.want < 0 {
			t.Fatalf("%s: no expect line", v.name)
		}
		vs = append(vs, v)
	}
	return vs
}

// bodyKinds: the decoder proto/client's tests give each body vector, by
// file name without "err_"; first matching prefix wins (as in vectors.c).
var bodyKinds = []struct {
	prefix string
	kind   Body
}{
	{"group_send_reply_to", BGroupSend},
	{"subscribe_reply", BSubscribeReply},
	{"subscribe", BSubscribe},
	{"event", BEvent},
	{"membership", BMembership},
	{"connectivity", BConnectivity},
	{"group_join_reply", BGroupJoinReply},
	{"group_join", BGroupJoin},
	{"group_leave_reply", BGroupSeq},
	{"group_seq", BGroupSeq},
	{"group_leave", BGroupLeave},
	{"group_send_reply", BGroupSendReply},
	{"group_send", BGroupSend},
	{"group_name", BGroupName},
	{"group_members", BGroupMembers},
	{"group_list", BGroupList},
	{"group_window", BGroupWindow},
	{"group_attach_reply", BGroupAttachReply},
	{"group_attach", BGroupAttach},
	{"callbacks", BCallbacks},
	{"done", BDone},
	{"status", BStatus},
	{"ping", BPing},
}

// laterBodies: body vectors of client versions above the C library's
// MaxVersion, by file name without "err_" (as in vectors.c): skipped.
var laterBodies = []struct {
	prefix string
	since  uint8
}{
	{"ds_", 4}, // the data service (proto/client/dsvc.go)
}

// laterBody reports whether a body vector belongs to a version the C
// library does not speak.
func laterBody(name string) bool {
	s := strings.TrimPrefix(name, "err_")
	for _, l := range laterBodies {
		if strings.HasPrefix(s, l.prefix) && l.since > MaxVersion {
			return true
		}
	}
	return false
}

func bodyKind(name string) (Body, bool) {
	s := strings.TrimPrefix(name, "err_")
	for _, k := range bodyKinds {
		if strings.HasPrefix(s, k.prefix) {
			return k.kind, true
		}
	}
	return 0, false
}

// bodyFrame: the opcode and flags of a frame carrying a body of kind k.
var bodyFrame = map[Body]struct {
	op    uint16
	flags proto.Flags
}{
	BSubscribe: {client.OpSubscribe, 3}, BSubscribeReply: {client.OpSubscribe, 7}, BEvent: {client.OpEvent, 3},
	BMembership: {client.OpQueryMembership, 7}, BConnectivity: {client.OpQueryConnectivity, 7},
	BGroupJoin: {client.OpGroupJoin, 3}, BGroupJoinReply: {client.OpGroupJoin, 7},
	BGroupLeave: {client.OpGroupLeave, 3}, BGroupSeq: {client.OpGroupLeave, 7},
	BGroupSend: {client.OpGroupSend, 3}, BGroupSendReply: {client.OpGroupSend, 7},
	BGroupName: {client.OpGroupMembers, 3}, BGroupMembers: {client.OpGroupMembers, 7},
	BGroupList: {client.OpGroupList, 7}, BGroupWindow: {client.OpGroupWindow, 7},
	BGroupAttach: {client.OpGroupAttach, 3}, BGroupAttachReply: {client.OpGroupAttach, 7},
	BStatus: {client.OpSubscribe, 0xF}, BPing: {client.OpPing, 3},
	BCallbacks: {client.OpCallbacks, 3}, BDone: {client.OpDone, 3},
}

// goBody is the Go decoder of a body kind on a link of version v (false:
// Go has none at this build). EVENT bodies: ParseEventAt from version 3
// (byte 13 is Flags), ParseEvent before.
func goBody(k Body, v uint8, b []byte) (error, bool) {
	var err error
	switch k {
	case BSubscribe:
		_, err = client.ParseSubscribe(b)
	case BSubscribeReply:
		_, err = client.ParseSubscribeReply(b)
	case BEvent:
		if v >= 3 {
			_, _, err = client.ParseEventAt(v, b)
		} else {
			_, err = client.ParseEvent(b)
		}
	case BCallbacks:
		_, err = client.ParseCallbacks(b)
	case BDone:
		_, err = client.ParseDone(b)
	case BMembership:
		_, err = client.ParseMembership(b)
	case BConnectivity:
		_, err = client.ParseConnectivity(b)
	case BGroupJoin:
		_, err = client.ParseGroupJoin(b)
	case BGroupJoinReply:
		_, err = client.ParseGroupJoinReply(b)
	case BGroupLeave:
		_, err = client.ParseGroupLeave(b)
	case BGroupSeq:
		_, err = client.ParseGroupSeq(b)
	case BGroupSend:
		_, err = client.ParseGroupSend(b)
	case BGroupSendReply:
		_, err = client.ParseGroupSendReply(b)
	case BGroupName:
		_, err = client.ParseGroupName(b)
	case BGroupMembers:
		_, err = client.ParseGroupMembers(b)
	case BGroupList:
		_, err = client.ParseGroupList(b)
	case BGroupWindow:
		_, err = client.ParseGroupWindow(b)
	case BGroupAttach:
		_, err = client.ParseGroupAttach(b)
	case BGroupAttachReply:
		_, err = client.ParseGroupAttachReply(b)
	case BStatus:
		_, err = proto.ParseStatus(b, "ABORT")
	case BPing:
		_, err = proto.ParsePing(b)
	default:
		return nil, false
	}
	return err, true
}

// receive is the Go receive path of a client link of version v, as
// proto/client's tests run it (receiveAt, receiveGroup): frame, opcode
// table, critical extensions, then the body the opcode and flags call for.
func receive(v uint8, b []byte) (proto.Frame, error) {
	f, err := proto.DecodeFrame(b, 0)
	if err != nil {
		return f, err
	}
	if err := client.Ops().Check(&f.Header, v); err != nil {
		return f, err
	}
	if err := proto.CheckTLV(f.Ext, nil); err != nil {
		return f, err
	}
	if f.Flags&proto.FlagAbort != 0 {
		_, err := proto.ParseStatus(f.Body, "ABORT")
		return f, err
	}
	reply := f.Flags&proto.FlagReply != 0
	kind := BEmpty
	switch f.Opcode {
	case client.OpPing, client.OpPong:
		kind = BPing
	case client.OpEvent:
		kind = BEvent
	case client.OpQueryMembership:
		kind = pick(reply, BMembership, BEmpty)
	case client.OpQueryConnectivity:
		kind = pick(reply, BConnectivity, BEmpty)
	case client.OpSubscribe:
		kind = pick(reply, BSubscribeReply, BSubscribe)
	case client.OpCallbacks:
		kind = pick(reply, BEmpty, BCallbacks)
	case client.OpDone:
		kind = BDone // one-shot: the body is a Done whatever the flags
	case client.OpGroupJoin:
		kind = pick(reply, BGroupJoinReply, BGroupJoin)
	case client.OpGroupLeave:
		kind = pick(reply, BGroupSeq, BGroupLeave)
	case client.OpGroupSend:
		kind = pick(reply, BGroupSendReply, BGroupSend)
	case client.OpGroupMembers:
		kind = pick(reply, BGroupMembers, BGroupName)
	case client.OpGroupList:
		kind = pick(reply, BGroupList, BEmpty)
	case client.OpGroupWindow:
		kind = pick(reply, BGroupWindow, BEmpty)
	case client.OpGroupAttach:
		kind = pick(reply, BGroupAttachReply, BGroupAttach)
	}
	if err, ok := goBody(kind, v, f.Body); ok {
		return f, err
	}
	return f, proto.NewReader(f.Body, client.Ops().Name(f.Opcode)+" request").Err()
}

func pick(c bool, a, b Body) Body {
	if c {
		return a
	}
	return b
}

// maxVersion is the highest client version both the Go build and the C
// library speak: the differential compares the two there and below.
var maxVersion = min(client.MaxVersion, MaxVersion)

// goVersion is the link version receive() of proto/client's tests uses:
// the frame's, if this build speaks it, else the highest.
func goVersion(b []byte) uint8 {
	if len(b) > 9 && b[9] >= client.MinVersion && b[9] <= client.MaxVersion {
		return b[9]
	}
	return client.MaxVersion
}

// version is the link version of a fuzzed frame: the frame's, if both the
// Go build and the C library speak it, else the highest both speak. A
// frame of a later version (the data service, version 4) is thus checked
// on a link of maxVersion, where both refuse it alike (CodeVersion).
func version(b []byte) uint8 {
	if len(b) > 9 && b[9] >= client.MinVersion && b[9] <= maxVersion {
		return b[9]
	}
	return maxVersion
}

// linkVersion: the version a golden frame is checked at, as
// proto/client's tests check it (the one its comment names, else
// goVersion); err_wrong_version is a version 3 PING on a link that agreed
// on version 2. Above MaxVersion the C library does not speak it.
func linkVersion(v vector) uint8 {
	if v.link != 0 {
		return v.link
	}
	return goVersion(v.data)
}

// bodyVersion: the link version of a body vector, as vectors.c gives it:
// 3 if its name says v3, else 2 (EVENT bodies: ParseEvent).
func bodyVersion(name string) uint8 {
	if strings.Contains(name, "v3") {
		return 3
	}
	return 2
}

func code(err error) int {
	if err == nil {
		return 0
	}
	var pe *proto.Error
	if errors.As(err, &pe) {
		return int(pe.Code)
	}
	return -1
}

// TestGoldenVectors: the C decoder and the Go one agree with every vector
// of proto/client/testdata, frames at the version receive() uses (or the
// one the vector's comment names), bodies by the kind their name gives.
// Vectors of versions above the C library's MaxVersion are skipped.
func TestGoldenVectors(t *testing.T) {
	vs := readVectors(t)
	var frames, bodies, skipped int
	for _, v := range vs {
		if v.frame() && linkVersion(v) > MaxVersion || !v.frame() && laterBody(v.name) {
			skipped++
			continue
		}
		if v.frame() {
			frames++
			ver := linkVersion(v)
			if got := CheckFrame(v.data, ver); got.Code != v.want {
				t.Errorf("%s: C frame check at version %d: %v, want code %d", v.name, ver, got, v.want)
			}
			if _, err := receive(ver, v.data); code(err) != v.want {
				t.Errorf("%s: Go receive at version %d: %v, want code %d", v.name, ver, err, v.want)
			}
			continue
		}
		bodies++
		k, ok := bodyKind(v.name)
		if !ok {
			t.Errorf("%s: a body vector of no known kind", v.name)
			continue
		}
		ver := bodyVersion(v.name)
		if got := CheckBody(k, ver, v.data); got.Code != v.want {
			t.Errorf("%s: C body check (kind %d): %v, want code %d", v.name, k, got, v.want)
		}
		if err, ok := goBody(k, ver, v.data); !ok {
			t.Errorf("%s: no Go decoder for body kind %d", v.name, k)
		} else if code(err) != v.want {
			t.Errorf("%s: Go body decoder: %v, want code %d", v.name, err, v.want)
		}
	}
	t.Logf("%d vectors: %d frames, %d bodies; %d skipped: of client versions above %d, which the C library does not speak", len(vs), frames, bodies, skipped, MaxVersion)
	if frames+bodies == 0 {
		t.Fatal("no vector checked")
	}
}

func TestCRC32C(t *testing.T) {
	for _, s := range []string{"", "123456789", strings.Repeat("corral", 1000)} {
		if got, want := CRC32C([]byte(s)), proto.CRC32C([]byte(s)); got != want {
			t.Errorf("CRC32C(%.12q...) = %#08x, Go says %#08x", s, got, want)
		}
	}
	if got := CRC32C([]byte("123456789")); got != 0xE3069283 {
		t.Errorf("check value %#08x", got)
	}
}

// cstr is s as a C string shows it: up to its first NUL. The wire allows
// NUL in names (the Go decoders do not refuse it); the char * of
// oc_event.h cannot carry it.
func cstr(s string) string {
	s, _, _ = strings.Cut(s, "\x00")
	return s
}

// mirror is what the C decoder must give for a Go event and its flags: the
// structs of oc_event.h, with the layout rules of its comments.
func mirror(ev event.Event, flags client.EventFlags) Event {
	out := Event{Seq: ev.Seq, Desc: uint32(ev.Desc), Flags: uint8(flags)}
	node := func(n event.Node) Node {
		m := Node{Name: cstr(n.Name), ID: n.ID, BornOn: n.BornOn}
		if n.Addr.Addr().IsValid() {
			m.Addr = cstr(n.Addr.String())
		}
		return m
	}
	iface := func(i event.Interface) Interface {
		m := Interface{Name: cstr(i.Name), Up: i.Up}
		if a := i.Addr.Addr(); a.IsValid() {
			m.PrefixLen = uint(i.Addr.Bits())
			if a.Is4() {
				m.Family = 4
				b := a.As4()
				copy(m.Addr[:], b[:])
			} else {
				m.Family = 6
				m.Addr = a.As16()
			}
		}
		return m
	}
	member := func(g event.GroupMember) Member {
		return Member{Node: g.Node, Member: g.Member, BornOn: g.BornOn, Pid: g.Pid, Name: cstr(g.Name)}
	}
	switch d := ev.Data.(type) {
	case *event.Membership:
		m := &Membership{Instance: d.Instance, NMember: uint(len(d.Members)), NIn: uint(len(d.Joined)), NOut: uint(len(d.Left))}
		m.InIdx, m.OutIdx = m.NMember, m.NMember+m.NIn
		for _, l := range [][]event.Node{d.Members, d.Joined, d.Left} {
			for _, n := range l {
				m.Array = append(m.Array, node(n))
			}
		}
		out.Data = m
	case *event.Connectivity:
		c := &Connect{Interface: iface(d.Interface)}
		for _, n := range d.Nodes {
			c.Nodes = append(c.Nodes, node(n))
		}
		for _, i := range d.Interfaces {
			c.Interfaces = append(c.Interfaces, iface(i))
		}
		for _, p := range d.Peers {
			c.Peers = append(c.Peers, Peer{Node: node(p.Node), Eligible: p.Eligible, Connected: p.Connected})
		}
		out.Data = c
	case *event.Group:
		g := &Group{Name: cstr(d.Name), From: member(d.From), Reason: uint(d.Reason), Target: d.Target, MsgID: d.MsgID, ReplyTo: d.ReplyTo, Payload: d.Payload}
		for _, m := range d.Members {
			g.Members = append(g.Members, member(m))
		}
		out.Data = g
	}
	return out
}

// compareEvent decodes body with C and Go on a link of version v and fails
// t on any difference.
func compareEvent(t *testing.T, name string, body []byte, v uint8) {
	t.Helper()
	var (
		want  event.Event
		flags client.EventFlags
		err   error
	)
	if v >= 3 {
		want, flags, err = client.ParseEventAt(v, body)
	} else {
		want, err = client.ParseEvent(body)
	}
	got, res, berr := ParseEvent(body, v)
	if berr != nil {
		t.Fatalf("%s: C block: %v", name, berr)
	}
	if code(err) != res.Code {
		t.Fatalf("%s: C says %v, Go %v", name, res, err)
	}
	if err != nil {
		return
	}
	if m := mirror(want, flags); !reflect.DeepEqual(got, m) {
		t.Errorf("%s: C decoded\n%s\nGo (as oc_event.h structs)\n%s", name, dump(got), dump(m))
	}
}

func dump(e Event) string {
	return fmt.Sprintf("%+v %+v", e, e.Data)
}

func eventBody(t testing.TB, ev event.Event) []byte {
	t.Helper()
	b, err := client.AppendEvent(nil, &ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// eventHeader is the 16 bytes before the data of an EVENT of desc.
func eventHeader(seq uint64, desc event.Descriptor, class byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, seq)
	b = binary.LittleEndian.AppendUint32(b, uint32(desc))
	return append(b, class, 0, 0, 0)
}

// TestEventDecode: ocw_parse_event fills the oc_event.h structs exactly as
// client.ParseEvent decodes the same body: the event vectors, the QUERY
// replies' data as events, and addresses of every form.
func TestEventDecode(t *testing.T) {
	n := 0
	for _, v := range readVectors(t) {
		if v.want != 0 || !v.frame() {
			continue
		}
		f, err := proto.DecodeFrame(v.data, 0)
		if err != nil {
			t.Fatal(err)
		}
		ver := linkVersion(v)
		if ver > MaxVersion {
			continue // a version the C library does not speak
		}
		switch {
		case f.Opcode == client.OpEvent:
			compareEvent(t, v.name, f.Body, ver)
		case f.Opcode == client.OpQueryMembership && f.Flags&proto.FlagReply != 0:
			compareEvent(t, v.name, append(eventHeader(5, event.MSNewView, 2), f.Body...), ver)
		case f.Opcode == client.OpQueryConnectivity && f.Flags&proto.FlagReply != 0:
			compareEvent(t, v.name, append(eventHeader(0, event.CSP2PLost, 1), f.Body...), ver)
		default:
			continue
		}
		n++
	}
	if n < 8 {
		t.Fatalf("only %d event vectors", n)
	}
	ap := netip.MustParseAddrPort
	nodes := []event.Node{
		{ID: 1, Name: "v4", Addr: ap("10.1.2.3:7946"), BornOn: 2},
		{ID: 2, Name: "", Addr: ap("[::]:1")},
		{ID: 3, Addr: ap("[::1]:65535")},
		{ID: 4, Addr: ap("[2001:db8::1]:80")},
		{ID: 5, Addr: ap("[1:0:0:1:0:0:0:1]:80")}, // two runs of zeros: the longer one
		{ID: 6, Addr: ap("[1:0:0:2:3:0:0:4]:80")}, // a tie: the first
		{ID: 7, Addr: ap("[1:2:3:4:5:6:7:8]:80")},
		{ID: 8, Addr: ap("[1::8]:8"), Name: strings.Repeat("n", 255)},
		{ID: 9, Addr: ap("[::ffff:10.0.0.1]:7946")}, // IPv4-mapped
		{ID: 10, Addr: ap("[fe80::1%eth0]:7946")},
		{ID: 11, Addr: ap("[::ffff:1.2.3.4%z]:1")},
		{ID: 12, Addr: ap("[1:0:2:0:3:0:4:0]:9")}, // no run of two
		{ID: 13, Addr: ap("[0:1:0:0:0:0:0:0]:9")},
		{ID: 14, Addr: netip.AddrPortFrom(netip.MustParseAddr("fe80::1").WithZone(strings.Repeat("z", 255)), 1)},
	}
	cases := map[string]event.Event{
		"addresses":  {Seq: 1, Desc: event.MSNewView, Data: &event.Membership{Instance: 9, Members: nodes, Joined: nodes[3:5], Left: nodes[:1]}},
		"empty view": {Seq: 2, Desc: event.MSNewView, Data: &event.Membership{}},
		"only left":  {Seq: 2, Desc: event.MSEvicted, Data: &event.Membership{Left: nodes[9:]}},
		"no data":    {Seq: 0, Desc: event.MSSuspect},
		"interfaces": {Desc: event.CSInterfaceAdded, Data: &event.Connectivity{
			Interface:  event.Interface{Name: "eth1", Addr: netip.MustParsePrefix("2001:db8::7/64"), Up: true},
			Interfaces: []event.Interface{{Name: "a"}, {Name: "b", Addr: netip.MustParsePrefix("10.0.0.0/8")}, {Addr: netip.MustParsePrefix("::ffff:1.2.3.4/128")}},
			Peers:      []event.Peer{{Node: nodes[9], Connected: true}, {Node: nodes[0], Eligible: true}},
			Nodes:      nodes,
		}},
		"group": {Seq: 7 << 20, Desc: event.GSLeave, Data: &event.Group{Name: "g", Reason: event.LeaveBehind,
			From:    event.GroupMember{Node: 1, Member: 2, BornOn: 3, Pid: 4, Name: "from"},
			Members: []event.GroupMember{{Node: 5, Member: 6}, {Node: 7, Member: 8, Name: "x"}}, Payload: bytes.Repeat([]byte{0, 1, 2}, 1000)}},
		"empty group": {Seq: 8, Desc: event.GSBroadcast, Data: &event.Group{}},
	}
	for name, ev := range cases {
		for v := uint8(1); v <= maxVersion; v++ {
			compareEvent(t, fmt.Sprint(name, " v", v), eventBody(t, ev), v)
		}
		flagged := eventBody(t, ev)
		client.SetEventFlags(flagged, client.EventAwaitDone)
		compareEvent(t, name+" flagged", flagged, 3)
	}
}

// TestEventFlags: byte 13 of an EVENT is Flags from version 3 (OCEVENT.md
// §1), reserved before.
func TestEventFlags(t *testing.T) {
	body := eventBody(t, event.Event{Seq: 1, Desc: event.MSNewView, Data: &event.Membership{Instance: 1}})
	flagged := bytes.Clone(body)
	flagged[13] = 1
	for _, c := range []struct {
		v     uint8
		body  []byte
		code  int
		flags uint8
	}{
		{3, flagged, 0, 1},
		{3, body, 0, 0},
		{2, flagged, 4, 0},
		{1, flagged, 4, 0},
		{3, with(body, 13, 2), 4, 0},
		{3, with(body, 14, 1), 4, 0},
		{3, with(body, 15, 1), 4, 0},
	} {
		ev, res, err := ParseEvent(c.body, c.v)
		if err != nil || res.Code != c.code || (c.code == 0 && ev.Flags != c.flags) {
			t.Errorf("v%d body[13:16] % x: %+v, %v, %v; want code %d flags %d", c.v, c.body[13:16], ev, res, err, c.code, c.flags)
		}
		if got := CheckBody(BEvent, c.v, c.body); got.Code != c.code {
			t.Errorf("v%d body[13:16] % x: check %v, want code %d", c.v, c.body[13:16], got, c.code)
		}
	}
}

func with(b []byte, off int, v byte) []byte {
	b = bytes.Clone(b)
	b[off] = v
	return b
}

// seal fixes up a fuzzed frame so that it reaches the later checks: with
// bit 1 the body length and payload CRC are made to fit, with bit 2 the
// header CRC.
func seal(b []byte, how uint8) []byte {
	if len(b) < proto.HeaderSize || how&3 == 0 {
		return b
	}
	b = bytes.Clone(b)
	le := binary.LittleEndian
	if how&1 != 0 {
		ext := uint64(le.Uint32(b[40:]))
		if rest := uint64(len(b) - proto.HeaderSize); ext <= rest {
			le.PutUint32(b[44:], uint32(rest-ext))
		}
		le.PutUint32(b[48:], proto.CRC32C(b[proto.HeaderSize:]))
	}
	if how&2 != 0 {
		le.PutUint32(b[4:], proto.CRC32C(b[8:proto.HeaderSize]))
	}
	return b
}

// FuzzCDecoder: for any bytes, the C frame check accepts iff the Go receive
// path does, with the same code when both refuse; an EVENT both accept
// decodes to the same data and flags. The link version is the frame's
// (version()), so the mutator reaches every version by changing byte 9;
// versions above the C library's MaxVersion (the data service) are checked
// at maxVersion, where both sides refuse them.
func FuzzCDecoder(f *testing.F) {
	for _, v := range readVectors(f) {
		if v.frame() {
			f.Add(v.data, uint8(0))
			f.Add(v.data, uint8(3))
			continue
		}
		// A body vector, framed at versions 2 and 3.
		k, ok := bodyKind(v.name)
		bf, known := bodyFrame[k]
		if !ok || !known {
			continue
		}
		for _, ver := range []uint8{2, 3} {
			fr := proto.Frame{Header: proto.Header{Proto: proto.ProtoClient, Version: ver, Opcode: bf.op, Flags: bf.flags, Hops: proto.HopLimit}, Body: v.data}
			data := proto.AppendFrame(nil, &fr)
			f.Add(data, uint8(0))
			f.Add(data, uint8(3))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, how uint8) {
		b = seal(b, how)
		v := version(b)
		fr, err := receive(v, b)
		got := CheckFrame(b, v)
		if code(err) != got.Code {
			t.Fatalf("version %d: Go says %v (code %d), C says %v", v, err, code(err), got)
		}
		if err == nil && fr.Opcode == client.OpEvent {
			compareEvent(t, "fuzzed EVENT", fr.Body, v)
		}
	})
}
