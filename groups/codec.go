package groups

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/types/event"
)

// Errors of the codecs.
var (
	// ErrBatch is returned (wrapped) by ParseBatch and AppendBatch for a
	// batch the format cannot hold.
	ErrBatch = errors.New("groups: bad batch")
	// ErrResults is returned (wrapped) by ParseResults.
	ErrResults = errors.New("groups: bad results")
)

// Specification constants: limits (SPEC.md).
const (
	BatchVersion    = 1
	MaxBatch        = 65536   // commands per batch
	MaxGroupName    = 255     // bytes of a group name
	MaxMemberName   = 255     // bytes of a member name
	MaxMembers      = 4096    // members per group
	MaxEntryPayload = 1 << 20 // payload bytes of one SEND or PART
	MaxMessage      = 8 << 20 // bytes of an assembled message
)

// Header says whose batch it is and where it stands in that agent's
// sequence of batches.
type Header struct {
	// Node is the proposing agent's node id. The envelope names the
	// proposer by its raft id, which is the node's incarnation (a new one
	// each life), while sessions and views speak of node ids.
	Node uint64
	// Run names one run of the agent (random, drawn at its start) and N
	// numbers its batches from 1. The machine applies a run's batches only
	// in order, so an agent may have several in flight: one that overtakes
	// a lost one is refused (ResultOutOfOrder) and proposed again.
	Run, N uint64
}

// Op is a command's operation (SPEC.md).
type Op uint8

// Specification constants: ops.
const (
	OpOpen  Op = 1
	OpClose Op = 2
	OpJoin  Op = 3
	OpLeave Op = 4
	OpSend  Op = 5
	OpPart  Op = 6
	OpReset Op = 7
)

var opNames = [...]string{OpOpen: "OPEN", OpClose: "CLOSE", OpJoin: "JOIN", OpLeave: "LEAVE", OpSend: "SEND", OpPart: "PART", OpReset: "RESET"}

func (o Op) String() string {
	if o >= OpOpen && o <= OpReset {
		return opNames[o]
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// FlagAssembled marks a SEND whose payload is the stored parts of its Xfer
// followed by its own payload.
const FlagAssembled uint8 = 0x1

// Cmd is one command of a batch. Which fields an op uses is in SPEC.md;
// the others are zero.
type Cmd struct {
	Op      Op
	Key     uint64 // the session, chosen by the proposer node's agent
	Pid     uint32 // OPEN
	Name    string // OPEN: the member name
	Reason  event.LeaveReason
	Group   string // JOIN, LEAVE, SEND
	Kind    uint8  // SEND: the descriptor's event number (3 BROADCAST … 6 REPLY)
	Flags   uint8  // SEND
	Target  uint64 // SEND
	ReplyTo uint64 // SEND
	MsgID   uint64 // SEND
	Xfer    uint64 // SEND with FlagAssembled, PART
	Payload []byte // SEND, PART; ParseBatch's alias its input
}

// AppendBatch appends the batch of cmds to dst. It refuses only what the
// layout cannot hold (more than MaxBatch commands, an unknown op, a
// string over 65535 bytes); the machine checks the limits per command.
func AppendBatch(dst []byte, h Header, cmds []Cmd) ([]byte, error) {
	if len(cmds) > MaxBatch {
		return dst, fmt.Errorf("%w: %d commands, limit %d", ErrBatch, len(cmds), MaxBatch)
	}
	le := binary.LittleEndian
	out := append(dst, BatchVersion, 0, 0, 0)
	out = le.AppendUint32(out, uint32(len(cmds)))
	out = le.AppendUint64(out, h.Node)
	out = le.AppendUint64(out, h.Run)
	out = le.AppendUint64(out, h.N)
	for i := range cmds {
		c := &cmds[i]
		if len(c.Name) > math.MaxUint16 || len(c.Group) > math.MaxUint16 || uint64(len(c.Payload)) > math.MaxUint32-64 {
			return dst, fmt.Errorf("%w: command %d: a string or payload is too long for the layout", ErrBatch, i)
		}
		out = append(out, byte(c.Op), 0, 0, 0)
		at := len(out)
		out = le.AppendUint32(out, 0)
		switch c.Op {
		case OpOpen:
			out = le.AppendUint64(out, c.Key)
			out = le.AppendUint32(out, c.Pid)
			out = proto.AppendString16(out, c.Name)
		case OpClose:
			out = le.AppendUint64(out, c.Key)
			out = append(out, byte(c.Reason))
		case OpJoin, OpLeave:
			out = le.AppendUint64(out, c.Key)
			out = proto.AppendString16(out, c.Group)
		case OpSend:
			out = le.AppendUint64(out, c.Key)
			out = append(out, c.Kind, c.Flags, 0, 0)
			out = le.AppendUint64(out, c.Target)
			out = le.AppendUint64(out, c.ReplyTo)
			out = le.AppendUint64(out, c.MsgID)
			out = le.AppendUint64(out, c.Xfer)
			out = proto.AppendString16(out, c.Group)
			out = le.AppendUint32(out, uint32(len(c.Payload)))
			out = append(out, c.Payload...)
		case OpPart:
			out = le.AppendUint64(out, c.Key)
			out = le.AppendUint64(out, c.Xfer)
			out = le.AppendUint32(out, uint32(len(c.Payload)))
			out = append(out, c.Payload...)
		case OpReset:
		default:
			return dst, fmt.Errorf("%w: command %d: unknown op %d", ErrBatch, i, c.Op)
		}
		le.PutUint32(out[at:], uint32(len(out)-at-4))
	}
	return out, nil
}

// cmdHeaderLen is the size of a command's header (op, reserved, length).
const cmdHeaderLen = 8

// ParseBatch decodes a batch. The commands' payloads alias b. It refuses,
// with ErrBatch, another version, non-zero reserved bytes, more than
// MaxBatch commands, an unknown op, a body that is not exactly its op's
// layout, and bytes after the last command; limits of names and payloads
// are the machine's to check.
func ParseBatch(b []byte) (h Header, cmds []Cmd, err error) {
	r := reader{b: b}
	if v := r.u8("version"); r.err == nil && v != BatchVersion {
		return Header{}, nil, fmt.Errorf("%w: version %d, want %d", ErrBatch, v, BatchVersion)
	}
	r.zero(3, "header reserved")
	n := r.u32("count")
	h = Header{Node: r.u64("node"), Run: r.u64("run"), N: r.u64("batch number")}
	if r.err != nil {
		return Header{}, nil, fmt.Errorf("%w: %w", ErrBatch, r.err)
	}
	if n > MaxBatch {
		return Header{}, nil, fmt.Errorf("%w: %d commands, limit %d", ErrBatch, n, MaxBatch)
	}
	if r.err == nil && (h.Node == 0 || h.N == 0) {
		return Header{}, nil, fmt.Errorf("%w: node id %d, batch number %d: neither may be 0", ErrBatch, h.Node, h.N)
	}
	if uint64(n)*cmdHeaderLen > uint64(len(r.b)) {
		return Header{}, nil, fmt.Errorf("%w: %d commands in %d bytes", ErrBatch, n, len(r.b))
	}
	cmds = make([]Cmd, n)
	var group string // the last group name read: a batch's sends name few groups
	for i := range cmds {
		op := Op(r.u8("op"))
		r.zero(3, "command reserved")
		body := r.bytes(int(min(r.u32("command length"), math.MaxInt32)), "command body")
		if r.err != nil {
			return Header{}, nil, fmt.Errorf("%w: command %d: %w", ErrBatch, i, r.err)
		}
		if err := parseCmd(&cmds[i], op, body, group); err != nil {
			return Header{}, nil, fmt.Errorf("%w: command %d (%v): %w", ErrBatch, i, op, err)
		}
		group = cmds[i].Group
	}
	if err := r.end(); err != nil {
		return Header{}, nil, fmt.Errorf("%w: %w", ErrBatch, err)
	}
	return h, cmds, nil
}

// parseCmd decodes one command into the zero c, in place (a Cmd is
// large, and a batch holds thousands); a group name equal to group is
// group, not a new string.
func parseCmd(c *Cmd, op Op, body []byte, group string) error {
	r := reader{b: body}
	c.Op = op
	switch op {
	case OpOpen:
		c.Key = r.u64("key")
		c.Pid = r.u32("pid")
		c.Name = r.str16("name")
	case OpClose:
		c.Key = r.u64("key")
		c.Reason = event.LeaveReason(r.u8("reason"))
	case OpJoin, OpLeave:
		c.Key = r.u64("key")
		c.Group = r.groupName(group)
	case OpSend:
		c.Key = r.u64("key")
		c.Kind = r.u8("kind")
		c.Flags = r.u8("flags")
		r.zero(2, "send reserved")
		c.Target = r.u64("target")
		c.ReplyTo = r.u64("reply to")
		c.MsgID = r.u64("msg id")
		c.Xfer = r.u64("xfer")
		c.Group = r.groupName(group)
		c.Payload = r.payload()
	case OpPart:
		c.Key = r.u64("key")
		c.Xfer = r.u64("xfer")
		c.Payload = r.payload()
	case OpReset:
	default:
		return fmt.Errorf("unknown op %d", op)
	}
	return r.end()
}

// reader decodes little-endian fields; the first failure sticks, so a
// decoder reads every field and checks once.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) take(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.off {
		r.err = fmt.Errorf("truncated at %s (offset %d, need %d bytes, have %d)", field, r.off, n, len(r.b)-r.off)
		return nil
	}
	v := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return v
}

func (r *reader) u8(field string) uint8 {
	if v := r.take(1, field); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16(field string) uint16 {
	if v := r.take(2, field); v != nil {
		return binary.LittleEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32(field string) uint32 {
	if v := r.take(4, field); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64(field string) uint64 {
	if v := r.take(8, field); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

func (r *reader) bytes(n int, field string) []byte { return r.take(n, field) }

func (r *reader) str16(field string) string {
	return string(r.take(int(r.u16(field+" length")), field))
}

// groupName is str16 of the group name, returning like, without an
// allocation, when the name read equals it. (Its field names are
// constants: a concatenation would allocate.)
func (r *reader) groupName(like string) string {
	b := r.take(int(r.u16("group length")), "group")
	if string(b) == like {
		return like
	}
	return string(b)
}

func (r *reader) payload() []byte {
	n := r.u32("payload length")
	p := r.take(int(min(n, math.MaxInt32)), "payload")
	if len(p) == 0 {
		return nil
	}
	return p
}

func (r *reader) zero(n int, field string) {
	for _, c := range r.take(n, field) {
		if c != 0 && r.err == nil {
			r.err = fmt.Errorf("reserved %s is not zero", field)
		}
	}
}

// end reports the first failure, or bytes left after the last field.
func (r *reader) end() error {
	if r.err == nil && r.off != len(r.b) {
		r.err = fmt.Errorf("%d unexpected bytes after the last field", len(r.b)-r.off)
	}
	return r.err
}

// CmdResult is the machine's answer to one command.
type CmdResult struct {
	Status    proto.Code // 0: ok; else why the command was refused
	Delivered uint32     // recipients of the command's event (SPEC.md)
	Seq       uint64     // the command's event, or 0
	Member    uint64     // the session's member id, or 0
	Text      string     // why, when refused; empty when ok
}

// maxResultText bounds a result's text; longer texts are cut.
const maxResultText = 1024

// AppendResults appends the results list of SPEC.md. Texts over 1024
// bytes are cut (at a byte boundary: texts are for people).
func AppendResults(dst []byte, rs []CmdResult) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint32(dst, uint32(len(rs)))
	for i := range rs {
		x := &rs[i]
		dst = append(dst, byte(x.Status), 0, 0, 0)
		dst = le.AppendUint32(dst, x.Delivered)
		dst = le.AppendUint64(dst, x.Seq)
		dst = le.AppendUint64(dst, x.Member)
		t := x.Text
		if len(t) > maxResultText {
			t = t[:maxResultText]
		}
		dst = proto.AppendString16(dst, t)
	}
	return dst
}

// resultMinLen is the size of a result with an empty text.
const resultMinLen = 4 + 4 + 8 + 8 + 2

// ParseResults decodes a results list. It refuses, with ErrResults, a
// truncated list, non-zero reserved bytes, a text
// over 1024 bytes and trailing bytes.
func ParseResults(b []byte) ([]CmdResult, error) {
	r := reader{b: b}
	n := r.u32("count")
	if r.err == nil && uint64(n)*resultMinLen > uint64(len(b)-4) {
		return nil, fmt.Errorf("%w: %d results in %d bytes", ErrResults, n, len(b))
	}
	var rs []CmdResult
	if n > 0 {
		rs = make([]CmdResult, n)
	}
	for i := range rs {
		x := &rs[i]
		x.Status = proto.Code(r.u8("status"))
		r.zero(3, "result reserved")
		x.Delivered = r.u32("delivered")
		x.Seq = r.u64("seq")
		x.Member = r.u64("member")
		x.Text = r.str16("text")
		if r.err == nil && len(x.Text) > maxResultText {
			r.err = fmt.Errorf("result %d: text is %d bytes, limit %d", i, len(x.Text), maxResultText)
		}
		if r.err != nil {
			break
		}
	}
	if err := r.end(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrResults, err)
	}
	return rs, nil
}

// refusedCount marks, in the count field of a reply, a batch refused as a
// whole: a status and a text follow instead of results.
const refusedCount = 0xFFFFFFFF

// Refusal is a batch refused as a whole, with no effect: it does not parse
// (CodeField), it overtook a batch of its run not applied yet
// (ResultOutOfOrder: propose it again), or it was applied already or
// belongs to a replaced run (CodeState).
type Refusal struct {
	Status proto.Code
	Text   string
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("groups: batch refused (%v): %s", r.Status, r.Text)
}

// AppendRefusal appends the reply of a batch refused as a whole.
func AppendRefusal(dst []byte, r Refusal) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, refusedCount)
	dst = append(dst, byte(r.Status), 0, 0, 0)
	t := r.Text
	if len(t) > maxResultText {
		t = t[:maxResultText]
	}
	return proto.AppendString16(dst, t)
}

// ParseReply decodes the reply of a groups entry: the results of its
// commands, or the batch's refusal (*Refusal, nil results).
func ParseReply(b []byte) ([]CmdResult, *Refusal, error) {
	if len(b) >= 4 && binary.LittleEndian.Uint32(b) == refusedCount {
		r := reader{b: b[4:]}
		ref := &Refusal{Status: proto.Code(r.u8("status"))}
		r.zero(3, "refusal reserved")
		ref.Text = r.str16("text")
		if r.err == nil && (ref.Status == proto.CodeNone || len(ref.Text) > maxResultText) {
			r.err = fmt.Errorf("refusal with status %d and a text of %d bytes", ref.Status, len(ref.Text))
		}
		if err := r.end(); err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrResults, err)
		}
		return nil, ref, nil
	}
	rs, err := ParseResults(b)
	return rs, nil, err
}
