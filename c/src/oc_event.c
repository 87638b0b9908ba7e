/*
 * oc_event.c - liboc_event.so: the OCF Cluster Event Notification API over
 * corral's client protocol (proto/client/SPEC.md), spoken to the agent on
 * this node over its unix socket. Frame and body codecs are in wire.c.
 *
 * No thread is started and no signal handler installed: all work happens
 * in the caller's threads, in oc_ev_handle_event (and in the blocking
 * calls oc_ev_register, oc_ev_group_join and oc_ev_group_leave).
 *
 * Every handle has one mutex guarding all its state. It is never held
 * while a callback runs, nor while a thread sleeps in poll for the agent.
 * A handle stays allocated while a thread is inside one of its calls or a
 * delivered event is not done (refs), so oc_ev_unregister is safe from a
 * callback and from another thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ocf/oc_event.h"
#include "wire.h"
#include "oc_internal.h"

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

#define OC_EXPORT __attribute__((visibility("default")))

#define H_MAGIC 0x6f636576u /* "ocev" */
#define C_MAGIC 0x636f6f6bu /* "cook" */

static void link_lost(oc_ev_t *h, int code);
static void pump(oc_ev_t *h);
static int reconnect(oc_ev_t *h);

/* ---------- time ---------- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int left_ms(int64_t deadline)
{
	int64_t d = deadline - now_ms();
	if (d < 0)
		return 0;
	return d > 1000000 ? 1000000 : (int)d;
}

/* ---------- small helpers ---------- */

static uint64_t next_msgid(oc_ev_t *h)
{
	return ++h->msgid;
}

static int valid(const oc_ev_t *h)
{
	return h != NULL && h->magic == H_MAGIC;
}

/* The handle belongs to this process: a forked child's copy is unusable
 * (its mutex may have been held by a thread that does not exist in it). */
static int mine(const oc_ev_t *h)
{
	return valid(h) && h->pid == getpid();
}

static void lock(oc_ev_t *h)
{
	pthread_mutex_lock(&h->mu);
}

static void unlock(oc_ev_t *h)
{
	pthread_mutex_unlock(&h->mu);
}

static void free_queue(oc_ev_t *h)
{
	struct oc_qev *q = h->qh;
	while (q != NULL) {
		struct oc_qev *n = q->next;
		free(q->ev.data);
		free(q);
		q = n;
	}
	h->qh = h->qt = NULL;
	h->qn = 0;
	h->qbytes = 0;
}

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

/* Releases the handle's descriptors and buffers once it is unregistered
 * and no thread uses them. */
static void maybe_teardown(oc_ev_t *h)
{
	if (!h->closed || h->busy > 0 || h->torn)
		return;
	h->torn = 1;
	close_fd(&h->sock);
	close_fd(&h->epfd);
	close_fd(&h->evfd);
	close_fd(&h->tfd);
	if (h->have_timer) {
		timer_delete(h->timer);
		h->have_timer = 0;
	}
	free(h->rbuf);
	h->rbuf = NULL;
	h->rlen = h->rcap = 0;
	free_queue(h);
	while (h->calls != NULL) {
		struct oc_call *c = h->calls;
		h->calls = c->next;
		free(c);
	}
}

/* Drops a reference and unlocks; frees the handle with the last one. */
static void unref_unlock(oc_ev_t *h)
{
	int last = --h->refs == 0;
	if (last)
		maybe_teardown(h);
	unlock(h);
	if (last) {
		h->magic = 0;
		pthread_mutex_destroy(&h->mu);
		free(h);
	}
}

/* ---------- waking the application ---------- */

/* Something became deliverable outside oc_ev_handle_event: make the fd
 * readable (GET_FD, NORETURN) or send the signal to the activating thread
 * (SIGNAL), since socket data will not announce it. */
static void kick(oc_ev_t *h)
{
	if (!h->active || h->closed || h->draining > 0)
		return;
	if (h->style == OC_EV_AS_SIGNAL) {
		tgkill(h->pid, h->tid, h->sig);
	} else if (h->evfd >= 0) {
		uint64_t one = 1;
		ssize_t r = write(h->evfd, &one, sizeof one);
		(void)r;
	}
}

static void unkick(oc_ev_t *h)
{
	if (h->evfd >= 0) {
		uint64_t v;
		ssize_t r = read(h->evfd, &v, sizeof v);
		(void)r;
	}
}

static int deliverable(const oc_ev_t *h)
{
	return !h->closed && h->cur == NULL && h->qh != NULL;
}

/* Arms the reconnect timer for h->retry_at (GET_FD/NORETURN: the timerfd
 * in the epoll set; SIGNAL: a POSIX timer signalling the activating
 * thread). */
static void arm_retry(oc_ev_t *h)
{
	int64_t at = h->retry_at;
	struct itimerspec its;
	memset(&its, 0, sizeof its);
	its.it_value.tv_sec = (time_t)(at / 1000);
	its.it_value.tv_nsec = (long)(at % 1000) * 1000000;
	if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
		its.it_value.tv_nsec = 1;
	if (h->tfd >= 0)
		timerfd_settime(h->tfd, TFD_TIMER_ABSTIME, &its, NULL);
	else if (h->have_timer)
		timer_settime(h->timer, TIMER_ABSTIME, &its, NULL);
}

/* ---------- sending ---------- */

/* Writes all of b on the socket, waiting (bounded) when its buffer is
 * full. MSG_NOSIGNAL: a dead agent must not raise SIGPIPE in the
 * application. */
static int write_all(int fd, const uint8_t *b, size_t n)
{
	int64_t deadline = now_ms() + OC_SEND_TIMEOUT_MS;
	while (n > 0) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			b += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd p = {fd, POLLOUT, 0};
			int ms = left_ms(deadline);
			if (ms == 0) {
				errno = ETIMEDOUT;
				return -1;
			}
			if (poll(&p, 1, ms) < 0 && errno != EINTR)
				return -1;
			continue;
		}
		return -1;
	}
	return 0;
}

/* Sends one client frame on the current link; on failure the link is
 * lost. */
static int send_frame(oc_ev_t *h, uint16_t op, uint16_t flags, uint64_t msgid, const uint8_t *body, size_t n)
{
	uint8_t stack[OCW_HEADER_SIZE + 1024];
	ocw_header hd;
	size_t len;
	if (h->sock < 0) {
		errno = ENOTCONN;
		return -1;
	}
	if (n > sizeof stack - OCW_HEADER_SIZE) {
		errno = EMSGSIZE;
		return -1;
	}
	memset(&hd, 0, sizeof hd);
	hd.proto = OCW_PROTO_CLIENT;
	hd.version = h->version;
	hd.opcode = op;
	hd.flags = flags;
	hd.hops = OC_HOP_LIMIT;
	hd.msgid = msgid;
	hd.body_len = (uint32_t)n;
	len = ocw_put_frame(stack, sizeof stack, &hd, body, n);
	if (len == 0) {
		errno = EMSGSIZE;
		return -1;
	}
	if (write_all(h->sock, stack, len) < 0) {
		int e = errno;
		link_lost(h, OC_CODE_SOCK);
		errno = e;
		return -1;
	}
	return 0;
}

static void send_done(oc_ev_t *h, uint64_t seq, uint32_t desc)
{
	uint8_t b[32];
	size_t n = ocw_put_done(b, sizeof b, seq, desc);
	if (n > 0)
		send_frame(h, OC_OP_DONE, OC_F_CREATE | OC_F_DELETE, h->sub_msgid, b, n);
}

/* CALLBACKS (v3): the classes this handle has a callback for, with their
 * priorities, so that the agent orders it among the node's processes. */
static void send_callbacks(oc_ev_t *h)
{
	uint8_t b[16], prio[4] = {0, 0, 0, 0};
	uint32_t mask = 0;
	size_t n;
	int c;
	if (h->version < 3 || h->sock < 0 || !h->active)
		return;
	/* An event of an earlier link still not done: nothing more can be
	 * delivered until it is, so this link would only hold the node's
	 * dispatch up until its deadline. Take part again once it is done. */
	int stuck = h->cur != NULL && h->cur->gen != h->gen;
	for (c = 1; c <= 3 && !stuck; c++) {
		if (h->cb[c].fn != NULL) {
			mask |= 1u << c;
			prio[c] = (uint8_t)h->cb[c].pri;
		}
	}
	n = ocw_put_callbacks(b, sizeof b, mask, prio);
	if (n > 0)
		send_frame(h, OC_OP_CALLBACKS, OC_F_CREATE | OC_F_DELETE, next_msgid(h), b, n);
}

static void send_subscribe(oc_ev_t *h)
{
	uint8_t b[32];
	size_t n = ocw_put_subscribe(b, sizeof b, OC_ALL_CLASSES, h->resume, h->resume ? h->last : 0);
	if (n == 0)
		return;
	h->sub_msgid = next_msgid(h);
	h->sub_after = h->resume ? h->last : 0;
	h->sub_resume = h->resume;
	h->subscribing = 1;
	send_frame(h, OC_OP_SUBSCRIBE, OC_F_CREATE | OC_F_DELETE, h->sub_msgid, b, n);
}

/* ---------- receiving ---------- */

static int read_some_raw(oc_ev_t *h);

/* Reads what the socket has without blocking. Returns 1 if bytes came,
 * 0 if none are there, -1 if the link ended (then it is lost). */
static int read_some(oc_ev_t *h)
{
	int r = read_some_raw(h);
	if (r < 0)
		link_lost(h, errno == 0 ? OC_CODE_EOF : OC_CODE_SOCK);
	return r;
}

/* The first complete frame in rbuf, checked (header, payload). Returns 1
 * with *hd, *body, *n and *total set, 0 if more bytes are needed, -1 on a
 * bad frame (e holds why). */
static int next_frame(oc_ev_t *h, ocw_header *hd, const uint8_t **body, size_t *n, size_t *total, ocw_err *e)
{
	size_t need;
	if (h->rlen < OCW_HEADER_SIZE)
		return 0;
	if (ocw_parse_header(h->rbuf, hd, e) < 0)
		return -1;
	need = OCW_HEADER_SIZE + (size_t)hd->ext_len + (size_t)hd->body_len;
	if (h->rlen < need) {
		if (h->rcap < need) {
			uint8_t *nb = realloc(h->rbuf, need);
			if (nb == NULL)
				return 0;
			h->rbuf = nb;
			h->rcap = need;
		}
		return 0;
	}
	if (ocw_check_payload(hd, h->rbuf + OCW_HEADER_SIZE, need - OCW_HEADER_SIZE, e) < 0)
		return -1;
	*body = h->rbuf + OCW_HEADER_SIZE + hd->ext_len;
	*n = hd->body_len;
	*total = need;
	return 1;
}

static void consume(oc_ev_t *h, size_t total)
{
	memmove(h->rbuf, h->rbuf + total, h->rlen - total);
	h->rlen -= total;
}

static struct oc_call *find_call(oc_ev_t *h, uint64_t msgid)
{
	struct oc_call *c;
	for (c = h->calls; c != NULL; c = c->next)
		if (c->msgid == msgid)
			return c;
	return NULL;
}

static void unlink_call(oc_ev_t *h, struct oc_call *c)
{
	struct oc_call **p;
	for (p = &h->calls; *p != NULL; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			return;
		}
	}
}

static void enqueue(oc_ev_t *h, ocw_event *ev, int skip)
{
	struct oc_qev *q = calloc(1, sizeof *q);
	if (q == NULL) {
		free(ev->data);
		return;
	}
	q->ev = *ev;
	q->gen = h->gen;
	q->skip = skip;
	if (h->qt != NULL)
		h->qt->next = q;
	else
		h->qh = q;
	h->qt = q;
	h->qn++;
	h->qbytes += ev->size + sizeof *q;
}

static void on_event(oc_ev_t *h, const uint8_t *body, size_t n)
{
	ocw_event ev;
	ocw_err e;
	memset(&ev, 0, sizeof ev);
	if (ocw_parse_event(body, n, h->version, &ev, &e) < 0) {
		link_lost(h, e.code);
		return;
	}
	if (ev.seq != 0 && ev.seq <= h->last) {
		/* Delivered (or queued) already: drop it, but a flagged copy
		 * still owes the agent its DONE, in order. */
		free(ev.data);
		ev.data = NULL;
		ev.size = 0;
		if (ev.flags & OC_EVENT_AWAIT_DONE)
			enqueue(h, &ev, 1);
		return;
	}
	if (ev.seq != 0)
		h->last = ev.seq;
	enqueue(h, &ev, 0);
}

/* A call's reply (or failure) arrived. */
static void on_reply(oc_ev_t *h, const ocw_header *hd, const uint8_t *body, size_t n)
{
	struct oc_call *c = find_call(h, hd->msgid);
	ocw_err e;
	int abort_ = (hd->flags & OC_F_ABORT) != 0;
	if (!abort_ && hd->opcode == OC_OP_GROUP_JOIN) {
		uint64_t seq, member, token;
		uint32_t w, wb;
		if (ocw_parse_group_join_reply(body, n, &seq, &member, &token, &w, &wb, &e) == 0) {
			h->member = member;
			h->token = token;
		}
	}
	if (c == NULL)
		return; /* CALLBACKS replies, and nothing asked */
	unlink_call(h, c);
	if (c->abandoned) {
		free(c);
		return;
	}
	c->state = abort_ ? OC_CALL_ABORT : OC_CALL_OK;
	c->code = 0;
	if (abort_) {
		char text[8];
		if (ocw_parse_status(body, n, &c->code, text, sizeof text, &e) < 0)
			c->code = e.code;
	} else if (n <= sizeof c->body) {
		memcpy(c->body, body, n);
		c->n = n;
	}
}

static void on_subscribe_reply(oc_ev_t *h, const ocw_header *hd, const uint8_t *body, size_t n)
{
	uint64_t latest = 0, floor_ = 0;
	int gap = 0;
	ocw_err e;
	if (!h->subscribing || hd->msgid != h->sub_msgid) {
		link_lost(h, OC_CODE_STATE);
		return;
	}
	h->subscribing = 0;
	if (hd->flags & OC_F_ABORT) {
		int code = OC_CODE_STATE;
		char text[8];
		ocw_parse_status(body, n, &code, text, sizeof text, &e);
		link_lost(h, code);
		return;
	}
	if (ocw_parse_subscribe_reply(body, n, &latest, &floor_, &gap, &e) < 0) {
		link_lost(h, e.code);
		return;
	}
	if (!h->sub_resume && latest > h->last)
		h->last = latest; /* it asked for the events after latest */
	h->resume = 1;
	h->subscribed = 1;
	if (gap) {
		h->gaps++;
		h->gap_after = h->sub_after;
		h->gap_floor = floor_;
	}
}

/* Handles one frame from the agent. */
static void on_frame(oc_ev_t *h, const ocw_header *hd, const uint8_t *body, size_t n)
{
	ocw_err e;
	if (hd->proto == OCW_PROTO_SESSION) {
		int code = OC_CODE_STATE;
		if (hd->opcode == OC_SOP_GOODBYE) {
			char text[8];
			if (ocw_parse_status(body, n, &code, text, sizeof text, &e) < 0)
				code = e.code;
		}
		link_lost(h, code);
		return;
	}
	if (ocw_check_client_op(hd, h->version, &e) < 0) {
		link_lost(h, e.code);
		return;
	}
	if (hd->flags & OC_F_REPLY) {
		if (hd->opcode == OC_OP_SUBSCRIBE)
			on_subscribe_reply(h, hd, body, n);
		else if (hd->opcode != OC_OP_PONG)
			on_reply(h, hd, body, n);
		return;
	}
	switch (hd->opcode) {
	case OC_OP_PING:
		/* The agent's heartbeat: it ends a link it hears nothing on. */
		send_frame(h, OC_OP_PONG, OC_F_CREATE | OC_F_DELETE | OC_F_REPLY, hd->msgid, body, n);
		return;
	case OC_OP_EVENT:
		if (!h->subscribed || hd->msgid != h->sub_msgid) {
			link_lost(h, OC_CODE_STATE);
			return;
		}
		on_event(h, body, n);
		return;
	}
	link_lost(h, OC_CODE_STATE);
}

static int throttled(const oc_ev_t *h)
{
	return h->qn >= OC_QUEUE_MAX || h->qbytes >= OC_QUEUE_BYTES;
}

/* Stops or restarts watching the socket in the epoll set while the
 * queue is full, so that the fd does not stay readable for data the
 * library will not read yet. */
static void watch_sock(oc_ev_t *h, int on)
{
	struct epoll_event ev;
	if (h->epfd < 0 || h->sock < 0 || h->watching == on)
		return;
	memset(&ev, 0, sizeof ev);
	ev.events = on ? EPOLLIN : 0;
	ev.data.fd = h->sock;
	epoll_ctl(h->epfd, EPOLL_CTL_MOD, h->sock, &ev);
	h->watching = on;
}

/* Reads and handles everything the agent has sent, without blocking,
 * until the socket is drained or the queue is full. */
static void pump(oc_ev_t *h)
{
	for (;;) {
		ocw_header hd;
		const uint8_t *body;
		size_t n, total;
		ocw_err e;
		int r = 0;
		while (h->sock >= 0 && (r = next_frame(h, &hd, &body, &n, &total, &e)) == 1) {
			unsigned gen = h->gen;
			on_frame(h, &hd, body, n);
			if (h->gen != gen)
				break; /* the link was lost: rbuf is cleared */
			consume(h, total);
		}
		if (h->sock < 0)
			return;
		if (r < 0) {
			link_lost(h, e.code);
			return;
		}
		if (throttled(h)) {
			watch_sock(h, 0);
			h->stalled = 1;
			return;
		}
		watch_sock(h, 1);
		h->stalled = 0;
		if (read_some(h) <= 0)
			return;
	}
}

/* ---------- links ---------- */

static void set_owner(oc_ev_t *h)
{
	if (!h->active || h->sock < 0)
		return;
	if (h->style == OC_EV_AS_SIGNAL) {
		struct f_owner_ex o;
		o.type = F_OWNER_TID;
		o.pid = h->tid;
		fcntl(h->sock, F_SETOWN_EX, &o);
		fcntl(h->sock, F_SETSIG, h->sig);
		fcntl(h->sock, F_SETFL, fcntl(h->sock, F_GETFL) | O_ASYNC | O_NONBLOCK);
	} else if (h->epfd >= 0) {
		struct epoll_event ev;
		memset(&ev, 0, sizeof ev);
		ev.events = EPOLLIN;
		ev.data.fd = h->sock;
		epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->sock, &ev);
		h->watching = 1;
	}
}

/* The link ended: forget it, keep the queue (its events are delivered;
 * their DONEs belonged to the dead link) and schedule a reconnect. */
static void link_lost(oc_ev_t *h, int code)
{
	struct oc_call *c;
	if (h->sock < 0)
		return;
	close_fd(&h->sock);
	h->watching = 0;
	h->stalled = 0;
	h->gen++;
	h->rlen = 0;
	h->subscribed = 0;
	h->subscribing = 0;
	h->last_code = code;
	h->lost++;
	for (c = h->calls; c != NULL; c = c->next)
		if (c->state == OC_CALL_WAITING)
			c->state = OC_CALL_LOST;
	h->backoff_ms = 0;
	h->retry_at = now_ms();
	if (h->active && !h->closed) {
		arm_retry(h);
		kick(h);
	}
}

static int sock_path(struct sockaddr_un *sa, socklen_t *len)
{
	const char *dir = getenv("CORRAL_DATA_DIR");
	int n;
	if (dir == NULL || dir[0] == '\0')
		dir = "/var/lib/corral";
	memset(sa, 0, sizeof *sa);
	sa->sun_family = AF_UNIX;
	n = snprintf(sa->sun_path, sizeof sa->sun_path, "%s/client.sock", dir);
	if (n < 0 || (size_t)n >= sizeof sa->sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n + 1);
	return 0;
}

static int errno_of_code(int code)
{
	switch (code) {
	case OC_CODE_VERSION:
		return EPROTONOSUPPORT;
	case OC_CODE_TIMEOUT:
		return ETIMEDOUT;
	case OC_CODE_SHUTDOWN:
		return ECONNREFUSED;
	default:
		return EPROTO;
	}
}

/* Connects and says HELLO, waiting (bounded) for the agent's answer. On
 * success h->sock is the new link. Returns 0, or -1 with errno. */
static int dial(oc_ev_t *h)
{
	struct sockaddr_un sa;
	socklen_t salen;
	uint8_t hello[512];
	size_t n;
	int fd, r;
	int64_t deadline = now_ms() + OC_HANDSHAKE_MS;
	if (sock_path(&sa, &salen) < 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	do
		r = connect(fd, (struct sockaddr *)&sa, salen);
	while (r < 0 && errno == EINTR);
	if (r < 0 && (errno == EAGAIN || errno == EINPROGRESS)) {
		struct pollfd p = {fd, POLLOUT, 0};
		int err = 0;
		socklen_t el = sizeof err;
		while ((r = poll(&p, 1, left_ms(deadline))) < 0 && errno == EINTR)
			;
		if (r == 0)
			err = ETIMEDOUT;
		else if (r > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			err = errno;
		if (err != 0) {
			close(fd);
			errno = err;
			return -1;
		}
	} else if (r < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	n = ocw_put_hello(hello, sizeof hello, next_msgid(h), OCW_CLIENT_MIN_VERSION, OCW_CLIENT_MAX_VERSION);
	if (n == 0 || write_all(fd, hello, n) < 0) {
		int e = n == 0 ? EPROTO : errno;
		close(fd);
		errno = e;
		return -1;
	}
	h->sock = fd;
	h->rlen = 0;
	for (;;) {
		ocw_header hd;
		const uint8_t *body;
		size_t bn, total;
		ocw_err e;
		struct pollfd p;
		r = next_frame(h, &hd, &body, &bn, &total, &e);
		if (r < 0) {
			close_fd(&h->sock);
			errno = EPROTO;
			return -1;
		}
		if (r == 1) {
			uint8_t v = 0;
			uint64_t node = 0;
			if (hd.proto != OCW_PROTO_SESSION || ocw_parse_hello_answer(&hd, body, bn, &v, &node, &e) < 0) {
				close_fd(&h->sock);
				errno = hd.proto == OCW_PROTO_SESSION ? errno_of_code(e.code) : EPROTO;
				return -1;
			}
			consume(h, total);
			h->version = v;
			h->node = node;
			return 0;
		}
		r = read_some_raw(h);
		if (r < 0) {
			int err = errno;
			close_fd(&h->sock);
			errno = err ? err : ECONNRESET;
			return -1;
		}
		if (r > 0)
			continue;
		p.fd = fd;
		p.events = POLLIN;
		p.revents = 0;
		if (left_ms(deadline) == 0) {
			close_fd(&h->sock);
			errno = ETIMEDOUT;
			return -1;
		}
		if (poll(&p, 1, left_ms(deadline)) < 0 && errno != EINTR) {
			int err = errno;
			close_fd(&h->sock);
			errno = err;
			return -1;
		}
	}
}

/* Reads without blocking: 1 bytes came, 0 none, -1 the connection
 * ended (errno 0 on EOF). */
static int read_some_raw(oc_ev_t *h)
{
	ssize_t r;
	if (h->rcap - h->rlen < 4096) {
		size_t cap = h->rcap ? h->rcap * 2 : 65536;
		uint8_t *nb = realloc(h->rbuf, cap);
		if (nb == NULL) {
			errno = ENOMEM;
			return -1;
		}
		h->rbuf = nb;
		h->rcap = cap;
	}
	do
		r = recv(h->sock, h->rbuf + h->rlen, h->rcap - h->rlen, MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	if (r > 0) {
		h->rlen += (size_t)r;
		return 1;
	}
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	if (r == 0)
		errno = 0;
	return -1;
}

/* Waits, holding the lock or not, until call c is answered or its link is
 * lost, or the deadline passes. Returns with the lock held. */
static void wait_call(oc_ev_t *h, struct oc_call *c, int64_t deadline, int release)
{
	for (;;) {
		struct pollfd p;
		int fd;
		pump(h);
		if (c->state != OC_CALL_WAITING || h->closed)
			return;
		if (deliverable(h))
			kick(h); /* events this pump queued are the app's to take */
		if (left_ms(deadline) == 0)
			return;
		fd = h->sock;
		p.fd = fd;
		p.events = POLLIN;
		p.revents = 0;
		if (release) {
			/* Another thread may read the reply meanwhile: poll
			 * briefly and look again. */
			unlock(h);
			poll(&p, 1, left_ms(deadline) < 20 ? left_ms(deadline) : 20);
			lock(h);
		} else {
			poll(&p, 1, left_ms(deadline));
		}
	}
}

/* Sends a request and waits for its answer. Returns the call (owned by
 * the caller, to free) or NULL with errno. */
static struct oc_call *call(oc_ev_t *h, uint16_t op, const uint8_t *body, size_t n, int64_t deadline, int release)
{
	struct oc_call *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->msgid = next_msgid(h);
	c->op = op;
	c->state = OC_CALL_WAITING;
	c->next = h->calls;
	h->calls = c;
	if (send_frame(h, op, OC_F_CREATE | OC_F_DELETE, c->msgid, body, n) < 0) {
		int e = errno;
		unlink_call(h, c);
		free(c);
		errno = e;
		return NULL;
	}
	wait_call(h, c, deadline, release);
	if (c->state == OC_CALL_WAITING) {
		/* Given up: a late answer is still taken and then freed. */
		c->abandoned = 1;
		errno = h->closed ? EBADF : ETIMEDOUT;
		return NULL;
	}
	unlink_call(h, c);
	return c;
}

/* After a new link: re-adopt the member session, then CALLBACKS and
 * SUBSCRIBE (resuming after the last seq received). */
static void start_link(oc_ev_t *h)
{
	if (h->member != 0 && h->token != 0) {
		uint8_t b[32];
		size_t n = ocw_put_group_attach(b, sizeof b, h->member, h->token);
		struct oc_call *c = call(h, OC_OP_GROUP_ATTACH, b, n, now_ms() + OC_HANDSHAKE_MS, 0);
		if (c == NULL) {
			if (h->sock >= 0)
				link_lost(h, OC_CODE_TIMEOUT);
			return;
		}
		if (c->state == OC_CALL_ABORT && c->code == OC_CODE_NOMEMBER) {
			/* The agent no longer has the session (it restarted):
			 * the memberships are gone; the application may join
			 * again. */
			h->member = h->token = 0;
			h->sessions_lost++;
		}
		free(c);
		if (h->sock < 0)
			return;
	}
	if (!h->active)
		return;
	set_owner(h);
	send_callbacks(h);
	send_subscribe(h);
}

/* Tries to open a new link now. Returns 0 or -1 (then the next try is
 * scheduled with backoff). */
static int reconnect(oc_ev_t *h)
{
	if (dial(h) == 0) {
		h->backoff_ms = 0;
		start_link(h);
		if (h->sock >= 0)
			return 0;
	}
	h->backoff_ms = h->backoff_ms == 0 ? OC_MIN_BACKOFF_MS : h->backoff_ms * 2;
	if (h->backoff_ms > OC_MAX_BACKOFF_MS)
		h->backoff_ms = OC_MAX_BACKOFF_MS;
	h->retry_at = now_ms() + h->backoff_ms;
	arm_retry(h);
	return -1;
}

/* ---------- delivery ---------- */

static void release_event(oc_ev_t *h, struct oc_qev *q)
{
	h->qbytes -= q->ev.size + sizeof *q;
	h->qn--;
	free(q->ev.data);
	free(q);
}

/* Delivers queued events one at a time while each is done before the
 * next. Called with the lock held; unlocks around each callback. */
static void deliver(oc_ev_t *h)
{
	while (deliverable(h)) {
		struct oc_qev *q = h->qh;
		unsigned cls = OC_EV_GET_CLASS(q->ev.desc);
		oc_ev_callback_fn fn = NULL;
		int flagged = (q->ev.flags & OC_EVENT_AWAIT_DONE) && q->gen == h->gen && h->sock >= 0;
		struct oc_cookie *c;
		h->qh = q->next;
		if (h->qh == NULL)
			h->qt = NULL;
		if (!q->skip && cls >= 1 && cls <= 3)
			fn = h->cb[cls].fn;
		if (fn == NULL) {
			if (flagged)
				send_done(h, q->ev.seq, q->ev.desc);
			release_event(h, q);
			continue;
		}
		c = calloc(1, sizeof *c);
		if (c == NULL) {
			/* Put it back; the next handle_event tries again. */
			q->next = h->qh;
			h->qh = q;
			if (h->qt == NULL)
				h->qt = q;
			return;
		}
		c->magic = C_MAGIC;
		c->h = h;
		c->seq = q->ev.seq;
		c->desc = q->ev.desc;
		c->flagged = flagged;
		c->gen = q->gen;
		c->data = q->ev.data;
		h->qbytes -= q->ev.size + sizeof *q;
		h->qn--;
		h->cur = c;
		h->refs++;
		h->delivered++;
		unlock(h);
		fn(c->desc, &c->magic, q->ev.size, c->data);
		free(q);
		lock(h);
	}
}

/* Everything oc_ev_handle_event does once: timers, socket, reconnect,
 * delivery, until nothing more can be done now. Lock held. */
static void drain(oc_ev_t *h)
{
	h->draining++;
	if (h->tfd >= 0) {
		uint64_t v;
		ssize_t r = read(h->tfd, &v, sizeof v);
		(void)r;
	}
	unkick(h);
	for (;;) {
		unsigned long before = h->delivered;
		unsigned gen = h->gen;
		if (h->closed)
			break;
		if (h->sock < 0 && now_ms() >= h->retry_at)
			reconnect(h);
		pump(h);
		deliver(h);
		if (h->closed || (h->delivered == before && h->gen == gen && (h->sock >= 0 || now_ms() < h->retry_at)))
			break;
	}
	if (!throttled(h))
		watch_sock(h, 1);
	if (!deliverable(h))
		unkick(h);
	h->draining--;
}

/* ---------- the API ---------- */

OC_EXPORT oc_ev_t *oc_ev_register(void)
{
	oc_ev_t *h = calloc(1, sizeof *h);
	int e;
	if (h == NULL)
		return NULL;
	h->magic = H_MAGIC;
	h->pid = getpid();
	h->refs = 1;
	h->sock = h->epfd = h->evfd = h->tfd = -1;
	if (pthread_mutex_init(&h->mu, NULL) != 0) {
		free(h);
		errno = ENOMEM;
		return NULL;
	}
	if (dial(h) < 0) {
		e = errno;
		free(h->rbuf);
		pthread_mutex_destroy(&h->mu);
		free(h);
		errno = e;
		return NULL;
	}
	return h;
}

OC_EXPORT int oc_ev_unregister(oc_ev_t *h)
{
	if (!valid(h))
		return OC_FAILURE;
	if (h->pid != getpid()) {
		/* A forked child's copy: close the child's descriptors, which
		 * would keep the parent's link open; touch nothing else. */
		if (h->child_pid != getpid()) {
			h->child_pid = getpid();
			close_fd(&h->sock);
			close_fd(&h->epfd);
			close_fd(&h->evfd);
			close_fd(&h->tfd);
		}
		return OC_SUCCESS;
	}
	lock(h);
	if (h->closed) {
		unlock(h);
		return OC_FAILURE;
	}
	h->closed = 1;
	/* Wake a NORETURN thread blocked in poll so that it returns. */
	if (h->evfd >= 0) {
		uint64_t one = 1;
		ssize_t r = write(h->evfd, &one, sizeof one);
		(void)r;
	}
	if (h->have_timer) {
		timer_delete(h->timer);
		h->have_timer = 0;
	}
	free_queue(h);
	maybe_teardown(h);
	unref_unlock(h);
	return OC_SUCCESS;
}

static int set_cb(const oc_ev_t *ch, int pri, event_class_t class_, oc_ev_callback_fn fn)
{
	oc_ev_t *h = (oc_ev_t *)ch;
	int c = (int)class_;
	if (!mine(h) || pri < 0 || pri > 255 || c < 1 || c > 3)
		return OC_FAILURE;
	lock(h);
	if (h->closed) {
		unlock(h);
		return OC_FAILURE;
	}
	h->cb[c].fn = fn;
	h->cb[c].pri = fn != NULL ? pri : 0;
	if (h->active)
		send_callbacks(h);
	unlock(h);
	return OC_SUCCESS;
}

OC_EXPORT int oc_ev_set_callback(const oc_ev_t *h, int pri, event_class_t class_, const oc_ev_callback_t *fn)
{
	/* The draft's type makes fn a const void *; it is a function. */
	oc_ev_callback_fn f;
	typedef char same_size[sizeof f == sizeof fn ? 1 : -1];
	(void)sizeof(same_size);
	memcpy(&f, &fn, sizeof f);
	return set_cb(h, pri, class_, f);
}

OC_EXPORT int oc_ev_set_callback_fn(const oc_ev_t *h, int pri, event_class_t class_, oc_ev_callback_fn fn)
{
	return set_cb(h, pri, class_, fn);
}

static int valid_signal(int sig)
{
	return sig >= 1 && sig <= SIGRTMAX && sig <= 64 && sig != SIGKILL && sig != SIGSTOP;
}

OC_EXPORT int oc_ev_activate(const oc_ev_t *ch, int style, ...)
{
	oc_ev_t *h = (oc_ev_t *)ch;
	va_list ap;
	int *fdp = NULL, sig = 0, c, any = 0;
	if (!mine(h))
		return OC_FAILURE;
	va_start(ap, style);
	if (style == OC_EV_AS_GET_FD)
		fdp = va_arg(ap, int *);
	else if (style == OC_EV_AS_SIGNAL)
		sig = va_arg(ap, int);
	va_end(ap);
	if (style != OC_EV_AS_NORETURN && style != OC_EV_AS_GET_FD && style != OC_EV_AS_SIGNAL)
		return OC_FAILURE;
	if ((style == OC_EV_AS_GET_FD && fdp == NULL) || (style == OC_EV_AS_SIGNAL && !valid_signal(sig)))
		return OC_FAILURE;
	lock(h);
	for (c = 1; c <= 3; c++)
		any |= h->cb[c].fn != NULL;
	if (h->closed || h->active || !any) {
		unlock(h);
		return OC_FAILURE;
	}
	if (style == OC_EV_AS_SIGNAL) {
		struct sigevent sev;
		memset(&sev, 0, sizeof sev);
		sev.sigev_notify = SIGEV_THREAD_ID;
		sev.sigev_signo = sig;
		sev.sigev_notify_thread_id = gettid();
		if (timer_create(CLOCK_MONOTONIC, &sev, &h->timer) < 0) {
			unlock(h);
			return OC_FAILURE;
		}
		h->have_timer = 1;
		h->tid = gettid();
		h->sig = sig;
	} else {
		struct epoll_event ev;
		h->epfd = epoll_create1(EPOLL_CLOEXEC);
		h->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		h->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
		if (h->epfd < 0 || h->evfd < 0 || h->tfd < 0) {
			close_fd(&h->epfd);
			close_fd(&h->evfd);
			close_fd(&h->tfd);
			unlock(h);
			return OC_FAILURE;
		}
		memset(&ev, 0, sizeof ev);
		ev.events = EPOLLIN;
		ev.data.fd = h->evfd;
		epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->evfd, &ev);
		ev.data.fd = h->tfd;
		epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->tfd, &ev);
	}
	h->style = style;
	h->active = 1;
	/* The link may have died since register (the agent ends a link it
	 * hears nothing on): see first, then subscribe or reconnect. */
	pump(h);
	if (h->sock >= 0) {
		set_owner(h);
		send_callbacks(h);
		send_subscribe(h);
	}
	if (h->sock < 0) {
		h->retry_at = now_ms();
		reconnect(h);
	}
	if (fdp != NULL)
		*fdp = h->epfd;
	if (h->rlen > 0 || h->sock < 0)
		kick(h);
	unlock(h);
	return OC_SUCCESS;
}

OC_EXPORT int oc_ev_handle_event(const oc_ev_t *ch)
{
	oc_ev_t *h = (oc_ev_t *)ch;
	if (!mine(h))
		return OC_FAILURE;
	lock(h);
	if (h->closed || !h->active) {
		unlock(h);
		return OC_FAILURE;
	}
	h->refs++;
	h->busy++;
	for (;;) {
		struct pollfd p;
		drain(h);
		if (h->closed || h->style != OC_EV_AS_NORETURN)
			break;
		p.fd = h->epfd;
		p.events = POLLIN;
		p.revents = 0;
		unlock(h);
		poll(&p, 1, -1);
		lock(h);
	}
	h->busy--;
	maybe_teardown(h);
	unref_unlock(h);
	return OC_SUCCESS;
}

OC_EXPORT void oc_ev_callback_done(const uint *cookie)
{
	struct oc_cookie *c;
	oc_ev_t *h;
	if (cookie == NULL)
		return;
	c = (struct oc_cookie *)(void *)((char *)(uintptr_t)cookie - offsetof(struct oc_cookie, magic));
	if (c->magic != C_MAGIC)
		return;
	h = c->h;
	if (h->pid != getpid())
		return; /* a forked child's copy of the parent's event */
	lock(h);
	c->magic = 0;
	if (h->cur == c) {
		h->cur = NULL;
		if (c->flagged && c->gen == h->gen && h->sock >= 0)
			send_done(h, c->seq, c->desc);
		if (c->gen != h->gen)
			send_callbacks(h); /* this link was sent an empty mask */
		/* Unread data waits while the queue was full: no new data
		 * would announce it. */
		if (deliverable(h) || (h->stalled && !throttled(h)))
			kick(h);
	}
	free(c->data);
	free(c);
	unref_unlock(h);
}

OC_EXPORT int oc_ev_get_version(const oc_ev_t *ch, oc_ver_t *ver)
{
	oc_ev_t *h = (oc_ev_t *)ch;
	if (!mine(h) || ver == NULL)
		return OC_FAILURE;
	lock(h);
	ver->v_major = 0;
	ver->v_minor = 1;
	ver->v_revision = OC_REVISION;
	ver->v_protocol = h->version;
	unlock(h);
	return OC_SUCCESS;
}

OC_EXPORT uint64_t oc_ev_event_seq(const uint *cookie)
{
	const struct oc_cookie *c;
	if (cookie == NULL)
		return 0;
	c = (const struct oc_cookie *)(const void *)((const char *)cookie - offsetof(struct oc_cookie, magic));
	return c->magic == C_MAGIC ? c->seq : 0;
}

static int group_call(oc_ev_t *h, uint16_t op, const uint8_t *b, size_t n)
{
	struct oc_call *c;
	int ret = OC_FAILURE, e = 0;
	lock(h);
	if (h->closed) {
		unlock(h);
		errno = EBADF;
		return OC_FAILURE;
	}
	if (h->sock < 0 && reconnect(h) < 0) {
		unlock(h);
		errno = ENOTCONN;
		return OC_FAILURE;
	}
	if (h->version < 2) {
		unlock(h);
		errno = EPROTONOSUPPORT;
		return OC_FAILURE;
	}
	h->refs++;
	h->busy++;
	c = call(h, op, b, n, now_ms() + OC_GROUP_TIMEOUT_MS, 1);
	if (c == NULL) {
		e = errno;
	} else {
		if (c->state == OC_CALL_OK) {
			ret = OC_SUCCESS;
		} else if (c->state == OC_CALL_LOST) {
			e = ECONNRESET;
		} else {
			e = c->code == OC_CODE_STATE ? EEXIST : c->code == OC_CODE_NOMEMBER ? ENOENT : EIO;
		}
		free(c);
	}
	if (deliverable(h))
		kick(h);
	h->busy--;
	maybe_teardown(h);
	unref_unlock(h);
	if (ret != OC_SUCCESS)
		errno = e;
	return ret;
}

static int name_ok(const char *s, int empty_ok)
{
	size_t n;
	if (s == NULL)
		return empty_ok;
	n = strlen(s);
	return n <= 255 && (empty_ok || n > 0);
}

OC_EXPORT int oc_ev_group_join(const oc_ev_t *ch, const char *group, const char *member_name)
{
	uint8_t b[600];
	size_t n;
	if (!mine(ch) || !name_ok(group, 0) || !name_ok(member_name, 1)) {
		errno = EINVAL;
		return OC_FAILURE;
	}
	n = ocw_put_group_join(b, sizeof b, group, member_name != NULL ? member_name : "");
	if (n == 0) {
		errno = EINVAL;
		return OC_FAILURE;
	}
	return group_call((oc_ev_t *)ch, OC_OP_GROUP_JOIN, b, n);
}

OC_EXPORT int oc_ev_group_leave(const oc_ev_t *ch, const char *group)
{
	uint8_t b[300];
	size_t n;
	if (!mine(ch) || !name_ok(group, 0)) {
		errno = EINVAL;
		return OC_FAILURE;
	}
	n = ocw_put_group_leave(b, sizeof b, group);
	if (n == 0) {
		errno = EINVAL;
		return OC_FAILURE;
	}
	return group_call((oc_ev_t *)ch, OC_OP_GROUP_LEAVE, b, n);
}
