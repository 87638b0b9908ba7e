/*
 * ocf/oc_event.h - the OCF Cluster Event Notification API (draft 0.1), as
 * corral implements it in liboc_event.so (also installed as lib_oc_event.so,
 * the name the API's section 2.2 gives).
 *
 * The library is plain C: it starts no thread, installs no signal handler
 * and speaks corral's client protocol (proto/client/SPEC.md) to the agent
 * on the local node over $CORRAL_DATA_DIR/client.sock (default
 * /var/lib/corral/client.sock). See oc_event(3).
 *
 * Where the draft's text is not valid C, or contradicts itself, this header
 * chooses what lets the draft's section 5 example compile unchanged apart
 * from "int main(void)" and full prototypes. Each choice is marked
 * "Choice:" below.
 *
 * Compiles warning-free with gcc -std=c99 -Wall -Wextra -pedantic and with
 * g++.
 */
#ifndef OCF_OC_EVENT_H
#define OCF_OC_EVENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Choice: the draft uses "uint" throughout. glibc defines it only with
 * _DEFAULT_SOURCE, so -std=c99 programs would not know it; repeating the
 * typedef is allowed in every C dialect and in C++.
 */
typedef unsigned int uint;

#ifdef __cplusplus
extern "C" {
#endif

/* Return values of the API's int functions. */
#define OC_SUCCESS 0
#define OC_FAILURE (-1)

/* The event service handle: opaque, one connection to the local agent. */
typedef struct oc_ev_s oc_ev_t;

/*
 * oc_ed_t is an event descriptor, unique across all classes: the class in
 * the upper 10 bits, the event in the lower 22 (draft section 4.1).
 * Choice: the draft's OC_EV_EVENT_SHIFT names the width of the class field
 * (10), not a shift; it is kept with that value. The macros take the
 * parentheses and the "uint" spelling the draft meant.
 */
typedef uint32_t oc_ed_t;
typedef oc_ed_t oc_ev_event_t; /* the name the draft's section 5 uses */

#define OC_EV_CLASS_SHIFT 22
#define OC_EV_EVENT_SHIFT 10
#define OC_EV_EVENT_MASK (~((uint)~0u << OC_EV_CLASS_SHIFT))
#define OC_EV_GET_CLASS(ed) ((uint)(ed) >> OC_EV_CLASS_SHIFT)
#define OC_EV_GET_EVENT(ed) ((uint)(ed) & OC_EV_EVENT_MASK)
#define OC_EV_SET_CLASS(cl, ev) (((uint)(cl) << OC_EV_CLASS_SHIFT) | ((uint)(ev) & OC_EV_EVENT_MASK))

/* Event classes. Choice: the draft's prototype says event_class_t, its
 * enum oc_ev_class_t; both name the same type. */
typedef enum oc_ev_class_s {
	OC_EV_COMM_CLASS = 1, /* connectivity */
	OC_EV_MEMB_CLASS,     /* membership */
	OC_EV_GROUP_CLASS     /* group messaging */
} oc_ev_class_t;
typedef oc_ev_class_t event_class_t;
/* The draft's section 4.1 example uses OC_EV_MS_CLASS for the membership
 * class; Heartbeat spelled the connectivity class OC_EV_CONN_CLASS. */
#define OC_EV_MS_CLASS OC_EV_MEMB_CLASS
#define OC_EV_CONN_CLASS OC_EV_COMM_CLASS

/*
 * Events. The values are those of proto/client/SPEC.md ("EVENT"); event 0
 * of each class (INVALID) is never delivered.
 */
typedef enum oc_cs_event_s {
	OC_EV_CS_INVALID = OC_EV_SET_CLASS(OC_EV_COMM_CLASS, 0),
	OC_EV_CS_INTERFACE_ADDED,  /* (local) comm interface added */
	OC_EV_CS_INTERFACE_FAILED, /* (local) comm interface failed */
	OC_EV_CS_NODE_ELIGIBLE,    /* node(s) added to cluster eligibility */
	OC_EV_CS_NODE_INELIGIBLE,  /* node(s) removed from cluster eligibility */
	OC_EV_CS_P2P_ESTABLISHED,  /* p2p connection established with a node */
	OC_EV_CS_P2P_LOST          /* p2p connection lost */
} oc_cs_event_t;

typedef enum oc_ms_event_s {
	OC_EV_MS_INVALID = OC_EV_SET_CLASS(OC_EV_MEMB_CLASS, 0),
	OC_EV_MS_NEWVIEW,   /* agreement on a new membership */
	OC_EV_MS_SUSPECT,   /* membership uncertain: communication lost */
	OC_EV_MS_RECOVERED, /* communication regained after SUSPECT */
	OC_EV_MS_SHUTDOWN,  /* the local agent is shutting down */
	OC_EV_MS_EVICTED    /* a new membership without the local node */
} oc_ms_event_t;

typedef enum oc_gs_event_s {
	OC_EV_GS_INVALID = OC_EV_SET_CLASS(OC_EV_GROUP_CLASS, 0),
	OC_EV_GS_JOIN,      /* a member joined a group */
	OC_EV_GS_LEAVE,     /* a member left a group (g_reason says why) */
	OC_EV_GS_BROADCAST, /* a message to every group-class subscriber */
	OC_EV_GS_MULTICAST, /* a message to every member of a group */
	OC_EV_GS_UNICAST,   /* a message to one member of a group */
	OC_EV_GS_REPLY      /* a reply to a message this member sent */
} oc_gs_event_t;

/* Priorities: values closer to zero are processed first, node-wide (across
 * every process registered on this node). Valid priorities are 0..255. */
#define OC_EV_PRIO_HIGH 64
#define OC_EV_PRIO_MED 128
#define OC_EV_PRIO_LOW 192

/* Activation styles (oc_ev_activate). */
#define OC_EV_AS_NORETURN 1
#define OC_EV_AS_GET_FD 2
#define OC_EV_AS_SIGNAL 3

/*
 * Choice: the draft writes "typedef oc_ev_callback_t void fn(...)", which is
 * not C, and its section 5 uses oc_ev_callback_t as the return type of the
 * callbacks ("oc_ev_callback_t my_ms_events();"). So oc_ev_callback_t is
 * void, and oc_ev_set_callback takes "const oc_ev_callback_t *fn", a pointer
 * to the function. Every callback is called as an oc_ev_callback_fn, with
 * data pointing to the class's struct below (or NULL when size is 0). New
 * code may use oc_ev_set_callback_fn, which is typed.
 */
typedef void oc_ev_callback_t;
typedef void (*oc_ev_callback_fn)(oc_ed_t event, const uint *cookie, size_t size, const void *data);

/* oc_ev_get_version: the API version (0.1), corral's revision of its
 * additions, and the client protocol version agreed with the agent. */
typedef struct oc_ver_s {
	uint v_major;    /* 0 */
	uint v_minor;    /* 1 */
	uint v_revision; /* corral's additions to the draft; grows with them */
	uint v_protocol; /* client protocol version in use with the agent */
} oc_ver_t;

/*
 * Membership data (class OC_EV_MEMB_CLASS): Heartbeat's layout, with
 * corral's 64-bit node ids and view numbers.
 *
 * m_array holds m_n_member + m_n_in + m_n_out nodes: the members of the new
 * view at [m_memb_idx, m_memb_idx + m_n_member), m_memb_idx is always 0,
 * sorted oldest first (node_born_on, then node_id); the members new in this
 * view at [m_in_idx, ...) with m_in_idx = m_n_member; the nodes of the
 * previous view that are not in this one at [m_out_idx, ...) with
 * m_out_idx = m_n_member + m_n_in. Strings and the array live in one block,
 * valid until oc_ev_callback_done.
 */
typedef struct oc_node_s {
	char *node_uname;      /* node name; "" if unknown */
	uint64_t node_id;      /* node id, unique in the cluster */
	uint64_t node_born_on; /* view instance it became a member in */
	char *node_addr;       /* corral: agent address "ip:port"; "" if unknown */
} oc_node_t;

typedef struct oc_ev_membership_s {
	uint64_t m_instance; /* view number; grows with every NEWVIEW */
	uint m_n_member;     /* members of this view */
	uint m_memb_idx;     /* index of the first member in m_array: 0 */
	uint m_n_out;        /* members of the previous view lost */
	uint m_out_idx;      /* index of the first lost node */
	uint m_n_in;         /* members new in this view */
	uint m_in_idx;       /* index of the first new member */
	oc_node_t m_array[1]; /* m_n_member + m_n_in + m_n_out entries */
} oc_ev_membership_t;

/* Connectivity data (class OC_EV_COMM_CLASS). */
typedef struct oc_interface_s {
	char *if_name;              /* e.g. "eth0" */
	uint if_family;             /* 0 none, 4 IPv4, 6 IPv6 */
	uint if_prefix_len;         /* prefix length of the address */
	unsigned char if_addr[16];  /* network order; 4 bytes used for IPv4 */
	int if_up;                  /* usable for cluster traffic */
} oc_interface_t;

typedef struct oc_peer_s {
	oc_node_t p_node; /* node_born_on is 0 */
	int p_eligible;   /* may be a member of the cluster */
	int p_connected;  /* a point-to-point link to it is up */
} oc_peer_t;

typedef struct oc_ev_connect_s {
	oc_interface_t c_interface;  /* subject of INTERFACE_ADDED / _FAILED */
	uint c_n_node;               /* subjects of NODE_* and P2P_* */
	oc_node_t *c_nodes;
	uint c_n_interface;          /* every known local interface */
	oc_interface_t *c_interfaces;
	uint c_n_peer;               /* every known node */
	oc_peer_t *c_peers;
} oc_ev_connect_t;

/* Group messaging data (class OC_EV_GROUP_CLASS). */
typedef struct oc_group_member_s {
	uint64_t gm_node;    /* node id of the member's agent */
	uint64_t gm_member;  /* member id: unique cluster-wide, never reused */
	uint64_t gm_born_on; /* seq of its JOIN to the group; smaller is older */
	uint32_t gm_pid;     /* the member process; 0 if unknown */
	char *gm_name;       /* member name; may be "" */
} oc_group_member_t;

/* g_reason of OC_EV_GS_LEAVE. */
#define OC_EV_GS_LEFT 1         /* it asked */
#define OC_EV_GS_PROCESS_DOWN 2 /* its process ended or did not come back */
#define OC_EV_GS_NODE_DOWN 3    /* its node left the view */
#define OC_EV_GS_BEHIND 4       /* it missed messages it was owed */

typedef struct oc_ev_group_s {
	char *g_name;               /* the group; BROADCAST: the sender's label */
	oc_group_member_t g_from;   /* JOIN, LEAVE: the member; messages: sender */
	uint g_reason;              /* LEAVE: OC_EV_GS_LEFT ..; else 0 */
	uint64_t g_target;          /* UNICAST, REPLY: the member addressed */
	uint64_t g_msgid;           /* the sender's id for the message */
	uint64_t g_reply_to;        /* REPLY: seq of the message answered */
	uint g_n_member;            /* JOIN, LEAVE: the group after the change */
	oc_group_member_t *g_members; /* oldest first */
	size_t g_len;               /* payload bytes */
	const void *g_payload;
} oc_ev_group_t;

/* The API (draft section 3). */
oc_ev_t *oc_ev_register(void);
int oc_ev_unregister(oc_ev_t *h);
int oc_ev_set_callback(const oc_ev_t *h, int pri, event_class_t class_, const oc_ev_callback_t *fn);
/*
 * Choice: the draft's section 3.3 gives "void *arg" and says the signal is
 * "specified in location pointed to by arg"; its section 5 passes SIGUSR1
 * itself. The prototype is variadic and section 5 wins: OC_EV_AS_NORETURN
 * takes NULL (or nothing), OC_EV_AS_GET_FD an int * that receives the fd,
 * OC_EV_AS_SIGNAL the signal number as an int.
 */
int oc_ev_activate(const oc_ev_t *h, int style, ...);
int oc_ev_handle_event(const oc_ev_t *h);
void oc_ev_callback_done(const uint *cookie);
int oc_ev_get_version(const oc_ev_t *h, oc_ver_t *ver);

/* corral additions, not in the draft. */

/* oc_ev_set_callback with a typed function pointer. */
int oc_ev_set_callback_fn(const oc_ev_t *h, int pri, event_class_t class_, oc_ev_callback_fn fn);
/* The cluster-wide sequence number of the event a cookie belongs to: its
 * position in the cluster log, the same on every node; 0 for a local-only
 * event. */
uint64_t oc_ev_event_seq(const uint *cookie);
/* Join a group as this handle's member (its name: member_name, may be
 * NULL) and leave it. They block until the cluster has committed the
 * change; the membership survives reconnects to the same agent. */
int oc_ev_group_join(const oc_ev_t *h, const char *group, const char *member_name);
int oc_ev_group_leave(const oc_ev_t *h, const char *group);

#ifdef __cplusplus
}

/* In C++ a function does not convert to const void *: take it typed. */
inline int oc_ev_set_callback(const oc_ev_t *h, int pri, event_class_t class_, oc_ev_callback_fn fn)
{
	return oc_ev_set_callback_fn(h, pri, class_, fn);
}
#endif

#endif /* OCF_OC_EVENT_H */
