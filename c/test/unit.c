/*
 * unit.c - liboc_event against a fake agent, under the sanitizers.
 *
 * A thread accepts on $CORRAL_DATA_DIR/client.sock and answers HELLO at
 * the version under test; the main thread then plays the agent on the
 * accepted connection (SUBSCRIBE replies, EVENTs, PING, closing it) and
 * drives the library, so every step happens in a known order.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ocf/oc_event.h"
#include "wire.h"

static int failures;
#define CHECK(c)                                                              \
	do {                                                                  \
		if (!(c)) {                                                   \
			fprintf(stderr, "%s:%d: FAIL %s\n", __FILE__, __LINE__, #c); \
			failures++;                                           \
		}                                                             \
	} while (0)

/* ---------- the fake agent ---------- */

static int lfd = -1;
static uint8_t agent_version = 2;
static pthread_mutex_t amu = PTHREAD_MUTEX_INITIALIZER; /* guards conns */
static pthread_cond_t acond = PTHREAD_COND_INITIALIZER;
static int conns[16], nconns, taken;

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}
static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}
static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;
	for (i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Reads one frame from fd (timeout ms): 1 with hd and body, 0 none, -1 EOF. */
static int read_frame(int fd, ocw_header *hd, uint8_t *body, size_t cap, int ms)
{
	uint8_t hb[OCW_HEADER_SIZE];
	size_t got = 0, need;
	ocw_err e;
	while (got < OCW_HEADER_SIZE) {
		struct pollfd p = {fd, POLLIN, 0};
		ssize_t r;
		if (poll(&p, 1, ms) <= 0)
			return got == 0 ? 0 : -1;
		r = read(fd, hb + got, OCW_HEADER_SIZE - got);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	if (ocw_parse_header(hb, hd, &e) < 0)
		return -1;
	need = hd->ext_len + hd->body_len;
	if (need > cap)
		return -1;
	for (got = 0; got < need;) {
		ssize_t r = read(fd, body + got, need - got);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 1;
}

static void *acceptor(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		ocw_header hd;
		uint8_t body[1024], out[512];
		size_t n;
		if (fd < 0)
			return NULL;
		if (read_frame(fd, &hd, body, sizeof body, 2000) != 1) {
			close(fd);
			continue;
		}
		n = ocw_put_hello(out, sizeof out, 0, agent_version, agent_version);
		if (write(fd, out, n) != (ssize_t)n) {
			close(fd);
			continue;
		}
		pthread_mutex_lock(&amu);
		conns[nconns++ % 16] = fd;
		pthread_cond_broadcast(&acond);
		pthread_mutex_unlock(&amu);
	}
}

/* The next connection the library made (after its HELLO). */
static int next_conn(void)
{
	int fd;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	pthread_mutex_lock(&amu);
	while (taken == nconns)
		if (pthread_cond_timedwait(&acond, &amu, &ts) != 0)
			break;
	fd = taken < nconns ? conns[taken++ % 16] : -1;
	pthread_mutex_unlock(&amu);
	return fd;
}

static void send_frame(int fd, uint8_t v, uint16_t op, uint16_t flags, uint64_t msgid, const uint8_t *body, size_t n)
{
	uint8_t buf[OCW_HEADER_SIZE + 256];
	ocw_header hd;
	size_t len;
	ocw_client_header(&hd, v, op, flags, msgid);
	len = ocw_put_frame(buf, sizeof buf, &hd, body, n);
	CHECK(len > 0 && write(fd, buf, len) == (ssize_t)len);
}

/* Expects SUBSCRIBE (skipping CALLBACKS, recorded); answers it. Returns
 * its msg id; *after its resume point (or ~0 without RESUME). */
static uint64_t subscribed(int fd, uint64_t latest, uint64_t *after, uint32_t *cbmask)
{
	ocw_header hd;
	uint8_t b[256], rep[24];
	for (;;) {
		if (read_frame(fd, &hd, b, sizeof b, 3000) != 1) {
			CHECK(!"SUBSCRIBE");
			return 0;
		}
		if (hd.opcode == OCW_OP_CALLBACKS) {
			if (cbmask != NULL)
				*cbmask = b[0] | (uint32_t)b[1] << 8;
			send_frame(fd, hd.version, OCW_OP_CALLBACKS, 7, hd.msgid, NULL, 0);
			continue;
		}
		if (hd.opcode == OCW_OP_SUBSCRIBE)
			break;
	}
	*after = (b[4] & 1) ? get64(b + 8) : ~(uint64_t)0;
	memset(rep, 0, sizeof rep);
	put64(rep, latest);
	send_frame(fd, hd.version, OCW_OP_SUBSCRIBE, 7, hd.msgid, rep, sizeof rep);
	return hd.msgid;
}

static void event(int fd, uint8_t v, uint64_t sub, uint64_t seq, uint32_t desc, int flagged)
{
	uint8_t b[16];
	memset(b, 0, sizeof b);
	put64(b, seq);
	put32(b + 8, desc);
	b[13] = (uint8_t)(flagged ? 1 : 0);
	send_frame(fd, v, OCW_OP_EVENT, 3, sub, b, sizeof b);
}

/* ---------- the application ---------- */

static uint64_t seen[64];
static int nseen;
static const uint *held; /* a cookie not done yet */
static int hold_next, unregister_in_cb;
static oc_ev_t *cur;

static void cb(oc_ed_t ev, const uint *cookie, size_t size, const void *data)
{
	(void)ev;
	(void)size;
	(void)data;
	if (nseen < 64)
		seen[nseen++] = oc_ev_event_seq(cookie);
	if (unregister_in_cb) {
		CHECK(oc_ev_unregister(cur) == OC_SUCCESS);
		unregister_in_cb = 0;
	}
	if (hold_next) {
		hold_next = 0;
		held = cookie;
		return;
	}
	oc_ev_callback_done(cookie);
}

/* Lets the library work while its fd is readable, up to ms; stops when
 * the handle refuses (unregistered). */
static void run_fd(oc_ev_t *h, int fd, int ms)
{
	struct pollfd p = {fd, POLLIN, 0};
	while (poll(&p, 1, ms) > 0 && !(p.revents & POLLNVAL))
		if (oc_ev_handle_event(h) != OC_SUCCESS)
			return;
}

static int readable(int fd)
{
	struct pollfd p = {fd, POLLIN, 0};
	return poll(&p, 1, 0) > 0;
}

static void test_no_agent(void)
{
	oc_ev_t *h;
	errno = 0;
	h = oc_ev_register();
	CHECK(h == NULL && (errno == ENOENT || errno == ECONNREFUSED));
}

/* v2: order, one at a time, duplicates, PING, reconnect with RESUME,
 * unregister inside a callback. */
static void test_fd_v2(void)
{
	oc_ev_t *h;
	int fd, a, a2;
	uint64_t sub, after;
	ocw_header hd;
	uint8_t b[256], ping[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	oc_ver_t ver;

	agent_version = 2;
	h = oc_ev_register();
	CHECK(h != NULL);
	if (h == NULL)
		return;
	cur = h;
	a = next_conn();
	CHECK(oc_ev_activate(h, OC_EV_AS_GET_FD, &fd) == OC_FAILURE); /* no callback */
	CHECK(oc_ev_set_callback_fn(h, 256, OC_EV_MEMB_CLASS, cb) == OC_FAILURE);
	CHECK(oc_ev_set_callback_fn(h, 1, (event_class_t)4, cb) == OC_FAILURE);
	CHECK(oc_ev_set_callback_fn(h, OC_EV_PRIO_MED, OC_EV_MEMB_CLASS, cb) == OC_SUCCESS);
	CHECK(oc_ev_activate(h, OC_EV_AS_GET_FD, &fd) == OC_SUCCESS);
	CHECK(oc_ev_activate(h, OC_EV_AS_GET_FD, &fd) == OC_FAILURE);
	CHECK(oc_ev_get_version(h, &ver) == OC_SUCCESS && ver.v_protocol == 2 && ver.v_minor == 1);
	sub = subscribed(a, 100, &after, NULL);
	CHECK(after == ~(uint64_t)0);

	hold_next = 1;
	event(a, 2, sub, 101, OC_EV_MS_NEWVIEW, 0);
	event(a, 2, sub, 0, OC_EV_MS_SUSPECT, 0);
	event(a, 2, sub, 101, OC_EV_MS_NEWVIEW, 0); /* a duplicate */
	event(a, 2, sub, 102, OC_EV_MS_NEWVIEW, 0);
	event(a, 2, sub, 50, OC_EV_CS_P2P_LOST, 0); /* no callback: dropped (and a seq below) */
	send_frame(a, 2, OCW_OP_PING, 3, 77, ping, sizeof ping);
	run_fd(h, fd, 300);
	CHECK(nseen == 1 && seen[0] == 101 && held != NULL);
	CHECK(!readable(fd));
	CHECK(read_frame(a, &hd, b, sizeof b, 1000) == 1 && hd.opcode == OCW_OP_PONG && hd.msgid == 77 &&
		(hd.flags & OCW_F_REPLY) && memcmp(b, ping, 8) == 0);
	oc_ev_callback_done(held); /* from outside the callback: the fd wakes */
	held = NULL;
	CHECK(readable(fd));
	run_fd(h, fd, 100);
	CHECK(nseen == 3 && seen[1] == 0 && seen[2] == 102);

	/* The agent goes away: the library reconnects and resumes. */
	close(a);
	run_fd(h, fd, 300);
	a2 = next_conn();
	CHECK(a2 >= 0);
	sub = subscribed(a2, 103, &after, NULL);
	CHECK(after == 102);
	event(a2, 2, sub, 102, OC_EV_MS_NEWVIEW, 0);
	unregister_in_cb = 1;
	hold_next = 1;
	event(a2, 2, sub, 103, OC_EV_MS_NEWVIEW, 0);
	event(a2, 2, sub, 104, OC_EV_MS_NEWVIEW, 0);
	run_fd(h, fd, 300);
	CHECK(nseen == 4 && seen[3] == 103);
	CHECK(oc_ev_handle_event(h) == OC_FAILURE); /* unregistered: the handle lives on for the cookie */
	oc_ev_callback_done(held);                   /* frees the handle */
	held = NULL;
	close(a2);
}

/* v3: CALLBACKS, DONE in order, at once for a class without callback. */
static void test_v3(void)
{
	oc_ev_t *h;
	int fd, a;
	uint64_t sub, after;
	uint32_t mask = 0;
	ocw_header hd;
	uint8_t b[256];

	agent_version = 3;
	nseen = 0;
	h = oc_ev_register();
	CHECK(h != NULL);
	if (h == NULL)
		return;
	a = next_conn();
	CHECK(oc_ev_set_callback_fn(h, 7, OC_EV_MEMB_CLASS, cb) == OC_SUCCESS);
	CHECK(oc_ev_activate(h, OC_EV_AS_GET_FD, &fd) == OC_SUCCESS);
	sub = subscribed(a, 0, &after, &mask);
	CHECK(mask == 0x4);
	hold_next = 1;
	event(a, 3, sub, 10, OC_EV_MS_NEWVIEW, 1);
	event(a, 3, sub, 11, OC_EV_CS_NODE_ELIGIBLE, 1);
	run_fd(h, fd, 300);
	CHECK(nseen == 1 && held != NULL);
	CHECK(read_frame(a, &hd, b, sizeof b, 200) == 0); /* no DONE before done */
	oc_ev_callback_done(held);
	held = NULL;
	run_fd(h, fd, 100);
	CHECK(read_frame(a, &hd, b, sizeof b, 1000) == 1 && hd.opcode == OCW_OP_DONE && get64(b) == 10);
	CHECK(read_frame(a, &hd, b, sizeof b, 1000) == 1 && hd.opcode == OCW_OP_DONE && get64(b) == 11);
	/* A new callback after activation: a new CALLBACKS. */
	CHECK(oc_ev_set_callback_fn(h, 9, OC_EV_GROUP_CLASS, cb) == OC_SUCCESS);
	CHECK(read_frame(a, &hd, b, sizeof b, 1000) == 1 && hd.opcode == OCW_OP_CALLBACKS && b[0] == 0xC && b[6] == 9);
	CHECK(oc_ev_unregister(h) == OC_SUCCESS);
	close(a);
}

/* SIGNAL: the signal reaches this thread for socket data and for an
 * event made deliverable by a later done. */
static void test_signal(void)
{
	oc_ev_t *h;
	int a;
	uint64_t sub, after;
	sigset_t set;
	struct timespec ts = {2, 0};
	siginfo_t si;

	agent_version = 2;
	nseen = 0;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	h = oc_ev_register();
	CHECK(h != NULL);
	if (h == NULL)
		return;
	a = next_conn();
	CHECK(oc_ev_set_callback_fn(h, 7, OC_EV_MEMB_CLASS, cb) == OC_SUCCESS);
	CHECK(oc_ev_activate(h, OC_EV_AS_SIGNAL, SIGKILL) == OC_FAILURE);
	CHECK(oc_ev_activate(h, OC_EV_AS_SIGNAL, 65) == OC_FAILURE);
	CHECK(oc_ev_activate(h, OC_EV_AS_SIGNAL, SIGUSR1) == OC_SUCCESS);
	sub = subscribed(a, 0, &after, NULL);
	hold_next = 1;
	event(a, 2, sub, 5, OC_EV_MS_NEWVIEW, 0);
	event(a, 2, sub, 6, OC_EV_MS_NEWVIEW, 0);
	while (nseen == 0 && sigtimedwait(&set, &si, &ts) == SIGUSR1)
		oc_ev_handle_event(h);
	CHECK(nseen == 1);
	oc_ev_callback_done(held);
	held = NULL;
	CHECK(sigtimedwait(&set, &si, &ts) == SIGUSR1); /* the done's tgkill */
	oc_ev_handle_event(h);
	CHECK(nseen == 2 && seen[1] == 6);
	CHECK(oc_ev_unregister(h) == OC_SUCCESS);
	close(a);
}

/* NORETURN: handle_event returns once a callback unregisters; fork. */
static void test_noreturn_fork(void)
{
	oc_ev_t *h;
	int a, st;
	uint64_t sub, after;
	pid_t pid;

	agent_version = 2;
	nseen = 0;
	h = oc_ev_register();
	CHECK(h != NULL);
	if (h == NULL)
		return;
	cur = h;
	a = next_conn();
	CHECK(oc_ev_set_callback_fn(h, 7, OC_EV_MEMB_CLASS, cb) == OC_SUCCESS);
	CHECK(oc_ev_activate(h, OC_EV_AS_NORETURN, NULL) == OC_SUCCESS);
	pid = fork();
	if (pid == 0) {
		oc_ver_t v;
		int bad = oc_ev_handle_event(h) != OC_FAILURE || oc_ev_get_version(h, &v) != OC_FAILURE ||
			oc_ev_unregister(h) != OC_SUCCESS;
		_exit(bad);
	}
	CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	sub = subscribed(a, 0, &after, NULL);
	event(a, 2, sub, 5, OC_EV_MS_NEWVIEW, 0);
	unregister_in_cb = 1;
	CHECK(oc_ev_handle_event(h) == OC_SUCCESS); /* returns after the unregister */
	CHECK(nseen == 1);
	close(a);
}

int main(void)
{
	char dir[] = "/tmp/oc_unit.XXXXXX";
	char path[100];
	struct sockaddr_un sa;
	pthread_t th;

	if (mkdtemp(dir) == NULL)
		return 1;
	setenv("CORRAL_DATA_DIR", dir, 1);
	test_no_agent();

	snprintf(path, sizeof path, "%s/client.sock", dir);
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 8) < 0)
		return 1;
	pthread_create(&th, NULL, acceptor, NULL);

	test_fd_v2();
	test_v3();
	test_signal();
	test_noreturn_fork();

	shutdown(lfd, SHUT_RDWR);
	close(lfd);
	pthread_join(th, NULL);
	unlink(path);
	rmdir(dir);
	printf("unit: %d failures\n", failures);
	return failures != 0;
}
