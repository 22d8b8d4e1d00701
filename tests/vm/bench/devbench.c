/*
 * hpkv-devbench — times operations on a /dev/hpkv-like device or a raw block device, for the
 * VM device benchmark (tests/vm/bench). Prints one line per run:
 *   RESULT <label> ops=<n> p50_us=<x> p99_us=<x> mean_us=<x> rate_per_s=<x>
 *
 *   hpkv-devbench write LABEL DEV COUNT THREADS PREFIX KEYS  COUNT writes "PREFIX%08d:value"
 *                        (100-byte values) shared by THREADS threads, over KEYS keys: all new
 *                        when KEYS >= COUNT, else overwrites spread over 0..KEYS-1
 *   hpkv-devbench get LABEL DEV COUNT PREFIX KEYS        COUNT HPKV_IOC_GET over those keys
 *   hpkv-devbench raw LABEL DEV COUNT                    COUNT x (4 KiB O_DIRECT pwrite + fdatasync)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "hpkv.h"

#define VALUE_LEN 100

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void report(const char *label, double *lat, long n, double elapsed_us)
{
	double sum = 0;

	qsort(lat, (size_t)n, sizeof(*lat), cmp_double);
	for (long i = 0; i < n; i++)
		sum += lat[i];
	printf("RESULT %s ops=%ld p50_us=%.1f p99_us=%.1f mean_us=%.1f rate_per_s=%.1f\n", label, n,
	       lat[n / 2], lat[(n * 99) / 100], sum / (double)n, (double)n * 1e6 / elapsed_us);
	fflush(stdout);
}

/* The key number of operation `i` of `count` over `keys` keys. */
static long key_of(long i, long count, long keys)
{
	return keys >= count ? i : (i * 7919) % keys;
}

struct writer {
	const char *dev, *prefix;
	long from, to, count, keys;
	double *lat;
	int failed;
};

static void *write_loop(void *p)
{
	struct writer *w = p;
	char buf[256];
	int fd = open(w->dev, O_WRONLY);

	if (fd < 0) {
		perror(w->dev);
		w->failed = 1;
		return NULL;
	}
	for (long i = w->from; i < w->to; i++) {
		long k = key_of(i, w->count, w->keys);
		int n = snprintf(buf, sizeof(buf), "%s%08ld:", w->prefix, k);

		memset(buf + n, 'a' + (int)(i % 26), VALUE_LEN);
		double t = now_us();
		if (write(fd, buf, (size_t)n + VALUE_LEN) != n + VALUE_LEN) {
			fprintf(stderr, "write %s%08ld: %s\n", w->prefix, i, strerror(errno));
			w->failed = 1;
			break;
		}
		w->lat[i] = now_us() - t;
	}
	close(fd);
	return NULL;
}

static int cmd_write(const char *label, const char *dev, long count, int threads, const char *prefix,
		     long keys)
{
	double *lat = calloc((size_t)count, sizeof(*lat));
	pthread_t tid[64];
	struct writer w[64];
	int failed = 0;

	if (!lat || threads < 1 || threads > 64)
		return 2;
	double t0 = now_us();
	for (int k = 0; k < threads; k++) {
		w[k] = (struct writer){ dev,	     prefix, count * k / threads, count * (k + 1) / threads,
					count, keys, lat,    0 };
		pthread_create(&tid[k], NULL, write_loop, &w[k]);
	}
	for (int k = 0; k < threads; k++) {
		pthread_join(tid[k], NULL);
		failed |= w[k].failed;
	}
	double elapsed = now_us() - t0;
	if (failed)
		return 1;
	report(label, lat, count, elapsed);
	free(lat);
	return 0;
}

static int cmd_get(const char *label, const char *dev, long count, const char *prefix, long keys)
{
	double *lat = calloc((size_t)count, sizeof(*lat));
	struct hpkv_get *get = aligned_alloc(4096, 2 * 4096);
	int fd = open(dev, O_RDWR);

	if (!lat || !get || fd < 0) {
		perror(dev);
		return 1;
	}
	double t0 = now_us();
	for (long i = 0; i < count; i++) {
		memset(get, 0, sizeof(*get));
		get->key_len = (uint16_t)snprintf((char *)get->key, sizeof(get->key), "%s%08ld", prefix,
						  key_of(i, count, keys));
		get->capacity = 4096;
		double t = now_us();
		if (ioctl(fd, HPKV_IOC_GET, get) != 0 || get->value_len != VALUE_LEN) {
			fprintf(stderr, "get %s%08ld: %s (length %llu)\n", prefix, i, strerror(errno),
				(unsigned long long)get->value_len);
			return 1;
		}
		lat[i] = now_us() - t;
	}
	report(label, lat, count, now_us() - t0);
	close(fd);
	return 0;
}

static int cmd_raw(const char *label, const char *dev, long count)
{
	double *lat = calloc((size_t)count, sizeof(*lat));
	void *buf = aligned_alloc(4096, 4096);
	int fd = open(dev, O_RDWR | O_DIRECT);

	if (!lat || !buf || fd < 0) {
		perror(dev);
		return 1;
	}
	memset(buf, 0x33, 4096);
	double t0 = now_us();
	for (long i = 0; i < count; i++) {
		double t = now_us();
		if (pwrite(fd, buf, 4096, (off_t)(i % 4096) * 4096) != 4096 || fdatasync(fd) != 0) {
			perror("raw write");
			return 1;
		}
		lat[i] = now_us() - t;
	}
	report(label, lat, count, now_us() - t0);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 8 && !strcmp(argv[1], "write"))
		return cmd_write(argv[2], argv[3], atol(argv[4]), atoi(argv[5]), argv[6], atol(argv[7]));
	if (argc >= 7 && !strcmp(argv[1], "get"))
		return cmd_get(argv[2], argv[3], atol(argv[4]), argv[5], atol(argv[6]));
	if (argc >= 5 && !strcmp(argv[1], "raw"))
		return cmd_raw(argv[2], argv[3], atol(argv[4]));
	fprintf(stderr, "usage: see the comment at the top of devbench.c\n");
	return 2;
}
