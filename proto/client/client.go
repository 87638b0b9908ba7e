// Package client defines the client sub-protocol, spoken between an
// application and the agent on its own node over a unix socket, and its
// version. The byte layout of every message is in SPEC.md beside this file.
//
// The client protocol stays backward compatible: a new agent keeps every
// opcode and layout an older version defined, so old clients keep working.
//
// Version 1 carries the cluster event API of seed 002: a client SUBSCRIBEs
// to event classes, optionally resuming after the last sequence number it
// delivered, and the agent streams EVENTs to it; QUERY_MEMBERSHIP and
// QUERY_CONNECTIVITY answer the seed's on-demand lists. The event data
// types are those of package types/event (which events re-exports),
// encoded field by field (events.go).
//
// Version 2 adds group messaging (groups.go): ordered, durable,
// view-synchronous process groups on the cluster log. A link's member
// session opens on its first GROUP_JOIN or GROUP_SEND; members receive the
// group events addressed to them as EVENTs of class GROUP, in the log's
// order, each delivered only after its log entry is committed. Version 2
// also replaces the Group event data layout of version 1, which no agent
// ever sent; the agent sends group events only to links of version 2.
//
// Version 3 adds the node-wide dispatch (dispatch.go): a link that sends
// CALLBACKS (its classes and priorities) receives the events of those
// classes one at a time across every such link of the node, band by
// priority band, each flagged EventAwaitDone, and reports each with DONE
// once its callbacks completed.
//
// Version 4 adds the data service (dsvc.go): the DHCP data store
// operations of package dsvc (locations, dhcptab and network containers,
// their records) on the cluster log, for the "cluster" module. A failure
// of the data service itself is a normal reply with a non-zero
// DSResult.Code; only protocol failures ABORT.
//
// Version 5 adds batches (batch.go): GROUP_SEND_BATCH carries many
// messages of one link in one request, each with its own result, and
// EVENT_BATCH many events of one subscription in one frame, so the cost
// per frame is shared by many small messages.
package client

import "github.com/corralhq/corral/proto"

// Specification constants: client protocol versions.
const (
	MinVersion uint8 = 1
	MaxVersion uint8 = 5
)

// Specification constants: opcodes.
const (
	OpPing = proto.OpPing // body: proto.Ping; answered by PONG
	OpPong = proto.OpPong // body: the PING's proto.Ping, echoed

	// 0x0100–0x01FF: cluster events (OCF event API, seed 002); 0x0100
	// is never assigned
	OpSubscribe         uint16 = 0x0101 // request: Subscribe; reply: SubscribeReply; then EVENTs
	OpEvent             uint16 = 0x0102 // agent → client, one-shot: Event
	OpQueryMembership   uint16 = 0x0103 // request: empty; reply: Membership (event.Membership)
	OpQueryConnectivity uint16 = 0x0104 // request: empty; reply: Connectivity (event.Connectivity)
	OpCallbacks         uint16 = 0x0105 // version 3; request: Callbacks; reply: empty
	OpDone              uint16 = 0x0106 // version 3; client → agent, one-shot: Done
	OpEventBatch        uint16 = 0x0107 // version 5; agent → client, one-shot: EVENT bodies

	// 0x0200–0x02FF: group messaging (version 2); 0x0200 is never
	// assigned
	OpGroupJoin    uint16 = 0x0201 // request: GroupJoin; reply: GroupJoinReply
	OpGroupLeave   uint16 = 0x0202 // request: GroupLeave; reply: GroupSeq
	OpGroupSend    uint16 = 0x0203 // request: GroupSend; reply: GroupSendReply
	OpGroupMembers uint16 = 0x0204 // request: GroupName; reply: GroupMembers
	OpGroupList    uint16 = 0x0205 // request: empty; reply: GroupList
	OpGroupWindow  uint16 = 0x0206 // request: empty; reply: GroupWindow
	OpGroupAttach  uint16 = 0x0207 // request: GroupAttach; reply: GroupAttachReply
	// version 5; request: GroupSendBatch; reply: GroupSendBatchReply
	OpGroupSendBatch uint16 = 0x0208

	// 0x0300–0x03FF: data service (version 4); 0x0300 is never
	// assigned. Every request body starts with a DSTarget, every reply
	// body with a DSResult (DSRequest, DSReply).
	OpDSStatus uint16 = 0x0301 // does the location exist
	OpDSMkLoc  uint16 = 0x0302 // make the location
	OpDSList   uint16 = 0x0303 // the containers of a kind; reply: names
	OpDSOpen   uint16 = 0x0304 // open (or create) a container; reply: its network
	OpDSRemove uint16 = 0x0305 // remove a container
	OpDSLookup uint16 = 0x0306 // records matching a query; reply: records
	OpDSCount  uint16 = 0x0307 // how many records match; reply: count
	OpDSAdd    uint16 = 0x0308 // add a record; reply: its signature
	OpDSModify uint16 = 0x0309 // replace a record; reply: the new signature
	OpDSDelete uint16 = 0x030A // delete a record
	OpDSImport uint16 = 0x030B // add many records, signatures kept

	// 0x0400–0x04FF reserved: shared addresses
)

// ops is the client protocol's opcode table. It is unexported so no
// other package can change what every link checks frames against.
var ops = proto.NewOpSet(proto.ProtoClient, MinVersion, MaxVersion, map[uint16]proto.Op{
	OpPing: {Name: "PING", Since: 1},
	OpPong: {Name: "PONG", Since: 1},

	OpSubscribe:         {Name: "SUBSCRIBE", Since: 1},
	OpEvent:             {Name: "EVENT", Since: 1},
	OpQueryMembership:   {Name: "QUERY_MEMBERSHIP", Since: 1},
	OpQueryConnectivity: {Name: "QUERY_CONNECTIVITY", Since: 1},
	OpCallbacks:         {Name: "CALLBACKS", Since: 3},
	OpDone:              {Name: "DONE", Since: 3},
	OpEventBatch:        {Name: "EVENT_BATCH", Since: 5},

	OpGroupJoin:      {Name: "GROUP_JOIN", Since: 2},
	OpGroupLeave:     {Name: "GROUP_LEAVE", Since: 2},
	OpGroupSend:      {Name: "GROUP_SEND", Since: 2},
	OpGroupMembers:   {Name: "GROUP_MEMBERS", Since: 2},
	OpGroupList:      {Name: "GROUP_LIST", Since: 2},
	OpGroupWindow:    {Name: "GROUP_WINDOW", Since: 2},
	OpGroupAttach:    {Name: "GROUP_ATTACH", Since: 2},
	OpGroupSendBatch: {Name: "GROUP_SEND_BATCH", Since: 5},

	OpDSStatus: {Name: "DS_STATUS", Since: 4},
	OpDSMkLoc:  {Name: "DS_MKLOC", Since: 4},
	OpDSList:   {Name: "DS_LIST", Since: 4},
	OpDSOpen:   {Name: "DS_OPEN", Since: 4},
	OpDSRemove: {Name: "DS_REMOVE", Since: 4},
	OpDSLookup: {Name: "DS_LOOKUP", Since: 4},
	OpDSCount:  {Name: "DS_COUNT", Since: 4},
	OpDSAdd:    {Name: "DS_ADD", Since: 4},
	OpDSModify: {Name: "DS_MODIFY", Since: 4},
	OpDSDelete: {Name: "DS_DELETE", Since: 4},
	OpDSImport: {Name: "DS_IMPORT", Since: 4},
})

// Ops returns the client protocol's opcode table.
func Ops() *proto.OpSet { return ops }
