//go:build cgo

package ocwire

/*
#cgo CFLAGS: -std=c99 -Wall -Wextra -pedantic -fPIC
#include <stdlib.h>
#include "wire.h"
#include "oc_event.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Body names a body kind of ocw_check_body (enum ocw_body).
type Body int

// The body kinds, as wire.h numbers them.
const (
	BSubscribe        Body = C.OCW_B_SUBSCRIBE
	BSubscribeReply   Body = C.OCW_B_SUBSCRIBE_REPLY
	BEvent            Body = C.OCW_B_EVENT
	BMembership       Body = C.OCW_B_MEMBERSHIP
	BConnectivity     Body = C.OCW_B_CONNECTIVITY
	BGroupJoin        Body = C.OCW_B_GROUP_JOIN
	BGroupJoinReply   Body = C.OCW_B_GROUP_JOIN_REPLY
	BGroupLeave       Body = C.OCW_B_GROUP_LEAVE
	BGroupSeq         Body = C.OCW_B_GROUP_SEQ
	BGroupSend        Body = C.OCW_B_GROUP_SEND
	BGroupSendReply   Body = C.OCW_B_GROUP_SEND_REPLY
	BGroupName        Body = C.OCW_B_GROUP_NAME
	BGroupMembers     Body = C.OCW_B_GROUP_MEMBERS
	BGroupList        Body = C.OCW_B_GROUP_LIST
	BGroupWindow      Body = C.OCW_B_GROUP_WINDOW
	BGroupAttach      Body = C.OCW_B_GROUP_ATTACH
	BGroupAttachReply Body = C.OCW_B_GROUP_ATTACH_REPLY
	BCallbacks        Body = C.OCW_B_CALLBACKS
	BDone             Body = C.OCW_B_DONE
	BStatus           Body = C.OCW_B_STATUS
	BPing             Body = C.OCW_B_PING
	BEmpty            Body = C.OCW_B_EMPTY
)

// MaxVersion is the highest client protocol version the C library speaks
// (OCW_CLIENT_MAX_VERSION). It may be below client.MaxVersion: the C
// library does not speak the data service of version 4, and the tests
// skip the vectors and inputs of later versions.
const MaxVersion = uint8(C.OCW_CLIENT_MAX_VERSION)

// Result is the outcome of a C check: Code 0 is success, else the
// proto.Code of the error with the C message.
type Result struct {
	Code int
	Msg  string
}

func (r Result) String() string {
	if r.Code == 0 {
		return "ok"
	}
	return fmt.Sprintf("code %d: %s", r.Code, r.Msg)
}

// cbytes copies b into C memory, so the C code reads nothing of Go's
// heap and ASan-like overreads would land outside any Go object; the
// caller frees it. A zero-length b gives NULL.
func cbytes(b []byte) *C.uint8_t {
	if len(b) == 0 {
		return nil
	}
	return (*C.uint8_t)(C.CBytes(b))
}

func result(rc C.int, e *C.ocw_err) Result {
	if rc == 0 {
		return Result{}
	}
	return Result{Code: int(e.code), Msg: C.GoString(&e.msg[0])}
}

// CheckFrame runs ocw_check_frame over b, a whole frame, at version v.
func CheckFrame(b []byte, v uint8) Result {
	p := cbytes(b)
	defer C.free(unsafe.Pointer(p))
	var e C.ocw_err
	return result(C.ocw_check_frame(p, C.size_t(len(b)), C.uint8_t(v), &e), &e)
}

// CheckBody runs ocw_check_body over b.
func CheckBody(kind Body, v uint8, b []byte) Result {
	p := cbytes(b)
	defer C.free(unsafe.Pointer(p))
	var e C.ocw_err
	return result(C.ocw_check_body(C.enum_ocw_body(kind), C.uint8_t(v), p, C.size_t(len(b)), &e), &e)
}

// CRC32C is ocw_crc32c(0, b).
func CRC32C(b []byte) uint32 {
	p := cbytes(b)
	defer C.free(unsafe.Pointer(p))
	return uint32(C.ocw_crc32c(0, unsafe.Pointer(p), C.size_t(len(b))))
}

// The event data of oc_event.h, copied out of the C block into Go values
// for comparison: same fields, strings as Go strings.
type (
	Node struct {
		Name   string
		ID     uint64
		BornOn uint64
		Addr   string
	}
	Membership struct {
		Instance                                   uint64
		NMember, MembIdx, NOut, OutIdx, NIn, InIdx uint
		Array                                      []Node
	}
	Interface struct {
		Name      string
		Family    uint
		PrefixLen uint
		Addr      [16]byte
		Up        bool
	}
	Peer struct {
		Node                Node
		Eligible, Connected bool
	}
	Connect struct {
		Interface  Interface
		Nodes      []Node
		Interfaces []Interface
		Peers      []Peer
	}
	Member struct {
		Node, Member, BornOn uint64
		Pid                  uint32
		Name                 string
	}
	Group struct {
		Name                   string
		From                   Member
		Reason                 uint
		Target, MsgID, ReplyTo uint64
		Members                []Member
		Payload                []byte
	}
	// Event is ocw_event with its data: nil, *Membership, *Connect or *Group.
	Event struct {
		Seq   uint64
		Desc  uint32
		Flags uint8
		Data  any
	}
)

// block checks that every pointer of the event data lies in the one
// malloc'd block, as wire.h promises.
type block struct {
	base, end uintptr
	err       error
}

func (k *block) in(p unsafe.Pointer, n uintptr, what string) {
	a := uintptr(p)
	if k.err == nil && (a < k.base || a+n > k.end) {
		k.err = fmt.Errorf("%s at %#x+%d lies outside the block [%#x, %#x)", what, a, n, k.base, k.end)
	}
}

func (k *block) str(p *C.char, what string) string {
	if p == nil {
		if k.err == nil {
			k.err = fmt.Errorf("%s is NULL", what)
		}
		return ""
	}
	k.in(unsafe.Pointer(p), 1, what)
	if k.err != nil {
		return ""
	}
	// The NUL must be inside the block too.
	n := uintptr(0)
	for a := uintptr(unsafe.Pointer(p)); a+n < k.end && *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0; n++ {
	}
	k.in(unsafe.Pointer(p), n+1, what+" with its NUL")
	if k.err != nil {
		return ""
	}
	return C.GoStringN(p, C.int(n))
}

func (k *block) node(n *C.oc_node_t, what string) Node {
	return Node{Name: k.str(n.node_uname, what+" name"), ID: uint64(n.node_id), BornOn: uint64(n.node_born_on), Addr: k.str(n.node_addr, what+" addr")}
}

func (k *block) iface(f *C.oc_interface_t, what string) Interface {
	i := Interface{Name: k.str(f.if_name, what+" name"), Family: uint(f.if_family), PrefixLen: uint(f.if_prefix_len), Up: f.if_up != 0}
	for j := range i.Addr {
		i.Addr[j] = byte(f.if_addr[j])
	}
	return i
}

func (k *block) member(m *C.oc_group_member_t, what string) Member {
	return Member{Node: uint64(m.gm_node), Member: uint64(m.gm_member), BornOn: uint64(m.gm_born_on), Pid: uint32(m.gm_pid), Name: k.str(m.gm_name, what+" name")}
}

// array checks an array of n elements at p and returns it as a slice of C
// structs (nil for n = 0, where the pointer must be NULL).
func array[T any](k *block, p *T, n uint, what string) []T {
	if n == 0 {
		if p != nil && k.err == nil {
			k.err = fmt.Errorf("%s: empty but not NULL", what)
		}
		return nil
	}
	var zero T
	k.in(unsafe.Pointer(p), uintptr(n)*unsafe.Sizeof(zero), what)
	if k.err != nil || p == nil {
		return nil
	}
	return unsafe.Slice(p, n)
}

// ParseEvent runs ocw_parse_event over an EVENT body at version v and
// copies the result out. A C error comes back as Result; err reports a
// block that breaks wire.h's promises.
func ParseEvent(b []byte, v uint8) (Event, Result, error) {
	p := cbytes(b)
	defer C.free(unsafe.Pointer(p))
	var e C.ocw_err
	var ev C.ocw_event
	if r := result(C.ocw_parse_event(p, C.size_t(len(b)), C.uint8_t(v), &ev, &e), &e); r.Code != 0 {
		if ev.data != nil {
			return Event{}, r, fmt.Errorf("data %p left allocated after an error", ev.data)
		}
		return Event{}, r, nil
	}
	defer C.free(ev.data)
	out := Event{Seq: uint64(ev.seq), Desc: uint32(ev.desc), Flags: uint8(ev.flags)}
	if ev.data == nil {
		if ev.size != 0 {
			return out, Result{}, fmt.Errorf("no data but size %d", ev.size)
		}
		return out, Result{}, nil
	}
	k := &block{base: uintptr(ev.data), end: uintptr(ev.data) + uintptr(ev.size)}
	switch ev.desc >> 22 {
	case 1:
		c := (*C.oc_ev_connect_t)(ev.data)
		k.in(unsafe.Pointer(c), unsafe.Sizeof(*c), "oc_ev_connect_t")
		d := &Connect{Interface: k.iface(&c.c_interface, "interface")}
		for i, n := range array(k, c.c_nodes, uint(c.c_n_node), "c_nodes") {
			d.Nodes = append(d.Nodes, k.node(&n, fmt.Sprint("node ", i)))
		}
		for i, f := range array(k, c.c_interfaces, uint(c.c_n_interface), "c_interfaces") {
			d.Interfaces = append(d.Interfaces, k.iface(&f, fmt.Sprint("interface ", i)))
		}
		for i, pe := range array(k, c.c_peers, uint(c.c_n_peer), "c_peers") {
			d.Peers = append(d.Peers, Peer{Node: k.node(&pe.p_node, fmt.Sprint("peer ", i)), Eligible: pe.p_eligible != 0, Connected: pe.p_connected != 0})
		}
		out.Data = d
	case 2:
		m := (*C.oc_ev_membership_t)(ev.data)
		k.in(unsafe.Pointer(m), unsafe.Sizeof(*m), "oc_ev_membership_t")
		d := &Membership{Instance: uint64(m.m_instance), NMember: uint(m.m_n_member), MembIdx: uint(m.m_memb_idx),
			NOut: uint(m.m_n_out), OutIdx: uint(m.m_out_idx), NIn: uint(m.m_n_in), InIdx: uint(m.m_in_idx)}
		total := d.NMember + d.NIn + d.NOut
		if total > 0 {
			k.in(unsafe.Pointer(&m.m_array[0]), uintptr(total)*unsafe.Sizeof(m.m_array[0]), "m_array")
			if k.err == nil {
				for i, n := range unsafe.Slice(&m.m_array[0], total) {
					d.Array = append(d.Array, k.node(&n, fmt.Sprint("m_array ", i)))
				}
			}
		}
		out.Data = d
	case 3:
		g := (*C.oc_ev_group_t)(ev.data)
		k.in(unsafe.Pointer(g), unsafe.Sizeof(*g), "oc_ev_group_t")
		d := &Group{Name: k.str(g.g_name, "g_name"), From: k.member(&g.g_from, "g_from"), Reason: uint(g.g_reason),
			Target: uint64(g.g_target), MsgID: uint64(g.g_msgid), ReplyTo: uint64(g.g_reply_to)}
		for i, m := range array(k, g.g_members, uint(g.g_n_member), "g_members") {
			d.Members = append(d.Members, k.member(&m, fmt.Sprint("member ", i)))
		}
		if g.g_len > 0 {
			k.in(g.g_payload, uintptr(g.g_len), "g_payload")
			if k.err == nil {
				d.Payload = C.GoBytes(g.g_payload, C.int(g.g_len))
			}
		} else if g.g_payload != nil {
			k.err = fmt.Errorf("g_payload not NULL for g_len 0")
		}
		out.Data = d
	}
	return out, Result{}, k.err
}
