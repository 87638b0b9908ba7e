package admin

import (
	"encoding/binary"

	"github.com/corralhq/corral/proto"
)

// MeshEcho is a MESH_ECHO request (since version 5): the answering agent
// opens a stream to Target, sends Count frames of Size bytes, one every
// Interval microseconds, and counts the echoes that come back.
type MeshEcho struct {
	Target   uint64 // the node to echo through, never 0
	Count    uint32 // frames to send, ≥ 1
	Size     uint32 // bytes of each frame, MinEchoSize..MaxEchoSize
	Interval uint32 // microseconds between sends; 0 as fast as the window allows
}

// MeshEchoResult is a MESH_ECHO reply: what came back, and the error that
// ended the stream (Code 0: none, every direction closed by DELETE).
type MeshEchoResult struct {
	Sent       uint32 // frames sent
	Received   uint32 // distinct frames echoed back, ≤ Sent
	OutOfOrder uint32 // first echoes of a sequence number lower than one received before
	Duplicates uint32 // echoes of a sequence number received before
	Elapsed    uint64 // microseconds from the open to the end
	Status     proto.Status
}

// Limits of MESH_ECHO: every frame starts with its u32 sequence number.
const (
	MeshEchoSize = 8 + 4 + 4 + 4
	MinEchoSize  = 4
	MaxEchoSize  = 64 << 10
)

// AppendMeshEcho appends the body of a MESH_ECHO request.
func AppendMeshEcho(dst []byte, e *MeshEcho) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint64(dst, e.Target)
	dst = le.AppendUint32(dst, e.Count)
	dst = le.AppendUint32(dst, e.Size)
	return le.AppendUint32(dst, e.Interval)
}

// ParseMeshEcho decodes a MESH_ECHO request.
func ParseMeshEcho(b []byte) (e MeshEcho, err error) {
	r := proto.NewReader(b, "MESH_ECHO request")
	e.Target = r.U64("target")
	e.Count = r.U32("count")
	e.Size = r.U32("size")
	e.Interval = r.U32("interval")
	if r.Err() != nil {
		return e, r.Err()
	}
	switch {
	case e.Target == 0:
		r.Fail(proto.CodeField, "target node id 0")
	case e.Count == 0:
		r.Fail(proto.CodeField, "count 0")
	case e.Size < MinEchoSize || e.Size > MaxEchoSize:
		r.Fail(proto.CodeField, "frame size %d outside %d..%d", e.Size, MinEchoSize, MaxEchoSize)
	}
	return e, r.Err()
}

// AppendMeshEchoResult appends the body of a MESH_ECHO reply.
func AppendMeshEchoResult(dst []byte, m *MeshEchoResult) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint32(dst, m.Sent)
	dst = le.AppendUint32(dst, m.Received)
	dst = le.AppendUint32(dst, m.OutOfOrder)
	dst = le.AppendUint32(dst, m.Duplicates)
	dst = le.AppendUint64(dst, m.Elapsed)
	dst = le.AppendUint16(dst, uint16(m.Status.Code))
	text := m.Status.Text
	if len(text) > proto.MaxReasonLen {
		text = text[:proto.MaxReasonLen]
	}
	return proto.AppendString16(dst, text)
}

// ParseMeshEchoResult decodes a MESH_ECHO reply.
func ParseMeshEchoResult(b []byte) (m MeshEchoResult, err error) {
	r := proto.NewReader(b, "MESH_ECHO reply")
	m.Sent = r.U32("sent")
	m.Received = r.U32("received")
	m.OutOfOrder = r.U32("out of order")
	m.Duplicates = r.U32("duplicates")
	m.Elapsed = r.U64("elapsed")
	m.Status.Code = proto.Code(r.U16("status code"))
	m.Status.Text = r.String16(proto.MaxReasonLen, "status text")
	if r.Err() != nil {
		return m, r.Err()
	}
	switch {
	case m.Received > m.Sent:
		r.Fail(proto.CodeField, "%d frames received of %d sent", m.Received, m.Sent)
	case m.OutOfOrder > m.Received:
		r.Fail(proto.CodeField, "%d frames out of order of %d received", m.OutOfOrder, m.Received)
	case m.Status.Code == proto.CodeNone && m.Status.Text != "":
		r.Fail(proto.CodeField, "status text without a code")
	}
	return m, r.Err()
}

// Complete reports whether every one of count frames came back once, in
// order, and nothing failed.
func (m *MeshEchoResult) Complete(count uint32) bool {
	return m.Sent == count && m.Received == count && m.OutOfOrder == 0 && m.Duplicates == 0 && m.Status.Code == proto.CodeNone
}
