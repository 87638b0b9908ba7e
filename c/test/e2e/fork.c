/*
 * fork.c - the fork test program of cmd/corral/ocevent_e2e_test.go.
 *
 * The parent registers, activates (GET_FD) and joins group argv[1]; then
 * it forks. The child checks that the parent's handle refuses it, releases
 * its copy, registers afresh and joins the group too. Both print one line
 * per group event: "<who> event name=MULTICAST seq=N payload=P".
 */
#define _POSIX_C_SOURCE 200809L
#include <ocf/oc_event.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *who = "parent";

static void on_group(oc_ed_t ev, const uint *cookie, size_t size, const void *data)
{
	const oc_ev_group_t *g = data;
	static const char *const names[] = {"INVALID", "JOIN", "LEAVE", "BROADCAST", "MULTICAST", "UNICAST", "REPLY"};
	uint e = OC_EV_GET_EVENT(ev);
	printf("%s event name=%s seq=%llu payload=%.*s\n", who, e < 7 ? names[e] : "?",
		(unsigned long long)oc_ev_event_seq(cookie), size ? (int)g->g_len : 0,
		size && g->g_len ? (const char *)g->g_payload : "");
	oc_ev_callback_done(cookie);
}

static oc_ev_t *start(const char *group, int *fd)
{
	oc_ev_t *h = oc_ev_register();
	if (h == NULL) {
		printf("%s register failed: %s\n", who, strerror(errno));
		return NULL;
	}
	if (oc_ev_set_callback_fn(h, OC_EV_PRIO_MED, OC_EV_GROUP_CLASS, on_group) != OC_SUCCESS ||
		oc_ev_activate(h, OC_EV_AS_GET_FD, fd) != OC_SUCCESS) {
		printf("%s activate failed\n", who);
		return NULL;
	}
	if (oc_ev_group_join(h, group, who) != OC_SUCCESS) {
		printf("%s join failed: %s\n", who, strerror(errno));
		return NULL;
	}
	printf("%s ready pid=%d\n", who, (int)getpid());
	return h;
}

static int loop(oc_ev_t *h, int fd)
{
	for (;;) {
		struct pollfd p = {fd, POLLIN, 0};
		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			return 1;
		if (oc_ev_handle_event(h) != OC_SUCCESS) {
			printf("%s handle_event failed\n", who);
			return 1;
		}
	}
}

int main(int argc, char **argv)
{
	int fd, cfd;
	oc_ev_t *h, *ch;
	pid_t pid;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		return 2;
	h = start(argv[1], &fd);
	if (h == NULL)
		return 1;
	pid = fork();
	if (pid < 0)
		return 1;
	if (pid > 0) {
		printf("parent forked child=%d\n", (int)pid);
		return loop(h, fd);
	}
	who = "child";
	/* The parent's handle is the parent's: every call fails here. */
	printf("child old handle_event=%d set_callback=%d join=%d\n", oc_ev_handle_event(h),
		oc_ev_set_callback_fn(h, 1, OC_EV_GROUP_CLASS, on_group), oc_ev_group_join(h, argv[1], "x"));
	oc_ev_unregister(h); /* closes the child's copies of its descriptors */
	ch = start(argv[1], &cfd);
	if (ch == NULL)
		return 1;
	return loop(ch, cfd);
}
