/*
 * hpkv-devbench — times operations on /dev/hpkv-like devices and raw block devices for the VM
 * device benchmark (tests/vm/bench). The machine under the VM is shared and its speed drifts, so
 * the runs to be compared are interleaved: ROUNDS rounds, each running every SPEC once, in turn.
 * At the end, two lines per SPEC:
 *   ROUNDS <label> p50_us=<round 1>,<round 2>,...
 *   RESULT <label> ops=<n> p50_us=<x> p99_us=<x> mean_us=<x> rate_per_s=<x>
 * (rate: operations per second of the time spent in that SPEC's rounds).
 *
 *   hpkv-devbench ROUNDS SPEC...      SPEC = kind,label,device,ops,threads,prefix,keys
 *   kind write: ops writes "PREFIX%08d:value" (100-byte values) per round, shared by threads
 *               writer threads, over keys keys (all new when keys >= ops x ROUNDS, else
 *               overwrites spread over 0..keys-1)
 *   kind get:   ops HPKV_IOC_GET of those keys per round (threads is ignored)
 *   kind raw:   ops 4 KiB O_DIRECT pwrite + fdatasync on a block device per round, shared by
 *               threads threads (with several, the block layer's own group commit: concurrent
 *               flushes are merged)
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
#define SPECS_MAX 32
#define THREADS_MAX 64

struct spec {
	char kind[8], label[64], dev[128], prefix[64];
	long ops, threads, keys;
	double *lat; /* ops x rounds latencies, µs */
	long done;   /* operations timed so far */
	double busy_us;
};

static long rounds;

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

/* The key number of operation `i` of `total` over `keys` keys. */
static long key_of(long i, long total, long keys)
{
	return keys >= total ? i : (i * 7919) % keys;
}

struct writer {
	struct spec *s;
	long from, to; /* operation numbers of this round */
	pthread_barrier_t *start; /* every writer has its file open: the clock starts */
	int failed;
};

/* A thread's share of a raw round: 4 KiB O_DIRECT writes, each followed by fdatasync. */
static int raw_ops(struct writer *w, int fd)
{
	struct spec *s = w->s;
	void *buf = aligned_alloc(4096, 4096);

	if (!buf)
		return 1;
	memset(buf, 0x33, 4096);
	for (long i = w->from; i < w->to; i++) {
		double t = now_us();
		if (pwrite(fd, buf, 4096, (off_t)(i % 4096) * 4096) != 4096 || fdatasync(fd) != 0) {
			perror("raw write");
			free(buf);
			return 1;
		}
		s->lat[i] = now_us() - t;
	}
	free(buf);
	return 0;
}

static void *write_loop(void *p)
{
	struct writer *w = p;
	struct spec *s = w->s;
	char buf[256];
	int raw = !strcmp(s->kind, "raw");
	int fd = raw ? open(s->dev, O_RDWR | O_DIRECT) : open(s->dev, O_WRONLY);

	pthread_barrier_wait(w->start);
	if (fd < 0) {
		perror(s->dev);
		w->failed = 1;
		return NULL;
	}
	if (raw) {
		w->failed = raw_ops(w, fd);
		close(fd);
		return NULL;
	}
	for (long i = w->from; i < w->to; i++) {
		long k = key_of(i, s->ops * rounds, s->keys);
		int n = snprintf(buf, sizeof(buf), "%s%08ld:", s->prefix, k);

		memset(buf + n, 'a' + (int)(i % 26), VALUE_LEN);
		double t = now_us();
		if (write(fd, buf, (size_t)n + VALUE_LEN) != n + VALUE_LEN) {
			fprintf(stderr, "%s: write %s%08ld: %s\n", s->label, s->prefix, k, strerror(errno));
			w->failed = 1;
			break;
		}
		s->lat[i] = now_us() - t;
	}
	close(fd);
	return NULL;
}

static int round_write(struct spec *s)
{
	pthread_t tid[THREADS_MAX];
	struct writer w[THREADS_MAX];
	pthread_barrier_t start;
	long first = s->done, n = s->ops, t = s->threads;
	int failed = 0;

	/* The clock starts once every writer is started and has its file open (thread starts and
	 * opens are not writes). */
	pthread_barrier_init(&start, NULL, (unsigned)t + 1);
	for (long k = 0; k < t; k++) {
		w[k] = (struct writer){ s, first + n * k / t, first + n * (k + 1) / t, &start, 0 };
		pthread_create(&tid[k], NULL, write_loop, &w[k]);
	}
	pthread_barrier_wait(&start);
	double t0 = now_us();
	for (long k = 0; k < t; k++) {
		pthread_join(tid[k], NULL);
		failed |= w[k].failed;
	}
	s->busy_us += now_us() - t0;
	pthread_barrier_destroy(&start);
	return failed;
}

static int round_get(struct spec *s)
{
	static struct hpkv_get *get;
	int fd = open(s->dev, O_RDWR);

	if (!get)
		get = aligned_alloc(4096, 2 * 4096);
	if (!get || fd < 0) {
		perror(s->dev);
		return 1;
	}
	double t0 = now_us();
	for (long i = s->done; i < s->done + s->ops; i++) {
		long k = key_of(i, s->ops * rounds, s->keys);

		memset(get, 0, sizeof(*get));
		get->key_len = (uint16_t)snprintf((char *)get->key, sizeof(get->key), "%s%08ld", s->prefix, k);
		get->capacity = 4096;
		double t = now_us();
		if (ioctl(fd, HPKV_IOC_GET, get) != 0 || get->value_len != VALUE_LEN) {
			fprintf(stderr, "%s: get %s%08ld: %s (length %llu)\n", s->label, s->prefix, k,
				strerror(errno), (unsigned long long)get->value_len);
			close(fd);
			return 1;
		}
		s->lat[i] = now_us() - t;
	}
	s->busy_us += now_us() - t0;
	close(fd);
	return 0;
}

static int round_raw(struct spec *s)
{
	struct writer w = { .s = s, .from = s->done, .to = s->done + s->ops };
	int fd = open(s->dev, O_RDWR | O_DIRECT);

	if (fd < 0) {
		perror(s->dev);
		return 1;
	}
	double t0 = now_us();
	int failed = raw_ops(&w, fd);

	s->busy_us += now_us() - t0;
	close(fd);
	return failed;
}

/* The p50 of each round on its own (before report() sorts them all): how much a ratio of two
 * interleaved figures moves from round to round. */
static void report_rounds(struct spec *s)
{
	double *round = calloc((size_t)s->ops, sizeof(double));

	if (!round)
		return;
	printf("ROUNDS %s p50_us=", s->label);
	for (long r = 0; r < s->done / s->ops; r++) {
		memcpy(round, s->lat + r * s->ops, (size_t)s->ops * sizeof(double));
		qsort(round, (size_t)s->ops, sizeof(double), cmp_double);
		printf("%s%.1f", r ? "," : "", round[s->ops / 2]);
	}
	printf("\n");
	free(round);
}

static void report(struct spec *s)
{
	double sum = 0;
	long n = s->done;

	report_rounds(s);
	qsort(s->lat, (size_t)n, sizeof(double), cmp_double);
	for (long i = 0; i < n; i++)
		sum += s->lat[i];
	printf("RESULT %s ops=%ld p50_us=%.1f p99_us=%.1f mean_us=%.1f rate_per_s=%.1f\n", s->label, n,
	       s->lat[n / 2], s->lat[(n * 99) / 100], sum / (double)n, (double)n * 1e6 / s->busy_us);
}

static int parse(const char *arg, struct spec *s)
{
	char copy[512], *field[7], *save = NULL;
	int n = 0;

	snprintf(copy, sizeof(copy), "%s", arg);
	for (char *f = strtok_r(copy, ",", &save); f && n < 7; f = strtok_r(NULL, ",", &save))
		field[n++] = f;
	if (n != 7)
		return 1;
	memset(s, 0, sizeof(*s));
	snprintf(s->kind, sizeof(s->kind), "%s", field[0]);
	snprintf(s->label, sizeof(s->label), "%s", field[1]);
	snprintf(s->dev, sizeof(s->dev), "%s", field[2]);
	s->ops = atol(field[3]);
	s->threads = atol(field[4]);
	snprintf(s->prefix, sizeof(s->prefix), "%s", field[5]);
	s->keys = atol(field[6]);
	s->lat = calloc((size_t)(s->ops * rounds), sizeof(double));
	return !s->lat || s->ops < 1 || s->threads < 1 || s->threads > THREADS_MAX || s->keys < 1;
}

int main(int argc, char **argv)
{
	struct spec specs[SPECS_MAX];
	int n = argc - 2;

	rounds = argc > 1 ? atol(argv[1]) : 0;
	if (argc < 3 || rounds < 1 || n > SPECS_MAX) {
		fprintf(stderr, "usage: %s ROUNDS kind,label,device,ops,threads,prefix,keys ...\n", argv[0]);
		return 2;
	}
	for (int i = 0; i < n; i++) {
		if (parse(argv[i + 2], &specs[i])) {
			fprintf(stderr, "bad spec: %s\n", argv[i + 2]);
			return 2;
		}
	}
	for (long r = 0; r < rounds; r++) {
		for (int i = 0; i < n; i++) {
			struct spec *s = &specs[i];
			int failed = !strcmp(s->kind, "write") ? round_write(s) :
				     !strcmp(s->kind, "get")   ? round_get(s) :
				     s->threads > 1	       ? round_write(s) :
								 round_raw(s);

			if (failed)
				return 1;
			s->done += s->ops;
		}
	}
	for (int i = 0; i < n; i++)
		report(&specs[i]);
	return 0;
}
