/*
 * wire_unit - unit checks of src/wire.c that the golden vectors do not
 * cover yet: the encoders the library sends with, the session handshake,
 * and client protocol version 3 (CALLBACKS, DONE, EVENT Flags; OCEVENT.md
 * section 1) until its Go vectors exist. One line per failure; exit 1 if any.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/wire.h"
#include "../include/ocf/oc_event.h"

static int failures;

#define CHECK(cond, ...) do { if (!(cond)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); failures++; } } while (0)

/* A client frame of version v around body; its length. */
static size_t frame(uint8_t *buf, size_t cap, uint8_t v, uint16_t op, uint16_t flags, const uint8_t *body, size_t n)
{
	ocw_header h;

	ocw_client_header(&h, v, op, flags, 0x10);
	return ocw_put_frame(buf, cap, &h, body, n);
}

/* The code ocw_check_frame gives a frame of body at version v (0: ok). */
static int frame_code(uint8_t v, uint16_t op, uint16_t flags, const uint8_t *body, size_t n)
{
	static uint8_t buf[1 << 16];
	ocw_err e;
	size_t k = frame(buf, sizeof buf, v, op, flags, body, n);

	if (k == 0)
		return -1;
	return ocw_check_frame(buf, k, v, &e) == 0 ? 0 : e.code;
}

static void test_crc(void)
{
	CHECK(ocw_crc32c(0, "123456789", 9) == 0xE3069283u, "check value 0x%08lx", (unsigned long)ocw_crc32c(0, "123456789", 9));
	CHECK(ocw_crc32c(ocw_crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u, "continued CRC");
	CHECK(ocw_crc32c(0, "", 0) == 0, "CRC of nothing");
}

static void test_callbacks(void)
{
	uint8_t b[16], p[4] = {0, 10, 20, 0};
	ocw_err e;

	CHECK(ocw_put_callbacks(b, sizeof b, OCW_CLASS_COMM | OCW_CLASS_MEMB, p) == 8, "put CALLBACKS");
	CHECK(b[0] == 6 && b[4] == 10 && b[5] == 20 && b[6] == 0 && b[7] == 0, "CALLBACKS bytes");
	CHECK(ocw_check_body(OCW_B_CALLBACKS, 3, b, 8, &e) == 0, "CALLBACKS body: %s", e.msg);
	CHECK(frame_code(3, OCW_OP_CALLBACKS, OCW_F_CREATE | OCW_F_DELETE, b, 8) == 0, "CALLBACKS frame at v3");
	CHECK(frame_code(3, OCW_OP_CALLBACKS, OCW_F_CREATE | OCW_F_DELETE | OCW_F_REPLY, NULL, 0) == 0, "empty CALLBACKS reply");
	CHECK(frame_code(3, OCW_OP_CALLBACKS, OCW_F_CREATE | OCW_F_DELETE | OCW_F_REPLY, b, 1) == OCW_CODE_FIELD, "CALLBACKS reply with a body");
	CHECK(frame_code(2, OCW_OP_CALLBACKS, OCW_F_CREATE | OCW_F_DELETE, b, 8) == OCW_CODE_OPCODE, "CALLBACKS at v2");
	CHECK(frame_code(1, OCW_OP_CALLBACKS, OCW_F_CREATE | OCW_F_DELETE, b, 8) == OCW_CODE_OPCODE, "CALLBACKS at v1");
	/* The empty mask is allowed; other bits, priorities of classes not in
	 * the mask, a reserved byte and other sizes are refused. */
	memset(b, 0, 8);
	CHECK(ocw_check_body(OCW_B_CALLBACKS, 3, b, 8, &e) == 0, "empty mask");
	b[0] = 0x1;
	CHECK(ocw_check_body(OCW_B_CALLBACKS, 3, b, 8, &e) < 0 && e.code == OCW_CODE_FIELD, "class bit 0x1");
	b[0] = 0x10;
	CHECK(ocw_check_body(OCW_B_CALLBACKS, 3, b, 8, &e) < 0 && e.code == OCW_CODE_FIELD, "class bit 0x10");
	b[0] = OCW_CLASS_MEMB;
	b[6] = 1;
	CHECK(ocw_check_body(OCW_B_CALLBACKS, 3, b, 8, &e) < 0 && e.code == OCW_CODE_FIELD, "GROUP priority without GROUP");
	b[6] = 0;
	b[7] = 1;
	CHECK(ocw_check_body(OCW_B_CALLBACKS, 3, b, 8, &e) < 0 && e.code == OCW_CODE_FIELD, "reserved byte");
	b[7] = 0;
	CHECK(ocw_check_body(OCW_B_CALLBACKS, 3, b, 7, &e) < 0 && e.code == OCW_CODE_FIELD, "truncated");
	CHECK(ocw_check_body(OCW_B_CALLBACKS, 3, b, 9, &e) < 0 && e.code == OCW_CODE_FIELD, "trailing byte");
	/* The encoder refuses what the decoder refuses. */
	p[3] = 5;
	CHECK(ocw_put_callbacks(b, sizeof b, OCW_CLASS_COMM, p) == 0, "encoder: priority without its class");
	p[3] = 0;
	p[0] = 1;
	CHECK(ocw_put_callbacks(b, sizeof b, OCW_ALL_CLASSES, p) == 0, "encoder: prio[0]");
	p[0] = 0;
	CHECK(ocw_put_callbacks(b, sizeof b, 0x11, p) == 0, "encoder: unknown class");
	CHECK(ocw_put_callbacks(b, 7, OCW_ALL_CLASSES, p) == 0, "encoder: small buffer");
}

static void test_done(void)
{
	uint8_t b[17];
	ocw_err e;

	CHECK(ocw_put_done(b, sizeof b, 0x0102030405060708ull, OC_EV_MS_NEWVIEW) == 16, "put DONE");
	CHECK(b[0] == 8 && b[7] == 1 && b[8] == 1 && b[10] == 0x80 && b[12] == 0 && b[15] == 0, "DONE bytes");
	CHECK(ocw_check_body(OCW_B_DONE, 3, b, 16, &e) == 0, "DONE body: %s", e.msg);
	CHECK(frame_code(3, OCW_OP_DONE, OCW_F_CREATE | OCW_F_DELETE, b, 16) == 0, "DONE frame at v3");
	CHECK(frame_code(2, OCW_OP_DONE, OCW_F_CREATE | OCW_F_DELETE, b, 16) == OCW_CODE_OPCODE, "DONE at v2");
	b[13] = 1;
	CHECK(ocw_check_body(OCW_B_DONE, 3, b, 16, &e) < 0 && e.code == OCW_CODE_FIELD, "DONE reserved");
	b[13] = 0;
	CHECK(ocw_check_body(OCW_B_DONE, 3, b, 15, &e) < 0 && e.code == OCW_CODE_FIELD, "DONE truncated");
	CHECK(ocw_check_body(OCW_B_DONE, 3, b, 17, &e) < 0 && e.code == OCW_CODE_FIELD, "DONE trailing");
	CHECK(ocw_put_done(b, 15, 1, OC_EV_MS_NEWVIEW) == 0, "DONE: small buffer");
	CHECK(ocw_put_done(b, sizeof b, 1, 0x00800009) == 0, "DONE encoder: unknown descriptor");
	CHECK(ocw_put_done(b, sizeof b, 1, 0x00800000) == 0, "DONE encoder: the INVALID descriptor");
	/* client.ParseDone: a descriptor that is not defined is CodeField. */
	b[8] = 9;
	CHECK(ocw_check_body(OCW_B_DONE, 3, b, 16, &e) < 0 && e.code == OCW_CODE_FIELD && strstr(e.msg, "0x00800009") != NULL,
		"DONE unknown descriptor: %s", e.msg);
	b[8] = 0;
	CHECK(ocw_check_body(OCW_B_DONE, 3, b, 16, &e) < 0 && e.code == OCW_CODE_FIELD, "DONE INVALID descriptor");
	b[8] = 1;
	b[15] = 1;
	CHECK(ocw_check_body(OCW_B_DONE, 3, b, 16, &e) < 0 && e.code == OCW_CODE_FIELD && strstr(e.msg, "reserved") != NULL,
		"DONE: reserved before the descriptor: %s", e.msg);
}

/* A membership event body: NEWVIEW of one member, born on 1. */
static size_t view_body(uint8_t *b, uint8_t flags)
{
	static const uint8_t node[] = {
		1, 0, 0, 0, 0, 0, 0, 0, /* id 1 */
		1, 0, 0, 0, 0, 0, 0, 0, /* born on 1 */
		4, 0, 0x0a, 0x1f, 127, 0, 0, 1, /* 127.0.0.1:7946 */
		2, 0, 'n', '1',
	};
	size_t k = 0;

	memset(b, 0, 64);
	b[0] = 7;                          /* seq 7 */
	b[8] = 1; b[10] = 0x80;            /* NEWVIEW */
	b[12] = 2;                         /* membership data */
	b[13] = flags;
	k = 16;
	b[k] = 3; k += 8;                  /* instance 3 */
	b[k] = 1; k += 4;                  /* one member */
	memcpy(b + k, node, sizeof node); k += sizeof node;
	k += 4;                            /* no joined */
	b[k] = 1; k += 4;                  /* one left: the same node */
	memcpy(b + k, node, sizeof node); k += sizeof node;
	return k;
}

static void test_event_flags(void)
{
	uint8_t b[128];
	size_t n = view_body(b, OCW_EVENT_AWAIT_DONE);
	ocw_event ev;
	ocw_err e;
	oc_ev_membership_t *m;

	CHECK(ocw_parse_event(b, n, 3, &ev, &e) == 0, "flagged v3 event: %s", e.msg);
	CHECK(ev.flags == OCW_EVENT_AWAIT_DONE && ev.seq == 7 && ev.desc == OC_EV_MS_NEWVIEW, "flagged v3 event header");
	m = ev.data;
	CHECK(m != NULL && ev.size >= sizeof *m, "membership block");
	if (m != NULL) {
		oc_node_t *a = m->m_array;

		CHECK(m->m_instance == 3 && m->m_n_member == 1 && m->m_memb_idx == 0 && m->m_n_in == 0 && m->m_in_idx == 1 &&
			m->m_n_out == 1 && m->m_out_idx == 1, "membership counts");
		CHECK(strcmp(a[0].node_uname, "n1") == 0 && strcmp(a[0].node_addr, "127.0.0.1:7946") == 0 && a[0].node_id == 1 &&
			a[0].node_born_on == 1, "member 0");
		CHECK(strcmp(a[1].node_uname, "n1") == 0 && a[m->m_out_idx].node_id == 1, "left node");
		CHECK((unsigned char *)a[1].node_addr < (unsigned char *)m + ev.size, "strings inside the block");
	}
	free(ev.data);
	CHECK(ocw_parse_event(b, n, 2, &ev, &e) < 0 && e.code == OCW_CODE_FIELD && ev.data == NULL, "flag on a v2 link");
	CHECK(frame_code(2, OCW_OP_EVENT, OCW_F_CREATE | OCW_F_DELETE, b, n) == OCW_CODE_FIELD, "flagged frame at v2");
	CHECK(frame_code(3, OCW_OP_EVENT, OCW_F_CREATE | OCW_F_DELETE, b, n) == 0, "flagged frame at v3");
	b[13] = 2;
	CHECK(ocw_parse_event(b, n, 3, &ev, &e) < 0 && e.code == OCW_CODE_FIELD, "undefined flag 0x2");
	b[13] = 0;
	b[15] = 1;
	CHECK(ocw_parse_event(b, n, 3, &ev, &e) < 0 && e.code == OCW_CODE_FIELD, "reserved byte 15 at v3");
	b[15] = 0;
	CHECK(ocw_parse_event(b, n, 1, &ev, &e) == 0 && ev.flags == 0, "unflagged at v1");
	free(ev.data);
	/* No data: no block. */
	b[12] = 0;
	CHECK(ocw_parse_event(b, 16, 3, &ev, &e) == 0 && ev.data == NULL && ev.size == 0, "event without data");
	CHECK(ocw_parse_event(b, 17, 3, &ev, &e) < 0 && ev.data == NULL, "event without data, one byte more");
}

static void test_encoders(void)
{
	uint8_t b[600];
	ocw_err e;
	char name[300];
	size_t n;

	n = ocw_put_subscribe(b, sizeof b, OCW_ALL_CLASSES, 1, 99);
	CHECK(n == 16 && ocw_check_body(OCW_B_SUBSCRIBE, 3, b, n, &e) == 0, "SUBSCRIBE RESUME");
	CHECK(ocw_put_subscribe(b, sizeof b, 0, 0, 0) == 0, "SUBSCRIBE of no class");
	CHECK(ocw_put_subscribe(b, sizeof b, OCW_CLASS_MEMB, 0, 5) == 0, "after without RESUME");
	n = ocw_put_group_join(b, sizeof b, "locks", NULL);
	CHECK(n == 9 && ocw_check_body(OCW_B_GROUP_JOIN, 3, b, n, &e) == 0, "GROUP_JOIN without a name");
	n = ocw_put_group_join(b, sizeof b, "locks", "worker-a");
	CHECK(n == 17 && ocw_check_body(OCW_B_GROUP_JOIN, 3, b, n, &e) == 0, "GROUP_JOIN");
	CHECK(ocw_put_group_join(b, sizeof b, "", "x") == 0, "GROUP_JOIN of no group");
	CHECK(ocw_put_group_join(b, sizeof b, "\xff", "x") == 0, "GROUP_JOIN not UTF-8");
	memset(name, 'g', 256);
	name[256] = '\0';
	CHECK(ocw_put_group_join(b, sizeof b, name, NULL) == 0, "GROUP_JOIN group of 256 bytes");
	CHECK(ocw_put_group_join(b, sizeof b, "g", name) == 0, "GROUP_JOIN name of 256 bytes");
	name[255] = '\0';
	CHECK(ocw_put_group_join(b, 258, name, NULL) == 0 && ocw_put_group_join(b, 259, name, NULL) == 259, "GROUP_JOIN buffer bound");
	n = ocw_put_group_leave(b, sizeof b, "locks");
	CHECK(n == 7 && ocw_check_body(OCW_B_GROUP_LEAVE, 3, b, n, &e) == 0, "GROUP_LEAVE");
	n = ocw_put_group_attach(b, sizeof b, 5, 6);
	CHECK(n == 16 && ocw_check_body(OCW_B_GROUP_ATTACH, 3, b, n, &e) == 0, "GROUP_ATTACH");
	CHECK(ocw_put_group_attach(b, sizeof b, 0, 6) == 0, "GROUP_ATTACH of member 0");
	n = ocw_put_status(b, sizeof b, OCW_CODE_STATE, "no");
	CHECK(n == 6 && ocw_check_body(OCW_B_STATUS, 3, b, n, &e) == 0, "Status");
	n = frame(b, sizeof b, 3, OCW_OP_PING, OCW_F_CREATE | OCW_F_DELETE, (const uint8_t *)"12345678", 8);
	CHECK(n == 64 && ocw_check_frame(b, n, 3, &e) == 0, "PING frame: %s", e.msg);
	CHECK(ocw_check_frame(b, n - 1, 3, &e) < 0 && e.code == OCW_CODE_EOF, "truncated frame");
	CHECK(frame(b, 63, 3, OCW_OP_PING, 3, (const uint8_t *)"12345678", 8) == 0, "frame: small buffer");
	/* The body may already sit where the frame puts it. */
	memcpy(b + OCW_HEADER_SIZE, "abcdefgh", 8);
	n = frame(b, sizeof b, 3, OCW_OP_PING, 3, b + OCW_HEADER_SIZE, 8);
	CHECK(n == 64 && memcmp(b + OCW_HEADER_SIZE, "abcdefgh", 8) == 0 && ocw_check_frame(b, n, 3, &e) == 0, "in-place body");
}

/* The agent's answer: a session frame with body. */
static int answer(uint16_t op, const uint8_t *body, size_t n, uint8_t *v, uint64_t *node, ocw_err *e)
{
	uint8_t buf[256];
	ocw_header h;
	size_t k;

	memset(&h, 0, sizeof h);
	h.opcode = op;
	h.flags = OCW_F_CREATE | OCW_F_DELETE;
	h.hops = 1;
	k = ocw_put_frame(buf, sizeof buf, &h, body, n);
	if (ocw_parse_header(buf, &h, e) < 0 || ocw_check_payload(&h, buf + OCW_HEADER_SIZE, k - OCW_HEADER_SIZE, e) < 0)
		return -1;
	return ocw_parse_hello_answer(&h, buf + OCW_HEADER_SIZE, n, v, node, e);
}

static void test_hello(void)
{
	uint8_t buf[128], *body;
	ocw_header h;
	ocw_err e;
	size_t n = ocw_put_hello(buf, sizeof buf, 0, 1, 3);
	uint8_t v = 0;
	uint64_t node = 0;
	static const uint8_t reject[] = {34, 0, 1, 0, 2, 2, 4, 0, 3, 0, 'o', 'l', 'd'};
	static const uint8_t bye[] = {37, 0, 2, 0, 'b', 'y'};

	CHECK(n == OCW_HEADER_SIZE + 34, "HELLO frame of %zu bytes", n);
	CHECK(ocw_parse_header(buf, &h, &e) == 0 && ocw_check_session_op(&h, &e) == 0 &&
		ocw_check_payload(&h, buf + OCW_HEADER_SIZE, n - OCW_HEADER_SIZE, &e) == 0, "HELLO frame checks");
	body = buf + OCW_HEADER_SIZE;
	CHECK(memcmp(body, "CHLO", 4) == 0 && body[4] == 5 && body[5] == 1 && body[24] == 2 && body[25] == 1 && body[26] == 3, "HELLO fields");
	/* The agent's HELLO: node id 9, client range 1..2 → version 2. */
	body[8] = 9;
	body[26] = 2;
	CHECK(answer(OCW_OP_HELLO, body, 34, &v, &node, &e) == 0 && v == 2 && node == 9, "HELLO answer: %s", e.msg);
	body[25] = 4;
	body[26] = 5;
	CHECK(answer(OCW_OP_HELLO, body, 34, &v, &node, &e) < 0 && e.code == OCW_CODE_VERSION, "no common version");
	body[24] = 1;
	CHECK(answer(OCW_OP_HELLO, body, 34, &v, &node, &e) < 0 && e.code == OCW_CODE_VERSION, "no client range");
	body[24] = 2;
	body[25] = 1;
	body[32] = 5;
	CHECK(answer(OCW_OP_HELLO, body, 34, &v, &node, &e) < 0 && e.code == OCW_CODE_KEY_FORMAT, "auth of 5 bytes");
	body[32] = 0;
	body[0] = 'X';
	CHECK(answer(OCW_OP_HELLO, body, 34, &v, &node, &e) < 0 && e.code == OCW_CODE_SYNC, "HELLO magic");
	CHECK(answer(OCW_OP_REJECT, reject, sizeof reject, &v, &node, &e) < 0 && e.code == OCW_CODE_VERSION && strstr(e.msg, "old") != NULL,
		"REJECT: %d %s", e.code, e.msg);
	CHECK(answer(OCW_OP_GOODBYE, bye, sizeof bye, &v, &node, &e) < 0 && e.code == OCW_CODE_SHUTDOWN && strstr(e.msg, "by") != NULL,
		"GOODBYE: %d %s", e.code, e.msg);
}

int main(void)
{
	test_crc();
	test_callbacks();
	test_done();
	test_event_flags();
	test_encoders();
	test_hello();
	printf("wire_unit: %d failures\n", failures);
	return failures ? 1 : 0;
}
