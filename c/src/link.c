/*
 * link.c - liboc_event's link to the agent: connecting and HELLO, frames
 * in and out, requests and their replies, answering the agent's PING,
 * losing a link and reconnecting with backoff, and on every new link
 * re-attaching the member session (ATTACH), then CALLBACKS and SUBSCRIBE
 * resuming after the last seq received. Received events go to the local
 * queue of oc_event.c.
 *
 * Everything here runs in the caller's threads with the handle's mutex
 * held (see oc_event.c); only wait_call may release it while it polls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ocf/oc_event.h"
#include "wire.h"
#include "oc_internal.h"

static void link_lost(oc_ev_t *h, int code);

/* ---------- time ---------- */

int64_t oci_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int left_ms(int64_t deadline)
{
	int64_t d = deadline - oci_now_ms();
	if (d < 0)
		return 0;
	return d > 1000000 ? 1000000 : (int)d;
}

/* ---------- message ids ---------- */

static uint64_t next_msgid(oc_ev_t *h)
{
	return ++h->msgid;
}

/* ---------- the reconnect timer ---------- */

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
	int64_t deadline = oci_now_ms() + OC_SEND_TIMEOUT_MS;
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

void oci_send_done(oc_ev_t *h, uint64_t seq, uint32_t desc)
{
	uint8_t b[32];
	size_t n = ocw_put_done(b, sizeof b, seq, desc);
	if (n > 0)
		send_frame(h, OC_OP_DONE, OC_F_CREATE | OC_F_DELETE, h->sub_msgid, b, n);
}

/* CALLBACKS (v3): the classes this handle has a callback for, with their
 * priorities, so that the agent orders it among the node's processes. */
void oci_send_callbacks(oc_ev_t *h)
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

void oci_send_subscribe(oc_ev_t *h)
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
			oci_enqueue(h, &ev, 1);
		return;
	}
	if (ev.seq != 0)
		h->last = ev.seq;
	oci_enqueue(h, &ev, 0);
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

/* Stops or restarts watching the socket in the epoll set while the
 * queue is full, so that the fd does not stay readable for data the
 * library will not read yet. */
void oci_watch_sock(oc_ev_t *h, int on)
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
void oci_pump(oc_ev_t *h)
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
		if (oci_throttled(h)) {
			oci_watch_sock(h, 0);
			h->stalled = 1;
			return;
		}
		oci_watch_sock(h, 1);
		h->stalled = 0;
		if (read_some(h) <= 0)
			return;
	}
}

/* ---------- links ---------- */

void oci_set_owner(oc_ev_t *h)
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
	oci_close_fd(&h->sock);
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
	h->retry_at = oci_now_ms();
	if (h->active && !h->closed) {
		arm_retry(h);
		oci_kick(h);
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
int oci_dial(oc_ev_t *h)
{
	struct sockaddr_un sa;
	socklen_t salen;
	uint8_t hello[512];
	size_t n;
	int fd, r;
	int64_t deadline = oci_now_ms() + OC_HANDSHAKE_MS;
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
			oci_close_fd(&h->sock);
			errno = EPROTO;
			return -1;
		}
		if (r == 1) {
			uint8_t v = 0;
			uint64_t node = 0;
			if (hd.proto != OCW_PROTO_SESSION || ocw_parse_hello_answer(&hd, body, bn, &v, &node, &e) < 0) {
				oci_close_fd(&h->sock);
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
			oci_close_fd(&h->sock);
			errno = err ? err : ECONNRESET;
			return -1;
		}
		if (r > 0)
			continue;
		p.fd = fd;
		p.events = POLLIN;
		p.revents = 0;
		if (left_ms(deadline) == 0) {
			oci_close_fd(&h->sock);
			errno = ETIMEDOUT;
			return -1;
		}
		if (poll(&p, 1, left_ms(deadline)) < 0 && errno != EINTR) {
			int err = errno;
			oci_close_fd(&h->sock);
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
		oci_pump(h);
		if (c->state != OC_CALL_WAITING || h->closed)
			return;
		if (oci_deliverable(h))
			oci_kick(h); /* events this pump queued are the app's to take */
		if (left_ms(deadline) == 0)
			return;
		fd = h->sock;
		p.fd = fd;
		p.events = POLLIN;
		p.revents = 0;
		if (release) {
			/* Another thread may read the reply meanwhile: poll
			 * briefly and look again. */
			oci_unlock(h);
			poll(&p, 1, left_ms(deadline) < 20 ? left_ms(deadline) : 20);
			oci_lock(h);
		} else {
			poll(&p, 1, left_ms(deadline));
		}
	}
}

/* Sends a request and waits for its answer. Returns the call (owned by
 * the caller, to free) or NULL with errno. */
struct oc_call *oci_call(oc_ev_t *h, uint16_t op, const uint8_t *body, size_t n, int64_t deadline, int release)
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
		struct oc_call *c = oci_call(h, OC_OP_GROUP_ATTACH, b, n, oci_now_ms() + OC_HANDSHAKE_MS, 0);
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
	oci_set_owner(h);
	oci_send_callbacks(h);
	oci_send_subscribe(h);
}

/* Tries to open a new link now. Returns 0 or -1 (then the next try is
 * scheduled with backoff). */
int oci_reconnect(oc_ev_t *h)
{
	if (oci_dial(h) == 0) {
		h->backoff_ms = 0;
		start_link(h);
		if (h->sock >= 0)
			return 0;
	}
	h->backoff_ms = h->backoff_ms == 0 ? OC_MIN_BACKOFF_MS : h->backoff_ms * 2;
	if (h->backoff_ms > OC_MAX_BACKOFF_MS)
		h->backoff_ms = OC_MAX_BACKOFF_MS;
	h->retry_at = oci_now_ms() + h->backoff_ms;
	arm_retry(h);
	return -1;
}
