/*
 * stats.c - the STATS extension (HPKV_IOC_STATS): the module's /proc/hpkv_stats and more.
 *
 * Prints the three lines the module printed in /proc/hpkv_stats, then stores one key and
 * checks that the counters moved: one more put, a record that counts, its value's bytes;
 * deletes it.
 *
 *   gcc -std=c99 -Wall -Wextra -Werror -I uapi examples/stats.c -o stats
 *   ./stats [DEVICE]        (default /dev/hpkv)
 *
 * Exits 0 when every step did what the ABI says, 1 with a message otherwise.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "hpkv.h"

static const char RECORD[] = "examples.stats:twelve bytes";
#define VALUE_LEN 12

static int fail(const char *what)
{
	fprintf(stderr, "stats: %s: %s\n", what, errno ? strerror(errno) : "unexpected result");
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
	struct hpkv_stats before, after;
	int fd;

	fd = open(path, O_RDWR);
	if (fd < 0)
		return fail(path);
	if (ioctl(fd, HPKV_IOC_STATS, &before) != 0)
		return fail("HPKV_IOC_STATS");
	printf("Total records: %llu\n", (unsigned long long)before.records);
	printf("Total disk usage: %llu bytes\n", (unsigned long long)before.disk_usage_bytes);
	printf("Device size: %llu bytes\n", (unsigned long long)before.device_size_bytes);
	printf("abi profile: %s\n", before.abi_profile == HPKV_ABI_V13 ? "v1.3" : "readme");

	/* write(): "key:value", one upsert. */
	if (write(fd, RECORD, strlen(RECORD)) != (ssize_t)strlen(RECORD))
		return fail("write");
	if (ioctl(fd, HPKV_IOC_STATS, &after) != 0)
		return fail("HPKV_IOC_STATS");
	errno = 0;
	if (after.puts < before.puts + 1)
		return fail("the puts counter did not grow");
	if (after.records < 1 || after.disk_usage_bytes < VALUE_LEN)
		return fail("the record is not counted");
	if (after.device_size_bytes != before.device_size_bytes || after.device_size_bytes == 0)
		return fail("the device size changed");
	if (after.segments_free > after.segments_total)
		return fail("more free segments than segments");
	printf("after one write: puts +%llu, records >= 1, disk usage >= %d bytes\n",
	       (unsigned long long)(after.puts - before.puts), VALUE_LEN);
	if (delete_key(fd, "examples.stats") != 0)
		return fail("DELETE");
	close(fd);
	printf("ok\n");
	return 0;
}
