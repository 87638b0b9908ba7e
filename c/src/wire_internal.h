/*
 * wire_internal.h - what wire.c and wire_event.c share: the body reader
 * (proto.Reader in C) and the checks each file runs for the other. Only
 * these two files include it; the rest of the library uses wire.h.
 *
 * The short names are macros for ocwi_-prefixed symbols, so that the
 * library's other files cannot collide with them (all are hidden by the
 * library's visibility and version script anyway).
 */
#ifndef OCW_WIRE_INTERNAL_H
#define OCW_WIRE_INTERNAL_H

#include "wire.h"

/* The first failure sticks: later reads return zeros, as in Go, so a
 * decoder reads every field and looks at the result once. */
typedef struct rd {
	const uint8_t *b;
	size_t n, off;
	ocw_err *e;
	const char *msg; /* message name, for errors */
	int bad;
} rd;

#define rd_init ocwi_rd_init
#define rd_fail ocwi_rd_fail
#define rd_bytes ocwi_rd_bytes
#define rd_u8 ocwi_rd_u8
#define rd_u16 ocwi_rd_u16
#define rd_u32 ocwi_rd_u32
#define rd_u64 ocwi_rd_u64
#define rd_zero ocwi_rd_zero
#define rd_str16 ocwi_rd_str16
#define rd_end ocwi_rd_end
#define rd_count ocwi_rd_count
#define rd_payload ocwi_rd_payload
#define desc_valid ocwi_desc_valid
#define gs_names ocwi_gs_names
#define check_event ocwi_check_event
#define check_data ocwi_check_data
#define check_group_members ocwi_check_group_members

/* wire.c: the reader. */
void rd_init(rd *r, const uint8_t *b, size_t n, const char *msg, ocw_err *e);
void rd_fail(rd *r, int code, const char *fmt, ...);
const uint8_t *rd_bytes(rd *r, size_t k, const char *field);
uint8_t rd_u8(rd *r, const char *f);
uint16_t rd_u16(rd *r, const char *f);
uint32_t rd_u32(rd *r, const char *f);
uint64_t rd_u64(rd *r, const char *f);
void rd_zero(rd *r, size_t k, const char *field);
/* proto.Reader.String16: a u16 length (at most max) and the bytes. */
const uint8_t *rd_str16(rd *r, size_t max, const char *field, size_t *len);
/* Reader.Err: -1 after a failure or with bytes left over, else 0. */
int rd_end(rd *r);
/* A u32 count against its limit and the bytes left (least per item). */
uint32_t rd_count(rd *r, const char *what, uint32_t limit, size_t least);
/* A u32 length (at most OCW_MAX_PAYLOAD) and the payload. */
const uint8_t *rd_payload(rd *r, size_t *len);
/* event.Descriptor.Valid. */
int desc_valid(uint32_t d);
/* The GROUP event names by event number (0..6). */
extern const char *const gs_names[7];

/* wire_event.c: validation-only passes of the event data decoder. */
int check_event(const uint8_t *b, size_t n, uint8_t v, ocw_err *e);
/* Data of class c (1 Connectivity, 2 Membership) without the event header. */
int check_data(const uint8_t *b, size_t n, unsigned c, const char *msg, ocw_err *e);
/* The body of a GROUP_MEMBERS reply, r over it. */
int check_group_members(rd *r);

#endif /* OCW_WIRE_INTERNAL_H */
