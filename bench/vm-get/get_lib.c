/*
 * get_lib.c - GET through libhpkv (uapi/hpkv_view.h), each call timed alone; every value
 * verified. Fails unless the view answered every timed GET (the library's counters).
 *
 *     get_lib STORE RECORDS SAMPLES   prints BENCH lib RECORDS p50 mean p99 (ns)
 */
#include "timing.h"

#include "hpkv_view.h"

int main(int argc, char **argv)
{
	long records, i;
	size_t samples, s, len;
	uint64_t *ns, *base, seed = 0x9e3779b97f4a7c15u;
	struct hpkv_counters before, after;
	char buf[1024], key[32], want[64];
	struct hpkv *h;

	if (argc < 2)
		return 2;
	parse_args(argc, argv, 2, &records, &samples);
	if (records < 1)
		return 2;
	ns = malloc(samples * sizeof *ns);
	base = malloc(samples * sizeof *base);
	h = hpkv_open(argv[1]);
	if (!ns || !base || !h) {
		perror(argv[1]);
		return 1;
	}
	for (i = 0; i < records; i++) {
		key_of(i, key);
		if (hpkv_get(h, key, strlen(key), buf, sizeof buf, &len) != 0) {
			perror("warm-up GET");
			return 1;
		}
	}
	hpkv_counters(h, &before);
	for (s = 0; s < samples; s++) {
		uint64_t t0;
		int r;
		i = (long)(next_random(&seed) % (uint64_t)records);
		key_of(i, key);
		t0 = now_ns();
		r = hpkv_get(h, key, strlen(key), buf, sizeof buf, &len);
		ns[s] = now_ns() - t0;
		base[s] = time_getppid();
		value_of(i, want);
		if (r != 0 || len != strlen(want) || memcmp(buf, want, len) != 0) {
			fprintf(stderr, "GET %s: ret %d, wrong value\n", key, r);
			return 1;
		}
	}
	hpkv_counters(h, &after);
	if (after.device_gets != before.device_gets) {
		fprintf(stderr, "%llu of the timed GETs went to the device\n",
			(unsigned long long)(after.device_gets - before.device_gets));
		return 1;
	}
	report("lib", records, ns, samples);
	report("getppid-between", records, base, samples);
	hpkv_close(h);
	return 0;
}
