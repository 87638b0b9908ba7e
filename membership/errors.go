package membership

import "errors"

// Errors. CheckConf wraps ErrRefused together with the reason (one of the
// sentinels after it), so a caller can branch on either.
var (
	// ErrCommand is wrapped by errors about a malformed command or id.
	ErrCommand = errors.New("membership: bad command")
	// ErrRefused is wrapped by every refusal of CheckConf: the change is
	// applied as a raft no-op and leaves the view alone.
	ErrRefused = errors.New("membership: configuration change refused")
	// ErrRemovedLife: a JOIN of an incarnation that was already removed.
	ErrRemovedLife = errors.New("membership: incarnation was removed")
	// ErrDuplicate: a JOIN of a node that is already a member, or a
	// PROMOTE of a voter.
	ErrDuplicate = errors.New("membership: already a member")
	// ErrUnknownMember: a LEAVE or PROMOTE of a life that is not a member.
	ErrUnknownMember = errors.New("membership: not a member")
	// ErrNotConf: a command that does not ride on a configuration change
	// arrived on one, or the reverse.
	ErrNotConf = errors.New("membership: command and entry kind disagree")
	// ErrSnapshot is wrapped by every error about a bad snapshot.
	ErrSnapshot = errors.New("membership: bad snapshot")
	// ErrLegacyState is wrapped by every error about a bad DATA-DIR/state
	// file (the layout of the agent before the machine kept the view).
	ErrLegacyState = errors.New("membership: bad legacy state file")
)
