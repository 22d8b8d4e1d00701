/*
 * safe_get.c - the safe GET extension (HPKV_IOC_GET): a bounded read.
 *
 * Stores a 100-byte value with INSERT (command 4), asks for it with a 16-byte buffer
 * (ERANGE, and value_len says how much room it needs), then with enough room; deletes it.
 *
 *   gcc -std=c99 -Wall -Wextra -Werror -I uapi examples/safe_get.c -o safe_get
 *   ./safe_get [DEVICE]        (default /dev/hpkv)
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

static const char KEY[] = "examples.safe_get";
#define VALUE_LEN 100

static int fail(const char *what)
{
	fprintf(stderr, "safe_get: %s: %s\n", what, errno ? strerror(errno) : "unexpected result");
	return 1;
}

/* INSERT: struct hpkv_kv, then the key, then the value, packed. */
static int insert(int fd, const char *key, const unsigned char *value, size_t value_len)
{
	struct hpkv_kv hdr;
	size_t key_len = strlen(key);
	unsigned char *buf = malloc(sizeof(hdr) + key_len + value_len);
	int r;

	if (!buf)
		return -1;
	hdr.key_len = (__u16)key_len;
	hdr.value_len = value_len;
	memcpy(buf, &hdr, sizeof(hdr));
	memcpy(buf + sizeof(hdr), key, key_len);
	memcpy(buf + sizeof(hdr) + key_len, value, value_len);
	r = ioctl(fd, HPKV_IOCTL_INSERT, buf);
	free(buf);
	return r;
}

/* DELETE takes the key in the layout of the daemon's profile, which STATS reports. */
static int delete_key(int fd, const char *key)
{
	struct hpkv_stats st;
	unsigned char buf[sizeof(struct hpkv_v13_key) + HPKV_KEY_MAX];
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

/* A struct hpkv_get for KEY with `capacity` bytes of room after it. */
static struct hpkv_get *get_request(size_t capacity)
{
	struct hpkv_get *g = calloc(1, sizeof(*g) + capacity);

	if (!g)
		return NULL;
	g->key_len = (__u16)strlen(KEY);
	g->capacity = capacity;
	memcpy(g->key, KEY, g->key_len);
	return g;
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/dev/hpkv";
	unsigned char value[VALUE_LEN];
	struct hpkv_get *small, *big;
	int fd, i;

	for (i = 0; i < VALUE_LEN; i++)
		value[i] = (unsigned char)('a' + i % 26);
	fd = open(path, O_RDWR);
	if (fd < 0)
		return fail(path);
	if (insert(fd, KEY, value, VALUE_LEN) != 0)
		return fail("INSERT");
	printf("inserted %s: %d bytes\n", KEY, VALUE_LEN);

	small = get_request(16);
	if (!small)
		return fail("calloc");
	errno = 0;
	if (ioctl(fd, HPKV_IOC_GET, small) != -1 || errno != ERANGE)
		return fail("HPKV_IOC_GET with 16 bytes of room should fail with ERANGE");
	printf("16 bytes of room: ERANGE, value_len %llu\n", (unsigned long long)small->value_len);
	if (small->value_len != VALUE_LEN) {
		errno = 0;
		return fail("value_len on ERANGE");
	}

	big = get_request((size_t)small->value_len);
	if (!big)
		return fail("calloc");
	errno = 0;
	if (ioctl(fd, HPKV_IOC_GET, big) != 0)
		return fail("HPKV_IOC_GET with enough room");
	if (big->value_len != VALUE_LEN || memcmp(big->value, value, VALUE_LEN) != 0) {
		errno = 0;
		return fail("the value read back differs");
	}
	printf("%llu bytes of room: got %llu bytes: %.26s...\n",
	       (unsigned long long)big->capacity, (unsigned long long)big->value_len,
	       (const char *)big->value);

	if (delete_key(fd, KEY) != 0)
		return fail("DELETE");
	free(small);
	free(big);
	close(fd);
	printf("ok\n");
	return 0;
}
