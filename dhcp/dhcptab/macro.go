package dhcptab

import (
	"fmt"
	"strings"
)

// Op is what a macro entry does to the symbol it names.
type Op uint8

const (
	// Set gives the symbol a value: sym=value.
	Set Op = iota + 1
	// Flag adds the symbol without a value: sym, or sym=_NULL_VALUE_ as
	// dhtadm -e writes it. BOOLEAN symbols and the Hostname lookup.
	Flag
	// Delete removes the symbol from what is combined so far: sym=
	// (dhtadm -e's deletion, honoured where it is stored).
	Delete
)

// NullValue is the value dhtadm -e uses for a valueless symbol.
const NullValue = "_NULL_VALUE_"

// Entry is one sym=value of a macro, in the order written.
type Entry struct {
	Name string
	Op   Op
	// Value is the value as written, quotes and escapes kept, surrounding
	// blanks trimmed; empty unless Op is Set.
	Value string
}

// ParseMacro splits a macro record's value, ":sym=val:sym=val:", into its
// entries. A ':' inside double quotes is part of the value; a backslash
// inside quotes escapes the next byte. Empty entries ("::") are skipped.
// The values are not interpreted here: that needs the symbol (Build).
func ParseMacro(value string) ([]Entry, error) {
	var out []Entry
	s := value
	for i := 0; i < len(s); {
		if s[i] == ':' {
			i++
			continue
		}
		start := i
		for i < len(s) && s[i] != '=' && s[i] != ':' {
			i++
		}
		name := strings.Trim(s[start:i], " \t")
		if name == "" {
			if i < len(s) && s[i] == '=' {
				return nil, fmt.Errorf("%w: value without a symbol name at byte %d", ErrSyntax, start)
			}
			continue
		}
		if err := checkName(name); err != nil {
			return nil, err
		}
		if i == len(s) || s[i] == ':' {
			out = append(out, Entry{Name: name, Op: Flag})
			continue
		}
		i++ // '='
		vstart := i
		quoted := false
		for i < len(s) {
			c := s[i]
			if quoted {
				if c == '\\' {
					if i+1 == len(s) {
						return nil, fmt.Errorf("%w: %s: backslash at the end", ErrSyntax, name)
					}
					i += 2
					continue
				}
				if c == '"' {
					quoted = false
				}
			} else {
				if c == ':' {
					break
				}
				if c == '"' {
					quoted = true
				}
			}
			i++
		}
		if quoted {
			return nil, fmt.Errorf("%w: %s: unterminated quote", ErrSyntax, name)
		}
		raw := strings.Trim(s[vstart:i], " \t")
		if !printable(strings.ReplaceAll(raw, "\t", " ")) {
			return nil, fmt.Errorf("%w: %s: control character in value", ErrSyntax, name)
		}
		switch raw {
		case "":
			out = append(out, Entry{Name: name, Op: Delete})
		case NullValue:
			out = append(out, Entry{Name: name, Op: Flag})
		default:
			out = append(out, Entry{Name: name, Op: Set, Value: raw})
		}
	}
	return out, nil
}

// FormatMacro renders entries as a macro record's value, the inverse of
// ParseMacro: ":a=1:b:c=:".
func FormatMacro(entries []Entry) string {
	var b strings.Builder
	b.WriteByte(':')
	for _, e := range entries {
		b.WriteString(e.Name)
		switch e.Op {
		case Set:
			b.WriteByte('=')
			b.WriteString(e.Value)
		case Delete:
			b.WriteByte('=')
		}
		b.WriteByte(':')
	}
	return b.String()
}

// EditMacro applies dhtadm -M -m macro -e 'sym=value' to a macro's value:
// sym=value replaces every entry for sym (or appends one), sym= removes
// them, sym=_NULL_VALUE_ makes sym valueless.
func EditMacro(value, edit string) (string, error) {
	entries, err := ParseMacro(value)
	if err != nil {
		return "", err
	}
	ed, err := ParseMacro(edit)
	if err != nil {
		return "", err
	}
	if len(ed) != 1 {
		return "", fmt.Errorf("%w: edit %q: want one sym=value", ErrSyntax, edit)
	}
	e := ed[0]
	out := entries[:0]
	done := false
	for _, x := range entries {
		if x.Name != e.Name {
			out = append(out, x)
			continue
		}
		if e.Op != Delete && !done {
			out = append(out, e)
			done = true
		}
	}
	if e.Op != Delete && !done {
		out = append(out, e)
	}
	return FormatMacro(out), nil
}
