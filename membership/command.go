package membership

import (
	"encoding/binary"
	"fmt"

	"github.com/corralhq/corral/proto"
)

// Specification constants: command layout (SPEC.md).
const (
	// CommandVersion is the version byte of a command; a node refuses a
	// command of a version it does not know, which stops it before it
	// applies something it would misread.
	CommandVersion = 1

	MaxNameLen = proto.MaxNameLen
	MaxAddrLen = 255
)

// Op is a membership command.
type Op uint8

// Specification constants: ops.
const (
	OpJoin  Op = 1 // add a node to the view
	OpLeave Op = 2 // remove a node from the view
	// OpPromote makes a non-voting member a voter. The members stay the
	// same, so the view keeps its instance and no NEWVIEW is told.
	OpPromote Op = 3
)

func (o Op) String() string {
	switch o {
	case OpJoin:
		return "JOIN"
	case OpLeave:
		return "LEAVE"
	case OpPromote:
		return "PROMOTE"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Cause says why a node leaves.
type Cause uint8

// Specification constants: causes.
const (
	CauseNone     Cause = 0 // JOIN
	CauseGraceful Cause = 1 // the node asked to leave (corral leave)
	CauseFailed   Cause = 2 // the leader lost contact with it
	CauseRemoved  Cause = 3 // an administrator removed it
)

func (c Cause) String() string {
	switch c {
	case CauseNone:
		return "none"
	case CauseGraceful:
		return "graceful"
	case CauseFailed:
		return "failed"
	case CauseRemoved:
		return "removed"
	}
	return fmt.Sprintf("cause(%d)", uint8(c))
}

// Command is the payload of a membership entry of the cluster log.
type Command struct {
	Op    Op
	Cause Cause // LEAVE only
	ID    uint64
	// Incarnation tells apart the lives of one node id: a node that lost
	// its copy of the log (evicted, or a new disk) joins with a new one.
	// JOIN: the joining node's. LEAVE: the one to remove; 0 removes any.
	Incarnation uint64
	Voter       bool   // JOIN: the node votes in the cluster log
	Name        string // JOIN only
	Addr        string // JOIN only: HOST:PORT peers reach it at
}

// Marshal encodes c (SPEC.md, "Command").
func (c Command) Marshal() []byte {
	b := make([]byte, 0, 24+len(c.Name)+len(c.Addr)+4)
	var flags uint8
	if c.Voter {
		flags |= 1
	}
	b = append(b, CommandVersion, byte(c.Op), byte(c.Cause), flags)
	b = binary.LittleEndian.AppendUint64(b, c.ID)
	b = binary.LittleEndian.AppendUint64(b, c.Incarnation)
	b = proto.AppendString16(b, c.Name)
	return proto.AppendString16(b, c.Addr)
}

// ParseCommand decodes a command.
func ParseCommand(b []byte) (Command, error) {
	r := proto.NewReader(b, "membership command")
	var c Command
	if v := r.U8("version"); v != CommandVersion {
		r.Fail(proto.CodeVersion, "command version %d, this node knows %d", v, CommandVersion)
	}
	c.Op = Op(r.U8("op"))
	c.Cause = Cause(r.U8("cause"))
	flags := r.U8("flags")
	c.Voter = flags&1 != 0
	c.ID = r.U64("id")
	c.Incarnation = r.U64("incarnation")
	c.Name = r.String16(MaxNameLen, "name")
	c.Addr = r.String16(MaxAddrLen, "addr")
	if err := r.Err(); err != nil {
		return c, err
	}
	switch {
	case flags&^1 != 0:
		return c, proto.Errorf(proto.CodeField, "membership command: unknown flags %#02x", flags)
	case c.ID == 0:
		return c, proto.Errorf(proto.CodeField, "membership command: node id 0")
	case c.Op == OpJoin && (c.Cause != CauseNone || c.Name == "" || c.Incarnation == 0):
		return c, proto.Errorf(proto.CodeField, "membership JOIN: cause %s, name %q, incarnation %d", c.Cause, c.Name, c.Incarnation)
	case c.Op == OpLeave && (c.Cause < CauseGraceful || c.Cause > CauseRemoved):
		return c, proto.Errorf(proto.CodeField, "membership LEAVE: cause %s", c.Cause)
	case c.Op == OpPromote && (c.Cause != CauseNone || !c.Voter):
		return c, proto.Errorf(proto.CodeField, "membership PROMOTE: cause %s, voter %v", c.Cause, c.Voter)
	case c.Op != OpJoin && c.Op != OpLeave && c.Op != OpPromote:
		return c, proto.Errorf(proto.CodeOpcode, "membership command: unknown op %d", uint8(c.Op))
	}
	return c, nil
}
