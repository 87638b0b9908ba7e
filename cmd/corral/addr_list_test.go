package main

import (
	"context"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/admin"
	"github.com/corralhq/corral/transport"
)

// addrAdmin is the admin opcode table of an agent speaking admin versions
// 1 to max, max ≥ 4.
func addrAdmin(max uint8) *proto.OpSet {
	ops := map[uint16]proto.Op{}
	for _, op := range []uint16{admin.OpPing, admin.OpPong, admin.OpVersion, admin.OpMembers, admin.OpView,
		admin.OpAddrAdd, admin.OpAddrDel, admin.OpAddrList} {
		o, _ := admin.Ops().Lookup(op)
		ops[op] = o
	}
	return proto.NewOpSet(proto.ProtoAdmin, 1, max, ops)
}

// addrAgent serves ADDR_LIST at dir as an agent of admin versions 1 to
// max would: rows in the layout of the version the link agreed.
func addrAgent(t *testing.T, dir string, max uint8, rows []admin.AddrRow) {
	t.Helper()
	fakeAdminAgent(t, dir, "n1", addrAdmin(max), func(ctx context.Context, l *transport.Link, f *proto.Frame) {
		switch f.Opcode {
		case admin.OpAddrList:
			l.Reply(ctx, f, admin.AppendAddrListAt(nil, f.Version, rows))
		case admin.OpView:
			l.Reply(ctx, f, admin.AppendViewInfo(nil, &admin.ViewInfo{Instance: 1, Leader: 1, Members: []admin.ViewMember{{ID: 1, Voter: true, Name: "n1", Addr: "127.0.0.1:1"}}}))
		}
	})
}

var listRows = []admin.AddrRow{{Stack: 7, IP: netip.MustParseAddr("192.0.2.10"), Policy: admin.PolicyWeighted, Owner: 1,
	Gen: 4, ExceptionCount: 2, Exceptions: []admin.AddrException{
		{Client: netip.MustParseAddrPort("198.51.100.7:40000"), Proto: 6, Port: 80, Node: 2},
		{Client: netip.MustParseAddrPort("[2001:db8::9]:40001"), Proto: 6, Port: 80, Node: 3},
	}}}

// TestAddrListExceptions: against an agent of admin version 6, addr list
// shows each address's generation and exception count, and --json the
// exceptions, flow → node.
func TestAddrListExceptions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	addrAgent(t, dir, admin.MaxVersion, listRows)
	out, code := addrTool("addr", "list", "--data-dir", dir)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.Contains(lines[0], "GEN") || !strings.Contains(lines[0], "EXCEPTIONS") ||
		!strings.HasSuffix(strings.Join(strings.Fields(lines[1]), " "), " 4 2") {
		t.Fatalf("addr list: exit %d:\n%s", code, out)
	}
	out, code = addrTool("addr", "list", "--json", "--data-dir", dir)
	var as []addrJSON
	if code != 0 || json.Unmarshal([]byte(out), &as) != nil || len(as) != 1 {
		t.Fatalf("addr list --json: exit %d:\n%s", code, out)
	}
	a := as[0]
	want := []addrExceptionJSON{{"198.51.100.7:40000", "tcp", 80, 2}, {"[2001:db8::9]:40001", "tcp", 80, 3}}
	if a.Gen == nil || *a.Gen != 4 || a.ExceptionCount == nil || *a.ExceptionCount != 2 || len(a.Exceptions) != 2 ||
		a.Exceptions[0] != want[0] || a.Exceptions[1] != want[1] {
		t.Fatalf("addr list --json: %s", out)
	}
}

// TestAddrListV5Agent: against an agent of admin version 5, which sends
// no generations or exceptions, addr list still works and shows "-" for
// them (null in --json).
func TestAddrListV5Agent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	addrAgent(t, dir, 5, listRows)
	out, code := addrTool("addr", "list", "--data-dir", dir)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasSuffix(strings.Join(strings.Fields(lines[1]), " "), " - -") {
		t.Fatalf("addr list against a v5 agent: exit %d:\n%s", code, out)
	}
	out, code = addrTool("addr", "list", "--json", "--data-dir", dir)
	var as []addrJSON
	if code != 0 || json.Unmarshal([]byte(out), &as) != nil || len(as) != 1 || as[0].Gen != nil || as[0].Exceptions != nil ||
		!strings.Contains(out, `"gen": null`) {
		t.Fatalf("addr list --json against a v5 agent: exit %d:\n%s", code, out)
	}
}
