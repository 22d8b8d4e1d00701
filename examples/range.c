/*
 * range.c - the RANGE extension (HPKV_IOC_RANGE): ordered reads, a page at a time.
 *
 * Inserts 50 keys examples.range.000 .. examples.range.049 (INSERT, command 4), reads
 * [examples.range., examples.range/) back in pages of at most 10 records, each request
 * continuing after the last key of the one before (HPKV_RANGE_START_EXCLUSIVE) until
 * HPKV_RANGE_MORE is clear, checks the order and the values, then deletes the keys.
 *
 *   gcc -std=c99 -Wall -Wextra -Werror -I uapi examples/range.c -o range
 *   ./range [DEVICE]        (default /dev/hpkv)
 *
 * Exits 0 when every step did what the ABI says, 1 with a message otherwise.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "hpkv.h"

#define RECORDS 50
#define PAGE 10
#define CAPACITY 4096

static const char PREFIX[] = "examples.range.";
static const char END[] = "examples.range/"; /* '/' follows '.': the first key past the prefix */

static int fail(const char *what)
{
	fprintf(stderr, "range: %s: %s\n", what, errno ? strerror(errno) : "unexpected result");
	return 1;
}

static void key_of(char *out, int i)
{
	sprintf(out, "%s%03d", PREFIX, i);
}

static void value_of(char *out, int i)
{
	sprintf(out, "value-%03d", i);
}

static int insert(int fd, const char *key, const char *value)
{
	unsigned char buf[sizeof(struct hpkv_kv) + 64];
	struct hpkv_kv hdr;
	size_t key_len = strlen(key), value_len = strlen(value);

	hdr.key_len = (__u16)key_len;
	hdr.value_len = value_len;
	memcpy(buf, &hdr, sizeof(hdr));
	memcpy(buf + sizeof(hdr), key, key_len);
	memcpy(buf + sizeof(hdr) + key_len, value, value_len);
	return ioctl(fd, HPKV_IOCTL_INSERT, buf);
}

/* DELETE takes the key in the layout of the daemon's profile, which STATS reports. */
static int delete_key(int fd, int profile, const char *key)
{
	unsigned char buf[sizeof(struct hpkv_v13_key) + 64];
	size_t key_len = strlen(key);

	if (profile == HPKV_ABI_V13) {
		struct hpkv_v13_key hdr = { .key_len = (__u16)key_len };

		memcpy(buf, &hdr, sizeof(hdr));
		memcpy(buf + sizeof(hdr), key, key_len);
		return ioctl(fd, HPKV_IOCTL_DELETE, buf);
	}
	memcpy(buf, key, key_len + 1);
	return ioctl(fd, HPKV_IOCTL_DELETE, buf);
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/dev/hpkv";
	struct hpkv_range *req = calloc(1, sizeof(*req) + CAPACITY);
	struct hpkv_stats st;
	char key[64], value[64];
	int fd, i, seen = 0, pages = 0, more = 1;

	if (!req)
		return fail("calloc");
	fd = open(path, O_RDWR);
	if (fd < 0)
		return fail(path);
	for (i = 0; i < RECORDS; i++) {
		key_of(key, i);
		value_of(value, i);
		if (insert(fd, key, value) != 0)
			return fail("INSERT");
	}
	printf("inserted %d records\n", RECORDS);

	/* The first request starts at the prefix itself (included). */
	req->start_len = (__u16)strlen(PREFIX);
	memcpy(req->start, PREFIX, req->start_len);
	req->end_len = (__u16)strlen(END);
	memcpy(req->end, END, req->end_len);
	while (more) {
		size_t at = 0;
		__u32 n;

		req->max_count = PAGE;
		req->capacity = CAPACITY;
		errno = 0;
		if (ioctl(fd, HPKV_IOC_RANGE, req) != 0)
			return fail("HPKV_IOC_RANGE");
		more = (req->flags & HPKV_RANGE_MORE) != 0;
		pages++;
		for (n = 0; n < req->count; n++) {
			struct hpkv_range_entry e;
			const unsigned char *k;

			memcpy(&e, req->data + at, sizeof(e));
			k = req->data + at + sizeof(e);
			key_of(key, seen);
			value_of(value, seen);
			if (e.key_len != strlen(key) || memcmp(k, key, e.key_len) != 0 ||
			    e.value_len != strlen(value) || memcmp(k + e.key_len, value, e.value_len) != 0) {
				fprintf(stderr, "range: record %d is not %s:%s\n", seen, key, value);
				return 1;
			}
			seen++;
			at += HPKV_RANGE_ENTRY_SIZE(e.key_len, e.value_len);
			if (n + 1 == req->count) {
				/* Continue after this key. */
				req->start_len = e.key_len;
				memcpy(req->start, k, e.key_len);
				req->flags = HPKV_RANGE_START_EXCLUSIVE;
			}
		}
		if (at != req->data_len) {
			errno = 0;
			return fail("data_len differs from the entries' sizes");
		}
		printf("page %d: %u records%s\n", pages, req->count, more ? ", more" : "");
		if (more && req->count == 0) {
			errno = 0;
			return fail("no record but more");
		}
	}
	if (seen != RECORDS) {
		fprintf(stderr, "range: read %d records back, not %d\n", seen, RECORDS);
		return 1;
	}
	printf("read %d records in order in %d pages\n", seen, pages);

	if (ioctl(fd, HPKV_IOC_STATS, &st) != 0)
		return fail("HPKV_IOC_STATS");
	for (i = 0; i < RECORDS; i++) {
		key_of(key, i);
		if (delete_key(fd, (int)st.abi_profile, key) != 0)
			return fail("DELETE");
	}
	free(req);
	close(fd);
	printf("ok\n");
	return 0;
}
