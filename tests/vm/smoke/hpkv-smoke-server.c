/*
 * hpkv-smoke-server — a tiny CUSE character device for the VM harness smoke test.
 *
 * Creates /dev/hpkv-smoke (DEVNAME=hpkv-smoke, CUSE_UNRESTRICTED_IOCTL) through libfuse3's
 * cuse_lowlevel_main. Usage: hpkv-smoke-server RECORD_FILE [-f] [-s] [-d]
 *   write()  appends the bytes to RECORD_FILE and keeps them as "the last write"
 *   read()   returns the last write once per open (then end of file)
 *   ioctl(fd, HPKV_SMOKE_IOC, struct hpkv_smoke_ioc *) with the unrestricted-ioctl retry protocol:
 *            out = in * 2 + 1, msg = "hpkv-smoke"
 * Built on the host: gcc $(pkg-config --cflags fuse3) hpkv-smoke-server.c $(pkg-config --libs fuse3)
 */
#define FUSE_USE_VERSION 31
#include <cuse_lowlevel.h>
#include <fuse_opt.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "hpkv-smoke.h"

static const char *record_path;
static char last[4096];
static size_t last_len;

struct open_state {
	int consumed; /* the last write was already read through this open file */
};

static void smoke_open(fuse_req_t req, struct fuse_file_info *fi)
{
	struct open_state *st = calloc(1, sizeof(*st));

	if (!st) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)st;
	fi->direct_io = 1;
	fuse_reply_open(req, fi);
}

static void smoke_release(fuse_req_t req, struct fuse_file_info *fi)
{
	free((void *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void smoke_read(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct open_state *st = (struct open_state *)(uintptr_t)fi->fh;
	size_t n = last_len < size ? last_len : size;

	(void)off; /* CUSE always passes 0 */
	if (st->consumed) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	st->consumed = 1;
	fuse_reply_buf(req, last, n);
}

static void smoke_write(fuse_req_t req, const char *buf, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	FILE *f = fopen(record_path, "a");

	(void)off;
	(void)fi;
	if (!f) {
		fuse_reply_err(req, errno);
		return;
	}
	fwrite(buf, 1, size, f);
	fclose(f);
	last_len = size < sizeof(last) ? size : sizeof(last);
	memcpy(last, buf, last_len);
	fuse_reply_write(req, size);
}

static void smoke_ioctl(fuse_req_t req, int cmd, void *arg, struct fuse_file_info *fi,
			unsigned int flags, const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	struct hpkv_smoke_ioc io;

	(void)fi;
	(void)out_bufsz;
	if (flags & FUSE_IOCTL_COMPAT) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	if ((unsigned int)cmd != HPKV_SMOKE_IOC) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	if (in_bufsz < sizeof(io)) {
		/* Unrestricted ioctl: ask the kernel to fetch the argument and to copy the reply back. */
		struct iovec iov = { .iov_base = arg, .iov_len = sizeof(io) };

		fuse_reply_ioctl_retry(req, &iov, 1, &iov, 1);
		return;
	}
	memcpy(&io, in_buf, sizeof(io));
	io.out = io.in * 2 + 1;
	snprintf(io.msg, sizeof(io.msg), "hpkv-smoke");
	fuse_reply_ioctl(req, 0, &io, sizeof(io));
}

static const struct cuse_lowlevel_ops ops = {
	.open = smoke_open,
	.release = smoke_release,
	.read = smoke_read,
	.write = smoke_write,
	.ioctl = smoke_ioctl,
};

int main(int argc, char **argv)
{
	const char *dev_info_argv[] = { "DEVNAME=hpkv-smoke" };
	struct cuse_info ci;

	if (argc < 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: %s RECORD_FILE [-f] [-s] [-d]\n", argv[0]);
		return 2;
	}
	record_path = argv[1];
	/* Hand the remaining options (-f, -s, -d) to libfuse, with argv[0] in front. */
	argv[1] = argv[0];

	memset(&ci, 0, sizeof(ci));
	ci.dev_info_argc = 1;
	ci.dev_info_argv = dev_info_argv;
	ci.flags = CUSE_UNRESTRICTED_IOCTL;
	return cuse_lowlevel_main(argc - 1, argv + 1, &ci, &ops, NULL);
}
