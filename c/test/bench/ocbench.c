/*
 * ocbench.c - a receiver for the event delivery benchmark of
 * cmd/corral/ocevent_bench_test.go (BenchmarkOcEventDelivery, run by
 * bench/ocevent.sh): how fast liboc_event delivers group events to one
 * process whose callback completes at once.
 *
 * Usage: ocbench [-p PRIO] [-g GROUP] [-n COUNT] [-o FILE] [-s fd|noreturn]
 *
 * A GROUP-class callback at PRIO (default 100) that records the event's
 * seq (oc_ev_event_seq) and the CLOCK_REALTIME time, then calls
 * oc_ev_callback_done before returning. With -g it joins GROUP
 * (oc_ev_group_join) and counts only MULTICAST and BROADCAST messages of
 * that group; otherwise every MULTICAST and BROADCAST. It prints "ready"
 * once active (and joined), and ends after COUNT messages (-n), or on
 * SIGINT/SIGTERM, printing
 *   summary events=N first_ns=T0 last_ns=T1 seconds=S events_per_s=R
 * (R counts the intervals from the first message to the last). With -o
 * it writes "SEQ UNIX_NS" per message to FILE at the end.
 */
#define _POSIX_C_SOURCE 200809L
#include <ocf/oc_event.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *group;
static long want;      /* messages to receive; 0: until a signal */
static long got;       /* messages received */
static uint64_t *seqs; /* per message: its seq and callback time */
static long long *ns;
static long cap;
static oc_ev_t *handle;
static int noreturn, done_all;
static volatile sig_atomic_t stop;

static long long unix_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void on_group(oc_ed_t ev, const uint *cookie, size_t size, const void *data)
{
	const oc_ev_group_t *g = data;
	long long t = unix_ns();
	(void)size;
	if ((ev == OC_EV_GS_MULTICAST || ev == OC_EV_GS_BROADCAST) && g != NULL &&
		(group == NULL || strcmp(g->g_name, group) == 0)) {
		if (got == cap) {
			long nc = cap ? 2 * cap : 65536;
			uint64_t *s = realloc(seqs, (size_t)nc * sizeof *s);
			long long *n = s ? realloc(ns, (size_t)nc * sizeof *n) : NULL;
			if (s == NULL || n == NULL) {
				fprintf(stderr, "ocbench: out of memory\n");
				exit(1);
			}
			seqs = s;
			ns = n;
			cap = nc;
		}
		seqs[got] = oc_ev_event_seq(cookie);
		ns[got] = t;
		got++;
	}
	oc_ev_callback_done(cookie);
	if (want > 0 && got >= want && !done_all) {
		done_all = 1;
		if (noreturn)
			oc_ev_unregister(handle); /* oc_ev_handle_event returns */
	}
}

static int usage(void)
{
	fprintf(stderr, "usage: ocbench [-p PRIO] [-g GROUP] [-n COUNT] [-o FILE] [-s fd|noreturn]\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *out = NULL, *style = "fd";
	int prio = 100, fd = -1, c;
	struct sigaction sa;
	double secs;
	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((c = getopt(argc, argv, "p:g:n:o:s:")) != -1) {
		switch (c) {
		case 'p': prio = atoi(optarg); break;
		case 'g': group = optarg; break;
		case 'n': want = atol(optarg); break;
		case 'o': out = optarg; break;
		case 's': style = optarg; break;
		default: return usage();
		}
	}
	if (strcmp(style, "noreturn") == 0)
		noreturn = 1;
	else if (strcmp(style, "fd") != 0)
		return usage();
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	handle = oc_ev_register();
	if (handle == NULL) {
		fprintf(stderr, "ocbench: register: %s\n", strerror(errno));
		return 1;
	}
	if (oc_ev_set_callback_fn(handle, prio, OC_EV_GROUP_CLASS, on_group) != OC_SUCCESS) {
		fprintf(stderr, "ocbench: set_callback failed\n");
		return 1;
	}
	if (noreturn ? oc_ev_activate(handle, OC_EV_AS_NORETURN) : oc_ev_activate(handle, OC_EV_AS_GET_FD, &fd)) {
		fprintf(stderr, "ocbench: activate: %s\n", strerror(errno));
		return 1;
	}
	if (group != NULL && oc_ev_group_join(handle, group, "ocbench") != OC_SUCCESS) {
		fprintf(stderr, "ocbench: join %s: %s\n", group, strerror(errno));
		return 1;
	}
	printf("ready\n");
	if (noreturn) {
		/* Returns once the callback unregistered. A signal does not
		 * stop it: use -n. */
		oc_ev_handle_event(handle);
	} else {
		while (!stop && !done_all) {
			struct pollfd p = {fd, POLLIN, 0};
			if (poll(&p, 1, -1) < 0 && errno != EINTR)
				return 1;
			if (oc_ev_handle_event(handle) != OC_SUCCESS)
				return 1;
		}
		oc_ev_unregister(handle);
	}

	secs = got > 1 ? (double)(ns[got - 1] - ns[0]) / 1e9 : 0;
	printf("summary events=%ld first_ns=%lld last_ns=%lld seconds=%.6f events_per_s=%.1f\n", got,
		got ? ns[0] : 0, got ? ns[got - 1] : 0, secs, secs > 0 ? (double)(got - 1) / secs : 0);
	if (out != NULL) {
		FILE *f = fopen(out, "w");
		long i;
		if (f == NULL) {
			fprintf(stderr, "ocbench: %s: %s\n", out, strerror(errno));
			return 1;
		}
		for (i = 0; i < got; i++)
			fprintf(f, "%llu %lld\n", (unsigned long long)seqs[i], ns[i]);
		if (fclose(f) != 0) {
			fprintf(stderr, "ocbench: %s: %s\n", out, strerror(errno));
			return 1;
		}
	}
	return 0;
}
