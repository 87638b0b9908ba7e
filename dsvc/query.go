package dsvc

// Query selects records (the DSVC_Q* macros): the low 16 bits select
// fields, the high 16 bits say, per selected field, whether the record's
// value must equal the target's (1) or differ from it (0). All selected
// tests must hold. The zero Query (DSVC_QINIT) selects every record.
type Query uint32

// Queryable fields of dhcptab records.
const (
	DTQKey  Query = 0x01
	DTQType Query = 0x02
	DTQAll  Query = DTQKey | DTQType
)

// Queryable fields of network records. A flag field compares one bit:
// (record.Flags & F) against (target.Flags & F). DNQFDynamic tests bit 0 of
// nothing, as in Solaris: DYNAMIC is 0, so Eq(DNQFDynamic) selects every
// record and Neq(DNQFDynamic) none; in.dhcpd itself relies on this.
const (
	DNQCID        Query = 0x0001
	DNQCIP        Query = 0x0002
	DNQSIP        Query = 0x0004
	DNQLease      Query = 0x0008
	DNQMacro      Query = 0x0010
	DNQFDynamic   Query = 0x0020
	DNQFAutomatic Query = 0x0040
	DNQFManual    Query = 0x0080
	DNQFUnusable  Query = 0x0100
	DNQFBootpOnly Query = 0x0200
	DNQAll        Query = 0x03ff
)

// Eq returns q with fields f selected, to be equal (DSVC_QEQ).
func (q Query) Eq(f Query) Query { return q | f | f<<16 }

// Neq returns q with fields f selected, to differ (DSVC_QNEQ).
func (q Query) Neq(f Query) Query { return q&^(f<<16) | f }

// IsEq reports whether field f is selected to be equal (DSVC_QISEQ).
func (q Query) IsEq(f Query) bool { return q&f != 0 && q&(f<<16) != 0 }

// IsNeq reports whether field f is selected to differ (DSVC_QISNEQ).
func (q Query) IsNeq(f Query) bool { return q&f != 0 && q&(f<<16) == 0 }

// Valid reports whether q uses only the bits of all (DTQAll or DNQAll) in
// either half, as the Solaris framework checks before any lookup.
func (q Query) Valid(all Query) bool { return q&^(all|all<<16) == 0 }
