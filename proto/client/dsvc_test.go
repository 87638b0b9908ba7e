package client_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/proto/internal/golden"
	"github.com/corralhq/corral/proto/internal/wiretest"
)

// v4 returns f as a frame of version 4.
func v4(f proto.Frame) proto.Frame { f.Version = 4; return f }

// The msg ids of the data service vectors, one per kind: a client matches
// a reply to its request by msg id, and the request's kind says how to
// read the reply (ParseDSReply). dsPending is that client's table.
const (
	dsMsgLoc = 0x40 // DS_STATUS, DS_MKLOC: kind 0
	dsMsgTab = 0x41 // kind 1, dhcptab
	dsMsgNet = 0x42 // kind 2, network
)

var dsPending = map[uint64]uint8{dsMsgLoc: client.DSKindNone, dsMsgTab: client.DSKindDHCPTab, dsMsgNet: client.DSKindNetwork}

// receiveDS decodes the body of a data service frame the way both ends of
// a link do.
func receiveDS(f proto.Frame, isReply bool) (proto.Frame, any, error) {
	if isReply {
		p, err := client.ParseDSReply(f.Opcode, dsPending[f.MsgID], f.Body)
		return f, p, err
	}
	q, err := client.ParseDSRequest(f.Opcode, f.Body)
	return f, q, err
}

// Sample bodies of the data service vectors.
const (
	sampleLoc = "/var/dhcp"
	sampleTab = "cluster1_dhcptab"
	sampleNet = "cluster1_10.0.0.0"
)

var (
	sampleMacro  = client.DSDTRecord{Key: "Locale", Type: client.DSTypeMacro, Value: ":UTCoffst=-18000:", Sig: 0x5a17<<48 | 3}
	sampleSymbol = client.DSDTRecord{Key: "NTPsrv", Type: client.DSTypeSymbol, Value: "Site,130,IP,1,0", Sig: 0x0b0e<<48 | 1}
	sampleLease  = client.DSDNRecord{CID: []byte{0x01, 0x00, 0x0c, 0x29, 0x3e, 0x5a, 0x01}, Flags: 0x02, CIP: [4]byte{10, 0, 0, 5}, SIP: [4]byte{10, 0, 0, 1},
		Lease: 1735689600, Macro: "Locale", Comment: "printer", Sig: 0x7e11<<48 | 2}
	sampleFree = client.DSDNRecord{CID: []byte{0}, CIP: [4]byte{10, 0, 0, 6}, SIP: [4]byte{10, 0, 0, 1}, Sig: 0x7e12<<48 | 1}

	tabTarget = client.DSTarget{Kind: client.DSKindDHCPTab, Location: sampleLoc, Container: sampleTab}
	netTarget = client.DSTarget{Kind: client.DSKindNetwork, Location: sampleLoc, Container: sampleNet}

	dsStatus     = client.DSRequest{Op: client.OpDSStatus, Target: client.DSTarget{Location: sampleLoc}}
	dsMkLoc      = client.DSRequest{Op: client.OpDSMkLoc, Target: client.DSTarget{Location: sampleLoc}}
	dsList       = client.DSRequest{Op: client.OpDSList, Target: client.DSTarget{Kind: client.DSKindNetwork, Location: sampleLoc}}
	dsOpenNet    = client.DSRequest{Op: client.OpDSOpen, Target: withFlags(netTarget, client.DSOpenCreate|client.DSOpenRead|client.DSOpenWrite), Prefix: client.DSPrefix{Addr: [4]byte{10, 0, 0, 0}, Bits: client.PrefixBitsUnknown}}
	dsOpenTab    = client.DSRequest{Op: client.OpDSOpen, Target: withFlags(tabTarget, client.DSOpenRead|client.DSOpenNonBlock)}
	dsRemove     = client.DSRequest{Op: client.OpDSRemove, Target: tabTarget}
	dsLookupNet  = client.DSRequest{Op: client.OpDSLookup, Target: withFlags(netTarget, client.DSLocal), Query: 0x0002_0002, Count: -1, HasTarget: true, DN: []client.DSDNRecord{{CIP: [4]byte{10, 0, 0, 5}}}}
	dsLookupTab  = client.DSRequest{Op: client.OpDSLookup, Target: tabTarget, Count: -1}
	dsCount      = client.DSRequest{Op: client.OpDSCount, Target: withFlags(tabTarget, client.DSPartial), Query: 0x0002_0002, Count: -1, HasTarget: true, DT: []client.DSDTRecord{{Type: client.DSTypeMacro}}}
	dsAdd        = client.DSRequest{Op: client.OpDSAdd, Target: netTarget, DN: []client.DSDNRecord{sampleLease}}
	dsModify     = client.DSRequest{Op: client.OpDSModify, Target: tabTarget, DT: []client.DSDTRecord{sampleMacro, {Key: "Locale", Type: client.DSTypeMacro, Value: ":UTCoffst=3600:", Sig: sampleMacro.Sig}}}
	dsDelete     = client.DSRequest{Op: client.OpDSDelete, Target: netTarget, DN: []client.DSDNRecord{{CID: sampleFree.CID, CIP: sampleFree.CIP, SIP: sampleFree.SIP}}}
	dsImport     = client.DSRequest{Op: client.OpDSImport, Target: tabTarget, DT: []client.DSDTRecord{sampleMacro, sampleSymbol}}
	dsOK         = client.DSReply{Result: client.DSResult{Index: 1207}}
	dsNoLocation = client.DSReply{Result: client.DSResult{Code: 22, Index: 1207, Message: `location "/var/dhcp" does not exist`}}
	dsCollision  = client.DSReply{Result: client.DSResult{Code: 9, Index: 1210, Message: "signature 0x5a17000000000002, stored 0x5a17000000000003"}}
	dsListReply  = client.DSReply{Result: client.DSResult{Index: 1207}, Names: []string{"cluster1_10.0.0.0", "cluster1_10.1.0.0"}}
	dsOpenReply  = client.DSReply{Result: client.DSResult{Index: 1208}, Prefix: client.DSPrefix{Addr: [4]byte{10, 0, 0, 0}, Bits: 24}}
	dsNetRecords = client.DSReply{Result: client.DSResult{Index: 1211}, DN: []client.DSDNRecord{sampleLease, sampleFree}}
	dsTabRecords = client.DSReply{Result: client.DSResult{Index: 1211}, DT: []client.DSDTRecord{sampleMacro, sampleSymbol}}
	dsCountReply = client.DSReply{Result: client.DSResult{Index: 1211}, Count: 42}
	dsSigReply   = client.DSReply{Result: client.DSResult{Index: 1212}, Sig: 0x7e11<<48 | 3}
)

func withFlags(t client.DSTarget, f uint8) client.DSTarget { t.Flags = f; return t }

func mustDSRequest(q client.DSRequest) []byte { return must(client.AppendDSRequest(nil, &q)) }

func mustDSReply(op uint16, kind uint8, p client.DSReply) []byte {
	return must(client.AppendDSReply(nil, op, kind, &p))
}

// Annotators: they restate the layouts of SPEC.md, "Data service
// (version 4)".

func dsTargetFields(w *golden.Walker) int {
	kind := w.U8("kind (0 none, 1 dhcptab, 2 network)")
	w.U8("flags")
	w.Fixed(2, "reserved, zero")
	w.String16("location")
	w.String16("container")
	return kind
}

func dtFields(w *golden.Walker, what string) {
	w.U8(what + " type ('s' symbol, 'm' macro)")
	w.Fixed(1, "reserved, zero")
	w.String16(what + " key")
	if n := w.U32(what + " value length"); n > 0 {
		w.Fixed(int(n), "%s value", what)
	}
	w.U64(what + " sig")
}

func dnFields(w *golden.Walker, what string) {
	w.U8(what + " flags")
	if n := w.U8(what + " client id length"); n > 0 {
		w.Fixed(n, "%s client id", what)
	}
	w.Fixed(4, "%s client address", what)
	w.Fixed(4, "%s server address", what)
	w.U32(what + " lease")
	w.String16(what + " macro")
	w.String16(what + " comment")
	w.U64(what + " sig")
}

func recordFields(w *golden.Walker, kind int, n uint64, what string) {
	for i := uint64(0); i < n && !w.Done(); i++ {
		name := what
		if n > 1 {
			name = fmt.Sprintf("%s[%d]", what, i)
		}
		if kind == int(client.DSKindNetwork) {
			dnFields(w, name)
		} else {
			dtFields(w, name)
		}
	}
}

func prefixFields(w *golden.Walker) {
	w.Fixed(4, "prefix address")
	w.U8("prefix length (0xff: unknown)")
}

func dsRequestFields(op uint16) func([]byte) golden.Fields {
	return walk(func(w *golden.Walker) {
		kind := dsTargetFields(w)
		switch op {
		case client.OpDSOpen:
			if kind == int(client.DSKindNetwork) {
				prefixFields(w)
			}
		case client.OpDSLookup, client.OpDSCount:
			w.U32("query")
			w.U32("count (i32, < 0: all)")
			recordFields(w, kind, uint64(w.U8("has target")), "target")
		case client.OpDSAdd, client.OpDSDelete:
			recordFields(w, kind, 1, "record")
		case client.OpDSModify:
			recordFields(w, kind, 1, "original")
			recordFields(w, kind, 1, "new")
		case client.OpDSImport:
			recordFields(w, kind, w.U32("record count"), "record")
		}
	})
}

func dsReplyFields(op uint16, kind uint8) func([]byte) golden.Fields {
	return walk(func(w *golden.Walker) {
		code := w.U8("code (0 success, else a dsvc code)")
		w.Fixed(3, "reserved, zero")
		w.U64("index the answer reflects")
		w.String16("message")
		if code != 0 {
			return
		}
		switch op {
		case client.OpDSList:
			n := w.U32("name count")
			for i := uint64(0); i < n && !w.Done(); i++ {
				w.String16(fmt.Sprintf("name[%d]", i))
			}
		case client.OpDSOpen:
			if kind == client.DSKindNetwork {
				prefixFields(w)
			}
		case client.OpDSLookup:
			recordFields(w, int(kind), w.U32("record count"), "record")
		case client.OpDSCount:
			w.U64("count")
		case client.OpDSAdd, client.OpDSModify:
			w.U64("sig: the record's new signature")
		}
	})
}

func dsVectors() []wiretest.Vector {
	msgOf := func(kind uint8) uint64 { return dsMsgLoc + uint64(kind) }
	req := func(op uint16, q client.DSRequest) proto.Frame {
		f := v4(request(op, mustDSRequest(q)))
		f.MsgID = msgOf(q.Target.Kind)
		return f
	}
	rep := func(op uint16, kind uint8, p client.DSReply) proto.Frame {
		f := v4(reply(op, mustDSReply(op, kind, p)))
		f.MsgID = msgOf(kind)
		return f
	}
	ok := func(name string, about []string, f proto.Frame, fields func([]byte) golden.Fields, msg any) wiretest.Vector {
		return frameVector(name, about, f, fields, expect(f, msg), 0, "")
	}
	reqV := func(name string, about []string, q client.DSRequest) wiretest.Vector {
		return ok(name, about, req(q.Op, q), dsRequestFields(q.Op), q)
	}
	repV := func(name string, about []string, op uint16, kind uint8, p client.DSReply) wiretest.Vector {
		return ok(name, about, rep(op, kind, p), dsReplyFields(op, kind), p)
	}
	pReq := func(op uint16) func([]byte) error {
		return func(b []byte) error { _, err := client.ParseDSRequest(op, b); return err }
	}
	pRep := func(op uint16, kind uint8) func([]byte) error {
		return func(b []byte) error { _, err := client.ParseDSReply(op, kind, b); return err }
	}
	bad := func(name, about string, b []byte, op uint16, detail string) wiretest.Vector {
		return bodyVector(name, about, b, dsRequestFields(op), pReq(op), detail)
	}
	badReply := func(name, about string, b []byte, op uint16, kind uint8, detail string) wiretest.Vector {
		return bodyVector(name, about, b, dsReplyFields(op, kind), pRep(op, kind), detail)
	}

	st := proto.Status{Code: proto.CodeTryAgain, Text: "1024 data service requests in flight, limit 1024"}
	tryAgain := rep(client.OpDSLookup, client.DSKindNetwork, client.DSReply{})
	tryAgain.Body = proto.AppendStatus(nil, &st)
	tryAgain.Flags |= proto.FlagAbort
	onV3 := v3(request(client.OpDSStatus, mustDSRequest(dsStatus)))
	onV3.MsgID = dsMsgLoc

	add := mustDSRequest(dsAdd)
	status := mustDSRequest(dsStatus)
	lookup := mustDSRequest(dsLookupNet)
	modify := mustDSRequest(dsModify)
	importTab := mustDSRequest(dsImport)
	openNet := mustDSRequest(dsOpenNet)
	le := binary.LittleEndian
	tOff := 4 + 2 + len(sampleLoc) + 2 // a target on sampleLoc, without its container's bytes
	recOff := tOff + len(sampleNet)    // the first byte after a network target
	tabRecOff := tOff + len(sampleTab) // the first byte after a dhcptab target
	long := func(n int) string { return strings.Repeat("x", n) }
	target := func(kind, flags uint8, loc, cont string) []byte {
		b := append([]byte{kind, flags, 0, 0}, proto.AppendString16(nil, loc)...)
		return proto.AppendString16(b, cont)
	}
	dtRec := func(typ byte, key, value string) []byte {
		b := proto.AppendString16([]byte{typ, 0}, key)
		b = le.AppendUint32(b, uint32(len(value)))
		return le.AppendUint64(append(b, value...), 1)
	}
	dnRec := func(flags uint8, cid []byte, macro, comment string) []byte {
		b := append([]byte{flags, byte(len(cid))}, cid...)
		b = le.AppendUint32(append(b, 10, 0, 0, 5, 10, 0, 0, 1), 0)
		b = proto.AppendString16(proto.AppendString16(b, macro), comment)
		return le.AppendUint64(b, 1)
	}
	result := func(code uint8, msg string) []byte {
		b := le.AppendUint64([]byte{code, 0, 0, 0}, 1207)
		return proto.AppendString16(b, msg)
	}

	return []wiretest.Vector{
		reqV("ds_status", []string{
			"DS_STATUS (0x0301, version 4): does location \"/var/dhcp\" exist? Kind 0, no",
			"container. CREATE|DELETE, msg id 0x40.",
		}, dsStatus),
		repV("ds_status_reply", []string{
			"DS_STATUS reply: code 0, the location exists as of log index 1207.",
		}, client.OpDSStatus, client.DSKindNone, dsOK),
		repV("ds_status_no_location", []string{
			"DS_STATUS reply with code 22 (dsvc NO_LOCATION): a failure of the data",
			"service is a normal reply (CREATE|DELETE|REPLY, no ABORT) with a code and a",
			"message, and nothing after the message.",
		}, client.OpDSStatus, client.DSKindNone, dsNoLocation),
		reqV("ds_mkloc", []string{
			"DS_MKLOC (0x0302): make location \"/var/dhcp\".",
		}, dsMkLoc),
		repV("ds_mkloc_reply", []string{
			"DS_MKLOC reply: made (or there already) as of log index 1207.",
		}, client.OpDSMkLoc, client.DSKindNone, dsOK),
		reqV("ds_list", []string{
			"DS_LIST (0x0303): the network containers (kind 2) of \"/var/dhcp\"; no",
			"container. msg id 0x42.",
		}, dsList),
		repV("ds_list_reply", []string{
			"DS_LIST reply: two network containers, sorted.",
		}, client.OpDSList, client.DSKindNetwork, dsListReply),
		reqV("ds_open_network", []string{
			"DS_OPEN (0x0304) of network container \"cluster1_10.0.0.0\" with flags",
			"CREATE|READ|WRITE (0x07), network 10.0.0.0, length 0xff: unknown, take the",
			"stored one.",
		}, dsOpenNet),
		repV("ds_open_network_reply", []string{
			"DS_OPEN reply of a network container: its stored network, 10.0.0.0/24.",
		}, client.OpDSOpen, client.DSKindNetwork, dsOpenReply),
		reqV("ds_open_dhcptab", []string{
			"DS_OPEN of the dhcptab container with flags READ|NONBLOCK (0x0a): no prefix.",
		}, dsOpenTab),
		repV("ds_open_dhcptab_reply", []string{
			"DS_OPEN reply of a dhcptab container: the result only.",
		}, client.OpDSOpen, client.DSKindDHCPTab, dsOK),
		reqV("ds_remove", []string{
			"DS_REMOVE (0x0305) of the dhcptab container.",
		}, dsRemove),
		repV("ds_remove_reply", []string{
			"DS_REMOVE reply: removed in log entry 1207.",
		}, client.OpDSRemove, client.DSKindDHCPTab, dsOK),
		reqV("ds_lookup_network", []string{
			"DS_LOOKUP (0x0306) in a network container, flags LOCAL (0x01: this agent's",
			"replica, no read index): query 0x00020002 (client address, equal), count -1",
			"(all), with a target record: client address 10.0.0.5, the rest zero (an",
			"empty client id is allowed in a request).",
		}, dsLookupNet),
		repV("ds_lookup_network_reply", []string{
			"DS_LOOKUP reply of a network container at index 1211: two records, a",
			"manual binding (flags 0x02) and a free address (client id 0x00).",
		}, client.OpDSLookup, client.DSKindNetwork, dsNetRecords),
		reqV("ds_lookup_dhcptab", []string{
			"DS_LOOKUP in the dhcptab: query 0 (every record), count -1, no target.",
		}, dsLookupTab),
		repV("ds_lookup_dhcptab_reply", []string{
			"DS_LOOKUP reply of the dhcptab: a macro and a symbol.",
		}, client.OpDSLookup, client.DSKindDHCPTab, dsTabRecords),
		frameVector("ds_lookup_try_again", []string{
			"DS_LOOKUP refused: CREATE|DELETE|REPLY|ABORT with Status code 42 (try again):",
			"the agent has as many data service requests in flight as it admits. A",
			"protocol failure, unlike a dsvc code; the link stays up.",
		}, tryAgain, wiretest.StatusFields, expect(tryAgain, st), 0, ""),
		reqV("ds_count", []string{
			"DS_COUNT (0x0307) in the dhcptab, flags PARTIAL (0x02): query 0x00020002",
			"(type, equal) with a target of type 'm', the rest zero (type 0 would be",
			"allowed in a target too).",
		}, dsCount),
		repV("ds_count_reply", []string{
			"DS_COUNT reply: 42 records match.",
		}, client.OpDSCount, client.DSKindDHCPTab, dsCountReply),
		reqV("ds_add", []string{
			"DS_ADD (0x0308) of a network record: client id 01:00:0c:29:3e:5a:01, flags",
			"MANUAL, 10.0.0.5 served by 10.0.0.1, lease until 2025-01-01, macro Locale.",
		}, dsAdd),
		repV("ds_add_reply", []string{
			"DS_ADD reply: added in log entry 1212 with signature 0x7e11000000000003.",
		}, client.OpDSAdd, client.DSKindNetwork, dsSigReply),
		repV("ds_add_collision", []string{
			"DS_ADD reply with code 9 (dsvc COLLISION) in log entry 1210: a normal reply,",
			"no signature follows.",
		}, client.OpDSAdd, client.DSKindNetwork, dsCollision),
		reqV("ds_modify", []string{
			"DS_MODIFY (0x0309) of a dhcptab macro: the original record (its signature",
			"is checked), then the new one.",
		}, dsModify),
		repV("ds_modify_reply", []string{
			"DS_MODIFY reply: the new signature.",
		}, client.OpDSModify, client.DSKindDHCPTab, dsSigReply),
		reqV("ds_delete", []string{
			"DS_DELETE (0x030A) of a network record with signature 0: unconditional.",
		}, dsDelete),
		repV("ds_delete_reply", []string{
			"DS_DELETE reply: deleted in log entry 1207.",
		}, client.OpDSDelete, client.DSKindNetwork, dsOK),
		reqV("ds_import", []string{
			"DS_IMPORT (0x030B) of two dhcptab records, signatures kept.",
		}, dsImport),
		repV("ds_import_reply", []string{
			"DS_IMPORT reply: imported in log entry 1207.",
		}, client.OpDSImport, client.DSKindDHCPTab, dsOK),

		frameVector("err_ds_v3", []string{
			"DS_STATUS sent as version 3: version 3 has no data service opcodes (Since 4).",
		}, onV3, dsRequestFields(client.OpDSStatus), receiveErr, proto.CodeOpcode, "version 3 has no opcode 0x0301"),
		bad("err_ds_truncated", "DS_ADD cut off inside the record's signature.",
			add[:len(add)-1], client.OpDSAdd, "DS_ADD: truncated at sig"),
		bad("err_ds_trailing", "DS_STATUS with a byte after the container.",
			append(bytes.Clone(status), 0), client.OpDSStatus, "DS_STATUS: 1 unexpected bytes"),
		bad("err_ds_kind", "DS_ADD with kind 3, which is not defined.",
			with(add, func(b []byte) []byte { b[0] = 3; return b }), client.OpDSAdd, "DS_ADD: unknown kind 3"),
		bad("err_ds_kind_location", "DS_STATUS with kind 1: a location operation has kind 0.",
			with(status, func(b []byte) []byte { b[0] = 1; return b }), client.OpDSStatus, "kind 1 on a location operation"),
		bad("err_ds_kind_container", "DS_REMOVE with kind 0: a container operation has kind 1 or 2.",
			target(0, 0, sampleLoc, sampleTab), client.OpDSRemove, "kind 0 on a container operation"),
		bad("err_ds_container_empty", "DS_ADD of kind 2 with an empty container.",
			append(target(2, 0, sampleLoc, ""), add[recOff:]...), client.OpDSAdd, "DS_ADD: empty container"),
		bad("err_ds_container_list", "DS_LIST with a container: DS_LIST names none.",
			target(1, 0, sampleLoc, sampleTab), client.OpDSList, "on an operation without one"),
		bad("err_ds_location_empty", "DS_MKLOC with an empty location.",
			target(0, 0, "", ""), client.OpDSMkLoc, "DS_MKLOC: empty location"),
		bad("err_ds_location_nul", "DS_MKLOC with a location holding a NUL byte.",
			target(0, 0, "/var\x00dhcp", ""), client.OpDSMkLoc, "location holds a NUL byte"),
		bad("err_ds_location_long", "DS_STATUS with a location of 1025 bytes; the limit is 1024.",
			target(0, 0, long(1025), ""), client.OpDSStatus, "location is 1025 bytes, limit 1024"),
		bad("err_ds_container_long", "DS_REMOVE with a container of 256 bytes; the limit is 255.",
			target(1, 0, sampleLoc, long(256)), client.OpDSRemove, "container is 256 bytes, limit 255"),
		bad("err_ds_reserved", "DS_STATUS with a non-zero reserved byte in the target.",
			with(status, func(b []byte) []byte { b[3] = 1; return b }), client.OpDSStatus, "reserved reserved is not zero"),
		bad("err_ds_flags", "DS_ADD with flags 0x01: DS_ADD defines no flags.",
			with(add, func(b []byte) []byte { b[1] = 1; return b }), client.OpDSAdd, "DS_ADD: flags 0x01: bits 0x01 are not defined"),
		bad("err_ds_open_flags", "DS_OPEN with flags 0x17: 0x10 is not an open flag.",
			with(openNet, func(b []byte) []byte { b[1] = 0x17; return b }), client.OpDSOpen, "bits 0x10 are not defined"),
		bad("err_ds_lookup_flags", "DS_LOOKUP with flags 0x05: 0x04 is not a lookup flag.",
			with(lookup, func(b []byte) []byte { b[1] = 0x05; return b }), client.OpDSLookup, "bits 0x04 are not defined"),
		bad("err_ds_open_prefix", "DS_OPEN of a network with prefix length 33.",
			with(openNet, func(b []byte) []byte { b[len(b)-1] = 33; return b }), client.OpDSOpen, "prefix length 33"),
		bad("err_ds_has_target", "DS_LOOKUP with has-target 2: it is 0 or 1.",
			with(lookup, func(b []byte) []byte { b[recOff+8] = 2; return b }), client.OpDSLookup, "has target is 2"),
		bad("err_ds_record_reserved", "DS_MODIFY whose original record has a non-zero reserved byte.",
			with(modify, func(b []byte) []byte { b[tabRecOff+1] = 1; return b }), client.OpDSModify, "reserved record reserved is not zero"),
		bad("err_ds_dt_type", "DS_MODIFY whose original record has type 'x': only 's' and 'm'.",
			with(modify, func(b []byte) []byte { b[tabRecOff] = 'x'; return b }), client.OpDSModify, "record type 0x78"),
		bad("err_ds_dt_type_zero", "DS_IMPORT of a record of type 0: allowed in a query target only.",
			append(le.AppendUint32(target(1, 0, sampleLoc, sampleTab), 1), dtRec(0, "Locale", ":x:")...), client.OpDSImport, "record type 0x00"),
		bad("err_ds_key_long", "DS_ADD of a dhcptab record whose key is 129 bytes; the limit is 128.",
			append(target(1, 0, sampleLoc, sampleTab), dtRec('m', long(129), "")...), client.OpDSAdd, "key is 129 bytes, limit 128"),
		bad("err_ds_value_long", "DS_ADD of a dhcptab record announcing a value of 65537 bytes; the limit is 65536.",
			with(append(target(1, 0, sampleLoc, sampleTab), dtRec('m', "Locale", "")...), func(b []byte) []byte {
				return put32(b, tabRecOff+2+2+6, client.DSMaxValue+1)
			}), client.OpDSAdd, "value is 65537 bytes, limit 65536"),
		bad("err_ds_dn_flags", "DS_ADD of a network record with flags 0x10: no bit outside 0x0f.",
			with(add, func(b []byte) []byte { b[recOff] = 0x10; return b }), client.OpDSAdd, "record flags 0x10 outside 0x0f"),
		bad("err_ds_cid_long", "DS_ADD of a network record whose client id is 65 octets; the limit is 64.",
			append(target(2, 0, sampleLoc, sampleNet), dnRec(0, bytes.Repeat([]byte{1}, 65), "", "")...), client.OpDSAdd, "client id is 65 octets, limit 64"),
		bad("err_ds_macro_long", "DS_ADD of a network record whose macro is 129 bytes; the limit is 128.",
			append(target(2, 0, sampleLoc, sampleNet), dnRec(0, []byte{1}, long(129), "")...), client.OpDSAdd, "macro is 129 bytes, limit 128"),
		bad("err_ds_comment_long", "DS_ADD of a network record whose comment is 49 bytes; the limit is 48.",
			append(target(2, 0, sampleLoc, sampleNet), dnRec(0, []byte{1}, "", long(49))...), client.OpDSAdd, "comment is 49 bytes, limit 48"),
		bad("err_ds_import_empty", "DS_IMPORT of 0 records: at least 1.",
			le.AppendUint32(target(1, 0, sampleLoc, sampleTab), 0), client.OpDSImport, "DS_IMPORT: no records"),
		bad("err_ds_import_count", "DS_IMPORT announcing 65537 records, over the limit of 65536 (refused before allocating).",
			with(importTab, func(b []byte) []byte { return put32(b, tabRecOff, client.DSMaxImport+1) }), client.OpDSImport, "record count 65537 does not fit"),
		bad("err_ds_import_short", "DS_IMPORT announcing 3 records with 2 in the body: the count fits the bytes left (3 of the smallest), the third record is missing.",
			with(importTab, func(b []byte) []byte { return put32(b, tabRecOff, 3) }), client.OpDSImport, "DS_IMPORT: truncated at record type"),

		badReply("err_ds_reply_code", "A DS_STATUS reply with code 26: the dsvc codes end at 25.",
			result(26, "?"), client.OpDSStatus, 0, "result code 26, limit 25"),
		badReply("err_ds_reply_reserved", "A DS_STATUS reply with a non-zero reserved byte.",
			with(result(0, ""), func(b []byte) []byte { b[2] = 1; return b }), client.OpDSStatus, 0, "reserved reserved is not zero"),
		badReply("err_ds_reply_message", "A DS_REMOVE reply of code 0 with a message: success carries none.",
			result(0, "done"), client.OpDSRemove, 1, "a message on success"),
		badReply("err_ds_reply_message_long", "A DS_ADD reply of code 7 with a message of 1025 bytes; the limit is 1024.",
			result(7, long(1025)), client.OpDSAdd, 2, "message is 1025 bytes, limit 1024"),
		badReply("err_ds_reply_failure_payload", "A DS_ADD reply of code 9 followed by a signature: a failure carries nothing after the message.",
			le.AppendUint64(result(9, "collision"), 5), client.OpDSAdd, 2, "8 unexpected bytes"),
		badReply("err_ds_reply_truncated", "A DS_COUNT reply cut off inside its count.",
			le.AppendUint32(result(0, ""), 42), client.OpDSCount, 1, "truncated at count"),
		badReply("err_ds_list_count", "A DS_LIST reply announcing 65537 names in a short body: over the limit, refused before allocating.",
			le.AppendUint32(result(0, ""), client.DSMaxNames+1), client.OpDSList, 2, "name count 65537 does not fit"),
		badReply("err_ds_list_empty_name", "A DS_LIST reply whose second name is empty.",
			proto.AppendString16(proto.AppendString16(le.AppendUint32(result(0, ""), 2), sampleNet), ""), client.OpDSList, 2, "name 1: empty container name"),
		badReply("err_ds_lookup_count", "A DS_LOOKUP reply announcing 2^20+1 records: over the limit, refused before allocating.",
			le.AppendUint32(result(0, ""), client.DSMaxRecords+1), client.OpDSLookup, 1, "record count 1048577 does not fit"),
		badReply("err_ds_lookup_cid_empty", "A DS_LOOKUP reply with a network record of an empty client id: only a query target has none.",
			append(le.AppendUint32(result(0, ""), 1), dnRec(0, nil, "", "")...), client.OpDSLookup, 2, "empty client id"),
		badReply("err_ds_open_prefix_unknown", "A DS_OPEN reply of a network with prefix length 0xff: the stored network is known.",
			append(result(0, ""), 10, 0, 0, 0, 0xff), client.OpDSOpen, 2, "prefix length 255"),
	}
}

// dsCodecs: every (opcode, kind) pair with its samples, for the round
// trips and the fuzz targets' seeds.
type dsCase struct {
	op   uint16
	kind uint8
}

var dsOps = []uint16{client.OpDSStatus, client.OpDSMkLoc, client.OpDSList, client.OpDSOpen, client.OpDSRemove, client.OpDSLookup,
	client.OpDSCount, client.OpDSAdd, client.OpDSModify, client.OpDSDelete, client.OpDSImport}

var dsRequests = []client.DSRequest{dsStatus, dsMkLoc, dsList, dsOpenNet, dsOpenTab, dsRemove, dsLookupNet, dsLookupTab, dsCount, dsAdd, dsModify, dsDelete, dsImport}

var dsReplies = map[dsCase][]client.DSReply{
	{client.OpDSStatus, 0}: {dsOK, dsNoLocation},
	{client.OpDSMkLoc, 0}:  {dsOK},
	{client.OpDSList, 2}:   {dsListReply, {}},
	{client.OpDSOpen, 2}:   {dsOpenReply},
	{client.OpDSOpen, 1}:   {dsOK},
	{client.OpDSRemove, 1}: {dsOK},
	{client.OpDSLookup, 2}: {dsNetRecords, dsOK},
	{client.OpDSLookup, 1}: {dsTabRecords},
	{client.OpDSCount, 1}:  {dsCountReply},
	{client.OpDSAdd, 2}:    {dsSigReply, dsCollision},
	{client.OpDSModify, 1}: {dsSigReply},
	{client.OpDSDelete, 2}: {dsOK},
	{client.OpDSImport, 1}: {dsOK},
}

func roundTripDSRequest(t *testing.T, q client.DSRequest) {
	t.Helper()
	b, err := client.AppendDSRequest(nil, &q)
	if err != nil {
		t.Fatalf("%s: %v", client.Ops().Name(q.Op), err)
	}
	got, err := client.ParseDSRequest(q.Op, b)
	if err != nil || !wiretest.Equal(got, q) {
		t.Fatalf("%s: round trip of %+v: %+v, %v", client.Ops().Name(q.Op), q, got, err)
	}
	if b2, _ := client.AppendDSRequest(nil, &got); !bytes.Equal(b, b2) {
		t.Fatalf("%s: re-encoding differs", client.Ops().Name(q.Op))
	}
}

func roundTripDSReply(t *testing.T, c dsCase, p client.DSReply) {
	t.Helper()
	b, err := client.AppendDSReply(nil, c.op, c.kind, &p)
	if err != nil {
		t.Fatalf("%s reply: %v", client.Ops().Name(c.op), err)
	}
	got, err := client.ParseDSReply(c.op, c.kind, b)
	if err != nil || !wiretest.Equal(got, p) {
		t.Fatalf("%s reply: round trip of %+v: %+v, %v", client.Ops().Name(c.op), p, got, err)
	}
	if b2, _ := client.AppendDSReply(nil, c.op, c.kind, &got); !bytes.Equal(b, b2) {
		t.Fatalf("%s reply: re-encoding differs", client.Ops().Name(c.op))
	}
}

// TestDSRoundTrip: every body decodes to the value encoded, at the limits
// too, and re-encodes to the same bytes; the largest bodies fit a frame.
func TestDSRoundTrip(t *testing.T) {
	for _, q := range dsRequests {
		roundTripDSRequest(t, q)
	}
	for c, ps := range dsReplies {
		for _, p := range ps {
			roundTripDSReply(t, c, p)
		}
	}
	loc, cont := strings.Repeat("l", client.DSMaxLocation), strings.Repeat("c", client.DSMaxContainer)
	bigDT := client.DSDTRecord{Key: strings.Repeat("k", client.DSMaxKey), Type: client.DSTypeSymbol, Value: strings.Repeat("v", client.DSMaxValue), Sig: ^uint64(0)}
	bigDN := client.DSDNRecord{CID: bytes.Repeat([]byte{0xff}, client.DSMaxCID), Flags: client.DNFlagsAll, CIP: [4]byte{255, 255, 255, 255}, SIP: [4]byte{1, 2, 3, 4},
		Lease: ^uint32(0), Macro: strings.Repeat("m", client.DSMaxKey), Comment: strings.Repeat("c", client.DSMaxComment), Sig: ^uint64(0)}
	many := make([]client.DSDNRecord, client.DSMaxImport)
	for i := range many {
		many[i] = client.DSDNRecord{CID: []byte{byte(i), byte(i >> 8)}, CIP: [4]byte{10, 0, byte(i >> 8), byte(i)}, Sig: uint64(i)}
	}
	roundTripDSRequest(t, client.DSRequest{Op: client.OpDSModify, Target: client.DSTarget{Kind: 1, Location: loc, Container: cont}, DT: []client.DSDTRecord{bigDT, bigDT}})
	roundTripDSRequest(t, client.DSRequest{Op: client.OpDSDelete, Target: client.DSTarget{Kind: 2, Location: loc, Container: cont}, DN: []client.DSDNRecord{bigDN}})
	roundTripDSReply(t, dsCase{client.OpDSLookup, 2}, client.DSReply{DN: []client.DSDNRecord{bigDN, bigDN}})
	roundTripDSRequest(t, client.DSRequest{Op: client.OpDSImport, Target: client.DSTarget{Kind: 2, Location: loc, Container: cont}, DN: many})
	roundTripDSRequest(t, client.DSRequest{Op: client.OpDSCount, Target: client.DSTarget{Kind: 2, Flags: 3, Location: loc, Container: cont},
		Query: ^uint32(0), Count: -1 << 31, HasTarget: true, DN: []client.DSDNRecord{{Flags: client.DNFlagsAll}}})
	roundTripDSRequest(t, client.DSRequest{Op: client.OpDSLookup, Target: client.DSTarget{Kind: 1, Location: "l", Container: "c"}, Count: 1<<31 - 1, HasTarget: true, DT: []client.DSDTRecord{{}}})
	roundTripDSRequest(t, client.DSRequest{Op: client.OpDSOpen, Target: client.DSTarget{Kind: 2, Flags: 0x0f, Location: "l", Container: "c"}, Prefix: client.DSPrefix{Bits: 32}})
	names := make([]string, client.DSMaxNames)
	for i := range names {
		names[i] = fmt.Sprintf("%0255d", i)
	}
	roundTripDSReply(t, dsCase{client.OpDSList, 1}, client.DSReply{Result: client.DSResult{Index: ^uint64(0)}, Names: names})
	roundTripDSReply(t, dsCase{client.OpDSLookup, 2}, client.DSReply{DN: many})
	roundTripDSReply(t, dsCase{client.OpDSCount, 2}, client.DSReply{Count: ^uint64(0)})
	roundTripDSReply(t, dsCase{client.OpDSImport, 2}, client.DSReply{Result: client.DSResult{Code: client.DSMaxCode, Message: strings.Repeat("m", client.DSMaxMessage)}})
	// The limits do not keep every reply inside a frame: 65536 names of
	// 255 bytes are 16.1 MiB, and the agent answers a reply that does not
	// fit with code 12 (SPEC.md). 65536 names of the module's form do fit.
	if n := len(must(client.AppendDSReply(nil, client.OpDSList, 1, &client.DSReply{Names: names}))); n < proto.DefaultMaxPayload {
		t.Fatalf("the largest DS_LIST reply (%d bytes) fits a frame: SPEC.md says otherwise", n)
	}
	for i := range names {
		names[i] = fmt.Sprintf("cluster1_10.%d.%d.0", i>>8, i&0xff)
	}
	if n := len(must(client.AppendDSReply(nil, client.OpDSList, 2, &client.DSReply{Names: names}))); n >= proto.DefaultMaxPayload {
		t.Fatalf("a DS_LIST reply of %d network containers (%d bytes) does not fit a frame", len(names), n)
	}
	if n := len(mustDSRequest(client.DSRequest{Op: client.OpDSImport, Target: client.DSTarget{Kind: 2, Location: loc, Container: cont}, DN: many})); n >= proto.DefaultMaxPayload {
		t.Fatalf("an IMPORT of %d small records (%d bytes) does not fit a frame", len(many), n)
	}
	if n := len(mustDSReply(client.OpDSStatus, 0, dsOK)); n != client.DSResultMin {
		t.Fatalf("DSResultMin %d, encoded %d", client.DSResultMin, n)
	}
	if n := len(mustDSRequest(client.DSRequest{Op: client.OpDSStatus, Target: client.DSTarget{Location: "l"}})); n != client.DSTargetMin {
		t.Fatalf("DSTargetMin %d, encoded %d", client.DSTargetMin, n)
	}
}

// The encoders refuse what the decoders would refuse, and append nothing.
func TestAppendDSLimits(t *testing.T) {
	req := func(q client.DSRequest) func([]byte) ([]byte, error) {
		return func(d []byte) ([]byte, error) { return client.AppendDSRequest(d, &q) }
	}
	rep := func(op uint16, kind uint8, p client.DSReply) func([]byte) ([]byte, error) {
		return func(d []byte) ([]byte, error) { return client.AppendDSReply(d, op, kind, &p) }
	}
	add := func(kind uint8, dt []client.DSDTRecord, dn []client.DSDNRecord) client.DSRequest {
		t := tabTarget
		if kind == 2 {
			t = netTarget
		}
		return client.DSRequest{Op: client.OpDSAdd, Target: t, DT: dt, DN: dn}
	}
	status := func(f func(*client.DSRequest)) client.DSRequest { q := dsStatus; f(&q); return q }
	long := func(n int) string { return strings.Repeat("x", n) }
	for name, tc := range map[string]struct {
		fn   func(dst []byte) ([]byte, error)
		code proto.Code
		text string
	}{
		"opcode":           {req(client.DSRequest{Op: client.OpGroupJoin}), proto.CodeOpcode, "not a data service opcode"},
		"reply opcode":     {rep(0x030C, 1, dsOK), proto.CodeOpcode, "opcode 0x030c"},
		"kind":             {req(status(func(q *client.DSRequest) { q.Target.Kind = 3 })), proto.CodeField, "DS_STATUS: unknown kind 3"},
		"location kind":    {req(status(func(q *client.DSRequest) { q.Target.Kind = 1 })), proto.CodeField, "kind 1 on a location operation"},
		"container kind":   {req(client.DSRequest{Op: client.OpDSRemove, Target: client.DSTarget{Location: "l", Container: "c"}}), proto.CodeField, "kind 0 on a container"},
		"container":        {req(status(func(q *client.DSRequest) { q.Target.Container = "c" })), proto.CodeField, "on an operation without one"},
		"no container":     {req(client.DSRequest{Op: client.OpDSRemove, Target: client.DSTarget{Kind: 1, Location: "l"}}), proto.CodeField, "empty container"},
		"no location":      {req(status(func(q *client.DSRequest) { q.Target.Location = "" })), proto.CodeField, "empty location"},
		"location nul":     {req(status(func(q *client.DSRequest) { q.Target.Location = "a\x00" })), proto.CodeField, "NUL"},
		"location long":    {req(status(func(q *client.DSRequest) { q.Target.Location = long(1025) })), proto.CodeTooLarge, "location is 1025 bytes"},
		"container long":   {req(client.DSRequest{Op: client.OpDSRemove, Target: client.DSTarget{Kind: 1, Location: "l", Container: long(256)}}), proto.CodeTooLarge, "container is 256 bytes"},
		"flags":            {req(status(func(q *client.DSRequest) { q.Target.Flags = client.DSLocal })), proto.CodeField, "bits 0x01 are not defined"},
		"prefix":           {req(status(func(q *client.DSRequest) { q.Prefix.Bits = 8 })), proto.CodeField, "a prefix on a request without one"},
		"prefix tab":       {req(client.DSRequest{Op: client.OpDSOpen, Target: tabTarget, Prefix: client.DSPrefix{Bits: 8}}), proto.CodeField, "a prefix on a request without one"},
		"prefix bits":      {req(client.DSRequest{Op: client.OpDSOpen, Target: netTarget, Prefix: client.DSPrefix{Bits: 33}}), proto.CodeField, "prefix length 33"},
		"query":            {req(status(func(q *client.DSRequest) { q.Count = -1 })), proto.CodeField, "a query on a request without one"},
		"has target":       {req(client.DSRequest{Op: client.OpDSLookup, Target: tabTarget, HasTarget: true}), proto.CodeField, "0 records, want 1"},
		"target no flag":   {req(client.DSRequest{Op: client.OpDSLookup, Target: tabTarget, DT: []client.DSDTRecord{{}}}), proto.CodeField, "1 records, want 0"},
		"add none":         {req(add(1, nil, nil)), proto.CodeField, "DS_ADD: 0 records, want 1"},
		"add other kind":   {req(add(1, nil, []client.DSDNRecord{sampleLease})), proto.CodeField, "records of the other kind"},
		"modify one":       {req(client.DSRequest{Op: client.OpDSModify, Target: tabTarget, DT: []client.DSDTRecord{sampleMacro}}), proto.CodeField, "1 records, want 2"},
		"import none":      {req(client.DSRequest{Op: client.OpDSImport, Target: tabTarget}), proto.CodeField, "no records"},
		"import many":      {req(client.DSRequest{Op: client.OpDSImport, Target: tabTarget, DT: make([]client.DSDTRecord, client.DSMaxImport+1)}), proto.CodeTooLarge, "65537 records, limit 65536"},
		"dt type":          {req(add(1, []client.DSDTRecord{{Key: "k", Type: 'x'}}, nil)), proto.CodeField, "record type 0x78"},
		"dt type 0":        {req(add(1, []client.DSDTRecord{{Key: "k"}}, nil)), proto.CodeField, "record type 0x00"},
		"dt key":           {req(add(1, []client.DSDTRecord{{Key: long(129), Type: 'm'}}, nil)), proto.CodeTooLarge, "key is 129 bytes"},
		"dt value":         {req(add(1, []client.DSDTRecord{{Type: 'm', Value: long(client.DSMaxValue + 1)}}, nil)), proto.CodeTooLarge, "value is 65537 bytes"},
		"dn flags":         {req(add(2, nil, []client.DSDNRecord{{CID: []byte{1}, Flags: 0x10}})), proto.CodeField, "record flags 0x10"},
		"dn cid":           {req(add(2, nil, []client.DSDNRecord{{CID: make([]byte, 65)}})), proto.CodeTooLarge, "client id is 65 octets"},
		"dn macro":         {req(add(2, nil, []client.DSDNRecord{{CID: []byte{1}, Macro: long(129)}})), proto.CodeTooLarge, "macro is 129 bytes"},
		"dn comment":       {req(add(2, nil, []client.DSDNRecord{{CID: []byte{1}, Comment: long(49)}})), proto.CodeTooLarge, "comment is 49 bytes"},
		"reply kind":       {rep(client.OpDSStatus, 1, dsOK), proto.CodeField, "DS_STATUS reply: kind 1 on a location operation"},
		"reply kind 0":     {rep(client.OpDSAdd, 0, dsOK), proto.CodeField, "kind 0 on a container operation"},
		"reply code":       {rep(client.OpDSStatus, 0, client.DSReply{Result: client.DSResult{Code: 26}}), proto.CodeField, "result code 26"},
		"reply message":    {rep(client.OpDSStatus, 0, client.DSReply{Result: client.DSResult{Message: "m"}}), proto.CodeField, "a message on success"},
		"reply long":       {rep(client.OpDSStatus, 0, client.DSReply{Result: client.DSResult{Code: 1, Message: long(1025)}}), proto.CodeTooLarge, "message is 1025 bytes"},
		"reply names":      {rep(client.OpDSStatus, 0, client.DSReply{Names: []string{"a"}}), proto.CodeField, "names on a reply without them"},
		"failure names":    {rep(client.OpDSList, 1, client.DSReply{Result: client.DSResult{Code: 4, Message: "m"}, Names: []string{"a"}}), proto.CodeField, "names on a reply without them"},
		"empty name":       {rep(client.OpDSList, 1, client.DSReply{Names: []string{"a", ""}}), proto.CodeField, "empty container name"},
		"long name":        {rep(client.OpDSList, 1, client.DSReply{Names: []string{long(256)}}), proto.CodeTooLarge, "container name is 256 bytes"},
		"many names":       {rep(client.OpDSList, 1, client.DSReply{Names: make([]string, client.DSMaxNames+1)}), proto.CodeTooLarge, "65537 names"},
		"reply prefix":     {rep(client.OpDSOpen, 1, client.DSReply{Prefix: client.DSPrefix{Bits: 8}}), proto.CodeField, "a prefix on a reply without one"},
		"reply prefix ff":  {rep(client.OpDSOpen, 2, client.DSReply{Prefix: client.DSPrefix{Bits: 0xff}}), proto.CodeField, "prefix length 255"},
		"reply count":      {rep(client.OpDSLookup, 1, client.DSReply{Count: 1}), proto.CodeField, "a count on a reply without one"},
		"reply sig":        {rep(client.OpDSDelete, 1, client.DSReply{Sig: 1}), proto.CodeField, "a signature on a reply without one"},
		"failure sig":      {rep(client.OpDSAdd, 1, client.DSReply{Result: client.DSResult{Code: 9}, Sig: 1}), proto.CodeField, "a signature on a reply without one"},
		"reply dt kind":    {rep(client.OpDSLookup, 2, dsTabRecords), proto.CodeField, "dhcptab records on a reply without them"},
		"reply dn kind":    {rep(client.OpDSLookup, 1, dsNetRecords), proto.CodeField, "network records on a reply without them"},
		"reply dn cid":     {rep(client.OpDSLookup, 2, client.DSReply{DN: []client.DSDNRecord{{}}}), proto.CodeField, "empty client id"},
		"reply dt type 0":  {rep(client.OpDSLookup, 1, client.DSReply{DT: []client.DSDTRecord{{}}}), proto.CodeField, "record type 0x00"},
		"reply records":    {rep(client.OpDSLookup, 1, client.DSReply{DT: make([]client.DSDTRecord, client.DSMaxRecords+1)}), proto.CodeTooLarge, "1048577 records"},
		"reply dn comment": {rep(client.OpDSLookup, 2, client.DSReply{DN: []client.DSDNRecord{{CID: []byte{1}, Comment: long(49)}}}), proto.CodeTooLarge, "comment is 49 bytes"},
	} {
		out, err := tc.fn([]byte("x"))
		if string(out) != "x" {
			t.Errorf("%s: appended %d bytes", name, len(out)-1)
		}
		t.Run(name, func(t *testing.T) { wiretest.Expect(t, err, tc.code, tc.text) })
	}
}

// TestDSCountsOverLimit: a count over its limit is refused though the
// body holds that many records; one under it is not.
func TestDSCountsOverLimit(t *testing.T) {
	le := binary.LittleEndian
	tab := mustDSRequest(client.DSRequest{Op: client.OpDSRemove, Target: tabTarget})
	rec := []byte{'m', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0} // type 'm', empty key and value, sig 0
	records := func(n int) []byte { return bytes.Repeat(rec, n) }
	imp := func(n int) []byte { return append(le.AppendUint32(bytes.Clone(tab), uint32(n)), records(n)...) }
	if _, err := client.ParseDSRequest(client.OpDSImport, imp(client.DSMaxImport)); err != nil {
		t.Fatalf("DS_IMPORT of %d records: %v", client.DSMaxImport, err)
	}
	_, err := client.ParseDSRequest(client.OpDSImport, imp(client.DSMaxImport+1))
	wiretest.Expect(t, err, proto.CodeField, "record count 65537 does not fit")

	ok := mustDSReply(client.OpDSLookup, 1, dsOK)[:client.DSResultMin]
	lookup := func(n int) []byte { return append(le.AppendUint32(bytes.Clone(ok), uint32(n)), records(n)...) }
	if _, err := client.ParseDSReply(client.OpDSLookup, 1, lookup(client.DSMaxRecords)); err != nil {
		t.Fatalf("DS_LOOKUP reply of %d records: %v", client.DSMaxRecords, err)
	}
	_, err = client.ParseDSReply(client.OpDSLookup, 1, lookup(client.DSMaxRecords+1))
	wiretest.Expect(t, err, proto.CodeField, "record count 1048577 does not fit")

	names := func(n int) []byte {
		return append(le.AppendUint32(bytes.Clone(ok), uint32(n)), bytes.Repeat([]byte{1, 0, 'n'}, n)...)
	}
	if _, err := client.ParseDSReply(client.OpDSList, 1, names(client.DSMaxNames)); err != nil {
		t.Fatalf("DS_LIST reply of %d names: %v", client.DSMaxNames, err)
	}
	_, err = client.ParseDSReply(client.OpDSList, 1, names(client.DSMaxNames+1))
	wiretest.Expect(t, err, proto.CodeField, "name count 65537 does not fit")
}

// TestDSCountsCheckedBeforeAllocation: a count the body cannot hold is
// refused without allocating room for what it claims.
func TestDSCountsCheckedBeforeAllocation(t *testing.T) {
	le := binary.LittleEndian
	ok := mustDSReply(client.OpDSLookup, 1, dsOK)
	imp := le.AppendUint32(mustDSRequest(client.DSRequest{Op: client.OpDSRemove, Target: netTarget}), client.DSMaxImport)
	for name, parse := range map[string]func() error{
		"import": func() error { _, err := client.ParseDSRequest(client.OpDSImport, imp); return err },
		"lookup": func() error {
			_, err := client.ParseDSReply(client.OpDSLookup, 2, le.AppendUint32(bytes.Clone(ok), client.DSMaxRecords))
			return err
		},
		"list": func() error {
			_, err := client.ParseDSReply(client.OpDSList, 2, le.AppendUint32(bytes.Clone(ok), client.DSMaxNames))
			return err
		},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		const runs = 100
		for range runs {
			if parse() == nil {
				t.Fatalf("%s: accepted", name)
			}
		}
		runtime.ReadMemStats(&after)
		if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 4<<10 {
			t.Fatalf("%s: %d bytes allocated per refused body", name, per)
		}
	}
}

// A decoded record does not alias the frame body: the agent keeps
// records past the frame (in the log command, in its mirror).
func TestDSNoAliasing(t *testing.T) {
	b := mustDSRequest(dsAdd)
	q, err := client.ParseDSRequest(client.OpDSAdd, b)
	if err != nil {
		t.Fatal(err)
	}
	clear(b)
	if !wiretest.Equal(q, dsAdd) {
		t.Fatalf("the decoded request changed with its body: %+v", q)
	}
}

// fuzzDS is the body of both fuzz targets: decode picks the opcode (and
// kind) from the first bytes; whatever decodes must re-encode to the same
// bytes and decode again to the same value.
func fuzzDS(t *testing.T, name string, body []byte, parse func([]byte) (any, error), app func(any) ([]byte, error)) {
	v, err := parse(body)
	wiretest.Typed(t, err)
	if err != nil {
		return
	}
	out, err := app(v)
	if err != nil {
		t.Fatalf("%s: a decoded body does not encode: %v", name, err)
	}
	if !bytes.Equal(out, body) {
		t.Fatalf("%s: re-encoded body differs:\n%x\n%x", name, out, body)
	}
	if again, err := parse(out); err != nil || !wiretest.Equal(again, v) {
		t.Fatalf("%s: parse(append(x)) != x: %+v, %v", name, again, err)
	}
}

func dsOpIndex(op uint16) byte { return byte(op - client.OpDSStatus) }

// FuzzDSRequest fuzzes ParseDSRequest: byte 0 picks the opcode (mod 11),
// the rest is the body.
func FuzzDSRequest(f *testing.F) {
	for _, q := range dsRequests {
		b := mustDSRequest(q)
		f.Add(append([]byte{dsOpIndex(q.Op)}, b...))            // the samples of the golden vectors
		f.Add(append([]byte{dsOpIndex(q.Op)}, b[:len(b)-1]...)) // cut short
	}
	f.Add([]byte{dsOpIndex(client.OpDSImport), 1, 0, 0, 0, 1, 0, 'l', 1, 0, 'c', 0xff, 0xff, 0xff, 0xff}) // IMPORT claiming 2^32-1 records
	f.Add([]byte{dsOpIndex(client.OpDSLookup), 2, 1, 0, 0, 1, 0, 'l', 1, 0, 'c', 2, 0, 2, 0, 0xff, 0xff, 0xff, 0xff, 1,
		0, 0, 10, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) // LOOKUP with a target of an empty client id
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		op := dsOps[int(b[0])%len(dsOps)]
		fuzzDS(t, client.Ops().Name(op), b[1:],
			func(body []byte) (any, error) { return client.ParseDSRequest(op, body) },
			func(v any) ([]byte, error) { q := v.(client.DSRequest); return client.AppendDSRequest(nil, &q) })
	})
}

// FuzzDSReply fuzzes ParseDSReply: byte 0 picks the opcode (mod 11), byte
// 1 the request's kind (mod 3), the rest is the body.
func FuzzDSReply(f *testing.F) {
	for c, ps := range dsReplies {
		for _, p := range ps {
			b := mustDSReply(c.op, c.kind, p)
			f.Add(append([]byte{dsOpIndex(c.op), c.kind}, b...))
			f.Add(append([]byte{dsOpIndex(c.op), c.kind}, b[:len(b)-1]...))
		}
	}
	f.Add([]byte{dsOpIndex(client.OpDSLookup), 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0}) // LOOKUP reply claiming 65535 records
	f.Add([]byte{dsOpIndex(client.OpDSCount), 1, 26, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})                   // a code over DSMaxCode
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 2 {
			return
		}
		op, kind := dsOps[int(b[0])%len(dsOps)], b[1]%3
		fuzzDS(t, client.Ops().Name(op)+" reply", b[2:],
			func(body []byte) (any, error) { return client.ParseDSReply(op, kind, body) },
			func(v any) ([]byte, error) { p := v.(client.DSReply); return client.AppendDSReply(nil, op, kind, &p) })
	})
}

// The encoders size the body once: one allocation per body, however many
// fields and records it has (the DHCP server encodes several per packet).
func TestDSAppendAllocatesOnce(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, q := range dsRequests {
		if n := testing.AllocsPerRun(20, func() { must(client.AppendDSRequest(nil, &q)) }); n > 1 {
			t.Errorf("AppendDSRequest %#04x: %v allocations, want 1", q.Op, n)
		}
	}
	for c, ps := range dsReplies {
		for _, p := range ps {
			if n := testing.AllocsPerRun(20, func() { must(client.AppendDSReply(nil, c.op, c.kind, &p)) }); n > 1 {
				t.Errorf("AppendDSReply %#04x kind %d: %v allocations, want 1", c.op, c.kind, n)
			}
		}
	}
}
