package wiretest

import (
	"fmt"

	"github.com/corralhq/corral/proto"
)

// Receive is a link's path for a frame of the sub-protocol ops after the
// link agreed on version v: frame checks, the opcode table, extensions
// (this build knows none).
func Receive(ops *proto.OpSet, v uint8, b []byte) (proto.Frame, error) {
	f, err := proto.DecodeFrame(b, 0)
	if err != nil {
		return f, err
	}
	if err := ops.Check(&f.Header, v); err != nil {
		return f, err
	}
	return f, proto.CheckTLV(f.Ext, nil)
}

// SamplePing is the PING body of the golden vectors.
var SamplePing = proto.Ping{Sent: 1700000000123456789}

// PingMsgID is the msg id of the golden PING and its PONG.
const PingMsgID = 7

// PingFrames returns a PING of ops at version v and the PONG answering
// it: a one-shot transaction on the link (hops HopLimit as a link sends
// every frame, source and target 0),
// the PONG carrying the PING's msg id with REPLY added and its body
// echoed.
func PingFrames(ops *proto.OpSet, v uint8, ping, pong uint16) (proto.Frame, proto.Frame) {
	h := proto.Header{Proto: ops.Proto(), Version: v, Opcode: ping, Flags: proto.FlagCreate | proto.FlagDelete, Hops: proto.HopLimit, MsgID: PingMsgID}
	p := proto.Frame{Header: h, Body: proto.AppendPing(nil, SamplePing)}
	h.Opcode, h.Flags = pong, h.Flags|proto.FlagReply
	return p, proto.Frame{Header: h, Body: proto.AppendPing(nil, SamplePing)}
}

// ReceivePing is Receive followed by the PING/PONG body check.
func ReceivePing(ops *proto.OpSet, v uint8, want proto.Frame) func([]byte) error {
	want.Seal()
	return func(b []byte) error {
		f, err := Receive(ops, v, b)
		if err != nil {
			return err
		}
		if _, err := proto.ParsePing(f.Body); err != nil {
			return err
		}
		if !Equal(f, want) {
			return fmt.Errorf("decoded %+v, want %+v", f, want)
		}
		return nil
	}
}

// PingVectors returns the golden vectors every sub-protocol with PING and
// PONG shares: the two messages and the refusals of a frame with an
// opcode the version lacks, of another version, of another sub-protocol
// and of a PING with a short body.
func PingVectors(ops *proto.OpSet, ping, pong, undefined uint16) []Vector {
	return PingVectorsAt(ops, ops.Range().Max, ping, pong, undefined)
}

// PingVectorsAt is PingVectors at version v: a sub-protocol whose
// vectors were written at an older version keeps them byte for byte.
func PingVectorsAt(ops *proto.OpSet, v uint8, ping, pong, undefined uint16) []Vector {
	name := ops.Proto().String()
	pf, qf := PingFrames(ops, v, ping, pong)
	frame := func(n string, about []string, f proto.Frame, decode func([]byte) error, want proto.Code, detail string) Vector {
		b := Frame(f)
		return Vector{Name: n, About: about, Data: b, Fields: Annotated(b, PingFields), Decode: decode, Want: want, Detail: detail}
	}
	recv := func(b []byte) error { _, err := Receive(ops, v, b); return err }
	bad := pf
	bad.Opcode = undefined
	newer := pf
	newer.Version = v + 1
	other := pf
	other.Proto = (ops.Proto() % 3) + 1 // another of peer, client, admin
	short := pf
	short.Body = short.Body[:4]
	return []Vector{
		frame("ping", []string{
			fmt.Sprintf("%s PING, version %d: a one-shot transaction (CREATE|DELETE) on the link,", name, v),
			fmt.Sprintf("hops %d, msg id %d, body: the sender's clock, %d ns.", proto.HopLimit, PingMsgID, SamplePing.Sent),
		}, pf, ReceivePing(ops, v, pf), 0, ""),
		frame("pong", []string{
			fmt.Sprintf("%s PONG answering the PING: same msg id, flags CREATE|DELETE|REPLY,", name),
			"the PING's body echoed unchanged.",
		}, qf, ReceivePing(ops, v, qf), 0, ""),
		frame("err_unknown_opcode", []string{
			fmt.Sprintf("The PING with opcode %#04x, which %s version %d does not define:", undefined, name, v),
			"OpSet.Check refuses it.",
		}, bad, recv, proto.CodeOpcode, fmt.Sprintf("has no opcode %#04x", undefined)),
		frame("err_wrong_version", []string{
			fmt.Sprintf("The PING sent as version %d on a link that agreed on version %d.", v+1, v),
		}, newer, recv, proto.CodeVersion, fmt.Sprintf("version %d on a link that agreed on %d", v+1, v)),
		frame("err_wrong_proto", []string{
			fmt.Sprintf("The PING marked as a frame of the %s protocol, received on a %s link.", other.Proto, name),
		}, other, recv, proto.CodeField, fmt.Sprintf("frame of the %s protocol on a %s link", other.Proto, name)),
		frame("err_ping_body", []string{
			"The PING with a body of 4 bytes; a PING body is 8.",
		}, short, ReceivePing(ops, v, short), proto.CodeField, "PING: truncated at sent"),
	}
}

// CheckOps checks an opcode table against the rules every sub-protocol
// follows: versions start at 1 and are ordered, every opcode is named,
// 0x0000 is never used, and every opcode is defined by a version this
// build speaks.
func CheckOps(ops *proto.OpSet) error {
	if ops.Range().Min < 1 || ops.Range().Min > ops.Range().Max {
		return fmt.Errorf("versions %d..%d", ops.Range().Min, ops.Range().Max)
	}
	if _, ok := ops.Lookup(0); ok {
		return fmt.Errorf("opcode 0x0000 is defined")
	}
	names := map[string]bool{}
	for _, op := range ops.Opcodes() {
		o, _ := ops.Lookup(op)
		if o.Name == "" || names[o.Name] {
			return fmt.Errorf("opcode %#04x: empty or duplicate name %q", op, o.Name)
		}
		names[o.Name] = true
		if o.Since < 1 || o.Since > ops.Range().Max {
			return fmt.Errorf("opcode %#04x %s: since version %d, this build speaks %d..%d", op, o.Name, o.Since, ops.Range().Min, ops.Range().Max)
		}
	}
	return nil
}
