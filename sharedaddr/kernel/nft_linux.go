package kernel

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"

	"github.com/corralhq/corral/sharedaddr/ctl"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// A table of ctl's default 65537 buckets is about 3 MB of netlink in one
// batch: more than a socket's default send buffer, so the buffer is
// forced up (root has CAP_NET_ADMIN here anyway), and its elements go in
// messages of elemChunk, whose nested element list must stay under
// netlink's 64 KiB attribute length.
const (
	sendBuffer = 64 << 20
	elemChunk  = 1024
)

func bigSendBuffer(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sendBuffer)
	}); err != nil {
		return err
	}
	return serr
}

// addSet adds the set and its elements, in chunks.
func addSet(c *nftables.Conn, s *nftables.Set, elems []nftables.SetElement) error {
	if err := c.AddSet(s, nil); err != nil {
		return err
	}
	for len(elems) > 0 {
		n := min(len(elems), elemChunk)
		if err := c.SetAddElements(s, elems[:n]); err != nil {
			return err
		}
		elems = elems[n:]
	}
	return nil
}

func (d *Dataplane) nftConn() (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.WithSockOptions(bigSendBuffer)}
	if d.ns != nil {
		opts = append(opts, nftables.WithNetNSFd(int(d.ns.Fd())))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("kernel: nftables: %w", err)
	}
	return c, nil
}

var table = &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}

// planChain holds two rules whose user data are the fingerprints of the
// plan the table was built from: its tables, then its roles.
const planChain = "plan"

var (
	planCh     = &nftables.Chain{Name: planChain, Table: table}
	dispatchCh = &nftables.Chain{Name: "dispatch", Table: table}
	identCh    = &nftables.Chain{Name: "ident", Table: table}
	vipSet     = &nftables.Set{Table: table, Name: "vips", KeyType: nftables.TypeIPAddr}
)

func addrChain(k int) string { return fmt.Sprintf("a%d", k) }

// installed returns the fingerprints the table carries, "" if none.
func installed(c *nftables.Conn) (tables, roles string) {
	rules, err := c.GetRules(table, planCh)
	if err != nil || len(rules) != 2 {
		return "", ""
	}
	return string(rules[0].UserData), string(rules[1].UserData)
}

// Installed returns the fingerprint of the dispatch tables the stack's
// nft table was last built from ("" before the first Apply): it changes
// exactly when an Apply replaced the tables, so a caller can tell that a
// new dispatch table is in force.
func (d *Dataplane) Installed() (string, error) {
	c, err := d.nftConn()
	if err != nil {
		return "", err
	}
	tables, _ := installed(c)
	return tables, nil
}

// nft makes the table the plan's in one batch (the kernel commits it
// whole). Every node holds the dispatch maps of every address, owned or
// not: they follow the replicated state alone, and a node that becomes
// owner then changes only its roles — the vips set and the dispatch
// chain's jumps — in a batch of a few messages, not the maps' hundreds
// of thousands of elements. A change of the tables replaces the table
// (add, delete, build).
func (d *Dataplane) nft(p Plan, marks map[uint64]uint32) error {
	c, err := d.nftConn()
	if err != nil {
		return err
	}
	fpTables, fpRoles := p.fingerprints()
	haveTables, haveRoles := installed(c)
	patched := false
	if haveTables != fpTables && haveTables != "" {
		if patched, err = d.patch(c, haveTables, p, marks); err != nil {
			return err
		}
	}
	// Affinity seeds (seed_linux.go): the maps of an address this
	// process did not own in its last plan get no packets until this
	// batch commits, so its seeds go in it; those of an address owned
	// already follow in batches of their own.
	ownedBefore := func(k int) bool {
		if d.applied == nil {
			return true // unknown: a crashed process's roles may be in force
		}
		ko := slices.IndexFunc(d.applied.plan.Addrs, func(o Addr) bool { return o.VIP == p.Addrs[k].VIP })
		return ko >= 0 && d.applied.plan.Addrs[ko].Owner
	}
	var later map[string][]nftables.SetElement
	switch {
	case haveTables == fpTables && haveRoles == fpRoles:
		d.applied = &applied{plan: clonePlan(p), marks: marks, tables: fpTables}
		return nil
	case haveTables == fpTables || patched:
		now := seedSets(p, d.applied, marks, func(k int) bool { return !ownedBefore(k) })
		later = map[string][]nftables.SetElement{}
		for k := range p.Addrs {
			if !ownedBefore(k) {
				continue
			}
			for g := range p.Addrs[k].groups() {
				if name := affName(k, g); len(now[name]) > 0 {
					later[name] = now[name]
					delete(now, name)
				}
			}
		}
		if _, err := queueSeeds(c, p, now); err != nil {
			return err
		}
		c.FlushChain(planCh)
		c.FlushChain(dispatchCh)
		c.FlushChain(identCh)
		c.FlushChain(rawCh)
		c.FlushChain(rawOutCh)
		c.FlushChain(snatCh)
		c.FlushSet(vipSet)
	default:
		// Read before the batch: it deletes the maps.
		carry := mergeSeeds(d.carried(c, p, marks), seedSets(p, d.applied, marks, func(int) bool { return true }))
		c.AddTable(table)
		c.DelTable(table)
		c.AddTable(table)
		c.AddChain(planCh)
		if err := c.AddSet(vipSet, nil); err != nil {
			return fmt.Errorf("kernel: nft set vips: %w", err)
		}
		c.AddChain(&nftables.Chain{Name: rawCh.Name, Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw})
		c.AddChain(&nftables.Chain{Name: rawOutCh.Name, Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityRaw})
		c.AddChain(&nftables.Chain{Name: snatCh.Name, Table: table, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
		c.AddChain(&nftables.Chain{Name: dispatchCh.Name, Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle})
		// Output, before fragmentation (ip_finish_output): every
		// fragment of a datagram carries the id the rule gave it.
		c.AddChain(&nftables.Chain{Name: identCh.Name, Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityMangle})
		if err := addTables(c, p, marks, carry); err != nil {
			return err
		}
	}
	// The raw and snat chains follow the roles and the slices, so they
	// are refilled with the roles.
	for _, r := range rawRules(p) {
		c.AddRule(&nftables.Rule{Table: table, Chain: rawCh, Exprs: r})
	}
	for _, r := range rawOutRules(p) {
		c.AddRule(&nftables.Rule{Table: table, Chain: rawOutCh, Exprs: r})
	}
	for _, r := range snatRules(p) {
		c.AddRule(&nftables.Rule{Table: table, Chain: snatCh, Exprs: r})
	}
	for _, a := range p.Addrs {
		if a.Ident.Len > 0 {
			c.AddRule(identRule(a.VIP, a.Ident))
		}
	}
	var owned []nftables.SetElement
	for k, a := range p.Addrs {
		if !a.Owner {
			continue
		}
		v := a.VIP.As4()
		owned = append(owned, nftables.SetElement{Key: v[:]})
		c.AddRule(&nftables.Rule{Table: table, Chain: dispatchCh, Exprs: []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: v[:]},
			&expr.Verdict{Kind: expr.VerdictJump, Chain: addrChain(k)},
		}})
	}
	if len(owned) > 0 {
		if err := c.SetAddElements(vipSet, owned); err != nil {
			return fmt.Errorf("kernel: nft set vips: %w", err)
		}
	}
	for _, fp := range []string{fpTables, fpRoles} {
		c.AddRule(&nftables.Rule{Table: table, Chain: planCh,
			Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}}, UserData: []byte(fp)})
	}
	if err := c.Flush(); err != nil {
		d.applied = nil // unknown: the next rebuild carries nothing over
		return fmt.Errorf("kernel: nft batch: %w", err)
	}
	d.applied = &applied{plan: clonePlan(p), marks: marks, tables: fpTables}
	d.seedLater(p, later)
	return nil
}

// addTables adds each address's chain: its exceptions, slices and
// dispatch maps, and the affinity maps of an affine address with the
// entries carry gives them.
func addTables(c *nftables.Conn, p Plan, marks map[uint64]uint32, carry map[string][]nftables.SetElement) error {
	for k, a := range p.Addrs {
		ch := c.AddChain(&nftables.Chain{Name: addrChain(k), Table: table})
		aff := map[int]*nftables.Set{} // by service
		if a.affine() {
			for g, grp := range a.groups() {
				f := affSet(k, g, a.Affinity)
				if err := addSet(c, f, carry[f.Name]); err != nil {
					return fmt.Errorf("kernel: nft affinity map of %v: %w", a.VIP, err)
				}
				for _, j := range grp {
					aff[j] = f
				}
			}
		}
		if len(a.Exceptions) > 0 {
			exc := exceptionSet(k)
			var xs []nftables.SetElement
			for _, e := range a.Exceptions {
				key := exceptionKey(e)
				xs = append(xs, nftables.SetElement{Key: key[:], Val: binaryutil.NativeEndian.PutUint32(markOf(marks[e.Node]))})
			}
			if err := addSet(c, exc, xs); err != nil {
				return fmt.Errorf("kernel: nft exceptions of %v: %w", a.VIP, err)
			}
			for _, proto := range []uint8{TCP, UDP} {
				c.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: append(l4(proto),
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
					&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
					&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: exc.Name, SetID: exc.ID},
					&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
					&expr.Verdict{Kind: expr.VerdictAccept},
				)})
			}
		}
		// Slices before services: a reply to a node's own flow is
		// never dispatched as a new flow. A service whose port is in no
		// slice matches none of their packets, so it goes first, and its
		// flows' packets pass no slice rule on the way.
		var after []int
		for j, s := range a.Services {
			if s.Port == 0 || slices.ContainsFunc(a.Slices, func(sl Slice) bool {
				return sl.Proto == s.Proto && sl.First <= s.Port && s.Port <= sl.Last
			}) {
				after = append(after, j)
				continue
			}
			if err := addService(c, ch, k, j, a, marks, aff[j]); err != nil {
				return err
			}
		}
		for _, sl := range a.Slices {
			c.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: append(l4(sl.Proto),
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Range{Op: expr.CmpOpEq, Register: 1,
					FromData: binaryutil.BigEndian.PutUint16(sl.First), ToData: binaryutil.BigEndian.PutUint16(sl.Last)},
				&expr.Immediate{Register: 1, Data: binaryutil.NativeEndian.PutUint32(markOf(marks[sl.Node]))},
				&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
				&expr.Verdict{Kind: expr.VerdictAccept},
			)})
		}
		for _, j := range after {
			if err := addService(c, ch, k, j, a, marks, aff[j]); err != nil {
				return err
			}
		}
	}
	return nil
}

// exceptionSet is address k's map of exceptions, client address and
// port → mark.
func exceptionSet(k int) *nftables.Set {
	return &nftables.Set{Table: table, Name: fmt.Sprintf("x%d", k), IsMap: true, Concatenation: true,
		KeyType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService), DataType: nftables.TypeMark}
}

// exceptionKey is e's key in the map: the client's address and port,
// network order.
func exceptionKey(e Exception) [8]byte {
	var key [8]byte
	ip := e.Client.Addr().As4()
	copy(key[:], ip[:])
	copy(key[4:], binaryutil.BigEndian.PutUint16(e.Client.Port()))
	return key
}

// addService adds service j of address k (a): its table map and its
// rules, the affine ones first when f, its port group's affinity map, is
// not nil.
func addService(c *nftables.Conn, ch *nftables.Chain, k, j int, a Addr, marks map[uint64]uint32, f *nftables.Set) error {
	s := a.Services[j]
	bm := &nftables.Set{Table: table, Name: fmt.Sprintf("b%d_%d", k, j), IsMap: true,
		KeyType: nftables.TypeInteger, DataType: nftables.TypeMark}
	bs := make([]nftables.SetElement, len(s.Table))
	for b, n := range s.Table {
		bs[b] = nftables.SetElement{Key: binaryutil.NativeEndian.PutUint32(uint32(b)),
			Val: binaryutil.NativeEndian.PutUint32(markOf(marks[n]))}
	}
	if err := addSet(c, bm, bs); err != nil {
		return fmt.Errorf("kernel: nft table of %v %d/%d: %w", a.VIP, s.Proto, s.Port, err)
	}
	match := l4(s.Proto)
	if s.Port != 0 {
		match = append(match,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(s.Port)})
	}
	if f != nil {
		for _, r := range affineRules(match, f, bm, len(s.Table), a.Affinity) {
			c.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: r})
		}
	}
	// The plain rule; behind the affine ones, it steers a client
	// that a full affinity map has no room for.
	ex := append(match, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4})
	n := uint32(4)
	if a.Policy == ctl.Weighted {
		ex = append(ex, &expr.Payload{DestRegister: 9, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2})
		n = 8
	}
	ex = append(ex,
		&expr.Hash{SourceRegister: 1, DestRegister: 1, Length: n, Modulus: uint32(len(s.Table)), Seed: HashSeed, Type: expr.HashTypeJenkins},
		&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: bm.Name, SetID: bm.ID},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
		&expr.Verdict{Kind: expr.VerdictAccept},
	)
	c.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: ex})
	return nil
}

// identRule is "ip saddr VIP ip frag-off & 0x7fff == 0 ip id set numgen
// inc mod LEN offset BASE" with the header checksum fixed. The mask
// takes only whole datagrams without DF: a DF datagram is never
// fragmented, so its id does not matter (RFC 6864), and a fragment a
// sender cut itself (a raw socket) keeps the id it shares with its
// siblings. numgen's counter starts at 0 whenever the rule is created.
func identRule(vip netip.Addr, id Ident) *nftables.Rule {
	v := vip.As4()
	return &nftables.Rule{Table: table, Chain: identCh, Exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: v[:]},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 6, Len: 2},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 2, Mask: []byte{0x7f, 0xff}, Xor: []byte{0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 0}},
		&expr.Numgen{Register: 1, Modulus: id.Len, Type: unix.NFT_NG_INCREMENTAL, Offset: uint32(id.Base)},
		// numgen leaves a host-order u32; the header wants network order.
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 2, Size: 2},
		&expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: 1, Base: expr.PayloadBaseNetworkHeader,
			Offset: 4, Len: 2, CsumType: expr.CsumTypeInet, CsumOffset: 10},
	}}
}

// markOf is the packet mark of a mark index; 0 (Self) stays 0.
func markOf(i uint32) uint32 {
	if i == 0 {
		return 0
	}
	return MarkBase + i
}

func l4(proto uint8) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
	}
}

// dropTable deletes the table if it exists.
func (d *Dataplane) dropTable() error {
	c, err := d.nftConn()
	if err != nil {
		return err
	}
	d.applied = nil
	c.DelTable(table)
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("kernel: nft delete table: %w", err)
	}
	return nil
}
