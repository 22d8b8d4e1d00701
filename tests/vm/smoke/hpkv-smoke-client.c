/*
 * hpkv-smoke-client — host-built C helper run inside the VM by the smoke test.
 *   hpkv-smoke-client hello        prints a greeting (proves a host-built binary runs in the guest)
 *   hpkv-smoke-client ioctl DEV    HPKV_SMOKE_IOC on DEV; checks out == in * 2 + 1 and msg
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "hpkv-smoke.h"

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "hello") == 0) {
		struct utsname u;

		uname(&u);
		printf("hello from a host-built C program on %s %s\n", u.sysname, u.release);
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "ioctl") == 0) {
		struct hpkv_smoke_ioc io = { .in = 20 };
		int fd = open(argv[2], O_RDWR);

		if (fd < 0) {
			fprintf(stderr, "open %s: %s\n", argv[2], strerror(errno));
			return 1;
		}
		if (ioctl(fd, HPKV_SMOKE_IOC, &io) != 0) {
			fprintf(stderr, "ioctl: %s\n", strerror(errno));
			return 1;
		}
		close(fd);
		printf("ioctl: in=%u out=%u msg=%.32s\n", io.in, io.out, io.msg);
		if (io.out != 41 || strcmp(io.msg, "hpkv-smoke") != 0) {
			fprintf(stderr, "ioctl: unexpected reply\n");
			return 1;
		}
		return 0;
	}
	fprintf(stderr, "usage: %s hello | ioctl DEV\n", argv[0]);
	return 2;
}
