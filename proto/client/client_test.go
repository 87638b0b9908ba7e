package client_test

import (
	"bytes"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/proto/internal/wiretest"
)

// Regenerate the golden files with: go test ./proto/... -rewrite
func TestGolden(t *testing.T) {
	// 0x0100 opens the events range but is never assigned. The PING
	// vectors stay as version 2 wrote them: version 3 adds no PING rule.
	vs := wiretest.PingVectorsAt(client.Ops(), 2, client.OpPing, client.OpPong, 0x0100)
	vs = append(append(vs, eventVectors()...), groupVectors()...)
	vs = append(append(vs, dispatchVectors()...), dsVectors()...)
	vs = append(vs, batchVectors()...)
	wiretest.Run(t, "testdata", vs)
}

func TestOps(t *testing.T) {
	if err := wiretest.CheckOps(client.Ops()); err != nil {
		t.Fatal(err)
	}
	if client.Ops().Proto() != proto.ProtoClient || client.Ops().Range().Min != client.MinVersion || client.Ops().Range().Max != client.MaxVersion {
		t.Fatalf("Ops declares %s %d..%d", client.Ops().Proto(), client.Ops().Range().Min, client.Ops().Range().Max)
	}
	for _, op := range client.Ops().Opcodes() {
		if op >= 0x0400 && op <= 0x04FF {
			t.Errorf("opcode %#04x lies in a range SPEC.md reserves for a later service", op)
		}
		if o, _ := client.Ops().Lookup(op); op >= 0x0300 && op <= 0x03FF && (op < client.OpDSStatus || op > client.OpDSImport || o.Since != 4) {
			t.Errorf("opcode %#04x lies in the data service range but is not one SPEC.md assigns to version 4", op)
		}
		if o, _ := client.Ops().Lookup(op); op >= 0x0200 && op <= 0x02FF && (op == 0x0200 || op > client.OpGroupSendBatch || (op == client.OpGroupSendBatch) != (o.Since == 5) || o.Since != 2 && o.Since != 5) {
			t.Errorf("opcode %#04x lies in the group range but is not one SPEC.md assigns to version 2", op)
		}
		if o, _ := client.Ops().Lookup(op); op >= 0x0100 && op <= 0x01FF && (op == 0x0100 || op > client.OpEventBatch || (op > client.OpQueryConnectivity && op < client.OpEventBatch && o.Since != 3) || (op == client.OpEventBatch && o.Since != 5)) {
			t.Errorf("opcode %#04x lies in the events range but is not one SPEC.md assigns", op)
		}
	}
	wiretest.CheckOpTable(t, client.Ops(), "Opcode table of the client protocol (proto/client/SPEC.md).")
}

// TestBackwardCompatible holds the client protocol's promise: an agent
// keeps speaking every client version ever released, so MinVersion stays
// 1 and every opcode keeps its number, name and version (opcodes.txt only
// grows).
func TestBackwardCompatible(t *testing.T) {
	if client.MinVersion != 1 {
		t.Fatalf("client MinVersion is %d: clients of version 1 would be refused", client.MinVersion)
	}
	for _, op := range client.Ops().Opcodes() {
		o, _ := client.Ops().Lookup(op)
		if o.Since < 1 || o.Since > client.MaxVersion {
			t.Errorf("opcode %#04x %s: since %d", op, o.Name, o.Since)
		}
	}
	// An old client offers only version 1 and must get it.
	old := proto.Ranges{{Proto: proto.ProtoClient, Min: 1, Max: 1}}
	if v, err := proto.Negotiate(proto.ProtoClient, proto.Ranges{client.Ops().Range()}, old); err != nil || v != 1 {
		t.Fatalf("an agent answers a version-1 client with %d, %v", v, err)
	}
	// A client of any released version (the C library offers 1..3) gets
	// the version it offers at most, and an agent of that version answers
	// this build's client with it too.
	for max := client.MinVersion; max <= client.MaxVersion; max++ {
		older := proto.Ranges{{Proto: proto.ProtoClient, Min: 1, Max: max}}
		if v, err := proto.Negotiate(proto.ProtoClient, proto.Ranges{client.Ops().Range()}, older); err != nil || v != max {
			t.Fatalf("an agent answers a client of versions 1..%d with %d, %v", max, v, err)
		}
		if v, err := proto.Negotiate(proto.ProtoClient, older, proto.Ranges{client.Ops().Range()}); err != nil || v != max {
			t.Fatalf("an agent of versions 1..%d answers this client with %d, %v", max, v, err)
		}
	}
	// Opcodes of a version are refused on a link of an earlier one.
	for _, op := range client.Ops().Opcodes() {
		o, _ := client.Ops().Lookup(op)
		for v := client.MinVersion; v <= client.MaxVersion; v++ {
			h := proto.Header{Proto: proto.ProtoClient, Version: v, Opcode: op}
			if err := client.Ops().Check(&h, v); (err == nil) != (v >= o.Since) {
				t.Errorf("opcode %#04x %s (since %d) on a version %d link: %v", op, o.Name, o.Since, v, err)
			}
		}
	}
	// A newer client that also speaks this version gets this version.
	newer := proto.Ranges{{Proto: proto.ProtoClient, Min: 1, Max: client.MaxVersion + 3}}
	if v, err := proto.Negotiate(proto.ProtoClient, proto.Ranges{client.Ops().Range()}, newer); err != nil || v != client.MaxVersion {
		t.Fatalf("an agent answers a newer client with %d, %v", v, err)
	}
}

// FuzzReceiveClient runs a client link's receive path over one frame: frame
// checks, the opcode table at the highest version and the body the opcode
// and flags call for.
func FuzzReceiveClient(f *testing.F) {
	ping, pong := wiretest.PingFrames(client.Ops(), client.MaxVersion, client.OpPing, client.OpPong)
	f.Add(wiretest.Frame(ping)) // a PING
	f.Add(wiretest.Frame(pong)) // its PONG
	ping.Opcode = 0x0100
	f.Add(wiretest.Frame(ping)) // the never assigned first opcode of the events range
	ping.Body = nil
	f.Add(wiretest.Frame(ping)) // no body
	for _, v := range append(append(append(append(eventVectors(), groupVectors()...), dispatchVectors()...), dsVectors()...), batchVectors()...) {
		if len(v.Data) >= proto.HeaderSize && string(v.Data[:4]) == "CORR" {
			f.Add(v.Data) // every events, group, dispatch and data service frame vector (see the names in testdata/)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, _, err := receive(b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		if _, ok := client.Ops().Lookup(fr.Opcode); !ok {
			t.Fatalf("opcode %#04x passed the table", fr.Opcode)
		}
		if p, err := proto.ParsePing(fr.Body); err == nil && !bytes.Equal(proto.AppendPing(nil, p), fr.Body) {
			t.Fatal("re-encoded PING differs")
		}
		if !bytes.Equal(proto.AppendFrame(nil, &fr), b) {
			t.Fatal("re-encoded frame differs")
		}
	})
}
