/*
 * sync.c - the SYNC extension (HPKV_IOC_SYNC): durability on demand.
 *
 * Stores a record with write() ("key:value"), calls HPKV_IOC_SYNC, which returns once every
 * write acknowledged before it is on stable media, and reads the value back with the safe
 * GET (HPKV_IOC_GET); deletes it.
 *
 *   gcc -std=c99 -Wall -Wextra -Werror -I uapi examples/sync.c -o sync
 *   ./sync [DEVICE]        (default /dev/hpkv)
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

static const char KEY[] = "examples.sync";
static const char VALUE[] = "durable";
#define ROOM 64

static int fail(const char *what)
{
	fprintf(stderr, "sync: %s: %s\n", what, errno ? strerror(errno) : "unexpected result");
	return 1;
}

/* DELETE takes the key in the layout of the daemon's profile, which STATS reports. */
static int delete_key(int fd, const char *key)
{
	struct hpkv_stats st;
	unsigned char buf[sizeof(struct hpkv_v13_key) + 64];
	size_t key_len = strlen(key);

	if (ioctl(fd, HPKV_IOC_STATS, &st) != 0)
		return -1;
	if (st.abi_profile == HPKV_ABI_V13) {
		struct hpkv_v13_key hdr = { .key_len = (__u16)key_len };

		memcpy(buf, &hdr, sizeof(hdr));
		memcpy(buf + sizeof(hdr), key, key_len);
		return ioctl(fd, HPKV_IOCTL_DELETE, buf);
	}
	memcpy(buf, key, key_len + 1); /* readme: the NUL-terminated string */
	return ioctl(fd, HPKV_IOCTL_DELETE, buf);
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/dev/hpkv";
	char record[64];
	struct hpkv_get *get = calloc(1, sizeof(*get) + ROOM);
	int fd, n;

	if (!get)
		return fail("calloc");
	fd = open(path, O_RDWR);
	if (fd < 0)
		return fail(path);
	n = sprintf(record, "%s:%s", KEY, VALUE);
	if (write(fd, record, (size_t)n) != n)
		return fail("write");
	printf("write %s: %d bytes\n", record, n);
	if (ioctl(fd, HPKV_IOC_SYNC) != 0)
		return fail("HPKV_IOC_SYNC");
	printf("sync: done\n");

	get->key_len = (__u16)strlen(KEY);
	get->capacity = ROOM;
	memcpy(get->key, KEY, get->key_len);
	if (ioctl(fd, HPKV_IOC_GET, get) != 0)
		return fail("HPKV_IOC_GET");
	errno = 0;
	if (get->value_len != strlen(VALUE) || memcmp(get->value, VALUE, get->value_len) != 0)
		return fail("the value read back differs");
	printf("read back: %.*s\n", (int)get->value_len, (const char *)get->value);
	free(get);
	if (delete_key(fd, KEY) != 0)
		return fail("DELETE");
	close(fd);
	printf("ok\n");
	return 0;
}
