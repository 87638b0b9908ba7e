// Package dhcptab gives dhcptab records (dsvc.DTRecord) Solaris's meaning:
// symbols name DHCP options with a type and size rules, macros set
// symbols, and the DHCP server combines up to four macros into the option
// set of a reply.
//
// Symbols are the built-in ones (Standard: the options, BOOTP fields and
// internal symbols of Solaris's /etc/dhcp/inittab) plus the dhcptab's own
// symbol records, "Context,Code,Type,Granularity,Maximum" with Context
// Extend (codes 77–127), Site (128–254) or Vendor=<class> <class>… (a
// sub-option 1–254 of option 43 for those client classes).
//
// A macro record's value is ":sym=value:sym=value:". An ASCII value is
// written in double quotes (which may hold ':'); IP values are dotted
// quads, numbers decimal (or 0x hex), OCTET values hex, and a BOOLEAN has
// no value. "sym=" deletes sym from what has been combined so far and
// "sym=_NULL_VALUE_" is sym without a value, as dhtadm -e writes them.
// Include=<macro> expands that macro in place: entries after it override
// it, entries before it are overridden by it. A macro honours at most
// MaxIncludes Includes and MaxNesting levels of them; a cycle of Includes,
// an undefined macro, a bad value or an unknown symbol is an *Error for
// the entry's macro and that entry is left out, the rest of the table
// still builds.
//
// Build checks everything and expands every macro once, so a Table is
// immutable and Table.Options, which runs for every packet, only merges
// up to four precomputed, sorted lists, in in.dhcpd's order: the client
// class macro, the network macro, the network record's macro, the client
// id macro (uppercase hex), a later one overriding an earlier one. BOOTP
// replies skip the class macro. Options.Apply puts the result on a
// dhcpv4 reply within the option space the client accepts, the options
// of its parameter request list first.
package dhcptab
