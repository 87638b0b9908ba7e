/*
 * wire_event.c - the EVENT body's data (proto/client/events.go) decoded
 * into one block of oc_event.h structs: ocw_parse_event, and the
 * validation-only passes wire.c's ocw_check_body runs over EVENT, QUERY
 * and GROUP_MEMBERS reply bodies.
 */
#include "wire_internal.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../include/ocf/oc_event.h"

/* ---- event data (events.go) into one block ---------------------------- */

/* The block: the class's struct and its arrays first (aligned), then the
 * strings and the payload. Each decoder runs twice over the same bytes:
 * first with base NULL, validating and counting (nothing is written, so an
 * error leaves nothing to free), then over the block, where it cannot fail. */
typedef struct bld {
	unsigned char *base; /* NULL while sizing */
	size_t a;            /* bytes of the aligned area used */
	size_t s;            /* bytes of the string area used */
	size_t a_cap;        /* filling: where the string area starts */
} bld;

union ocw_maxalign { uint64_t u; void *p; size_t z; double d; };
#define ALIGN offsetof(struct { char c; union ocw_maxalign x; }, x)

static size_t align_up(size_t k) { return (k + ALIGN - 1) / ALIGN * ALIGN; }

static void *bld_arr(bld *B, size_t count, size_t size)
{
	size_t off;

	if (count == 0)
		return NULL;
	off = align_up(B->a);
	B->a = off + count * size;
	return B->base ? B->base + off : NULL;
}

static char *bld_str(bld *B, const void *src, size_t k)
{
	size_t off = B->s;
	char *p;

	B->s += k + 1;
	if (B->base == NULL)
		return NULL;
	p = (char *)B->base + B->a_cap + off;
	if (k > 0)
		memcpy(p, src, k);
	p[k] = '\0';
	return p;
}

static void *bld_bytes(bld *B, const void *src, size_t k)
{
	size_t off = B->s;
	unsigned char *p;

	if (k == 0)
		return NULL;
	B->s += k;
	if (B->base == NULL)
		return NULL;
	p = B->base + B->a_cap + off;
	memcpy(p, src, k);
	return p;
}

#define ADDR_MIN 4
#define NODE_MIN (8 + 8 + ADDR_MIN + 2)
#define IFACE_MIN (4 + 2)
#define PEER_MIN (1 + NODE_MIN)
#define MEMBER_MIN (8 + 8 + 8 + 4 + 2)

static size_t fmt_u(char *p, unsigned v)
{
	return (size_t)sprintf(p, "%u", v);
}

/* netip.Addr.String of a 16-byte address (RFC 5952; IPv4-mapped as
 * ::ffff:a.b.c.d), without the zone. */
static size_t fmt_ip6(char *p, const uint8_t a[16])
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	unsigned w[8];
	int zs = 255, ze = 255, i, j;
	size_t k = 0;

	if (memcmp(a, mapped, 12) == 0)
		return (size_t)sprintf(p, "::ffff:%u.%u.%u.%u", a[12], a[13], a[14], a[15]);
	for (i = 0; i < 8; i++)
		w[i] = (unsigned)a[2 * i] << 8 | a[2 * i + 1];
	for (i = 0; i < 8; i++) {
		for (j = i; j < 8 && w[j] == 0; j++)
			;
		if (j - i >= 2 && j - i > ze - zs) {
			zs = i;
			ze = j;
		}
	}
	for (i = 0; i < 8; i++) {
		if (i == zs) {
			p[k++] = ':';
			p[k++] = ':';
			i = ze;
			if (i >= 8)
				break;
		} else if (i > 0) {
			p[k++] = ':';
		}
		k += (size_t)sprintf(p + k, "%x", w[i]);
	}
	return k;
}

/* readAddrPort; the text of netip.AddrPort.String ("" for no address) as
 * a string of the block. */
static char *rd_addr(rd *r, bld *B, const char *what)
{
	char f[128], text[320];
	uint8_t family, zlen;
	uint16_t port;
	const uint8_t *a, *z = NULL;
	size_t k = 0;

	snprintf(f, sizeof f, "%s family", what);
	family = rd_u8(r, f);
	snprintf(f, sizeof f, "%s zone length", what);
	zlen = rd_u8(r, f);
	snprintf(f, sizeof f, "%s port", what);
	port = rd_u16(r, f);
	snprintf(f, sizeof f, "%s address", what);
	switch (family) {
	case 0:
		if (zlen != 0 || port != 0)
			rd_fail(r, OCW_CODE_FIELD, "%s: no address but zone length %u, port %u", what, (unsigned)zlen, (unsigned)port);
		break;
	case 4:
		if (zlen != 0)
			rd_fail(r, OCW_CODE_FIELD, "%s: IPv4 address with a zone", what);
		if ((a = rd_bytes(r, 4, f)) != NULL)
			k = (size_t)sprintf(text, "%u.%u.%u.%u:%u", a[0], a[1], a[2], a[3], (unsigned)port);
		break;
	case 6:
		a = rd_bytes(r, 16, f);
		if (zlen > 0) {
			snprintf(f, sizeof f, "%s zone", what);
			z = rd_bytes(r, zlen, f);
		}
		if (a != NULL && !r->bad) {
			text[k++] = '[';
			k += fmt_ip6(text + k, a);
			if (z != NULL) {
				text[k++] = '%';
				memcpy(text + k, z, zlen);
				k += zlen;
			}
			text[k++] = ']';
			text[k++] = ':';
			k += fmt_u(text + k, port);
		}
		break;
	default:
		rd_fail(r, OCW_CODE_FIELD, "%s: unknown address family %u", what, (unsigned)family);
	}
	if (r->bad)
		k = 0;
	return bld_str(B, text, k);
}

static void rd_node(rd *r, bld *B, oc_node_t *out, const char *what)
{
	char f[64];
	uint64_t id, born;
	char *addr, *name;
	const uint8_t *p;
	size_t k;

	snprintf(f, sizeof f, "%s id", what);
	id = rd_u64(r, f);
	snprintf(f, sizeof f, "%s born-on", what);
	born = rd_u64(r, f);
	snprintf(f, sizeof f, "%s addr", what);
	addr = rd_addr(r, B, f);
	snprintf(f, sizeof f, "%s name", what);
	p = rd_str16(r, OCW_MAX_NAME_LEN, f, &k);
	name = bld_str(B, p, k);
	if (out != NULL) {
		out->node_uname = name;
		out->node_id = id;
		out->node_born_on = born;
		out->node_addr = addr;
	}
}

/* A node list into arr[0..) (arr NULL while sizing); its length. */
static uint32_t rd_nodes_into(rd *r, bld *B, oc_node_t *arr, const char *what)
{
	uint32_t k = rd_count(r, what, OCW_MAX_NODES, NODE_MIN), i;

	for (i = 0; i < k; i++)
		rd_node(r, B, arr ? &arr[i] : NULL, what);
	return k;
}

static void rd_iface(rd *r, bld *B, oc_interface_t *out, const char *what)
{
	char f[64];
	uint8_t flags, family, bits;
	const uint8_t *a = NULL, *p;
	size_t k;
	char *name;

	snprintf(f, sizeof f, "%s flags", what);
	flags = rd_u8(r, f);
	snprintf(f, sizeof f, "%s family", what);
	family = rd_u8(r, f);
	snprintf(f, sizeof f, "%s prefix length", what);
	bits = rd_u8(r, f);
	snprintf(f, sizeof f, "%s reserved", what);
	rd_zero(r, 1, f);
	if (flags & ~1u)
		rd_fail(r, OCW_CODE_FIELD, "%s: unknown flags 0x%x", what, (unsigned)(flags & ~1u));
	snprintf(f, sizeof f, "%s address", what);
	switch (family) {
	case 0:
		if (bits != 0)
			rd_fail(r, OCW_CODE_FIELD, "%s: no address but prefix length %u", what, (unsigned)bits);
		break;
	case 4:
		a = rd_bytes(r, 4, f);
		if (bits > 32)
			rd_fail(r, OCW_CODE_FIELD, "%s: IPv4 prefix length %u", what, (unsigned)bits);
		break;
	case 6:
		a = rd_bytes(r, 16, f);
		if (bits > 128)
			rd_fail(r, OCW_CODE_FIELD, "%s: IPv6 prefix length %u", what, (unsigned)bits);
		break;
	default:
		rd_fail(r, OCW_CODE_FIELD, "%s: unknown address family %u", what, (unsigned)family);
	}
	snprintf(f, sizeof f, "%s name", what);
	p = rd_str16(r, OCW_MAX_NAME_LEN, f, &k);
	name = bld_str(B, p, k);
	if (out != NULL) {
		memset(out, 0, sizeof *out);
		out->if_name = name;
		out->if_family = family;
		out->if_prefix_len = bits;
		if (a != NULL)
			memcpy(out->if_addr, a, family == 4 ? 4 : 16);
		out->if_up = flags & 1;
	}
}

static void rd_membership(rd *r, bld *B)
{
	oc_ev_membership_t *m;
	oc_node_t *arr = NULL;
	size_t off = align_up(B->a), total;
	uint64_t inst;
	uint32_t nm, ni, no;

	m = B->base ? (oc_ev_membership_t *)(void *)(B->base + off) : NULL;
	/* m_array is declared [1] and holds every node: address it through a
	 * plain pointer to the first element. */
	if (m != NULL)
		arr = (oc_node_t *)(void *)((unsigned char *)m + offsetof(oc_ev_membership_t, m_array));
	inst = rd_u64(r, "instance");
	nm = rd_nodes_into(r, B, arr, "member");
	ni = rd_nodes_into(r, B, arr ? arr + nm : NULL, "joined");
	no = rd_nodes_into(r, B, arr ? arr + nm + ni : NULL, "left");
	total = offsetof(oc_ev_membership_t, m_array) + ((size_t)nm + ni + no) * sizeof(oc_node_t);
	B->a = off + (total > sizeof *m ? total : sizeof *m);
	if (m != NULL) {
		m->m_instance = inst;
		m->m_n_member = nm;
		m->m_memb_idx = 0;
		m->m_n_in = ni;
		m->m_in_idx = nm;
		m->m_n_out = no;
		m->m_out_idx = nm + ni;
	}
}

static void rd_connectivity(rd *r, bld *B)
{
	oc_ev_connect_t *c = bld_arr(B, 1, sizeof *c);
	oc_interface_t subject;
	uint32_t k, i;

	memset(&subject, 0, sizeof subject);
	rd_iface(r, B, c ? &subject : NULL, "interface");
	if (c != NULL)
		c->c_interface = subject;
	/* A node list: count and nodes, then its array. */
	k = rd_count(r, "subject", OCW_MAX_NODES, NODE_MIN);
	{
		oc_node_t *arr = bld_arr(B, k, sizeof *arr);
		for (i = 0; i < k; i++)
			rd_node(r, B, arr ? &arr[i] : NULL, "subject");
		if (c != NULL) {
			c->c_n_node = k;
			c->c_nodes = arr;
		}
	}
	k = rd_count(r, "interface", OCW_MAX_INTERFACES, IFACE_MIN);
	{
		oc_interface_t *arr = bld_arr(B, k, sizeof *arr);
		for (i = 0; i < k; i++)
			rd_iface(r, B, arr ? &arr[i] : NULL, "interface");
		if (c != NULL) {
			c->c_n_interface = k;
			c->c_interfaces = arr;
		}
	}
	k = rd_count(r, "peer", OCW_MAX_NODES, PEER_MIN);
	{
		oc_peer_t *arr = bld_arr(B, k, sizeof *arr);
		for (i = 0; i < k; i++) {
			uint8_t flags = rd_u8(r, "peer flags");

			if (flags & ~3u)
				rd_fail(r, OCW_CODE_FIELD, "peer %lu: unknown flags 0x%x", (unsigned long)i, (unsigned)(flags & ~3u));
			rd_node(r, B, arr ? &arr[i].p_node : NULL, "peer");
			if (arr != NULL) {
				arr[i].p_eligible = flags & 1;
				arr[i].p_connected = (flags & 2) != 0;
			}
		}
		if (c != NULL) {
			c->c_n_peer = k;
			c->c_peers = arr;
		}
	}
}

static void rd_member(rd *r, bld *B, oc_group_member_t *out, const char *what)
{
	char f[64];
	uint64_t node, member, born;
	uint32_t pid;
	const uint8_t *p;
	size_t k;
	char *name;

	snprintf(f, sizeof f, "%s node", what);
	node = rd_u64(r, f);
	snprintf(f, sizeof f, "%s member id", what);
	member = rd_u64(r, f);
	snprintf(f, sizeof f, "%s born-on", what);
	born = rd_u64(r, f);
	snprintf(f, sizeof f, "%s pid", what);
	pid = rd_u32(r, f);
	snprintf(f, sizeof f, "%s name", what);
	p = rd_str16(r, OCW_MAX_NAME_LEN, f, &k);
	name = bld_str(B, p, k);
	if (out != NULL) {
		out->gm_node = node;
		out->gm_member = member;
		out->gm_born_on = born;
		out->gm_pid = pid;
		out->gm_name = name;
	}
}

static void rd_group_data(rd *r, bld *B, uint32_t desc)
{
	oc_ev_group_t *g = bld_arr(B, 1, sizeof *g);
	oc_group_member_t from, *arr;
	const uint8_t *p;
	size_t k;
	char *name;
	uint8_t reason;
	uint64_t target, msgid, reply_to;
	uint32_t n, i;
	void *payload;

	memset(&from, 0, sizeof from);
	p = rd_str16(r, OCW_MAX_NAME_LEN, "group name", &k);
	name = bld_str(B, p, k);
	rd_member(r, B, g ? &from : NULL, "from");
	reason = rd_u8(r, "leave reason");
	rd_zero(r, 3, "group reserved");
	if (reason > 4)
		rd_fail(r, OCW_CODE_FIELD, "unknown leave reason %u", (unsigned)reason);
	target = rd_u64(r, "target");
	msgid = rd_u64(r, "msg id");
	reply_to = rd_u64(r, "reply to");
	n = rd_count(r, "group member", OCW_MAX_MEMBERS, MEMBER_MIN);
	arr = bld_arr(B, n, sizeof *arr);
	for (i = 0; i < n; i++)
		rd_member(r, B, arr ? &arr[i] : NULL, "group member");
	p = rd_payload(r, &k);
	payload = bld_bytes(B, p, k);
	/* checkReason: a reason belongs to LEAVE only. */
	if (!r->bad && reason != 0 && desc != OC_EV_GS_LEAVE)
		rd_fail(r, OCW_CODE_FIELD, "leave reason %u on %s", (unsigned)reason, gs_names[desc & 7]);
	if (g != NULL) {
		g->g_name = name;
		g->g_from = from;
		g->g_reason = reason;
		g->g_target = target;
		g->g_msgid = msgid;
		g->g_reply_to = reply_to;
		g->g_n_member = n;
		g->g_members = arr;
		g->g_len = k;
		g->g_payload = payload;
	}
}

/* The data of class c (1..3) after the event header, or a membership or
 * connectivity body (QUERY replies), into B. */
static void rd_data(rd *r, bld *B, unsigned c, uint32_t desc)
{
	switch (c) {
	case 1: rd_connectivity(r, B); break;
	case 2: rd_membership(r, B); break;
	case 3: rd_group_data(r, B, desc); break;
	}
}

/* ParseEvent (v1, v2) and ParseEventAt (v3: byte 13 is Flags). *cls: the
 * data class to read after the 16 bytes (0: none). */
static void rd_event_header(rd *r, uint8_t v, uint64_t *seq, uint32_t *desc, uint8_t *flags, unsigned *cls)
{
	unsigned c;

	*seq = rd_u64(r, "seq");
	*desc = rd_u32(r, "descriptor");
	c = rd_u8(r, "data class");
	*flags = 0;
	if (v >= 3) {
		/* The flags before the reserved bytes, as parseEvent: the first
		 * failure names the error. */
		*flags = rd_u8(r, "flags");
		if (*flags & ~(unsigned)OCW_EVENT_AWAIT_DONE)
			rd_fail(r, OCW_CODE_FIELD, "unknown event flags 0x%x", (unsigned)(*flags & ~(unsigned)OCW_EVENT_AWAIT_DONE));
		rd_zero(r, 2, "reserved");
	} else {
		rd_zero(r, 3, "reserved");
	}
	if (!desc_valid(*desc))
		rd_fail(r, OCW_CODE_FIELD, "unknown event descriptor 0x%08lx", (unsigned long)*desc);
	if (c != 0 && c != (*desc >> 22)) {
		rd_fail(r, OCW_CODE_FIELD, "data class %u for descriptor 0x%08lx, an event of class %lu", c, (unsigned long)*desc, (unsigned long)(*desc >> 22));
		c = 0;
	}
	*cls = c;
}

int ocw_parse_event(const uint8_t *body, size_t n, uint8_t v, ocw_event *out, ocw_err *e)
{
	rd r;
	bld B;
	uint64_t seq;
	uint32_t desc;
	uint8_t flags;
	unsigned cls;
	size_t hdr;

	out->data = NULL;
	out->size = 0;
	rd_init(&r, body, n, "EVENT", e);
	rd_event_header(&r, v, &seq, &desc, &flags, &cls);
	hdr = r.off;
	memset(&B, 0, sizeof B);
	rd_data(&r, &B, cls, desc);
	if (rd_end(&r) < 0)
		return -1;
	out->seq = seq;
	out->desc = desc;
	out->flags = flags;
	if (cls == 0)
		return 0;
	/* Second pass, over the block: the same reads cannot fail now. */
	B.a_cap = align_up(B.a);
	out->size = B.a_cap + B.s;
	B.base = calloc(1, out->size);
	if (B.base == NULL) {
		out->size = 0;
		errno = ENOMEM;
		rd_fail(&r, OCW_CODE_TOO_LARGE, "no memory for %zu bytes of event data", B.a_cap + B.s);
		return -1;
	}
	B.a = 0;
	B.s = 0;
	rd_init(&r, body, n, "EVENT", NULL);
	r.off = hdr;
	rd_data(&r, &B, cls, desc);
	out->data = B.base;
	return 0;
}

/* Validation only: the first pass. */
int check_event(const uint8_t *b, size_t n, uint8_t v, ocw_err *e)
{
	rd r;
	bld B;
	uint64_t seq;
	uint32_t desc;
	uint8_t flags;
	unsigned cls;

	rd_init(&r, b, n, "EVENT", e);
	rd_event_header(&r, v, &seq, &desc, &flags, &cls);
	memset(&B, 0, sizeof B);
	rd_data(&r, &B, cls, desc);
	return rd_end(&r);
}

int check_data(const uint8_t *b, size_t n, unsigned c, const char *msg, ocw_err *e)
{
	rd r;
	bld B;

	rd_init(&r, b, n, msg, e);
	memset(&B, 0, sizeof B);
	rd_data(&r, &B, c, 0);
	return rd_end(&r);
}

/* ParseGroupMembers: seq, then members of the event data's layout. */
int check_group_members(rd *r)
{
	uint32_t cnt, i;

	(void)rd_u64(r, "seq");
	cnt = rd_count(r, "member", OCW_MAX_MEMBERS, MEMBER_MIN);
	for (i = 0; i < cnt; i++) {
		bld B;

		memset(&B, 0, sizeof B);
		rd_member(r, &B, NULL, "member");
	}
	return rd_end(r);
}
