// Package events is corral's OCF Cluster Event Notification service (seed
// 002, draft API 0.1): it delivers connectivity, membership and group
// messaging events to local callbacks, in the same order on every node,
// exactly once per callback, by priority, with three activation styles and
// explicit callback completion. It runs in-process and does no network I/O:
// the client library publishes into it what the agent sends an
// application. C programs use liboc_event.so (c/), which implements the same
// rules in C over the client protocol, without a Go runtime in their process.
// Across processes, the agent's node-wide dispatch (client protocol v3,
// package eventstream) orders the callbacks of every process on the node.
//
// # Producer and consumer
//
// The producer owns a Service and calls Publish for each event, cluster-wide
// events in Raft log order with their log position as Event.Seq, local-only events
// (Seq 0) whenever they happen. Publish never waits for consumers.
//
// A consumer follows the seed's steps:
//
//	h, _ := svc.Register()                                  // oc_ev_register
//	h.SetCallback(events.PriorityMed, events.ClassMemb, fn) // oc_ev_set_callback
//	ch, _ := h.ActivateChan()                               // oc_ev_activate
//	for range ch {
//		h.HandleEvent()                                     // oc_ev_handle_event
//	}
//
//	func fn(ev events.Event, c events.Cookie) {
//		view := ev.Membership()
//		...
//		events.CallbackDone(c)                              // oc_ev_callback_done
//	}
//
// and ends with h.Unregister (oc_ev_unregister), which is safe inside a
// callback. Activation fails with ErrNoCallback if no callback is set.
//
// # Ordering rules
//
//  1. One event at a time, node-wide. Events are delivered in publish order.
//     An event is complete when every callback it was delivered to has
//     completed; only then is the next event delivered to anyone (seed §2.3:
//     "subsequent events will only be delivered after callback completion
//     for the previous event").
//  2. Completion is CallbackDone, not the return of the callback. A callback
//     may hand the work to another goroutine and return; the event stays
//     outstanding, holding back everything after it, until CallbackDone.
//     A callback that returns without ever calling it stalls the node's
//     events until its handle is unregistered.
//  3. Priority spans handles: "with respect to the rest of the locally
//     registered clients" (§3.2). The callbacks of an event run in bands of
//     equal Priority, closest to zero first; a band starts when the one
//     before has completed. Callbacks of one band may run concurrently, each
//     in its own handle's HandleEvent, in no defined order. A handle has at
//     most one callback per class, hence at most one per event.
//  4. Exactly once. Each callback receives each event at most once; it
//     receives every event of its class whose dispatch starts while the
//     handle is active with that callback set. A handle activated (or a class
//     enabled) while an event is in progress starts with the next one, so it
//     sees a contiguous run of the node's events of that class. Publish drops
//     a cluster-wide Seq it has already seen (ErrStaleSeq).
//  5. Since every node applies the same log, every node runs the same events
//     in the same order; Seq lets an application check that.
//
// # Activation styles
//
// Nothing is delivered before activation. After it, a callback is "pending"
// when its band is reached; the style says how the user learns of it, and
// the callback runs in whichever goroutine calls HandleEvent:
//
//   - ActivateNoReturn: HandleEvent blocks, running callbacks, until
//     Unregister (then it returns nil).
//   - ActivateFD: an *os.File readable exactly while a callback is pending,
//     for poll/select loops; HandleEvent runs what is pending and returns.
//   - ActivateSignal: a signal raised to the own process when a callback
//     becomes pending.
//   - ActivateChan (corral): a channel that receives when one becomes
//     pending, for select loops.
//
// # Unregister
//
// After Unregister returns, no callback of the handle starts. A callback of
// the handle that is running (for example the one calling Unregister) is not
// waited for; when it returns, its event is completed for the other handles
// whether or not it called CallbackDone (§3.1: "cleanup after callback
// completion"). Its cookie may still be passed to CallbackDone, harmlessly.
//
// # Concurrency
//
// All state of a Service and its handles is guarded by one mutex, never held
// while a callback runs, so callbacks may call any method (Publish,
// SetCallback, CallbackDone, Unregister, Register). There is no background
// goroutine.
//
// # Beyond the seed
//
// The 0.1 draft leaves much open; corral decides as follows (Revision 1).
//
//   - Event.Seq, the cluster-wide sequence number (0 = local-only event).
//   - The seed names only membership events (NEWVIEW, SUSPECT, RECOVERED,
//     SHUTDOWN). EVICTED (new membership without the local node) is
//     appended after them; the connectivity (CS) and group (GS) events are
//     named after the seed's prose lists. Values follow the seed's
//     OC_EV_SET_CLASS layout.
//   - Typed data per class (Membership, Connectivity, Group) instead of a
//     (size, void*) pair; the C layer marshals it.
//   - Priority is 0..255 with the seed's bands HIGH, MED, LOW at 64, 128,
//     192; equal priorities form a band (rule 3).
//   - The channel activation style; the fd style's file is a socket, stays
//     readable after Unregister and is closed by its owner, the caller.
//   - SetCallback(nil) cancels a delivery of the current event not yet run.
//   - Errors (sentinels in errors.go) instead of OC_FAILURE, also from
//     CallbackDone; Service.Close shuts the service down.
//   - The seed's spelling slips (OC_EV_MS_CLASS for OC_EV_MEMB_CLASS,
//     "unit" for uint, OC_EV_EVENT_SHIFT naming a width) are read as
//     intended.
package events
