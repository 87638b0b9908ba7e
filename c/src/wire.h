/*
 * wire.h - corral's client protocol in C (internal to liboc_event).
 *
 * The byte layouts are those of proto/SPEC.md (frames, TLV, CRC32C, error
 * codes, HELLO/REJECT/Status) and proto/client/SPEC.md (every client
 * body); the Go decoders in proto/ and proto/client/ are the reference:
 * what they refuse, these functions refuse with the same proto.Code.
 *
 * C99 and libc only. Every integer is read and written byte by byte,
 * little-endian; no function casts wire bytes to a struct. Functions that
 * can fail return 0 on success and -1 on failure, filling *e (which may be
 * NULL) with the code and a message; encoders return the bytes written, or
 * 0 when the buffer is too small or a value is refused.
 */
#ifndef OCW_WIRE_H
#define OCW_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define OCW_HEADER_SIZE 56
#define OCW_MAGIC 0x52524F43u         /* "CORR" read little-endian */
#define OCW_MAGIC_SWAPPED 0x434F5252u
#define OCW_MAX_EXT 65536u
#define OCW_DEFAULT_MAX_PAYLOAD (16u << 20)
#define OCW_HOP_LIMIT 16

#define OCW_PROTO_SESSION 0
#define OCW_PROTO_PEER 1
#define OCW_PROTO_CLIENT 2
#define OCW_PROTO_ADMIN 3
#define OCW_CLIENT_MIN_VERSION 1
#define OCW_CLIENT_MAX_VERSION 3

/* Session opcodes (proto/SPEC.md 5.1). */
#define OCW_OP_HELLO 0x0001
#define OCW_OP_REJECT 0x0002
#define OCW_OP_GOODBYE 0x0003

/* Client opcodes (proto/client/SPEC.md, and OCEVENT.md 1 for version 3). */
#define OCW_OP_PING 0x0001
#define OCW_OP_PONG 0x0002
#define OCW_OP_SUBSCRIBE 0x0101
#define OCW_OP_EVENT 0x0102
#define OCW_OP_QUERY_MEMBERSHIP 0x0103
#define OCW_OP_QUERY_CONNECTIVITY 0x0104
#define OCW_OP_CALLBACKS 0x0105 /* since 3 */
#define OCW_OP_DONE 0x0106      /* since 3 */
#define OCW_OP_GROUP_JOIN 0x0201
#define OCW_OP_GROUP_LEAVE 0x0202
#define OCW_OP_GROUP_SEND 0x0203
#define OCW_OP_GROUP_MEMBERS 0x0204
#define OCW_OP_GROUP_LIST 0x0205
#define OCW_OP_GROUP_WINDOW 0x0206
#define OCW_OP_GROUP_ATTACH 0x0207

/* Frame flags (proto/SPEC.md 2.2); other bits are refused. */
#define OCW_F_CREATE 0x1
#define OCW_F_DELETE 0x2
#define OCW_F_REPLY 0x4
#define OCW_F_ABORT 0x8

/* SUBSCRIBE and its reply. */
#define OCW_SUB_RESUME 0x1
#define OCW_REPLY_GAP 0x1
/* Class mask bits: 1 << class. */
#define OCW_CLASS_COMM 0x2
#define OCW_CLASS_MEMB 0x4
#define OCW_CLASS_GROUP 0x8
#define OCW_ALL_CLASSES 0xE

/* Error codes (proto/SPEC.md 4) the library meets. */
#define OCW_CODE_NONE 0
#define OCW_CODE_SYNC 1
#define OCW_CODE_EOF 2
#define OCW_CODE_SOCK 3
#define OCW_CODE_FIELD 4
#define OCW_CODE_HEADER_CRC 5
#define OCW_CODE_PAYLOAD_CRC 7
#define OCW_CODE_STATE 8
#define OCW_CODE_KEY_FORMAT 13
#define OCW_CODE_TOO_LARGE 32
#define OCW_CODE_OPCODE 33
#define OCW_CODE_VERSION 34
#define OCW_CODE_TIMEOUT 35
#define OCW_CODE_SHUTDOWN 37
#define OCW_CODE_BEHIND 39
#define OCW_CODE_TRY_AGAIN 42
#define OCW_CODE_NO_MEMBER 43

/* Limits (proto/SPEC.md 6, proto/client/SPEC.md "Limits"). */
#define OCW_MAX_REASON_LEN 1024
#define OCW_MAX_NAME_LEN 255
#define OCW_MAX_NODES 4096
#define OCW_MAX_INTERFACES 256
#define OCW_MAX_MEMBERS 4096
#define OCW_MAX_PAYLOAD (8u << 20)
#define OCW_MAX_GROUP_LIST 32768

/* Body sizes of the fixed-size messages the library sends. */
#define OCW_SUBSCRIBE_SIZE 16
#define OCW_CALLBACKS_SIZE 8
#define OCW_DONE_SIZE 16
#define OCW_GROUP_ATTACH_SIZE 16

typedef struct ocw_err { int code; char msg[192]; } ocw_err;

typedef struct ocw_header {
	uint8_t proto, version;
	uint16_t opcode, flags;
	uint8_t hops;
	uint64_t msgid, source, target;
	uint32_t ext_len, body_len;
	uint32_t payload_crc; /* filled by ocw_parse_header; ocw_put_frame computes it */
} ocw_header;

/* CRC-32C (Castagnoli) of p[0..n), continuing crc (0 to start). */
uint32_t ocw_crc32c(uint32_t crc, const void *p, size_t n);

/* Header checks of proto/SPEC.md 2.6 that need only the 56 bytes (magic,
 * header CRC, reserved, proto id, flags, lengths against the 16 MiB
 * default limit). 0 ok, -1 error. */
int ocw_parse_header(const uint8_t b[OCW_HEADER_SIZE], ocw_header *h, ocw_err *e);
/* As ocw_parse_header with another payload limit (0: the default). */
int ocw_parse_header_max(const uint8_t b[OCW_HEADER_SIZE], uint32_t max_payload, ocw_header *h, ocw_err *e);
/* The rest of 2.6 over ext+body (n must be ext_len+body_len: payload CRC,
 * TLV area well formed, no critical extension: no sub-protocol defines
 * one). 0 / -1. */
int ocw_check_payload(const ocw_header *h, const uint8_t *payload, size_t n, ocw_err *e);
/* Opcode table check of a client frame at negotiated version v (proto id,
 * version, opcode defined at v). 0 / -1. */
int ocw_check_client_op(const ocw_header *h, uint8_t v, ocw_err *e);
/* Header check of a session frame (proto 0, version 0, HELLO/REJECT/GOODBYE). */
int ocw_check_session_op(const ocw_header *h, ocw_err *e);

/* Encode one frame (header with both CRCs, no extensions) into buf (cap
 * bytes). h's ext_len, body_len and payload_crc are ignored. Returns its
 * length, or 0 if it does not fit. body may alias buf + OCW_HEADER_SIZE
 * (encode the body there first, then the header around it). */
size_t ocw_put_frame(uint8_t *buf, size_t cap, const ocw_header *h, const uint8_t *body, size_t n);
/* The header of a client frame: proto 2, version v, hops 16. */
void ocw_client_header(ocw_header *h, uint8_t v, uint16_t opcode, uint16_t flags, uint64_t msgid);

/* Session: HELLO offering client versions min..max (reason client, no
 * auth, no names) as a whole frame, and the agent's answer: HELLO back
 * (version negotiated against OCW_CLIENT_MIN_VERSION..MAX_VERSION, node:
 * the agent's node id) or REJECT / GOODBYE (error with the agent's code and
 * text). GOODBYE and ABORT bodies are a Status: its code into *code, its
 * text NUL-terminated into text (cut to textcap-1 bytes; text may be NULL
 * with textcap 0). */
size_t ocw_put_hello(uint8_t *buf, size_t cap, uint64_t msgid, uint8_t min, uint8_t max);
int ocw_parse_hello_answer(const ocw_header *h, const uint8_t *body, size_t n, uint8_t *version, uint64_t *node, ocw_err *e);
/* As ocw_parse_hello_answer, negotiating against min..max. */
int ocw_parse_hello_answer_range(const ocw_header *h, const uint8_t *body, size_t n, uint8_t min, uint8_t max,
	uint8_t *version, uint64_t *node, ocw_err *e);
int ocw_parse_status(const uint8_t *body, size_t n, int *code, char *text, size_t textcap, ocw_err *e);
/* Encode a Status body (GOODBYE, ABORT); text cut to 1024 bytes. */
size_t ocw_put_status(uint8_t *buf, size_t cap, int code, const char *text);

/* Client bodies the library sends (write at buf; return length or 0). */
size_t ocw_put_subscribe(uint8_t *buf, size_t cap, uint32_t classes, int resume, uint64_t after);
/* prio[c] for class c = 1..3; prio[0] and the priorities of classes not in
 * classes must be 0, else 0 is returned (the agent would refuse them). */
size_t ocw_put_callbacks(uint8_t *buf, size_t cap, uint32_t classes, const uint8_t prio[4]);
/* desc must be a defined descriptor (client.AppendDone), else 0. */
size_t ocw_put_done(uint8_t *buf, size_t cap, uint64_t seq, uint32_t desc);
/* name may be NULL (no member name); group must be 1..255 bytes of UTF-8. */
size_t ocw_put_group_join(uint8_t *buf, size_t cap, const char *group, const char *name);
size_t ocw_put_group_leave(uint8_t *buf, size_t cap, const char *group);
size_t ocw_put_group_attach(uint8_t *buf, size_t cap, uint64_t member, uint64_t token);
size_t ocw_put_ping(uint8_t *buf, size_t cap, int64_t sent);

/* Replies the library reads. Output pointers may be NULL. */
int ocw_parse_subscribe_reply(const uint8_t *b, size_t n, uint64_t *latest, uint64_t *floor, int *gap, ocw_err *e);
int ocw_parse_group_join_reply(const uint8_t *b, size_t n, uint64_t *seq, uint64_t *member, uint64_t *token, uint32_t *window, uint32_t *window_bytes, ocw_err *e);
int ocw_parse_group_seq(const uint8_t *b, size_t n, uint64_t *seq, ocw_err *e);
int ocw_parse_group_attach_reply(const uint8_t *b, size_t n, uint64_t *member, ocw_err *e);

/* An EVENT body, decoded for a callback. data is ONE malloc'd block
 * holding the class's struct of oc_event.h (oc_ev_connect_t,
 * oc_ev_membership_t, oc_ev_group_t) with all its arrays and
 * NUL-terminated strings (and the group payload) inside; free(data) frees
 * everything. data is NULL and size 0 for an event without data. size is
 * the block's byte size. v: the link's version (the Flags byte exists from
 * v3). Every check of proto/client/SPEC.md "Event data" applies (counts
 * against limits and bytes left before allocating, reserved zero, flags,
 * no trailing bytes). Empty arrays are NULL, strings are never NULL (""
 * when empty), node_addr is Go's netip.AddrPort text ("" for no address),
 * g_payload is NULL when g_len is 0. On failure (-1) nothing is allocated
 * and out->data is NULL; a failed malloc is code OCW_CODE_TOO_LARGE with
 * errno ENOMEM. */
#define OCW_EVENT_AWAIT_DONE 0x1
typedef struct ocw_event {
	uint64_t seq;
	uint32_t desc;
	uint8_t flags; /* OCW_EVENT_AWAIT_DONE 0x1 */
	size_t size;
	void *data;
} ocw_event;
int ocw_parse_event(const uint8_t *body, size_t n, uint8_t v, ocw_event *out, ocw_err *e);

/* Validation of any client-protocol message, both directions, as the Go
 * decoders judge it: for the golden vectors and the differential fuzz
 * target. ocw_check_frame: the whole frame (exactly n bytes): header,
 * payload, op table at v, critical extensions, body by opcode and flags,
 * in the order of proto/client's receive path. */
int ocw_check_frame(const uint8_t *b, size_t n, uint8_t v, ocw_err *e);
enum ocw_body { OCW_B_SUBSCRIBE = 1, OCW_B_SUBSCRIBE_REPLY, OCW_B_EVENT, OCW_B_MEMBERSHIP, OCW_B_CONNECTIVITY,
	OCW_B_GROUP_JOIN, OCW_B_GROUP_JOIN_REPLY, OCW_B_GROUP_LEAVE, OCW_B_GROUP_SEQ, OCW_B_GROUP_SEND, OCW_B_GROUP_SEND_REPLY,
	OCW_B_GROUP_NAME, OCW_B_GROUP_MEMBERS, OCW_B_GROUP_LIST, OCW_B_GROUP_WINDOW, OCW_B_GROUP_ATTACH, OCW_B_GROUP_ATTACH_REPLY,
	OCW_B_CALLBACKS, OCW_B_DONE, OCW_B_STATUS, OCW_B_PING,
	OCW_B_EMPTY /* added: the empty bodies (QUERY_*, GROUP_LIST/WINDOW requests, CALLBACKS reply) */ };
int ocw_check_body(enum ocw_body kind, uint8_t v, const uint8_t *b, size_t n, ocw_err *e);

/* The name of an opcode of the client protocol ("GROUP_JOIN"), or NULL. */
const char *ocw_client_op_name(uint16_t opcode);
/* The opcode's first version, or 0 if the client protocol has no such opcode. */
int ocw_client_op_since(uint16_t opcode);

#endif /* OCW_WIRE_H */
