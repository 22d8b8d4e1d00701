/*
 * timing.h - the module's method for the GET benchmark: one client, sequential, each call
 * timed alone with clock_gettime(CLOCK_MONOTONIC), and p50, mean and p99 of the samples.
 * Every timed GET is followed by one timed getppid(), the baseline, so that GETs and baseline
 * share the moments of a busy host (BENCH getppid-between lines). Keys and values are those
 * `client_suite prepare-image` writes: "range-%08d" and "value of record %d". Plain C99 with
 * POSIX.
 */
#ifndef HPKV_BENCH_TIMING_H
#define HPKV_BENCH_TIMING_H

#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Prints "BENCH WHAT N p50 mean p99" (nanoseconds) and sorts the samples. */
static void report(const char *what, long records, uint64_t *ns, size_t n)
{
	double sum = 0;
	size_t i;
	qsort(ns, n, sizeof *ns, cmp_u64);
	for (i = 0; i < n; i++)
		sum += (double)ns[i];
	printf("BENCH %s %ld %llu %.0f %llu\n", what, records, (unsigned long long)ns[n / 2],
	       sum / (double)n, (unsigned long long)ns[n * 99 / 100]);
}

/* One getppid() timed alone: the baseline, taken between the GETs of the same run so that both
 * see the same moments of a busy host. */
static inline uint64_t time_getppid(void)
{
	uint64_t t0 = now_ns();
	(void)getppid();
	return now_ns() - t0;
}

/* xorshift64: the same key sequence in every program. */
static uint64_t next_random(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void key_of(long i, char *key)
{
	sprintf(key, "range-%08ld", i);
}

static void value_of(long i, char *value)
{
	sprintf(value, "value of record %ld", i);
}

/* The arguments every program takes: RECORDS SAMPLES. */
static void parse_args(int argc, char **argv, int first, long *records, size_t *samples)
{
	if (argc < first + 2) {
		fprintf(stderr, "usage: %s ... RECORDS SAMPLES\n", argv[0]);
		exit(2);
	}
	*records = strtol(argv[first], NULL, 10);
	*samples = (size_t)strtoul(argv[first + 1], NULL, 10);
	if (*records < 0 || *samples < 100) {
		fprintf(stderr, "%s: RECORDS >= 0 and SAMPLES >= 100\n", argv[0]);
		exit(2);
	}
}

#endif
