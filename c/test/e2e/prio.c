/*
 * prio.c - the priority/completion test program of
 * cmd/corral/ocevent_e2e_test.go.
 *
 * Usage: prio NAME PRIORITY HOLD_MS [never]
 * A GROUP callback at PRIORITY; for each event it prints
 *   "start NAME SEQ UNIX_NS" when the callback starts and
 *   "done NAME SEQ UNIX_NS" when it completes, HOLD_MS later, from the
 * main loop (oc_ev_callback_done after the callback returned). With
 * "never" it completes nothing.
 */
#define _POSIX_C_SOURCE 200809L
#include <ocf/oc_event.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *name;
static const uint *pending; /* the cookie to complete */
static long long due;        /* when, monotonic ms */
static int hold, never;

static long long unix_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_group(oc_ed_t ev, const uint *cookie, size_t size, const void *data)
{
	(void)ev;
	(void)size;
	(void)data;
	printf("start %s %llu %lld\n", name, (unsigned long long)oc_ev_event_seq(cookie), unix_ns());
	if (!never) {
		pending = cookie;
		due = mono_ms() + hold;
	}
}

int main(int argc, char **argv)
{
	oc_ev_t *h;
	int fd;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 4)
		return 2;
	name = argv[1];
	hold = atoi(argv[3]);
	never = argc > 4 && strcmp(argv[4], "never") == 0;
	h = oc_ev_register();
	if (h == NULL) {
		printf("register failed: %s\n", strerror(errno));
		return 1;
	}
	if (oc_ev_set_callback_fn(h, atoi(argv[2]), OC_EV_GROUP_CLASS, on_group) != OC_SUCCESS ||
		oc_ev_activate(h, OC_EV_AS_GET_FD, &fd) != OC_SUCCESS)
		return 1;
	printf("ready %s\n", name);
	for (;;) {
		struct pollfd p = {fd, POLLIN, 0};
		int ms = -1;
		if (pending != NULL) {
			long long d = due - mono_ms();
			ms = d < 0 ? 0 : (int)d;
		}
		if (poll(&p, 1, ms) < 0 && errno != EINTR)
			return 1;
		if (pending != NULL && mono_ms() >= due) {
			const uint *c = pending;
			pending = NULL;
			printf("done %s %llu %lld\n", name, (unsigned long long)oc_ev_event_seq(c), unix_ns());
			oc_ev_callback_done(c);
		}
		if (oc_ev_handle_event(h) != OC_SUCCESS)
			return 1;
	}
}
