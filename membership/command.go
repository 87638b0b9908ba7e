package membership

import (
	"encoding/binary"
	"fmt"
	"strconv"

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
	// OpSetClusterID names the cluster once. It is an ordinary entry, not a
	// configuration change; every one after the first is ignored.
	OpSetClusterID Op = 4
)

func (o Op) String() string {
	switch o {
	case OpJoin:
		return "JOIN"
	case OpLeave:
		return "LEAVE"
	case OpPromote:
		return "PROMOTE"
	case OpSetClusterID:
		return "SET-CLUSTER-ID"
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

// ClusterID names a cluster for its whole lifetime: a random 64-bit number
// drawn when it is founded (or, for a cluster founded before there were ids,
// by its first leader that finds it has none). It is the value HELLO and
// REJECT carry (proto SPEC.md §5.7, transport.Config.ClusterID), so a link
// and the log agree on one form. The zero value is "none".
type ClusterID uint64

// IsZero reports whether id is the zero ("none") id.
func (id ClusterID) IsZero() bool { return id == 0 }

// String prints 16 hex digits, as transport prints the id of a HELLO, or
// "none".
func (id ClusterID) String() string {
	if id.IsZero() {
		return "none"
	}
	return fmt.Sprintf("%016x", uint64(id))
}

// ParseClusterID parses the 16 hex digits String prints.
func ParseClusterID(s string) (ClusterID, error) {
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil || len(s) != 16 {
		return 0, fmt.Errorf("%w: cluster id %q is not 16 hex digits", ErrCommand, s)
	}
	return ClusterID(v), nil
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
	// Cluster is the id SET-CLUSTER-ID names, never zero; ID is then the
	// proposing node.
	Cluster ClusterID
}

// IsConf reports whether c rides on a raft configuration change (JOIN,
// LEAVE, PROMOTE) rather than on an ordinary entry (SET-CLUSTER-ID).
func (c Command) IsConf() bool { return c.Op == OpJoin || c.Op == OpLeave || c.Op == OpPromote }

// RaftType is the kind of raft configuration change a command rides on.
type RaftType uint8

// Raft configuration change kinds; the driver maps them onto clusterlog's.
const (
	RaftNone       RaftType = iota // not a configuration change
	RaftAddVoter                   // add a voter, or promote a learner
	RaftAddLearner                 // add a non-voting member
	RaftRemove                     // remove a voter or learner
)

func (t RaftType) String() string {
	return [...]string{"none", "add-voter", "add-learner", "remove"}[t]
}

// Raft returns the raft configuration change that must carry c: its kind,
// and the raft id it names, which is the incarnation (raft knows each life
// of a node as a member of its own). A command and its change must agree,
// or raft's voters and the view part ways; this is the one place that says
// how.
func (c Command) Raft() (RaftType, uint64) {
	switch c.Op {
	case OpJoin:
		if c.Voter {
			return RaftAddVoter, c.Incarnation
		}
		return RaftAddLearner, c.Incarnation
	case OpLeave:
		return RaftRemove, c.Incarnation
	case OpPromote:
		return RaftAddVoter, c.Incarnation
	}
	return RaftNone, 0
}

func (c Command) String() string {
	switch c.Op {
	case OpJoin:
		role := "learner"
		if c.Voter {
			role = "voter"
		}
		return fmt.Sprintf("JOIN %d/%#x %s %s %s", c.ID, c.Incarnation, c.Name, c.Addr, role)
	case OpLeave:
		return fmt.Sprintf("LEAVE %d/%#x %s", c.ID, c.Incarnation, c.Cause)
	case OpPromote:
		return fmt.Sprintf("PROMOTE %d/%#x", c.ID, c.Incarnation)
	case OpSetClusterID:
		return fmt.Sprintf("SET-CLUSTER-ID %s by %d", c.Cluster, c.ID)
	}
	return c.Op.String()
}

// Marshal encodes c (SPEC.md, "Command").
func (c Command) Marshal() []byte {
	b := make([]byte, 0, 24+len(c.Name)+len(c.Addr)+8)
	var flags uint8
	if c.Voter {
		flags |= 1
	}
	b = append(b, CommandVersion, byte(c.Op), byte(c.Cause), flags)
	b = binary.LittleEndian.AppendUint64(b, c.ID)
	b = binary.LittleEndian.AppendUint64(b, c.Incarnation)
	b = proto.AppendString16(b, c.Name)
	b = proto.AppendString16(b, c.Addr)
	if c.Op == OpSetClusterID {
		b = binary.LittleEndian.AppendUint64(b, uint64(c.Cluster))
	}
	return b
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
	if c.Op == OpSetClusterID {
		c.Cluster = ClusterID(r.U64("cluster id"))
	}
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
	case c.Op == OpSetClusterID && (c.Cause != CauseNone || c.Voter || c.Incarnation != 0 || c.Name != "" || c.Addr != "" || c.Cluster.IsZero()):
		return c, proto.Errorf(proto.CodeField, "membership SET-CLUSTER-ID: cause %s, voter %v, incarnation %d, name %q, addr %q, cluster %s", c.Cause, c.Voter, c.Incarnation, c.Name, c.Addr, c.Cluster)
	case c.Op != OpJoin && c.Op != OpLeave && c.Op != OpPromote && c.Op != OpSetClusterID:
		return c, proto.Errorf(proto.CodeOpcode, "membership command: unknown op %d", uint8(c.Op))
	}
	return c, nil
}
