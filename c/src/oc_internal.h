/*
 * oc_internal.h - liboc_event's handle, its constants and the functions
 * oc_event.c and link.c share (not installed).
 */
#ifndef OC_INTERNAL_H
#define OC_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "ocf/oc_event.h"
#include "wire.h"

/* oc_ver_t.v_revision: corral's additions (set_callback_fn, event_seq,
 * group_join/leave). */
#define OC_REVISION 2

/* Client protocol numbers (proto/SPEC.md, proto/client/SPEC.md), named
 * here so that this file does not depend on wire.h's spelling. */
#define OC_SOP_HELLO 0x0001
#define OC_SOP_REJECT 0x0002
#define OC_SOP_GOODBYE 0x0003
#define OC_OP_PING 0x0001
#define OC_OP_PONG 0x0002
#define OC_OP_SUBSCRIBE 0x0101
#define OC_OP_EVENT 0x0102
#define OC_OP_CALLBACKS 0x0105
#define OC_OP_DONE 0x0106
#define OC_OP_GROUP_JOIN 0x0201
#define OC_OP_GROUP_LEAVE 0x0202
#define OC_OP_GROUP_ATTACH 0x0207
#define OC_F_CREATE 0x1
#define OC_F_DELETE 0x2
#define OC_F_REPLY 0x4
#define OC_F_ABORT 0x8
#define OC_HOP_LIMIT 16
#define OC_EVENT_AWAIT_DONE 0x1
#define OC_ALL_CLASSES 0xEu /* COMM | MEMB | GROUP */

/* proto.Code values (proto/SPEC.md section 4). */
#define OC_CODE_EOF 2
#define OC_CODE_SOCK 3
#define OC_CODE_STATE 8
#define OC_CODE_VERSION 34
#define OC_CODE_TIMEOUT 35
#define OC_CODE_SHUTDOWN 37
#define OC_CODE_NOMEMBER 43

/* Limits and timings. */
#define OC_MAX_FRAME ((size_t)16 << 20) /* the agent's payload limit */
#define OC_HANDSHAKE_MS 2000            /* connect + HELLO, ATTACH */
#define OC_SEND_TIMEOUT_MS 5000         /* a frame that cannot leave */
#define OC_GROUP_TIMEOUT_MS 30000       /* GROUP_JOIN / GROUP_LEAVE */
#define OC_MIN_BACKOFF_MS 50            /* as client.DefaultMinBackoff */
#define OC_MAX_BACKOFF_MS 2000
/* Events received and not yet delivered, at most: beyond, the library
 * stops reading and the agent's own back-pressure applies. */
#define OC_QUEUE_MAX 4096
#define OC_QUEUE_BYTES ((size_t)32 << 20)

/* A received event waiting for delivery. */
struct oc_qev {
	struct oc_qev *next;
	ocw_event ev;
	unsigned gen; /* link it came on: its DONE is owed there only */
	int skip;     /* a flagged duplicate: DONE it in order, deliver nothing */
};

/* A delivered event: the callback's cookie is &magic. */
struct oc_cookie {
	uint magic;
	struct oc_ev_s *h;
	uint64_t seq;
	uint32_t desc;
	int flagged;
	unsigned gen;
	void *data;
};

enum { OC_CALL_WAITING, OC_CALL_OK, OC_CALL_ABORT, OC_CALL_LOST };

/* A request waiting for its answer. */
struct oc_call {
	struct oc_call *next;
	uint64_t msgid;
	uint16_t op;
	int state;
	int code;      /* OC_CALL_ABORT: the Status code */
	int abandoned; /* its waiter gave up: free it when answered */
	uint8_t body[64];
	size_t n;
};

struct oc_ev_s {
	uint32_t magic;
	pid_t pid;       /* the process that registered; immutable */
	pid_t child_pid; /* a child that released its copy (unregister) */
	pthread_mutex_t mu; /* guards everything below */

	int refs;     /* registration, threads inside calls, undone cookies */
	int busy;     /* threads that may use the descriptors */
	int draining; /* threads inside drain: no kick needed */
	int closed;   /* unregistered */
	int torn;     /* descriptors and buffers released */

	int sock; /* the link to the agent; -1 between links */
	uint8_t version;
	uint64_t node;
	unsigned gen; /* grows with every link lost */
	uint64_t msgid;
	int watching; /* sock is watched in the epoll set */
	int stalled;  /* reading stopped while the queue is full */

	int active, style, sig;
	pid_t tid; /* SIGNAL: the activating thread */
	int epfd, evfd, tfd;
	timer_t timer;
	int have_timer;

	struct {
		oc_ev_callback_fn fn;
		int pri;
	} cb[4];

	/* Subscription: resume after last, the highest seq received. */
	uint64_t last;
	int resume;
	int subscribing, subscribed, sub_resume;
	uint64_t sub_msgid, sub_after;
	uint64_t gaps, gap_after, gap_floor;

	uint8_t *rbuf;
	size_t rlen, rcap;
	struct oc_qev *qh, *qt;
	size_t qn, qbytes;
	struct oc_cookie *cur; /* delivered, not done */
	unsigned long delivered;

	uint64_t member, token; /* the member session (GROUP_JOIN) */
	unsigned long sessions_lost;
	struct oc_call *calls;

	int64_t retry_at; /* monotonic ms of the next reconnect */
	int backoff_ms;
	int last_code;
	unsigned long lost;
};

/* Functions shared by oc_event.c and link.c. Hidden: the library exports
 * only oc_ev_* (liboc_event.map). Those taking h expect its mutex held,
 * except oci_lock and oci_dial from oc_ev_register. */
#define OC_HIDDEN __attribute__((visibility("hidden")))

/* oc_event.c: locking, waking the application, the local queue. */
OC_HIDDEN void oci_lock(oc_ev_t *h);
OC_HIDDEN void oci_unlock(oc_ev_t *h);
OC_HIDDEN void oci_close_fd(int *fd);
OC_HIDDEN void oci_kick(oc_ev_t *h);
OC_HIDDEN int oci_deliverable(const oc_ev_t *h);
OC_HIDDEN void oci_enqueue(oc_ev_t *h, ocw_event *ev, int skip);
OC_HIDDEN int oci_throttled(const oc_ev_t *h);

/* link.c: the link to the agent. */
OC_HIDDEN int64_t oci_now_ms(void);
OC_HIDDEN int oci_dial(oc_ev_t *h);
OC_HIDDEN int oci_reconnect(oc_ev_t *h);
OC_HIDDEN void oci_set_owner(oc_ev_t *h);
OC_HIDDEN void oci_pump(oc_ev_t *h);
OC_HIDDEN void oci_watch_sock(oc_ev_t *h, int on);
OC_HIDDEN void oci_send_done(oc_ev_t *h, uint64_t seq, uint32_t desc);
OC_HIDDEN void oci_send_callbacks(oc_ev_t *h);
OC_HIDDEN void oci_send_subscribe(oc_ev_t *h);
OC_HIDDEN struct oc_call *oci_call(oc_ev_t *h, uint16_t op, const uint8_t *body, size_t n, int64_t deadline, int release);

#endif
