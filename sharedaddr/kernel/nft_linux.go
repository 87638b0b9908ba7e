package kernel

import (
	"errors"
	"fmt"
	"os"

	"github.com/corralhq/corral/sharedaddr/ctl"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

func (d *Dataplane) nftConn() (*nftables.Conn, error) {
	var opts []nftables.ConnOption
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

// planChain holds one rule whose user data is the fingerprint of the plan
// the table was built from.
const planChain = "plan"

// installed returns the fingerprint the table carries, "" if none.
func installed(c *nftables.Conn) string {
	rules, err := c.GetRules(table, &nftables.Chain{Name: planChain, Table: table})
	if err != nil || len(rules) != 1 {
		return ""
	}
	return string(rules[0].UserData)
}

// nft replaces the table by the plan's in one batch (add, delete, build:
// the kernel commits it whole), unless it already holds that plan.
func (d *Dataplane) nft(p Plan, marks map[uint64]uint32) error {
	c, err := d.nftConn()
	if err != nil {
		return err
	}
	fp := p.fingerprint()
	if installed(c) == fp {
		return nil
	}
	c.AddTable(table)
	c.DelTable(table)
	c.AddTable(table)
	c.AddChain(&nftables.Chain{Name: planChain, Table: table})
	c.AddRule(&nftables.Rule{Table: table, Chain: &nftables.Chain{Name: planChain, Table: table},
		Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}}, UserData: []byte(fp)})

	vips := &nftables.Set{Table: table, Name: "vips", KeyType: nftables.TypeIPAddr}
	var elems []nftables.SetElement
	for _, a := range p.Addrs {
		if a.Owner {
			v := a.VIP.As4()
			elems = append(elems, nftables.SetElement{Key: v[:]})
		}
	}
	if err := c.AddSet(vips, elems); err != nil {
		return fmt.Errorf("kernel: nft set vips: %w", err)
	}
	raw := c.AddChain(&nftables.Chain{Name: "raw", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw})
	c.AddRule(&nftables.Rule{Table: table, Chain: raw, Exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: vips.Name, SetID: vips.ID},
		&expr.Notrack{},
	}})
	dispatch := c.AddChain(&nftables.Chain{Name: "dispatch", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle})

	for k, a := range p.Addrs {
		if !a.Owner {
			continue
		}
		ch := c.AddChain(&nftables.Chain{Name: fmt.Sprintf("a%d", k), Table: table})
		v := a.VIP.As4()
		c.AddRule(&nftables.Rule{Table: table, Chain: dispatch, Exprs: []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: v[:]},
			&expr.Verdict{Kind: expr.VerdictJump, Chain: ch.Name},
		}})
		if len(a.Exceptions) > 0 {
			exc := &nftables.Set{Table: table, Name: fmt.Sprintf("x%d", k), IsMap: true, Concatenation: true,
				KeyType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService), DataType: nftables.TypeMark}
			var xs []nftables.SetElement
			for _, e := range a.Exceptions {
				ip := e.Client.Addr().As4()
				key := make([]byte, 8)
				copy(key, ip[:])
				copy(key[4:], binaryutil.BigEndian.PutUint16(e.Client.Port()))
				xs = append(xs, nftables.SetElement{Key: key, Val: binaryutil.NativeEndian.PutUint32(markOf(marks[e.Node]))})
			}
			if err := c.AddSet(exc, xs); err != nil {
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
		// never dispatched as a new flow.
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
		for j, s := range a.Services {
			bm := &nftables.Set{Table: table, Name: fmt.Sprintf("b%d_%d", k, j), IsMap: true,
				KeyType: nftables.TypeInteger, DataType: nftables.TypeMark}
			bs := make([]nftables.SetElement, len(s.Table))
			for b, n := range s.Table {
				bs[b] = nftables.SetElement{Key: binaryutil.NativeEndian.PutUint32(uint32(b)),
					Val: binaryutil.NativeEndian.PutUint32(markOf(marks[n]))}
			}
			if err := c.AddSet(bm, bs); err != nil {
				return fmt.Errorf("kernel: nft table of %v %d/%d: %w", a.VIP, s.Proto, s.Port, err)
			}
			ex := l4(s.Proto)
			if s.Port != 0 {
				ex = append(ex,
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(s.Port)})
			}
			ex = append(ex, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4})
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
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("kernel: nft batch: %w", err)
	}
	return nil
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
	c.DelTable(table)
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("kernel: nft delete table: %w", err)
	}
	return nil
}
