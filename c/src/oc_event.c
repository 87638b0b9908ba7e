/*
 * oc_event.c - liboc_event.so: the OCF Cluster Event Notification API over
 * corral's client protocol (proto/client/SPEC.md), spoken to the agent on
 * this node over its unix socket. This file holds the public API, the
 * activation styles and waking the application, the local queue of
 * received events, their delivery one at a time, cookies and
 * oc_ev_callback_done. The link to the agent is in link.c, frame and
 * body codecs in wire.c.
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
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
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

/* ---------- small helpers ---------- */

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

void oci_lock(oc_ev_t *h)
{
	pthread_mutex_lock(&h->mu);
}

void oci_unlock(oc_ev_t *h)
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

void oci_close_fd(int *fd)
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
	oci_close_fd(&h->sock);
	oci_close_fd(&h->epfd);
	oci_close_fd(&h->evfd);
	oci_close_fd(&h->tfd);
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
	oci_unlock(h);
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
void oci_kick(oc_ev_t *h)
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

int oci_deliverable(const oc_ev_t *h)
{
	return !h->closed && h->cur == NULL && h->qh != NULL;
}

/* ---------- the local queue ---------- */

void oci_enqueue(oc_ev_t *h, ocw_event *ev, int skip)
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

int oci_throttled(const oc_ev_t *h)
{
	return h->qn >= OC_QUEUE_MAX || h->qbytes >= OC_QUEUE_BYTES;
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
	while (oci_deliverable(h)) {
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
				oci_send_done(h, q->ev.seq, q->ev.desc);
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
		oci_unlock(h);
		fn(c->desc, &c->magic, q->ev.size, c->data);
		free(q);
		oci_lock(h);
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
		if (h->sock < 0 && oci_now_ms() >= h->retry_at)
			oci_reconnect(h);
		oci_pump(h);
		deliver(h);
		if (h->closed || (h->delivered == before && h->gen == gen && (h->sock >= 0 || oci_now_ms() < h->retry_at)))
			break;
	}
	if (!oci_throttled(h))
		oci_watch_sock(h, 1);
	if (!oci_deliverable(h))
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
	if (oci_dial(h) < 0) {
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
			oci_close_fd(&h->sock);
			oci_close_fd(&h->epfd);
			oci_close_fd(&h->evfd);
			oci_close_fd(&h->tfd);
		}
		return OC_SUCCESS;
	}
	oci_lock(h);
	if (h->closed) {
		oci_unlock(h);
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
	oci_lock(h);
	if (h->closed) {
		oci_unlock(h);
		return OC_FAILURE;
	}
	h->cb[c].fn = fn;
	h->cb[c].pri = fn != NULL ? pri : 0;
	if (h->active)
		oci_send_callbacks(h);
	oci_unlock(h);
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
	oci_lock(h);
	for (c = 1; c <= 3; c++)
		any |= h->cb[c].fn != NULL;
	if (h->closed || h->active || !any) {
		oci_unlock(h);
		return OC_FAILURE;
	}
	if (style == OC_EV_AS_SIGNAL) {
		struct sigevent sev;
		memset(&sev, 0, sizeof sev);
		sev.sigev_notify = SIGEV_THREAD_ID;
		sev.sigev_signo = sig;
		sev.sigev_notify_thread_id = gettid();
		if (timer_create(CLOCK_MONOTONIC, &sev, &h->timer) < 0) {
			oci_unlock(h);
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
			oci_close_fd(&h->epfd);
			oci_close_fd(&h->evfd);
			oci_close_fd(&h->tfd);
			oci_unlock(h);
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
	oci_pump(h);
	if (h->sock >= 0) {
		oci_set_owner(h);
		oci_send_callbacks(h);
		oci_send_subscribe(h);
	}
	if (h->sock < 0) {
		h->retry_at = oci_now_ms();
		oci_reconnect(h);
	}
	if (fdp != NULL)
		*fdp = h->epfd;
	if (h->rlen > 0 || h->sock < 0)
		oci_kick(h);
	oci_unlock(h);
	return OC_SUCCESS;
}

OC_EXPORT int oc_ev_handle_event(const oc_ev_t *ch)
{
	oc_ev_t *h = (oc_ev_t *)ch;
	if (!mine(h))
		return OC_FAILURE;
	oci_lock(h);
	if (h->closed || !h->active) {
		oci_unlock(h);
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
		oci_unlock(h);
		poll(&p, 1, -1);
		oci_lock(h);
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
	oci_lock(h);
	c->magic = 0;
	if (h->cur == c) {
		h->cur = NULL;
		if (c->flagged && c->gen == h->gen && h->sock >= 0)
			oci_send_done(h, c->seq, c->desc);
		if (c->gen != h->gen)
			oci_send_callbacks(h); /* this link was sent an empty mask */
		/* Unread data waits while the queue was full: no new data
		 * would announce it. */
		if (oci_deliverable(h) || (h->stalled && !oci_throttled(h)))
			oci_kick(h);
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
	oci_lock(h);
	ver->v_major = 0;
	ver->v_minor = 1;
	ver->v_revision = OC_REVISION;
	ver->v_protocol = h->version;
	oci_unlock(h);
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
	oci_lock(h);
	if (h->closed) {
		oci_unlock(h);
		errno = EBADF;
		return OC_FAILURE;
	}
	if (h->sock < 0 && oci_reconnect(h) < 0) {
		oci_unlock(h);
		errno = ENOTCONN;
		return OC_FAILURE;
	}
	if (h->version < 2) {
		oci_unlock(h);
		errno = EPROTONOSUPPORT;
		return OC_FAILURE;
	}
	h->refs++;
	h->busy++;
	c = oci_call(h, op, b, n, oci_now_ms() + OC_GROUP_TIMEOUT_MS, 1);
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
	if (oci_deliverable(h))
		oci_kick(h);
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
