/*
 * vectors DIR - run every golden vector of the client protocol
 * (the .hex files of proto/client/testdata) through the C decoder and compare the
 * outcome with the vector's "# expect:" line.
 *
 * A vector is one frame (it starts with the magic "CORR") or one body;
 * a body's kind follows from its file name (see kinds below: the names
 * proto/client's tests give their body vectors). Frames are checked on a
 * link of the version their comment names ("on a link that agreed on
 * version N": err_wrong_version is a version 3 PING on a version 2 link),
 * else of the version their header says when the build that wrote the
 * vectors speaks it (DIR/opcodes.txt: "versions 1..N"), else N, as the Go
 * tests' receive() does. DIR/opcodes.txt is also compared with the C opcode
 * table. One line per failure; exit status 1 if any. -v also notes where
 * the C error text lacks what the vector's message contains.
 *
 * The C library speaks client versions up to OCW_CLIENT_MAX_VERSION, which
 * may be below the Go build's: vectors and opcodes of later versions are
 * skipped (and counted in the summary line), not failed. A frame is
 * skipped when the version it is checked at is above the C library's, a
 * body when its name says a later version (later below), an opcode when
 * opcodes.txt gives it a later "since". So the data service of version 4
 * (DS_*, 0x0301-0x030B), which liboc_event does not speak, is skipped,
 * while err_ds_v3 (a DS opcode on a version 3 link) is checked.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/wire.h"

static int verbose;
static int failures;

static void failf(const char *name, const char *what, const ocw_err *e, int want)
{
	printf("FAIL %s: %s (want %d, got %d: %s)\n", name, what, want, e->code, e->msg);
	failures++;
}

/* A vector: bytes, expected code (0 ok), expected message fragment. */
typedef struct vec {
	unsigned char *b;
	size_t n, cap;
	int want;
	char contains[256];
	int have_expect;
	int link; /* the link version the comment names, 0 if none */
} vec;

static int hexval(int c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

static int push(vec *v, unsigned char c)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? 2 * v->cap : 4096;
		unsigned char *b = realloc(v->b, cap);
		if (b == NULL)
			return -1;
		v->b = b;
		v->cap = cap;
	}
	v->b[v->n++] = c;
	return 0;
}

static void parse_expect(vec *v, const char *s)
{
	const char *q;

	v->have_expect = 1;
	while (*s == ' ')
		s++;
	if (strncmp(s, "ok", 2) == 0) {
		v->want = 0;
	} else if (strncmp(s, "error code ", 11) == 0) {
		v->want = atoi(s + 11);
	} else {
		v->want = -1;
	}
	q = strstr(s, "message contains \"");
	if (q != NULL) {
		const char *end;

		q += strlen("message contains \"");
		end = strrchr(q, '"');
		if (end != NULL && (size_t)(end - q) < sizeof v->contains) {
			memcpy(v->contains, q, (size_t)(end - q));
			v->contains[end - q] = '\0';
		}
	}
}

/* The format: "# ..." comment lines (one is "# expect: ..."), and data
 * lines "OFFSET: hex bytes  # comment". */
static int read_vector(const char *path, vec *v)
{
	FILE *f = fopen(path, "r");
	char line[4096];

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL) {
		char *p = line, *colon;

		if (line[0] == '#') {
			const char *q = strstr(line, "agreed on version ");

			if (strncmp(line, "# expect:", 9) == 0)
				parse_expect(v, line + 9);
			else if (q != NULL && v->link == 0)
				v->link = atoi(q + strlen("agreed on version "));
			continue;
		}
		colon = strchr(line, ':');
		if (colon == NULL)
			continue;
		for (p = colon + 1; *p != '\0' && *p != '#' && *p != '\n'; p++) {
			int hi, lo;

			if (*p == ' ')
				continue;
			hi = hexval(p[0]);
			lo = hi < 0 ? -1 : hexval(p[1]);
			if (hi < 0 || lo < 0 || push(v, (unsigned char)(hi << 4 | lo)) < 0) {
				fclose(f);
				return -1;
			}
			p++;
		}
	}
	fclose(f);
	return 0;
}

/* Body vectors by file name (without "err_"): the decoder proto/client's
 * tests give each; the first matching prefix wins. EVENT bodies are
 * judged by ParseEvent, the version 1/2 decoder, unless the name says v3. */
static const struct { const char *prefix; enum ocw_body kind; } kinds[] = {
	{"group_send_reply_to", OCW_B_GROUP_SEND}, /* a GROUP_SEND REPLY without reply-to */
	{"subscribe_reply", OCW_B_SUBSCRIBE_REPLY},
	{"subscribe", OCW_B_SUBSCRIBE},
	{"event", OCW_B_EVENT},
	{"membership", OCW_B_MEMBERSHIP},
	{"connectivity", OCW_B_CONNECTIVITY},
	{"group_join_reply", OCW_B_GROUP_JOIN_REPLY},
	{"group_join", OCW_B_GROUP_JOIN},
	{"group_leave_reply", OCW_B_GROUP_SEQ},
	{"group_seq", OCW_B_GROUP_SEQ},
	{"group_leave", OCW_B_GROUP_LEAVE},
	{"group_send_reply", OCW_B_GROUP_SEND_REPLY},
	{"group_send", OCW_B_GROUP_SEND},
	{"group_name", OCW_B_GROUP_NAME},
	{"group_members", OCW_B_GROUP_MEMBERS},
	{"group_list", OCW_B_GROUP_LIST},
	{"group_window", OCW_B_GROUP_WINDOW},
	{"group_attach_reply", OCW_B_GROUP_ATTACH_REPLY},
	{"group_attach", OCW_B_GROUP_ATTACH},
	{"callbacks", OCW_B_CALLBACKS},
	{"done", OCW_B_DONE},
	{"status", OCW_B_STATUS},
	{"ping", OCW_B_PING},
};

/* Body vectors of client versions above the C library's, by file name
 * (without "err_"): skipped. */
static const struct { const char *prefix; int since; } later[] = {
	{"ds_", 4}, /* the data service (proto/client/dsvc.go) */
};

/* later_version returns the version a body vector belongs to if the C
 * library does not speak it, else 0. */
static int later_version(const char *name)
{
	const char *s = strncmp(name, "err_", 4) == 0 ? name + 4 : name;
	size_t i;

	for (i = 0; i < sizeof later / sizeof later[0]; i++)
		if (strncmp(s, later[i].prefix, strlen(later[i].prefix)) == 0 && later[i].since > OCW_CLIENT_MAX_VERSION)
			return later[i].since;
	return 0;
}

static int body_kind(const char *name, enum ocw_body *kind, uint8_t *v)
{
	const char *s = strncmp(name, "err_", 4) == 0 ? name + 4 : name;
	size_t i;

	for (i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		if (strncmp(s, kinds[i].prefix, strlen(kinds[i].prefix)) == 0) {
			*kind = kinds[i].kind;
			*v = 2;
			if (strstr(name, "v3") != NULL)
				*v = 3;
			return 0;
		}
	}
	return -1;
}

/* max_version: the highest version both the C library and the build that
 * wrote the vectors speak; file_max: the latter's (opcodes.txt). */
static int max_version = OCW_CLIENT_MAX_VERSION;
static int file_max = OCW_CLIENT_MAX_VERSION;
static int skipped_ops, skipped;

/* opcodes.txt: "proto 2 (client) versions 1..N", then "0xXXXX NAME since V". */
static void check_opcodes(const char *dir)
{
	char path[4096], line[256];
	FILE *f;
	int listed[3] = {0, 0, 0}, lo, hi;
	unsigned op;

	snprintf(path, sizeof path, "%s/opcodes.txt", dir);
	if ((f = fopen(path, "r")) == NULL) {
		printf("FAIL opcodes.txt: cannot open %s\n", path);
		failures++;
		return;
	}
	while (fgets(line, sizeof line, f) != NULL) {
		char name[64];
		int since;

		if (sscanf(line, "proto 2 (client) versions %d..%d", &lo, &hi) == 2) {
			file_max = hi;
			if (hi < max_version)
				max_version = hi;
			continue;
		}
		if (sscanf(line, "0x%x %63s since %d", &op, name, &since) != 3)
			continue;
		if (since > OCW_CLIENT_MAX_VERSION) {
			skipped_ops++; /* an opcode of a version the C library does not speak */
			continue;
		}
		if (ocw_client_op_name((uint16_t)op) == NULL || strcmp(ocw_client_op_name((uint16_t)op), name) != 0 ||
			ocw_client_op_since((uint16_t)op) != since) {
			printf("FAIL opcodes.txt: 0x%04x %s since %d, the C table says %s since %d\n", op, name, since,
				ocw_client_op_name((uint16_t)op) ? ocw_client_op_name((uint16_t)op) : "nothing", ocw_client_op_since((uint16_t)op));
			failures++;
		}
		listed[0]++;
	}
	fclose(f);
	/* Every C opcode of the versions the file covers is listed. */
	for (op = 0; op <= 0xFFFF; op++) {
		int since = ocw_client_op_since((uint16_t)op);
		if (since != 0 && since <= max_version)
			listed[1]++;
	}
	if (listed[0] != listed[1]) {
		printf("FAIL opcodes.txt: %d opcodes of versions up to %d listed, the C table has %d\n", listed[0], max_version, listed[1]);
		failures++;
	}
	(void)listed[2];
}

static int run(const char *dir, const char *file, int *frames, int *bodies)
{
	char path[4096], name[256];
	vec v;
	ocw_err e;
	int rc, got;
	size_t len = strlen(file);

	memset(&v, 0, sizeof v);
	memset(&e, 0, sizeof e);
	snprintf(path, sizeof path, "%s/%s", dir, file);
	snprintf(name, sizeof name, "%.*s", (int)(len - 4), file);
	if (read_vector(path, &v) < 0 || !v.have_expect || v.want < 0) {
		printf("FAIL %s: cannot read the vector or its expect line\n", name);
		failures++;
		free(v.b);
		return -1;
	}
	if (v.n >= OCW_HEADER_SIZE && memcmp(v.b, "CORR", 4) == 0) {
		uint8_t ver = v.b[9] >= OCW_CLIENT_MIN_VERSION && v.b[9] <= file_max ? v.b[9] : (uint8_t)file_max;

		if (v.link > 0 && v.link <= 255)
			ver = (uint8_t)v.link;
		if (ver > OCW_CLIENT_MAX_VERSION) {
			/* A frame of a version the C library does not speak. */
			skipped++;
			free(v.b);
			return 0;
		}

		(*frames)++;
		rc = ocw_check_frame(v.b, v.n, ver, &e);
		got = rc == 0 ? 0 : e.code;
		if (got != v.want)
			failf(name, "frame", &e, v.want);
		/* An EVENT that passes decodes into its block (ASan watches). */
		if (rc == 0 && v.b[10] == (OCW_OP_EVENT & 0xFF) && v.b[11] == (OCW_OP_EVENT >> 8)) {
			ocw_event ev;
			size_t ext = (size_t)v.b[40] | (size_t)v.b[41] << 8 | (size_t)v.b[42] << 16 | (size_t)v.b[43] << 24;

			if (ocw_parse_event(v.b + OCW_HEADER_SIZE + ext, v.n - OCW_HEADER_SIZE - ext, ver, &ev, &e) < 0)
				failf(name, "ocw_parse_event", &e, 0);
			free(ev.data);
		}
	} else {
		enum ocw_body kind;
		uint8_t ver;

		if (later_version(name) != 0) {
			skipped++;
			free(v.b);
			return 0;
		}
		(*bodies)++;
		if (body_kind(name, &kind, &ver) < 0) {
			printf("FAIL %s: a body vector of no known kind (add its prefix to vectors.c)\n", name);
			failures++;
			free(v.b);
			return -1;
		}
		rc = ocw_check_body(kind, ver, v.b, v.n, &e);
		got = rc == 0 ? 0 : e.code;
		if (got != v.want)
			failf(name, "body", &e, v.want);
	}
	if (verbose && rc != 0 && v.contains[0] != '\0' && strstr(e.msg, v.contains) == NULL)
		printf("note %s: C says \"%s\", Go's text contains \"%s\"\n", name, e.msg, v.contains);
	free(v.b);
	return 0;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv)
{
	const char *dir;
	DIR *d;
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0, i;
	int frames = 0, bodies = 0;

	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		verbose = 1;
		argc--;
		argv++;
	}
	if (argc != 2) {
		fprintf(stderr, "usage: vectors [-v] DIR\n");
		return 2;
	}
	dir = argv[1];
	check_opcodes(dir);
	if ((d = opendir(dir)) == NULL) {
		perror(dir);
		return 2;
	}
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);

		if (len < 5 || strcmp(de->d_name + len - 4, ".hex") != 0)
			continue;
		if (n == cap) {
			char **nn = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *names);
			if (nn == NULL)
				return 2;
			names = nn;
		}
		if ((names[n] = malloc(len + 1)) == NULL)
			return 2;
		memcpy(names[n++], de->d_name, len + 1);
	}
	closedir(d);
	qsort(names, n, sizeof *names, cmp);
	for (i = 0; i < n; i++) {
		run(dir, names[i], &frames, &bodies);
		free(names[i]);
	}
	free(names);
	printf("vectors: %zu files (%d frames, %d bodies) at client version <= %d: %d failures\n", n, frames, bodies, max_version, failures);
	if (skipped != 0 || skipped_ops != 0)
		printf("vectors: skipped %d vectors and %d opcodes of client versions %d..%d, which the C library (version <= %d) does not speak\n",
			skipped, skipped_ops, OCW_CLIENT_MAX_VERSION + 1, file_max, OCW_CLIENT_MAX_VERSION);
	if (n == 0)
		return 1;
	return failures ? 1 : 0;
}
