// Package client is the Go library an application uses to receive cluster
// events from the corral agent on its node. It speaks the client protocol
// (proto/client/SPEC.md) over the agent's unix socket, DATA_DIR/client.sock,
// and feeds what arrives into an events.Service, so the application uses
// exactly the OCF event API of seed 002 as package events implements it:
//
//	c, err := client.Dial(ctx, "/var/lib/corral", client.Options{Logger: log})
//	if err != nil { ... }
//	defer c.Close()
//	h, _ := c.Events().Register()                                     // oc_ev_register
//	h.SetCallback(events.PriorityMed, events.ClassMemb, onMembership) // oc_ev_set_callback
//	ch, _ := h.ActivateChan()                                         // oc_ev_activate
//	for range ch {
//		h.HandleEvent()                                           // oc_ev_handle_event
//	}
//
//	func onMembership(ev events.Event, ck events.Cookie) {
//		view := ev.Membership()
//		...
//		events.CallbackDone(ck)                                   // oc_ev_callback_done
//	}
//
// All of package events' rules hold: one event at a time node-wide (here:
// process-wide, per Service), by priority, exactly once per callback,
// completion by CallbackDone, the four activation styles.
//
// # Connection
//
// Dial connects and subscribes before it returns; a missing agent is an
// error then. Afterwards the client keeps itself connected: when the link
// drops or the agent restarts it reconnects with backoff and jitter
// (transport.Backoff) and resumes after the last sequence number it handed
// to the service. Close ends it.
//
// # Beyond the seed
//
// The seed's service is "only expected to deliver events locally" and says
// nothing of how events reach a process. corral decides:
//
//   - Exactly once across reconnects. Every cluster-wide event carries its
//     Seq (its position in the Raft log, the same on every node). On reconnection the
//     client asks the agent to resume after the last Seq it delivered; the
//     agent resends what it still holds, and anything at or below that Seq
//     is dropped here and refused by the service (events.ErrStaleSeq). So
//     each cluster-wide event reaches the service once and in order, however
//     often the link drops.
//   - Gaps are reported, not hidden. The agent holds a bounded history (the
//     last 4096 events, more while small). If the client was away so long
//     that events after its resume point are gone, the agent says so, the
//     client logs it and calls Options.OnGap. The view can then be read
//     with Membership.
//   - Local-only events (Seq 0, e.g. INTERFACE_FAILED, SUSPECT) reach only
//     clients connected when they happen; they are not resent.
//   - A client that reads too slowly is disconnected by the agent (GOODBYE
//     proto.CodeBehind) instead of holding the agent's memory or slowing
//     other clients; this client then reconnects and resumes. An
//     application that is slow to complete callbacks does not count: the
//     client keeps reading, and events wait in the process's own service.
//   - Subscription by class happens at Dial (Options.Classes): the agent
//     sends only those classes. Callbacks of the service select among them.
//   - Events are delivered to handles active when their dispatch starts
//     (seed §2.3). To miss nothing from the first event on, create the
//     service, register and activate handles, then Dial with
//     Options.Service.
//   - Resuming across the application's own restarts: save LastSeq, then
//     Dial with Options.Resume and Options.After.
//   - The on-demand lists of the seed's requirements are queries:
//     Membership (the consensus list of members with their relative age,
//     BornOn) and Connectivity (known interfaces with their health, known
//     nodes with their connection state).
//   - When the agent stops it publishes a local SHUTDOWN event (membership
//     class) before saying goodbye; the client delivers it, then keeps
//     trying to reconnect, so a restarted agent is picked up again.
//   - A link lost is reported through Options.OnDisconnect with a typed
//     *proto.Error (errors.Is(err, proto.ErrBehind), proto.ErrShutdown, …).
//   - Group sends are batched without a timer: a send leaves at once as
//     GROUP_SEND when the link is idle, and the sends started while the
//     link is still writing leave together as one GROUP_SEND_BATCH when the
//     agent speaks client protocol version 5; each keeps its own result and
//     its place in the order. Events the agent has ready together arrive
//     in EVENT_BATCH frames, delivered one by one as ever.
package client
