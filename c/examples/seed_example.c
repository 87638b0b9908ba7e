/*
 * seed_example.c - the example of the OCF event API draft's section 5,
 * completed: "int main" with arguments, full prototypes, the three
 * activation styles chosen by argv[1], and callbacks that print one line
 * per event:
 *
 *   event desc=0x00800001 class=MEMB name=NEWVIEW seq=42 instance=3 members=n1,n2 joined= left=n3
 *
 * Usage: seed_example noreturn|fd|signal [group [member-name]]
 * With a group, the process joins it (oc_ev_group_join) once active.
 *
 * Build: gcc -o seed_example seed_example.c $(pkg-config --cflags --libs oc_event)
 */
#define _POSIX_C_SOURCE 200809L
#include <ocf/oc_event.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

#define TRUE 1
#define FALSE 0

oc_ev_callback_t my_cs_events(oc_ev_event_t event, const uint *cookie, size_t size, const oc_ev_connect_t *connect);
oc_ev_callback_t my_ms_events(oc_ev_event_t event, const uint *cookie, size_t size, const oc_ev_membership_t *mdata);
oc_ev_callback_t my_gs_events(oc_ev_event_t event, const uint *cookie, size_t size, const oc_ev_group_t *msg);
static void my_sigusr1(int signum);
static void my_install_signal_handler(int sig, void (*fn)(int));

static volatile sig_atomic_t my_got_sigusr1;

enum { GIVE_CONTROL_TO_EVENT_SYSTEM, GET_FILE_DESCRIPTOR_FOR_SELECT, USE_SIGNALS_OF_MY_CHOICE };

static const char *event_name(oc_ev_event_t ev)
{
	static const char *const cs[] = {"INVALID", "INTERFACE_ADDED", "INTERFACE_FAILED", "NODE_ELIGIBLE",
		"NODE_INELIGIBLE", "P2P_ESTABLISHED", "P2P_LOST"};
	static const char *const ms[] = {"INVALID", "NEWVIEW", "SUSPECT", "RECOVERED", "SHUTDOWN", "EVICTED"};
	static const char *const gs[] = {"INVALID", "JOIN", "LEAVE", "BROADCAST", "MULTICAST", "UNICAST", "REPLY"};
	uint e = OC_EV_GET_EVENT(ev);
	switch (OC_EV_GET_CLASS(ev)) {
	case OC_EV_COMM_CLASS:
		return e < sizeof cs / sizeof cs[0] ? cs[e] : "?";
	case OC_EV_MEMB_CLASS:
		return e < sizeof ms / sizeof ms[0] ? ms[e] : "?";
	case OC_EV_GROUP_CLASS:
		return e < sizeof gs / sizeof gs[0] ? gs[e] : "?";
	}
	return "?";
}

static void head(const char *cls, oc_ev_event_t event, const uint *cookie)
{
	printf("event desc=0x%08x class=%s name=%s seq=%llu", (unsigned)event, cls, event_name(event),
		(unsigned long long)oc_ev_event_seq(cookie));
}

static void node_list(const char *label, const oc_node_t *a, uint n)
{
	uint i;
	printf(" %s=", label);
	for (i = 0; i < n; i++)
		printf("%s%s", i ? "," : "", a[i].node_uname[0] ? a[i].node_uname : "?");
}

int main(int argc, char **argv)
{
	oc_ev_t *ev_handle;
	int activation_style, my_ev_fd;
	const char *group = argc > 2 ? argv[2] : NULL;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2 || strcmp(argv[1], "noreturn") == 0)
		activation_style = GIVE_CONTROL_TO_EVENT_SYSTEM;
	else if (strcmp(argv[1], "fd") == 0)
		activation_style = GET_FILE_DESCRIPTOR_FOR_SELECT;
	else if (strcmp(argv[1], "signal") == 0)
		activation_style = USE_SIGNALS_OF_MY_CHOICE;
	else
		activation_style = -1;

	/*
	 * Register for event notification
	 */
	ev_handle = oc_ev_register();
	if (ev_handle == NULL) {
		fprintf(stderr, "oc_ev_register: %s\n", strerror(errno));
		return 1;
	}

	/*
	 * Install a callback function in the
	 * low priority band for Connectivity
	 * Events.
	 */
	oc_ev_set_callback(ev_handle, OC_EV_PRIO_LOW, OC_EV_COMM_CLASS, my_cs_events);

	/*
	 * Install a callback function in the
	 * medium priority band for Membership
	 * Events.
	 */
	oc_ev_set_callback(ev_handle, OC_EV_PRIO_MED, OC_EV_MEMB_CLASS, my_ms_events);

	/*
	 * Install a callback function in the
	 * high priority band for Group Messaging
	 * Events.
	 */
	oc_ev_set_callback(ev_handle, OC_EV_PRIO_HIGH, OC_EV_GROUP_CLASS, my_gs_events);

	/*
	 * There are 3 activation styles to
	 * accommodate various application needs.
	 * Only one would be used at a time.
	 */
	switch (activation_style) {

	case GIVE_CONTROL_TO_EVENT_SYSTEM:

		oc_ev_activate(ev_handle, OC_EV_AS_NORETURN, NULL);
		printf("ready style=noreturn\n");
		if (group != NULL && oc_ev_group_join(ev_handle, group, argc > 3 ? argv[3] : NULL) != OC_SUCCESS)
			fprintf(stderr, "oc_ev_group_join: %s\n", strerror(errno));
		/*
		 * Pass control to the event system
		 * for good. My thread can do NO
		 * intermediate processing. Control
		 * will return only thru the registered
		 * callback function.
		 */
		oc_ev_handle_event(ev_handle);
		break;

	case GET_FILE_DESCRIPTOR_FOR_SELECT:

		oc_ev_activate(ev_handle, OC_EV_AS_GET_FD, &my_ev_fd);
		printf("ready style=fd\n");
		if (group != NULL && oc_ev_group_join(ev_handle, group, argc > 3 ? argv[3] : NULL) != OC_SUCCESS)
			fprintf(stderr, "oc_ev_group_join: %s\n", strerror(errno));
		for (;;) {
			fd_set my_select_fds;
			FD_ZERO(&my_select_fds);
			FD_SET(my_ev_fd, &my_select_fds);
			if (select(my_ev_fd + 1, &my_select_fds, NULL, NULL, NULL) < 0 && errno != EINTR)
				return 1;
			if (FD_ISSET(my_ev_fd, &my_select_fds)) {
				/*
				 * The selected fd data is opaque.
				 * Membership data delivered thru
				 * callback only, so pass control
				 * to the event system. Callbacks
				 * will be called from there.
				 */
				oc_ev_handle_event(ev_handle);
			}
		}
		break;

	case USE_SIGNALS_OF_MY_CHOICE: {
		sigset_t block, old;

		my_got_sigusr1 = FALSE;
		my_install_signal_handler(SIGUSR1, my_sigusr1);
		/* Blocked outside sigsuspend, so that none is lost between
		 * looking at the flag and waiting. */
		sigemptyset(&block);
		sigaddset(&block, SIGUSR1);
		sigprocmask(SIG_BLOCK, &block, &old);

		oc_ev_activate(ev_handle, OC_EV_AS_SIGNAL, SIGUSR1);
		printf("ready style=signal\n");
		if (group != NULL && oc_ev_group_join(ev_handle, group, argc > 3 ? argv[3] : NULL) != OC_SUCCESS)
			fprintf(stderr, "oc_ev_group_join: %s\n", strerror(errno));

		for (;;) {
			while (!my_got_sigusr1)
				sigsuspend(&old);
			/*
			 * My specified signal has fired,
			 * so new membership data must be
			 * available. Pass control to the
			 * event system to call my callbacks.
			 */
			my_got_sigusr1 = FALSE;
			oc_ev_handle_event(ev_handle);
		}
		break;
	}

	default:
		printf("Sorry, only 3 activation styles are supported...\n");
		return 2;
	}
	return 0;
}

/*
 * Handler for Connectivity Events
 */
oc_ev_callback_t my_cs_events(oc_ev_event_t event, const uint *cookie, size_t size, const oc_ev_connect_t *connect)
{
	head("COMM", event, cookie);
	if (size > 0 && connect != NULL) {
		if (connect->c_interface.if_name[0])
			printf(" interface=%s", connect->c_interface.if_name);
		node_list("nodes", connect->c_nodes, connect->c_n_node);
	}
	printf("\n");
	/*
	 * All done processing this Connectivity Event.
	 * Let the event system know it's done.
	 */
	oc_ev_callback_done(cookie);
	return;
}

/*
 * Handler for Membership Events
 */
oc_ev_callback_t my_ms_events(oc_ev_event_t event, const uint *cookie, size_t size, const oc_ev_membership_t *mdata)
{
	head("MEMB", event, cookie);
	switch (event) {
	case OC_EV_MS_NEWVIEW:
	case OC_EV_MS_EVICTED:
		if (size > 0 && mdata != NULL) {
			printf(" instance=%llu", (unsigned long long)mdata->m_instance);
			node_list("members", &mdata->m_array[mdata->m_memb_idx], mdata->m_n_member);
			node_list("joined", &mdata->m_array[mdata->m_in_idx], mdata->m_n_in);
			node_list("left", &mdata->m_array[mdata->m_out_idx], mdata->m_n_out);
		}
		break;

	default:
		break;
	}
	printf("\n");

	/*
	 * All done processing this Membership Event.
	 * Let the event system know it's done.
	 */
	oc_ev_callback_done(cookie);
	return;
}

/*
 * Handler for Group Messaging Events
 */
oc_ev_callback_t my_gs_events(oc_ev_event_t event, const uint *cookie, size_t size, const oc_ev_group_t *msg)
{
	head("GROUP", event, cookie);
	if (size > 0 && msg != NULL) {
		uint i;
		printf(" group=%s from=%llu reason=%u members=", msg->g_name, (unsigned long long)msg->g_from.gm_member,
			msg->g_reason);
		for (i = 0; i < msg->g_n_member; i++)
			printf("%s%llu", i ? "," : "", (unsigned long long)msg->g_members[i].gm_member);
		printf(" payload=%.*s", (int)msg->g_len, msg->g_len ? (const char *)msg->g_payload : "");
	}
	printf("\n");
	/*
	 * All done processing this Group Messaging Event.
	 * Let the event system know it's done.
	 */
	oc_ev_callback_done(cookie);
	return;
}

static void my_sigusr1(int signum)
{
	(void)signum;
	my_got_sigusr1 = TRUE;
	return;
}

static void my_install_signal_handler(int sig, void (*fn)(int))
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = fn;
	sigemptyset(&sa.sa_mask);
	sigaction(sig, &sa, NULL);
}
