package dhcptab

import (
	"errors"
	"fmt"

	"github.com/corralhq/corral/dsvc"
)

// Conditions of a dhcptab record, wrapped in *Error.
var (
	ErrSyntax          = errors.New("dhcptab: syntax error")
	ErrBadSymbol       = errors.New("dhcptab: bad symbol definition")
	ErrDuplicate       = errors.New("dhcptab: symbol already defined")
	ErrUnknownSymbol   = errors.New("dhcptab: undefined symbol")
	ErrBadValue        = errors.New("dhcptab: bad value")
	ErrUndefinedMacro  = errors.New("dhcptab: undefined macro")
	ErrCircular        = errors.New("dhcptab: circular macro definition")
	ErrNesting         = errors.New("dhcptab: macros nested too deep")
	ErrTooManyIncludes = errors.New("dhcptab: too many includes")
	ErrRecordType      = errors.New("dhcptab: unknown record type")
)

// Limits of in.dhcpd (dhcptab.c).
const (
	MaxIncludes = 32 // Include entries honoured per macro
	MaxNesting  = 20 // levels of Include below a macro
)

// Error is one problem of one dhcptab record. A symbol record in error is
// left out of the table; a macro's entry in error (Symbol names it) is
// left out of that macro, the rest of the macro still applies.
type Error struct {
	Key    string      // the record's key
	Type   dsvc.DTType // DTSymbol or DTMacro
	Symbol string      // the macro entry's symbol; "" for the whole record
	Err    error       // wraps one of the Err… sentinels
}

func (e *Error) Error() string {
	kind := "macro"
	if e.Type == dsvc.DTSymbol {
		kind = "symbol"
	}
	if e.Symbol != "" {
		return fmt.Sprintf("%s %q: %s: %v", kind, e.Key, e.Symbol, e.Err)
	}
	return fmt.Sprintf("%s %q: %v", kind, e.Key, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }
