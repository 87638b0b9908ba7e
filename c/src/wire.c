/*
 * wire.c - corral's client protocol in C: frames, session, client bodies
 * (see wire.h; the event data decoder is wire_event.c). The Go decoders of
 * proto/ and proto/client/ are the reference; each check below names the
 * Go function it mirrors, and keeps its order where the order decides the
 * error code.
 */
#include "wire_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../include/ocf/oc_event.h"

/* ---- errors ---------------------------------------------------------- */

static void verr(ocw_err *e, int code, const char *prefix, const char *fmt, va_list ap)
{
	int k = 0;

	if (e == NULL)
		return;
	e->code = code;
	e->msg[0] = '\0';
	if (prefix != NULL) {
		k = snprintf(e->msg, sizeof e->msg, "%s: ", prefix);
		if (k < 0 || (size_t)k >= sizeof e->msg)
			return;
	}
	vsnprintf(e->msg + k, sizeof e->msg - (size_t)k, fmt, ap);
}

static int fail(ocw_err *e, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verr(e, code, NULL, fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- little-endian fields -------------------------------------------- */

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (unsigned)p[1] << 8); }
static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

/* ---- body reader: proto.Reader --------------------------------------- */

void rd_init(rd *r, const uint8_t *b, size_t n, const char *msg, ocw_err *e)
{
	r->b = b; r->n = n; r->off = 0; r->e = e; r->msg = msg; r->bad = 0;
}

void rd_fail(rd *r, int code, const char *fmt, ...)
{
	va_list ap;

	if (r->bad)
		return;
	r->bad = 1;
	va_start(ap, fmt);
	verr(r->e, code, r->msg, fmt, ap);
	va_end(ap);
}

static size_t rd_left(const rd *r) { return r->n - r->off; }

const uint8_t *rd_bytes(rd *r, size_t k, const char *field)
{
	const uint8_t *p;

	if (r->bad)
		return NULL;
	if (k > r->n - r->off) {
		rd_fail(r, OCW_CODE_FIELD, "truncated at %s (offset %zu, need %zu bytes, have %zu)", field, r->off, k, r->n - r->off);
		return NULL;
	}
	p = r->b + r->off;
	r->off += k;
	return p;
}

uint8_t rd_u8(rd *r, const char *f) { const uint8_t *p = rd_bytes(r, 1, f); return p ? p[0] : 0; }
uint16_t rd_u16(rd *r, const char *f) { const uint8_t *p = rd_bytes(r, 2, f); return p ? le16(p) : 0; }
uint32_t rd_u32(rd *r, const char *f) { const uint8_t *p = rd_bytes(r, 4, f); return p ? le32(p) : 0; }
uint64_t rd_u64(rd *r, const char *f) { const uint8_t *p = rd_bytes(r, 8, f); return p ? le64(p) : 0; }

void rd_zero(rd *r, size_t k, const char *field)
{
	const uint8_t *p = rd_bytes(r, k, field);
	size_t i;

	for (i = 0; p != NULL && i < k; i++) {
		if (p[i] != 0) {
			rd_fail(r, OCW_CODE_FIELD, "reserved %s is not zero", field);
			return;
		}
	}
}

/* str16 with a limit: proto.Reader.String16. *len is 0 after a failure. */
const uint8_t *rd_str16(rd *r, size_t max, const char *field, size_t *len)
{
	char lf[64];
	size_t k;
	const uint8_t *p;

	snprintf(lf, sizeof lf, "%s length", field);
	k = rd_u16(r, lf);
	*len = 0;
	if (!r->bad && k > max) {
		rd_fail(r, OCW_CODE_FIELD, "%s is %zu bytes, limit %zu", field, k, max);
		return NULL;
	}
	p = rd_bytes(r, k, field);
	if (p != NULL)
		*len = k;
	return p;
}

/* Reader.Err: the first error, or bytes left over. */
int rd_end(rd *r)
{
	if (!r->bad && r->off != r->n)
		rd_fail(r, OCW_CODE_FIELD, "%zu unexpected bytes after the last field", r->n - r->off);
	return r->bad ? -1 : 0;
}

/* count of events.go: a u32 checked against its limit and the bytes left,
 * each item taking at least least bytes; 0 on failure. */
uint32_t rd_count(rd *r, const char *what, uint32_t limit, size_t least)
{
	char f[64];
	uint32_t k;

	snprintf(f, sizeof f, "%s count", what);
	k = rd_u32(r, f);
	if (k > limit || (uint64_t)k * least > (uint64_t)rd_left(r)) {
		rd_fail(r, OCW_CODE_FIELD, "%s count %lu does not fit %zu bytes left (limit %lu)", what, (unsigned long)k, rd_left(r), (unsigned long)limit);
		return 0;
	}
	return k;
}

/* utf8.Valid: shortest form, no surrogates, at most U+10FFFF. */
static int utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = s[i];
		size_t k;
		uint8_t lo = 0x80, hi = 0xBF;

		if (c < 0x80) { i++; continue; }
		if (c >= 0xC2 && c <= 0xDF) k = 1;
		else if (c >= 0xE0 && c <= 0xEF) { k = 2; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
		else if (c >= 0xF0 && c <= 0xF4) { k = 3; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
		else return 0;
		if (n - i - 1 < k)
			return 0;
		if (s[i + 1] < lo || s[i + 1] > hi)
			return 0;
		for (size_t j = 2; j <= k; j++)
			if (s[i + j] < 0x80 || s[i + j] > 0xBF)
				return 0;
		i += k + 1;
	}
	return 1;
}

/* event.Descriptor.Valid: the descriptors of types/event/descriptor.go
 * (the INVALID event 0 of each class is not one). */
int desc_valid(uint32_t d)
{
	uint32_t ev = d & 0x3FFFFFu;

	switch (d >> 22) {
	case 1: return ev >= 1 && ev <= 6;
	case 2: return ev >= 1 && ev <= 5;
	case 3: return ev >= 1 && ev <= 6;
	}
	return 0;
}

/* ---- frame header: proto.ParseHeader, CheckPayload, TLV ---------------- */

int ocw_parse_header_max(const uint8_t b[OCW_HEADER_SIZE], uint32_t max_payload, ocw_header *h, ocw_err *e)
{
	uint32_t m = le32(b), crc = le32(b + 4), want = ocw_crc32c(0, b + 8, OCW_HEADER_SIZE - 8);

	if (m == OCW_MAGIC_SWAPPED)
		return fail(e, OCW_CODE_SYNC, "magic 0x%08lx is byte-swapped: peer writes big-endian", (unsigned long)m);
	if (m != OCW_MAGIC)
		return fail(e, OCW_CODE_SYNC, "bad magic 0x%08lx, want 0x%08lx", (unsigned long)m, (unsigned long)OCW_MAGIC);
	if (crc != want)
		return fail(e, OCW_CODE_HEADER_CRC, "header CRC 0x%08lx, computed 0x%08lx", (unsigned long)crc, (unsigned long)want);
	h->proto = b[8];
	h->version = b[9];
	h->opcode = le16(b + 10);
	h->flags = le16(b + 12);
	h->hops = b[14];
	h->msgid = le64(b + 16);
	h->source = le64(b + 24);
	h->target = le64(b + 32);
	h->ext_len = le32(b + 40);
	h->body_len = le32(b + 44);
	h->payload_crc = le32(b + 48);
	if (b[15] != 0 || le32(b + 52) != 0)
		return fail(e, OCW_CODE_FIELD, "reserved header bytes are not zero");
	if (h->proto > OCW_PROTO_ADMIN)
		return fail(e, OCW_CODE_FIELD, "unknown sub-protocol id %u", (unsigned)h->proto);
	if (h->flags & ~0xFu)
		return fail(e, OCW_CODE_FIELD, "unknown flags 0x%04x", (unsigned)(h->flags & ~0xFu));
	if (max_payload == 0)
		max_payload = OCW_DEFAULT_MAX_PAYLOAD;
	if (h->ext_len > OCW_MAX_EXT)
		return fail(e, OCW_CODE_TOO_LARGE, "extension area of %lu bytes exceeds %lu", (unsigned long)h->ext_len, (unsigned long)OCW_MAX_EXT);
	if ((uint64_t)h->ext_len + h->body_len > max_payload)
		return fail(e, OCW_CODE_TOO_LARGE, "payload of %llu bytes exceeds limit %lu",
			(unsigned long long)((uint64_t)h->ext_len + h->body_len), (unsigned long)max_payload);
	return 0;
}

int ocw_parse_header(const uint8_t b[OCW_HEADER_SIZE], ocw_header *h, ocw_err *e)
{
	return ocw_parse_header_max(b, 0, h, e);
}

/* walkTLV; critical: also refuse entries with the critical bit (CheckTLV
 * with no known types). */
static int walk_tlv(const uint8_t *x, size_t n, int critical, ocw_err *e)
{
	size_t off = 0;

	while (off < n) {
		uint16_t typ, k;

		if (n - off < 4)
			return fail(e, OCW_CODE_FIELD, "extension area: %zu stray bytes at offset %zu", n - off, off);
		typ = le16(x + off);
		k = le16(x + off + 2);
		off += 4;
		if (k > n - off)
			return fail(e, OCW_CODE_FIELD, "extension 0x%04x: length %u overruns the area by %zu bytes", (unsigned)typ, (unsigned)k, k - (n - off));
		if (critical && (typ & 0x8000u))
			return fail(e, OCW_CODE_FIELD, "unknown critical extension 0x%04x", (unsigned)typ);
		off += k;
	}
	return 0;
}

static int check_payload_crc(const ocw_header *h, const uint8_t *payload, size_t n, ocw_err *e)
{
	uint32_t got;

	if (n != (uint64_t)h->ext_len + h->body_len)
		return fail(e, OCW_CODE_EOF, "payload needs %llu bytes, have %zu", (unsigned long long)((uint64_t)h->ext_len + h->body_len), n);
	got = ocw_crc32c(0, payload, n);
	if (got != h->payload_crc)
		return fail(e, OCW_CODE_PAYLOAD_CRC, "payload CRC 0x%08lx, computed 0x%08lx", (unsigned long)h->payload_crc, (unsigned long)got);
	return walk_tlv(payload, h->ext_len, 0, e);
}

int ocw_check_payload(const ocw_header *h, const uint8_t *payload, size_t n, ocw_err *e)
{
	if (check_payload_crc(h, payload, n, e) < 0)
		return -1;
	return walk_tlv(payload, h->ext_len, 1, e);
}

/* ---- opcode tables: client.Ops(), proto.CheckSession ------------------ */

static const struct { uint16_t op; uint8_t since; const char *name; } client_ops[] = {
	{OCW_OP_PING, 1, "PING"}, {OCW_OP_PONG, 1, "PONG"},
	{OCW_OP_SUBSCRIBE, 1, "SUBSCRIBE"}, {OCW_OP_EVENT, 1, "EVENT"},
	{OCW_OP_QUERY_MEMBERSHIP, 1, "QUERY_MEMBERSHIP"}, {OCW_OP_QUERY_CONNECTIVITY, 1, "QUERY_CONNECTIVITY"},
	{OCW_OP_CALLBACKS, 3, "CALLBACKS"}, {OCW_OP_DONE, 3, "DONE"},
	{OCW_OP_GROUP_JOIN, 2, "GROUP_JOIN"}, {OCW_OP_GROUP_LEAVE, 2, "GROUP_LEAVE"},
	{OCW_OP_GROUP_SEND, 2, "GROUP_SEND"}, {OCW_OP_GROUP_MEMBERS, 2, "GROUP_MEMBERS"},
	{OCW_OP_GROUP_LIST, 2, "GROUP_LIST"}, {OCW_OP_GROUP_WINDOW, 2, "GROUP_WINDOW"},
	{OCW_OP_GROUP_ATTACH, 2, "GROUP_ATTACH"},
};

static const char *proto_name(uint8_t p)
{
	static const char *const names[] = {"session", "peer", "client", "admin"};
	return p <= OCW_PROTO_ADMIN ? names[p] : "unknown";
}

int ocw_client_op_since(uint16_t opcode)
{
	size_t i;

	for (i = 0; i < sizeof client_ops / sizeof client_ops[0]; i++)
		if (client_ops[i].op == opcode)
			return client_ops[i].since;
	return 0;
}

const char *ocw_client_op_name(uint16_t opcode)
{
	size_t i;

	for (i = 0; i < sizeof client_ops / sizeof client_ops[0]; i++)
		if (client_ops[i].op == opcode)
			return client_ops[i].name;
	return NULL;
}

int ocw_check_client_op(const ocw_header *h, uint8_t v, ocw_err *e)
{
	int since;

	if (h->proto != OCW_PROTO_CLIENT)
		return fail(e, OCW_CODE_FIELD, "frame of the %s protocol on a client link", proto_name(h->proto));
	if (h->version != v)
		return fail(e, OCW_CODE_VERSION, "client frame of version %u on a link that agreed on %u", (unsigned)h->version, (unsigned)v);
	since = ocw_client_op_since(h->opcode);
	if (since == 0 || since > v)
		return fail(e, OCW_CODE_OPCODE, "client protocol version %u has no opcode 0x%04x", (unsigned)v, (unsigned)h->opcode);
	return 0;
}

int ocw_check_session_op(const ocw_header *h, ocw_err *e)
{
	if (h->proto != OCW_PROTO_SESSION)
		return fail(e, OCW_CODE_FIELD, "frame of the %s protocol where a session frame is expected", proto_name(h->proto));
	if (h->version != 0)
		return fail(e, OCW_CODE_VERSION, "session frame of version %u, want 0", (unsigned)h->version);
	if (h->opcode < OCW_OP_HELLO || h->opcode > OCW_OP_GOODBYE)
		return fail(e, OCW_CODE_OPCODE, "session opcode 0x%04x", (unsigned)h->opcode);
	return 0;
}

/* ---- encoding frames: proto.PutHeader, AppendFrame -------------------- */

size_t ocw_put_frame(uint8_t *buf, size_t cap, const ocw_header *h, const uint8_t *body, size_t n)
{
	if (cap < OCW_HEADER_SIZE || n > cap - OCW_HEADER_SIZE || n > OCW_DEFAULT_MAX_PAYLOAD)
		return 0;
	if (n > 0)
		memmove(buf + OCW_HEADER_SIZE, body, n);
	put32(buf, OCW_MAGIC);
	buf[8] = h->proto;
	buf[9] = h->version;
	put16(buf + 10, h->opcode);
	put16(buf + 12, h->flags);
	buf[14] = h->hops;
	buf[15] = 0;
	put64(buf + 16, h->msgid);
	put64(buf + 24, h->source);
	put64(buf + 32, h->target);
	put32(buf + 40, 0);
	put32(buf + 44, (uint32_t)n);
	put32(buf + 48, ocw_crc32c(0, buf + OCW_HEADER_SIZE, n));
	put32(buf + 52, 0);
	put32(buf + 4, ocw_crc32c(0, buf + 8, OCW_HEADER_SIZE - 8));
	return OCW_HEADER_SIZE + n;
}

void ocw_client_header(ocw_header *h, uint8_t v, uint16_t opcode, uint16_t flags, uint64_t msgid)
{
	memset(h, 0, sizeof *h);
	h->proto = OCW_PROTO_CLIENT;
	h->version = v;
	h->opcode = opcode;
	h->flags = flags;
	h->hops = OCW_HOP_LIMIT;
	h->msgid = msgid;
}

/* ---- session: HELLO, REJECT, Status (proto/session.go) ---------------- */

#define HELLO_MAGIC 0x4F4C4843u /* "CHLO" */
#define REASON_CLIENT 5

size_t ocw_put_hello(uint8_t *buf, size_t cap, uint64_t msgid, uint8_t min, uint8_t max)
{
	uint8_t body[34];
	ocw_header h;

	if (min > max)
		return 0;
	memset(body, 0, sizeof body);
	put32(body, HELLO_MAGIC);
	body[4] = REASON_CLIENT;
	body[5] = 1; /* one range: the client protocol's */
	/* 6..7 reserved, 8..15 node id 0, 16..23 features 0 */
	body[24] = OCW_PROTO_CLIENT;
	body[25] = min;
	body[26] = max;
	/* 27 reserved; 28 cluster name, 30 node name, 32 auth: all empty */
	memset(&h, 0, sizeof h);
	h.proto = OCW_PROTO_SESSION;
	h.opcode = OCW_OP_HELLO;
	h.flags = OCW_F_CREATE | OCW_F_DELETE;
	h.hops = 1;
	h.msgid = msgid;
	return ocw_put_frame(buf, cap, &h, body, sizeof body);
}

typedef struct vrange { uint8_t proto, min, max; } vrange;

/* readRanges: at most 8, valid, one per sub-protocol. */
static void rd_ranges(rd *r, size_t k, vrange *out, size_t *nout)
{
	size_t i, j;

	*nout = 0;
	if (k > 8) {
		rd_fail(r, OCW_CODE_FIELD, "%zu version ranges, limit 8", k);
		return;
	}
	for (i = 0; i < k; i++) {
		vrange g;

		g.proto = rd_u8(r, "range proto");
		g.min = rd_u8(r, "range min");
		g.max = rd_u8(r, "range max");
		rd_zero(r, 1, "range reserved");
		if (!r->bad && (g.proto > OCW_PROTO_ADMIN || g.min > g.max))
			rd_fail(r, OCW_CODE_FIELD, "bad version range %s %u..%u", proto_name(g.proto), (unsigned)g.min, (unsigned)g.max);
		for (j = 0; j < *nout && !r->bad; j++)
			if (out[j].proto == g.proto)
				rd_fail(r, OCW_CODE_FIELD, "two version ranges for %s", proto_name(g.proto));
		out[(*nout)++] = g;
	}
}

/* ParseHello; the node id and ranges of the sender. */
static int parse_hello(const uint8_t *b, size_t n, uint8_t *reason, uint64_t *node, vrange *rs, size_t *nr, ocw_err *e)
{
	rd r;
	uint32_t m;
	size_t len, al;

	rd_init(&r, b, n, "HELLO", e);
	m = rd_u32(&r, "magic");
	if (!r.bad && m != HELLO_MAGIC)
		return fail(e, OCW_CODE_SYNC, "HELLO: bad hello magic 0x%08lx: not a corral hello", (unsigned long)m);
	*reason = rd_u8(&r, "reason");
	len = rd_u8(&r, "range count");
	rd_zero(&r, 2, "reserved");
	*node = rd_u64(&r, "node id");
	(void)rd_u64(&r, "features");
	rd_ranges(&r, len, rs, nr);
	rd_str16(&r, OCW_MAX_NAME_LEN, "cluster name", &len);
	rd_str16(&r, OCW_MAX_NAME_LEN, "node name", &len);
	al = rd_u16(&r, "auth length");
	if (al != 0 && al != 32 && !r.bad)
		rd_fail(&r, OCW_CODE_KEY_FORMAT, "auth is %zu bytes, want 0 or 32", al);
	else
		rd_bytes(&r, al, "auth");
	if (*reason < 1 || *reason > REASON_CLIENT)
		rd_fail(&r, OCW_CODE_FIELD, "unknown reason %u", (unsigned)*reason);
	return rd_end(&r);
}

static void copy_text(char *dst, size_t cap, const uint8_t *src, size_t n)
{
	if (dst == NULL || cap == 0)
		return;
	if (n > cap - 1)
		n = cap - 1;
	if (n > 0)
		memcpy(dst, src, n);
	dst[n] = '\0';
}

/* ParseStatus; text points into b. */
static int parse_status(const uint8_t *b, size_t n, const char *msg, int *code, const uint8_t **text, size_t *tlen, ocw_err *e)
{
	rd r;

	rd_init(&r, b, n, msg, e);
	*code = rd_u16(&r, "code");
	*text = rd_str16(&r, OCW_MAX_REASON_LEN, "text", tlen);
	return rd_end(&r);
}

int ocw_parse_status(const uint8_t *body, size_t n, int *code, char *text, size_t textcap, ocw_err *e)
{
	int c;
	const uint8_t *t;
	size_t k;

	if (parse_status(body, n, "status", &c, &t, &k, e) < 0)
		return -1;
	if (code != NULL)
		*code = c;
	copy_text(text, textcap, t, k);
	return 0;
}

size_t ocw_put_status(uint8_t *buf, size_t cap, int code, const char *text)
{
	size_t k = text ? strlen(text) : 0;

	if (code < 0 || code > 0xFFFF)
		return 0;
	if (k > OCW_MAX_REASON_LEN)
		k = OCW_MAX_REASON_LEN;
	if (cap < 4 + k)
		return 0;
	put16(buf, (uint16_t)code);
	put16(buf + 2, (uint16_t)k);
	if (k > 0)
		memcpy(buf + 4, text, k);
	return 4 + k;
}

/* %.*s of a wire string, which may hold anything: cut at a NUL. */
static int textlen(const uint8_t *t, size_t k)
{
	const void *z = t ? memchr(t, 0, k) : NULL;
	size_t m = z ? (size_t)((const uint8_t *)z - t) : k;
	return m > 160 ? 160 : (int)m;
}

int ocw_parse_hello_answer_range(const ocw_header *h, const uint8_t *body, size_t n, uint8_t min, uint8_t max,
	uint8_t *version, uint64_t *node, ocw_err *e)
{
	vrange rs[8], rs2[8];
	size_t nr, nr2, i, k;
	uint8_t reason = 0, lo, hi;
	uint64_t id = 0;
	int code;
	const uint8_t *t;
	rd r;

	if (ocw_check_session_op(h, e) < 0)
		return -1;
	switch (h->opcode) {
	case OCW_OP_REJECT: /* ParseReject, then the agent's words */
		rd_init(&r, body, n, "REJECT", e);
		code = rd_u16(&r, "code");
		nr = rd_u8(&r, "local count");
		nr2 = rd_u8(&r, "remote count");
		rd_ranges(&r, nr, rs, &nr);
		rd_ranges(&r, nr2, rs2, &nr2);
		t = rd_str16(&r, OCW_MAX_REASON_LEN, "text", &k);
		if (rd_end(&r) < 0)
			return -1;
		return fail(e, code ? code : OCW_CODE_STATE, "the agent refused the link: %.*s", textlen(t, k), (const char *)t);
	case OCW_OP_GOODBYE:
		if (parse_status(body, n, "GOODBYE", &code, &t, &k, e) < 0)
			return -1;
		return fail(e, code ? code : OCW_CODE_STATE, "the agent closed the link: %.*s", textlen(t, k), (const char *)t);
	}
	if (parse_hello(body, n, &reason, &id, rs, &nr, e) < 0)
		return -1;
	if (reason != REASON_CLIENT)
		return fail(e, OCW_CODE_STATE, "the agent answered with a HELLO of reason %u, want client (5)", (unsigned)reason);
	for (i = 0; i < nr && rs[i].proto != OCW_PROTO_CLIENT; i++)
		;
	if (i == nr)
		return fail(e, OCW_CODE_VERSION, "client protocol: agent speaks none, we speak %u..%u", (unsigned)min, (unsigned)max);
	/* proto.Negotiate: the smaller maximum, if both speak it. */
	hi = max < rs[i].max ? max : rs[i].max;
	lo = min > rs[i].min ? min : rs[i].min;
	if (hi < lo)
		return fail(e, OCW_CODE_VERSION, "client protocol: we speak %u..%u, agent speaks %u..%u",
			(unsigned)min, (unsigned)max, (unsigned)rs[i].min, (unsigned)rs[i].max);
	if (version != NULL)
		*version = hi;
	if (node != NULL)
		*node = id;
	return 0;
}

int ocw_parse_hello_answer(const ocw_header *h, const uint8_t *body, size_t n, uint8_t *version, uint64_t *node, ocw_err *e)
{
	return ocw_parse_hello_answer_range(h, body, n, OCW_CLIENT_MIN_VERSION, OCW_CLIENT_MAX_VERSION, version, node, e);
}

/* ---- client bodies the library sends (events.go, groups.go) ----------- */

size_t ocw_put_subscribe(uint8_t *buf, size_t cap, uint32_t classes, int resume, uint64_t after)
{
	if (cap < OCW_SUBSCRIBE_SIZE || classes == 0 || (classes & ~(uint32_t)OCW_ALL_CLASSES) || (!resume && after != 0))
		return 0;
	put32(buf, classes);
	put32(buf + 4, resume ? OCW_SUB_RESUME : 0);
	put64(buf + 8, after);
	return OCW_SUBSCRIBE_SIZE;
}

size_t ocw_put_callbacks(uint8_t *buf, size_t cap, uint32_t classes, const uint8_t prio[4])
{
	int c;

	if (cap < OCW_CALLBACKS_SIZE || (classes & ~(uint32_t)OCW_ALL_CLASSES) || prio[0] != 0)
		return 0;
	for (c = 1; c <= 3; c++)
		if (prio[c] != 0 && !(classes & (1u << c)))
			return 0;
	put32(buf, classes);
	buf[4] = prio[1];
	buf[5] = prio[2];
	buf[6] = prio[3];
	buf[7] = 0;
	return OCW_CALLBACKS_SIZE;
}

size_t ocw_put_done(uint8_t *buf, size_t cap, uint64_t seq, uint32_t desc)
{
	if (cap < OCW_DONE_SIZE || !desc_valid(desc))
		return 0;
	put64(buf, seq);
	put32(buf + 8, desc);
	put32(buf + 12, 0);
	return OCW_DONE_SIZE;
}

/* A str16 at p; 0 if it does not fit cap or is over 255 bytes. */
static size_t put_str16(uint8_t *p, size_t cap, const char *s)
{
	size_t k = s ? strlen(s) : 0;

	if (k > OCW_MAX_NAME_LEN || cap < 2 || k > cap - 2)
		return 0;
	put16(p, (uint16_t)k);
	if (k > 0)
		memcpy(p + 2, s, k);
	return 2 + k;
}

static int group_ok(const char *g)
{
	return g != NULL && g[0] != '\0' && strlen(g) <= OCW_MAX_NAME_LEN && utf8_valid((const uint8_t *)g, strlen(g));
}

size_t ocw_put_group_join(uint8_t *buf, size_t cap, const char *group, const char *name)
{
	size_t a, b;

	if (!group_ok(group) || (a = put_str16(buf, cap, group)) == 0)
		return 0;
	if ((b = put_str16(buf + a, cap - a, name ? name : "")) == 0)
		return 0;
	return a + b;
}

size_t ocw_put_group_leave(uint8_t *buf, size_t cap, const char *group)
{
	return group_ok(group) ? put_str16(buf, cap, group) : 0;
}

size_t ocw_put_group_attach(uint8_t *buf, size_t cap, uint64_t member, uint64_t token)
{
	if (cap < OCW_GROUP_ATTACH_SIZE || member == 0)
		return 0;
	put64(buf, member);
	put64(buf + 8, token);
	return OCW_GROUP_ATTACH_SIZE;
}

size_t ocw_put_ping(uint8_t *buf, size_t cap, int64_t sent)
{
	if (cap < 8)
		return 0;
	put64(buf, (uint64_t)sent);
	return 8;
}

/* ---- client bodies: the checks of the Go Parse functions -------------- */

static int body_subscribe(rd *r)
{
	uint32_t classes = rd_u32(r, "class mask"), flags = rd_u32(r, "flags");
	uint64_t after = rd_u64(r, "after");

	if (rd_end(r) < 0)
		return -1;
	if (classes == 0)
		rd_fail(r, OCW_CODE_FIELD, "class mask selects no class");
	else if (classes & ~(uint32_t)OCW_ALL_CLASSES)
		rd_fail(r, OCW_CODE_FIELD, "class mask 0x%lx selects unknown classes 0x%lx", (unsigned long)classes, (unsigned long)(classes & ~(uint32_t)OCW_ALL_CLASSES));
	else if (flags & ~(uint32_t)OCW_SUB_RESUME)
		rd_fail(r, OCW_CODE_FIELD, "unknown flags 0x%lx", (unsigned long)(flags & ~(uint32_t)OCW_SUB_RESUME));
	else if (!(flags & OCW_SUB_RESUME) && after != 0)
		rd_fail(r, OCW_CODE_FIELD, "after %llu without the RESUME flag", (unsigned long long)after);
	return r->bad ? -1 : 0;
}

static int body_subscribe_reply(rd *r, uint64_t *latest, uint64_t *floor, uint32_t *flags)
{
	*latest = rd_u64(r, "latest");
	*floor = rd_u64(r, "floor");
	*flags = rd_u32(r, "flags");
	rd_zero(r, 4, "reserved");
	if (rd_end(r) < 0)
		return -1;
	if (*flags & ~(uint32_t)OCW_REPLY_GAP)
		rd_fail(r, OCW_CODE_FIELD, "unknown flags 0x%lx", (unsigned long)(*flags & ~(uint32_t)OCW_REPLY_GAP));
	else if (*floor > *latest)
		rd_fail(r, OCW_CODE_FIELD, "floor %llu above latest %llu", (unsigned long long)*floor, (unsigned long long)*latest);
	return r->bad ? -1 : 0;
}

/* groupName: at most 255 bytes of UTF-8, not empty if required. */
static const uint8_t *rd_group(rd *r, int required, size_t *len)
{
	const uint8_t *p = rd_str16(r, OCW_MAX_NAME_LEN, "group name", len);

	if (*len == 0 && required)
		rd_fail(r, OCW_CODE_FIELD, "empty group name");
	else if (!utf8_valid(p, *len))
		rd_fail(r, OCW_CODE_FIELD, "group name is not UTF-8");
	return p;
}

static int body_group_join(rd *r)
{
	size_t k;

	rd_group(r, 1, &k);
	rd_str16(r, OCW_MAX_NAME_LEN, "member name", &k);
	return rd_end(r);
}

static int body_group_name(rd *r)
{
	size_t k;

	rd_group(r, 1, &k);
	return rd_end(r);
}

static int body_group_join_reply(rd *r, uint64_t *seq, uint64_t *member, uint64_t *token, uint32_t *window, uint32_t *wbytes)
{
	*seq = rd_u64(r, "seq");
	*member = rd_u64(r, "member");
	*token = rd_u64(r, "token");
	*window = rd_u32(r, "window");
	*wbytes = rd_u32(r, "window bytes");
	if (rd_end(r) == 0 && *member == 0)
		rd_fail(r, OCW_CODE_FIELD, "member id 0");
	return r->bad ? -1 : 0;
}

const uint8_t *rd_payload(rd *r, size_t *len)
{
	uint32_t k = rd_u32(r, "payload length");
	const uint8_t *p;

	*len = 0;
	if (k > OCW_MAX_PAYLOAD) {
		rd_fail(r, OCW_CODE_FIELD, "payload is %lu bytes, limit %lu", (unsigned long)k, (unsigned long)OCW_MAX_PAYLOAD);
		return NULL;
	}
	p = rd_bytes(r, k, "payload");
	if (p != NULL)
		*len = k;
	return p;
}

const char *const gs_names[7] = {"GS_INVALID", "JOIN", "LEAVE", "BROADCAST", "MULTICAST", "UNICAST", "REPLY"};

/* ParseGroupSend and GroupSend.check. */
static int body_group_send(rd *r)
{
	uint8_t kind = rd_u8(r, "kind");
	uint64_t target, reply_to;
	const uint8_t *g;
	size_t glen, plen;
	int has_target;
	const char *kn;

	rd_zero(r, 3, "reserved");
	target = rd_u64(r, "target");
	reply_to = rd_u64(r, "reply to");
	(void)rd_u64(r, "msg id");
	g = rd_str16(r, OCW_MAX_NAME_LEN, "group name", &glen);
	rd_payload(r, &plen);
	if (rd_end(r) < 0)
		return -1;
	if (kind < 3 || kind > 6) {
		rd_fail(r, OCW_CODE_FIELD, "unknown kind %u", (unsigned)kind);
		return -1;
	}
	kn = gs_names[kind];
	has_target = kind == 5 || kind == 6;
	if (glen == 0 && (kind == 4 || kind == 5))
		rd_fail(r, OCW_CODE_FIELD, "%s: empty group name", kn);
	else if (!utf8_valid(g, glen))
		rd_fail(r, OCW_CODE_FIELD, "%s: group name is not UTF-8", kn);
	else if (has_target && target == 0)
		rd_fail(r, OCW_CODE_FIELD, "%s without a target", kn);
	else if (!has_target && target != 0)
		rd_fail(r, OCW_CODE_FIELD, "target %llu on a %s", (unsigned long long)target, kn);
	else if (kind == 6 && reply_to == 0)
		rd_fail(r, OCW_CODE_FIELD, "REPLY without the seq it answers");
	else if (kind != 6 && reply_to != 0)
		rd_fail(r, OCW_CODE_FIELD, "reply to %llu on a %s", (unsigned long long)reply_to, kn);
	return r->bad ? -1 : 0;
}

static int body_group_send_reply(rd *r)
{
	uint64_t member;

	(void)rd_u64(r, "seq");
	member = rd_u64(r, "member");
	(void)rd_u32(r, "delivered");
	rd_zero(r, 4, "reserved");
	if (rd_end(r) == 0 && member == 0)
		rd_fail(r, OCW_CODE_FIELD, "member id 0");
	return r->bad ? -1 : 0;
}

static int body_group_list(rd *r)
{
	uint32_t k = rd_count(r, "group", OCW_MAX_GROUP_LIST, 2 + 4), i;

	for (i = 0; i < k; i++) {
		size_t len;
		const uint8_t *g = rd_str16(r, OCW_MAX_NAME_LEN, "group name", &len);
		uint32_t m = rd_u32(r, "members");

		/* checkListItem */
		if (len == 0)
			rd_fail(r, OCW_CODE_FIELD, "group %lu: empty group name", (unsigned long)i);
		else if (!utf8_valid(g, len))
			rd_fail(r, OCW_CODE_FIELD, "group %lu: group name is not UTF-8", (unsigned long)i);
		else if (m > OCW_MAX_MEMBERS)
			rd_fail(r, OCW_CODE_FIELD, "group %lu: %lu members, limit %d", (unsigned long)i, (unsigned long)m, OCW_MAX_MEMBERS);
	}
	return rd_end(r);
}

static int body_u64(rd *r, const char *field)
{
	(void)rd_u64(r, field);
	return rd_end(r);
}

static int body_member_id(rd *r, int with_token, uint64_t *member)
{
	*member = rd_u64(r, "member");
	if (with_token)
		(void)rd_u64(r, "token");
	if (rd_end(r) == 0 && *member == 0)
		rd_fail(r, OCW_CODE_FIELD, "member id 0");
	return r->bad ? -1 : 0;
}

static int body_group_window(rd *r)
{
	(void)rd_u32(r, "window");
	(void)rd_u32(r, "window bytes");
	(void)rd_u32(r, "in flight");
	(void)rd_u32(r, "in-flight bytes");
	(void)rd_u64(r, "refused");
	return rd_end(r);
}

/* Callbacks (version 3, OCEVENT.md 1): class mask of SUBSCRIBE's bits, 0
 * allowed; a priority only for a class in the mask; reserved zero. */
static int body_callbacks(rd *r)
{
	static const char *const cn[] = {"", "COMM", "MEMB", "GROUP"};
	uint32_t classes = rd_u32(r, "class mask");
	uint8_t prio[4];
	int c;

	prio[0] = 0;
	prio[1] = rd_u8(r, "COMM priority");
	prio[2] = rd_u8(r, "MEMB priority");
	prio[3] = rd_u8(r, "GROUP priority");
	rd_zero(r, 1, "reserved");
	if (rd_end(r) < 0)
		return -1;
	if (classes & ~(uint32_t)OCW_ALL_CLASSES) {
		rd_fail(r, OCW_CODE_FIELD, "class mask 0x%lx selects unknown classes 0x%lx", (unsigned long)classes, (unsigned long)(classes & ~(uint32_t)OCW_ALL_CLASSES));
		return -1;
	}
	for (c = 1; c <= 3; c++)
		if (prio[c] != 0 && !(classes & (1u << c)))
			rd_fail(r, OCW_CODE_FIELD, "priority %u for %s, which the class mask does not select", (unsigned)prio[c], cn[c]);
	return r->bad ? -1 : 0;
}

/* Done (version 3): seq, descriptor, reserved zero; a descriptor that is
 * not defined is refused (client.ParseDone). Whether it is the event's
 * the agent judges (CodeState). */
static int body_done(rd *r)
{
	uint32_t desc;

	(void)rd_u64(r, "seq");
	desc = rd_u32(r, "descriptor");
	rd_zero(r, 4, "reserved");
	if (rd_end(r) < 0)
		return -1;
	if (!desc_valid(desc))
		rd_fail(r, OCW_CODE_FIELD, "unknown event descriptor 0x%08lx", (unsigned long)desc);
	return r->bad ? -1 : 0;
}

int ocw_parse_subscribe_reply(const uint8_t *b, size_t n, uint64_t *latest, uint64_t *floor, int *gap, ocw_err *e)
{
	rd r;
	uint64_t l, f;
	uint32_t fl;

	rd_init(&r, b, n, "SUBSCRIBE reply", e);
	if (body_subscribe_reply(&r, &l, &f, &fl) < 0)
		return -1;
	if (latest) *latest = l;
	if (floor) *floor = f;
	if (gap) *gap = (fl & OCW_REPLY_GAP) != 0;
	return 0;
}

int ocw_parse_group_join_reply(const uint8_t *b, size_t n, uint64_t *seq, uint64_t *member, uint64_t *token, uint32_t *window, uint32_t *window_bytes, ocw_err *e)
{
	rd r;
	uint64_t s, m, t;
	uint32_t w, wb;

	rd_init(&r, b, n, "GROUP_JOIN reply", e);
	if (body_group_join_reply(&r, &s, &m, &t, &w, &wb) < 0)
		return -1;
	if (seq) *seq = s;
	if (member) *member = m;
	if (token) *token = t;
	if (window) *window = w;
	if (window_bytes) *window_bytes = wb;
	return 0;
}

int ocw_parse_group_seq(const uint8_t *b, size_t n, uint64_t *seq, ocw_err *e)
{
	rd r;
	uint64_t s;

	rd_init(&r, b, n, "GROUP_LEAVE reply", e);
	s = rd_u64(&r, "seq");
	if (rd_end(&r) < 0)
		return -1;
	if (seq) *seq = s;
	return 0;
}

int ocw_parse_group_attach_reply(const uint8_t *b, size_t n, uint64_t *member, ocw_err *e)
{
	rd r;
	uint64_t m;

	rd_init(&r, b, n, "GROUP_ATTACH reply", e);
	if (body_member_id(&r, 0, &m) < 0)
		return -1;
	if (member) *member = m;
	return 0;
}

/* ---- whole messages: the receive path of proto/client's tests --------- */

static int check_empty(const uint8_t *b, size_t n, const char *msg, ocw_err *e)
{
	rd r;

	rd_init(&r, b, n, msg, e);
	return rd_end(&r);
}

int ocw_check_body(enum ocw_body kind, uint8_t v, const uint8_t *b, size_t n, ocw_err *e)
{
	rd r;
	uint64_t u[3];
	uint32_t w[3];
	int code;
	const uint8_t *t;
	size_t k;

	switch (kind) {
	case OCW_B_EVENT:
		return check_event(b, n, v, e);
	case OCW_B_MEMBERSHIP:
		return check_data(b, n, 2, "QUERY_MEMBERSHIP reply", e);
	case OCW_B_CONNECTIVITY:
		return check_data(b, n, 1, "QUERY_CONNECTIVITY reply", e);
	case OCW_B_STATUS:
		return parse_status(b, n, "ABORT", &code, &t, &k, e);
	case OCW_B_EMPTY:
		return check_empty(b, n, "request", e);
	default:
		break;
	}
	rd_init(&r, b, n, "", e);
	switch (kind) {
	case OCW_B_SUBSCRIBE: r.msg = "SUBSCRIBE"; return body_subscribe(&r);
	case OCW_B_SUBSCRIBE_REPLY: r.msg = "SUBSCRIBE reply"; return body_subscribe_reply(&r, &u[0], &u[1], &w[0]);
	case OCW_B_PING: r.msg = "PING"; return body_u64(&r, "sent");
	case OCW_B_GROUP_JOIN: r.msg = "GROUP_JOIN"; return body_group_join(&r);
	case OCW_B_GROUP_JOIN_REPLY: r.msg = "GROUP_JOIN reply"; return body_group_join_reply(&r, &u[0], &u[1], &u[2], &w[0], &w[1]);
	case OCW_B_GROUP_LEAVE: r.msg = "GROUP_LEAVE"; return body_group_name(&r);
	case OCW_B_GROUP_SEQ: r.msg = "GROUP_LEAVE reply"; return body_u64(&r, "seq");
	case OCW_B_GROUP_SEND: r.msg = "GROUP_SEND"; return body_group_send(&r);
	case OCW_B_GROUP_SEND_REPLY: r.msg = "GROUP_SEND reply"; return body_group_send_reply(&r);
	case OCW_B_GROUP_NAME: r.msg = "GROUP_MEMBERS"; return body_group_name(&r);
	case OCW_B_GROUP_MEMBERS: r.msg = "GROUP_MEMBERS reply"; return check_group_members(&r);
	case OCW_B_GROUP_LIST: r.msg = "GROUP_LIST reply"; return body_group_list(&r);
	case OCW_B_GROUP_WINDOW: r.msg = "GROUP_WINDOW reply"; return body_group_window(&r);
	case OCW_B_GROUP_ATTACH: r.msg = "GROUP_ATTACH"; return body_member_id(&r, 1, &u[0]);
	case OCW_B_GROUP_ATTACH_REPLY: r.msg = "GROUP_ATTACH reply"; return body_member_id(&r, 0, &u[0]);
	case OCW_B_CALLBACKS: r.msg = "CALLBACKS"; return body_callbacks(&r);
	case OCW_B_DONE: r.msg = "DONE"; return body_done(&r);
	default:
		return fail(e, OCW_CODE_FIELD, "no body kind %d", (int)kind);
	}
}

/* The body a client frame carries, by opcode and flags (receiveAt and
 * receiveGroup of proto/client's tests); OCW_B_EMPTY for empty bodies. */
static enum ocw_body frame_body(const ocw_header *h)
{
	int reply = (h->flags & OCW_F_REPLY) != 0;

	if (h->flags & OCW_F_ABORT)
		return OCW_B_STATUS;
	switch (h->opcode) {
	case OCW_OP_PING: case OCW_OP_PONG: return OCW_B_PING;
	case OCW_OP_SUBSCRIBE: return reply ? OCW_B_SUBSCRIBE_REPLY : OCW_B_SUBSCRIBE;
	case OCW_OP_EVENT: return OCW_B_EVENT;
	case OCW_OP_QUERY_MEMBERSHIP: return reply ? OCW_B_MEMBERSHIP : OCW_B_EMPTY;
	case OCW_OP_QUERY_CONNECTIVITY: return reply ? OCW_B_CONNECTIVITY : OCW_B_EMPTY;
	case OCW_OP_CALLBACKS: return reply ? OCW_B_EMPTY : OCW_B_CALLBACKS;
	case OCW_OP_DONE: return OCW_B_DONE;
	case OCW_OP_GROUP_JOIN: return reply ? OCW_B_GROUP_JOIN_REPLY : OCW_B_GROUP_JOIN;
	case OCW_OP_GROUP_LEAVE: return reply ? OCW_B_GROUP_SEQ : OCW_B_GROUP_LEAVE;
	case OCW_OP_GROUP_SEND: return reply ? OCW_B_GROUP_SEND_REPLY : OCW_B_GROUP_SEND;
	case OCW_OP_GROUP_MEMBERS: return reply ? OCW_B_GROUP_MEMBERS : OCW_B_GROUP_NAME;
	case OCW_OP_GROUP_LIST: return reply ? OCW_B_GROUP_LIST : OCW_B_EMPTY;
	case OCW_OP_GROUP_WINDOW: return reply ? OCW_B_GROUP_WINDOW : OCW_B_EMPTY;
	case OCW_OP_GROUP_ATTACH: return reply ? OCW_B_GROUP_ATTACH_REPLY : OCW_B_GROUP_ATTACH;
	}
	return OCW_B_EMPTY;
}

int ocw_check_frame(const uint8_t *b, size_t n, uint8_t v, ocw_err *e)
{
	ocw_header h;
	const uint8_t *payload = b + OCW_HEADER_SIZE;
	size_t rest, want;
	enum ocw_body kind;
	char msg[48];

	if (n < OCW_HEADER_SIZE)
		return fail(e, OCW_CODE_EOF, "header needs %d bytes, have %zu", OCW_HEADER_SIZE, n);
	if (ocw_parse_header(b, &h, e) < 0)
		return -1;
	rest = n - OCW_HEADER_SIZE;
	want = (size_t)h.ext_len + h.body_len;
	if (rest < want)
		return fail(e, OCW_CODE_EOF, "truncated frame: payload needs %zu bytes, have %zu", want, rest);
	if (rest > want)
		return fail(e, OCW_CODE_FIELD, "%zu bytes after the frame", rest - want);
	/* DecodeFrame, OpSet.Check, then CheckTLV: the order of the codes. */
	if (check_payload_crc(&h, payload, rest, e) < 0 || ocw_check_client_op(&h, v, e) < 0)
		return -1;
	if (walk_tlv(payload, h.ext_len, 1, e) < 0)
		return -1;
	kind = frame_body(&h);
	if (kind == OCW_B_EMPTY) {
		snprintf(msg, sizeof msg, "%s %s", ocw_client_op_name(h.opcode), (h.flags & OCW_F_REPLY) ? "reply" : "request");
		return check_empty(payload + h.ext_len, h.body_len, msg, e);
	}
	return ocw_check_body(kind, v, payload + h.ext_len, h.body_len, e);
}
