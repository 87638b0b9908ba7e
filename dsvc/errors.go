package dsvc

import (
	"errors"
	"fmt"
)

// Code is a DSVC_* result code. Its value is the Solaris number, so logs,
// exit statuses and the wire carry the same numbers the Solaris tools and
// documentation use.
type Code uint8

// The DSVC_* codes (dhcp_svc_public.h). There are no others.
const (
	CodeSuccess       Code = 0
	CodeExists        Code = 1
	CodeAccess        Code = 2
	CodeNoCred        Code = 3
	CodeNoEnt         Code = 4
	CodeBusy          Code = 5
	CodeInval         Code = 6
	CodeInternal      Code = 7
	CodeUnavailable   Code = 8
	CodeCollision     Code = 9
	CodeUnsupported   Code = 10
	CodeNoMemory      Code = 11
	CodeNoResources   Code = 12
	CodeBadResource   Code = 13
	CodeBadPath       Code = 14
	CodeModuleVersion Code = 15
	CodeModuleErr     Code = 16
	CodeModuleLoad    Code = 17
	CodeModuleUnload  Code = 18
	CodeModuleConfig  Code = 19
	CodeSynch         Code = 20
	CodeNoLockMgr     Code = 21
	CodeNoLocation    Code = 22
	CodeBadConver     Code = 23
	CodeNoTable       Code = 24
	CodeTableExists   Code = 25

	numCodes = 26 // DSVC_NERR
)

var messages = [numCodes]string{
	CodeSuccess:       "Success",
	CodeExists:        "Already exists",
	CodeAccess:        "Access denied",
	CodeNoCred:        "No underlying service credential",
	CodeNoEnt:         "Entry does not exist",
	CodeBusy:          "Busy",
	CodeInval:         "Invalid arguments",
	CodeInternal:      "Internal error",
	CodeUnavailable:   "Underlying service required by the module is unavailable",
	CodeCollision:     "Update collision",
	CodeUnsupported:   "Operation unsupported",
	CodeNoMemory:      "Virtual memory exhausted",
	CodeNoResources:   "Non-memory resources unavailable",
	CodeBadResource:   "Malformed or missing RESOURCE setting",
	CodeBadPath:       "Malformed or missing PATH setting",
	CodeModuleVersion: "Public module version mismatch",
	CodeModuleErr:     "Error in public module",
	CodeModuleLoad:    "Error loading public module",
	CodeModuleUnload:  "Error unloading public module",
	CodeModuleConfig:  "Module-specific configuration failed",
	CodeSynch:         "Error in synchronization protocol",
	CodeNoLockMgr:     "Cannot contact lock manager",
	CodeNoLocation:    "Location does not exist",
	CodeBadConver:     "Malformed or missing CONVER setting",
	CodeNoTable:       "Table does not exist",
	CodeTableExists:   "Table already exists",
}

// Message returns the code's message (dhcpsvc_errmsg); "<unknown error>"
// for a number that is not a code.
func (c Code) Message() string {
	if int(c) >= numCodes {
		return "<unknown error>"
	}
	return messages[c]
}

func (c Code) String() string {
	if int(c) >= numCodes {
		return fmt.Sprintf("DSVC code %d", uint8(c))
	}
	return fmt.Sprintf("%s (%d)", messages[c], uint8(c))
}

// The sentinels, one per code: errors.Is(err, dsvc.ErrCollision) holds for
// every *Error of that code. ErrNoTable also matches ErrNoEnt, and
// ErrTableExists ErrExists, because the real modules answer a missing or
// existing container with either.
var (
	ErrExists        = &Error{Code: CodeExists}
	ErrAccess        = &Error{Code: CodeAccess}
	ErrNoCred        = &Error{Code: CodeNoCred}
	ErrNoEnt         = &Error{Code: CodeNoEnt}
	ErrBusy          = &Error{Code: CodeBusy}
	ErrInval         = &Error{Code: CodeInval}
	ErrInternal      = &Error{Code: CodeInternal}
	ErrUnavailable   = &Error{Code: CodeUnavailable}
	ErrCollision     = &Error{Code: CodeCollision}
	ErrUnsupported   = &Error{Code: CodeUnsupported}
	ErrNoMemory      = &Error{Code: CodeNoMemory}
	ErrNoResources   = &Error{Code: CodeNoResources}
	ErrBadResource   = &Error{Code: CodeBadResource}
	ErrBadPath       = &Error{Code: CodeBadPath}
	ErrModuleVersion = &Error{Code: CodeModuleVersion}
	ErrModule        = &Error{Code: CodeModuleErr}
	ErrModuleLoad    = &Error{Code: CodeModuleLoad}
	ErrModuleUnload  = &Error{Code: CodeModuleUnload}
	ErrModuleConfig  = &Error{Code: CodeModuleConfig}
	ErrSynch         = &Error{Code: CodeSynch}
	ErrNoLockMgr     = &Error{Code: CodeNoLockMgr}
	ErrNoLocation    = &Error{Code: CodeNoLocation}
	ErrBadConver     = &Error{Code: CodeBadConver}
	ErrNoTable       = &Error{Code: CodeNoTable}
	ErrTableExists   = &Error{Code: CodeTableExists}
)

// Error is a data-service failure: its code, the operation and container
// it happened in, and the underlying cause if any.
type Error struct {
	Code      Code
	Op        string // e.g. "modify", "open"
	Container string // admin name, e.g. "10.0.0.0", "dhcptab"
	Detail    string // what exactly was wrong, e.g. "client id of 65 octets (at most 64)"
	Err       error  // underlying cause (an OS or driver error), may be nil
}

// Errorf returns an *Error of code c with a detail message.
func Errorf(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Detail: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	s := "dsvc"
	if e.Op != "" {
		s += ": " + e.Op
	}
	if e.Container != "" {
		s += " " + e.Container
	}
	s += ": " + e.Code.Message()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches by code, with the two aliases of the real modules.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	switch {
	case e.Code == t.Code:
		return true
	case e.Code == CodeNoTable && t.Code == CodeNoEnt:
		return true
	case e.Code == CodeTableExists && t.Code == CodeExists:
		return true
	}
	return false
}

// CodeOf returns the code of err: CodeSuccess for nil, the code of an
// *Error in its chain, else CodeInternal.
func CodeOf(err error) Code {
	if err == nil {
		return CodeSuccess
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}
