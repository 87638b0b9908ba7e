package admin_test

import (
	"bytes"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/admin"
	"github.com/corralhq/corral/proto/internal/golden"
	"github.com/corralhq/corral/proto/internal/wiretest"
)

var (
	sampleMeshEcho = admin.MeshEcho{Target: 5, Count: 3000, Size: 64, Interval: 1000}
	sampleEchoDone = admin.MeshEchoResult{Sent: 3000, Received: 3000, Elapsed: 3012345}
	sampleEchoFail = admin.MeshEchoResult{Sent: 1200, Received: 1187, Elapsed: 4100000,
		Status: proto.Status{Code: proto.CodeLinkFail, Text: "link failure: link to node 2 lost"}}
)

func meshEchoFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.U64("target node id")
	w.U32("count")
	w.U32("size of each frame in bytes")
	w.U32("interval in microseconds")
	return w.Fields
}

func meshEchoResultFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.U32("sent")
	w.U32("received: distinct frames echoed")
	w.U32("out of order")
	w.U32("duplicates")
	w.U64("elapsed microseconds")
	w.U16("status code, 0 none")
	w.String16("status text")
	return w.Fields
}

func parseMeshEcho(b []byte) error { _, err := admin.ParseMeshEcho(b); return err }

func parseMeshEchoResult(b []byte) error { _, err := admin.ParseMeshEchoResult(b); return err }

func meshEchoWith(fn func(b []byte) []byte) []byte {
	return fn(admin.AppendMeshEcho(nil, &sampleMeshEcho))
}

func echoResultWith(m admin.MeshEchoResult, fn func(b []byte) []byte) []byte {
	return fn(admin.AppendMeshEchoResult(nil, &m))
}

// meshEchoVectors are the messages of admin version 5.
func meshEchoVectors() []wiretest.Vector {
	req := request(admin.OpMeshEcho, admin.AppendMeshEcho(nil, &sampleMeshEcho))
	done := reply(admin.OpMeshEcho, admin.AppendMeshEchoResult(nil, &sampleEchoDone))
	fail := reply(admin.OpMeshEcho, admin.AppendMeshEchoResult(nil, &sampleEchoFail))
	old := req
	old.Version = 4
	return []wiretest.Vector{
		frameVector("mesh_echo_request", []string{
			"Admin MESH_ECHO request (version 5): echo through node 5, 3000 frames of 64",
			"bytes, one every 1000 us.",
		}, req, meshEchoFields, expect(req, sampleMeshEcho), 0, ""),
		frameVector("mesh_echo_reply", []string{
			"Admin MESH_ECHO reply: 3000 sent, 3000 received, none out of order or",
			"duplicated, 3.012345 s, status 0 (none).",
		}, done, meshEchoResultFields, expect(done, sampleEchoDone), 0, ""),
		frameVector("mesh_echo_reply_linkfail", []string{
			"Admin MESH_ECHO reply of a stream a lost link ended: 1200 sent, 1187 received,",
			"status 44 (LINKFAIL) and its text.",
		}, fail, meshEchoResultFields, expect(fail, sampleEchoFail), 0, ""),
		frameVector("err_mesh_echo_v4", []string{"A MESH_ECHO request sent as admin version 4, which does not define it."},
			old, nil, receiveErr, proto.CodeOpcode, "admin protocol version 4 has no opcode 0x0016"),
		bodyVector("err_mesh_echo_target_zero", "MESH_ECHO request to node 0, which no node is.",
			meshEchoWith(func(b []byte) []byte { clear(b[0:8]); return b }), meshEchoFields, parseMeshEcho, "target node id 0"),
		bodyVector("err_mesh_echo_count_zero", "MESH_ECHO request of 0 frames.",
			meshEchoWith(func(b []byte) []byte { clear(b[8:12]); return b }), meshEchoFields, parseMeshEcho, "count 0"),
		bodyVector("err_mesh_echo_size", "MESH_ECHO request of 3-byte frames, too small for the sequence number.",
			meshEchoWith(func(b []byte) []byte { clear(b[12:16]); b[12] = 3; return b }), meshEchoFields, parseMeshEcho, "frame size 3 outside 4..65536"),
		bodyVector("err_mesh_echo_truncated", "MESH_ECHO request cut off inside its interval.",
			meshEchoWith(func(b []byte) []byte { return b[:len(b)-1] }), meshEchoFields, parseMeshEcho, "truncated at interval"),
		bodyVector("err_mesh_echo_trailing", "MESH_ECHO request followed by one extra byte.",
			meshEchoWith(func(b []byte) []byte { return append(b, 0) }), meshEchoFields, parseMeshEcho, "1 unexpected bytes"),
		bodyVector("err_mesh_echo_received", "MESH_ECHO reply receiving more frames than it sent.",
			echoResultWith(sampleEchoDone, func(b []byte) []byte { b[4]++; return b }), meshEchoResultFields, parseMeshEchoResult, "3001 frames received of 3000 sent"),
		bodyVector("err_mesh_echo_text", "MESH_ECHO reply with status text but code 0.",
			echoResultWith(sampleEchoFail, func(b []byte) []byte { b[24], b[25] = 0, 0; return b }), meshEchoResultFields, parseMeshEchoResult, "status text without a code"),
		bodyVector("err_mesh_echo_reply_truncated", "MESH_ECHO reply cut off inside its status text.",
			echoResultWith(sampleEchoFail, func(b []byte) []byte { return b[:len(b)-1] }), meshEchoResultFields, parseMeshEchoResult, "truncated at status text"),
	}
}

func TestMeshEchoRoundTrip(t *testing.T) {
	for _, e := range []admin.MeshEcho{sampleMeshEcho, {Target: ^uint64(0), Count: ^uint32(0), Size: admin.MaxEchoSize, Interval: ^uint32(0)}} {
		got, err := admin.ParseMeshEcho(admin.AppendMeshEcho(nil, &e))
		if err != nil || got != e {
			t.Fatalf("MESH_ECHO round trip: %+v, %v; want %+v", got, err, e)
		}
	}
	for _, m := range []admin.MeshEchoResult{sampleEchoDone, sampleEchoFail, {}} {
		got, err := admin.ParseMeshEchoResult(admin.AppendMeshEchoResult(nil, &m))
		if err != nil || got != m {
			t.Fatalf("MESH_ECHO reply round trip: %+v, %v; want %+v", got, err, m)
		}
	}
}

func TestMeshEchoComplete(t *testing.T) {
	for _, c := range []struct {
		m    admin.MeshEchoResult
		want bool
	}{
		{sampleEchoDone, true},
		{sampleEchoFail, false},
		{admin.MeshEchoResult{Sent: 3000, Received: 2999}, false},
		{admin.MeshEchoResult{Sent: 3000, Received: 3000, OutOfOrder: 1}, false},
		{admin.MeshEchoResult{Sent: 3000, Received: 3000, Duplicates: 1}, false},
		{admin.MeshEchoResult{Sent: 2999, Received: 2999}, false},
	} {
		if got := c.m.Complete(3000); got != c.want {
			t.Errorf("%+v: Complete(3000) = %v", c.m, got)
		}
	}
}

func FuzzParseMeshEcho(f *testing.F) {
	f.Add(admin.AppendMeshEcho(nil, &sampleMeshEcho))                     // the mesh_echo_request body
	f.Add(meshEchoWith(func(b []byte) []byte { clear(b[:8]); return b })) // target 0
	f.Add([]byte{1, 2, 3})                                                // truncated
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := admin.ParseMeshEcho(b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		if e.Target == 0 || e.Count == 0 || e.Size < admin.MinEchoSize || e.Size > admin.MaxEchoSize {
			t.Fatalf("accepted %+v", e)
		}
		if out := admin.AppendMeshEcho(nil, &e); !bytes.Equal(out, b) {
			t.Fatalf("re-encoded request differs:\n%x\n%x", out, b)
		}
	})
}

func FuzzParseMeshEchoResult(f *testing.F) {
	f.Add(admin.AppendMeshEchoResult(nil, &sampleEchoDone)) // the mesh_echo_reply body
	f.Add(admin.AppendMeshEchoResult(nil, &sampleEchoFail)) // a LINKFAIL
	f.Add(echoResultWith(sampleEchoFail, func(b []byte) []byte { return b[:30] }))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := admin.ParseMeshEchoResult(b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		if m.Received > m.Sent || m.OutOfOrder > m.Received || (m.Status.Code == proto.CodeNone && m.Status.Text != "") {
			t.Fatalf("accepted %+v", m)
		}
		if out := admin.AppendMeshEchoResult(nil, &m); !bytes.Equal(out, b) {
			t.Fatalf("re-encoded reply differs:\n%x\n%x", out, b)
		}
	})
}
