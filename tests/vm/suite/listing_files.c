/* listing_files DEVICE N READY_FILE: opens DEVICE N times, reads the first 64 bytes of the
 * listing on each open file (so that each stands in the middle of the first line), writes
 * "ready" to READY_FILE and keeps them all open until it is killed. The VM suite measures
 * hpkvd's resident memory meanwhile: what N open files in the middle of a line cost it. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char buf[64];
	long n, i;
	struct rlimit lim;
	FILE *ready;

	if (argc != 4) {
		fprintf(stderr, "usage: %s DEVICE N READY_FILE\n", argv[0]);
		return 2;
	}
	n = strtol(argv[2], NULL, 10);
	lim.rlim_cur = lim.rlim_max = (rlim_t)n + 64;
	if (setrlimit(RLIMIT_NOFILE, &lim) != 0) {
		perror("setrlimit(RLIMIT_NOFILE)");
		return 1;
	}
	for (i = 0; i < n; i++) {
		int fd = open(argv[1], O_RDONLY);
		ssize_t got;
		if (fd < 0) {
			fprintf(stderr, "open #%ld: %s\n", i, strerror(errno));
			return 1;
		}
		got = read(fd, buf, sizeof buf);
		if (got != (ssize_t)sizeof buf) {
			fprintf(stderr, "read #%ld: %zd bytes (%s)\n", i, got, got < 0 ? strerror(errno) : "short");
			return 1;
		}
	}
	ready = fopen(argv[3], "w");
	if (!ready || fprintf(ready, "ready %ld\n", n) < 0 || fclose(ready) != 0) {
		perror(argv[3]);
		return 1;
	}
	for (;;)
		pause();
}
