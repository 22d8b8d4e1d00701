/*
 * get_ioctl.c - an unmodified client of the module's ABI: `ioctl(fd, 0, buf)` (the readme
 * profile's GET, as in the seed README), each call timed alone. Run it as it is for the
 * device, and with LD_PRELOAD=libhpkv_preload.so for the view. Every value is verified.
 *
 *     get_ioctl DEVICE RECORDS SAMPLES   prints BENCH ioctl RECORDS p50 mean p99 (ns), and
 *                                        BENCH-DEVICE-GETS RECORDS N: how many of the timed
 *                                        GETs the daemon served (STATS, read around the loop)
 *     get_ioctl --getppid 0 SAMPLES      prints BENCH getppid 0 p50 mean p99: the baseline
 *     get_ioctl --timer 0 SAMPLES        prints BENCH timer 0 ...: two clock readings alone
 */
#include "timing.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "hpkv.h"

/* The daemon's count of GETs it served (outside the timed calls): shows who answered.
 * 0 when the device has no STATS (a stand-in device in a host run). */
static unsigned long long device_gets(int fd)
{
	struct hpkv_stats st;
	if (ioctl(fd, HPKV_IOC_STATS, &st) != 0)
		return 0;
	return st.gets;
}

int main(int argc, char **argv)
{
	long records, i;
	size_t samples, s;
	uint64_t *ns, *base, seed = 0x9e3779b97f4a7c15u;
	unsigned long long gets;
	char buf[1024], key[32], want[64];
	int fd;

	if (argc < 2)
		return 2;
	parse_args(argc, argv, 2, &records, &samples);
	ns = malloc(samples * sizeof *ns);
	base = malloc(samples * sizeof *base);
	if (!ns || !base)
		return 1;
	if (!strcmp(argv[1], "--getppid") || !strcmp(argv[1], "--timer")) {
		int ppid = !strcmp(argv[1], "--getppid");
		for (s = 0; s < samples; s++) {
			uint64_t t0 = now_ns();
			if (ppid)
				(void)getppid();
			ns[s] = now_ns() - t0;
		}
		report(ppid ? "getppid" : "timer", 0, ns, samples);
		return 0;
	}
	if (records < 1)
		return 2;
	fd = open(argv[1], O_RDWR);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	/* Warm up: every key once (hpkvd's cache, and the view's values, fill on reads). */
	for (i = 0; i < records; i++) {
		key_of(i, buf);
		if (ioctl(fd, HPKV_IOCTL_GET, buf) != 0) {
			perror("warm-up GET");
			return 1;
		}
	}
	gets = device_gets(fd);
	for (s = 0; s < samples; s++) {
		uint64_t t0;
		int r;
		i = (long)(next_random(&seed) % (uint64_t)records);
		key_of(i, key);
		strcpy(buf, key);
		t0 = now_ns();
		r = ioctl(fd, HPKV_IOCTL_GET, buf);
		ns[s] = now_ns() - t0;
		base[s] = time_getppid();
		value_of(i, want);
		if (r != 0 || strcmp(buf, want) != 0) {
			fprintf(stderr, "GET %s: ret %d, value \"%s\", want \"%s\"\n", key, r, buf,
				want);
			return 1;
		}
	}
	gets = device_gets(fd) - gets;
	report("ioctl", records, ns, samples);
	report("getppid-between", records, base, samples);
	printf("BENCH-DEVICE-GETS %ld %llu\n", records, gets);
	close(fd);
	return 0;
}
