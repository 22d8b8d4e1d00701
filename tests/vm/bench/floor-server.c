/*
 * hpkv-floor — the floor of a write through /dev/hpkv: a CUSE server that does nothing but
 * what any such server must do, so that hpkvd's figures can be given as ratios to it.
 *
 * Usage: hpkv-floor NAME noop|flush [DEVICE] [-f] [-s] [-d]
 *   creates /dev/NAME (CUSE_UNRESTRICTED_IOCTL, like hpkvd);
 *   write():  noop: answers at once; flush: writes one 4 KiB block with O_DIRECT to DEVICE
 *             (at a rotating offset) and calls fdatasync, then answers;
 *   HPKV_IOC_GET: asks the kernel for the request and a page of reply room (one retry, as
 *             hpkvd does), then answers a fixed 100-byte value.
 * -s runs one worker thread (as hpkvd --threads 1 would); the default is libfuse's pool.
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE
#include <cuse_lowlevel.h>
#include <fuse_opt.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "hpkv.h"

#define BLOCK 4096
#define SLOTS 4096 /* blocks the flush mode cycles through */

static int dev_fd = -1;
static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long next_slot;

static void floor_open(fuse_req_t req, struct fuse_file_info *fi)
{
	fi->direct_io = 1;
	fuse_reply_open(req, fi);
}

static int write_block(void)
{
	static __thread void *buf;
	unsigned long slot;

	if (!buf && posix_memalign(&buf, BLOCK, BLOCK) != 0)
		return ENOMEM;
	memset(buf, 0x5a, BLOCK);
	pthread_mutex_lock(&slot_lock);
	slot = next_slot++ % SLOTS;
	pthread_mutex_unlock(&slot_lock);
	if (pwrite(dev_fd, buf, BLOCK, (off_t)(slot * BLOCK)) != BLOCK)
		return errno ? errno : EIO;
	if (fdatasync(dev_fd) != 0)
		return errno;
	return 0;
}

static void floor_write(fuse_req_t req, const char *buf, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	(void)buf;
	(void)off;
	(void)fi;
	if (dev_fd >= 0) {
		int err = write_block();

		if (err) {
			fuse_reply_err(req, err);
			return;
		}
	}
	fuse_reply_write(req, size);
}

static void floor_ioctl(fuse_req_t req, int cmd, void *arg, struct fuse_file_info *fi,
			unsigned int flags, const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	struct hpkv_get get;
	static const char value[100] = "floor";
	struct iovec reply[2];

	(void)fi;
	(void)out_bufsz;
	if ((flags & FUSE_IOCTL_COMPAT) || (unsigned int)cmd != HPKV_IOC_GET) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	if (in_bufsz < sizeof(get)) {
		struct iovec in = { .iov_base = arg, .iov_len = sizeof(get) };
		struct iovec out = { .iov_base = arg, .iov_len = sizeof(get) + BLOCK };

		fuse_reply_ioctl_retry(req, &in, 1, &out, 1);
		return;
	}
	memcpy(&get, in_buf, sizeof(get));
	get.value_len = sizeof(value);
	reply[0].iov_base = &get;
	reply[0].iov_len = sizeof(get);
	reply[1].iov_base = (void *)value;
	reply[1].iov_len = sizeof(value);
	fuse_reply_ioctl_iov(req, 0, reply, 2);
}

static const struct cuse_lowlevel_ops ops = {
	.open = floor_open,
	.write = floor_write,
	.ioctl = floor_ioctl,
};

int main(int argc, char **argv)
{
	char devname[128];
	const char *dev_info_argv[] = { devname };
	struct cuse_info ci;
	int used = 3;

	if (argc < 3 || (strcmp(argv[2], "noop") && strcmp(argv[2], "flush"))) {
		fprintf(stderr, "usage: %s NAME noop|flush [DEVICE] [-f] [-s] [-d]\n", argv[0]);
		return 2;
	}
	snprintf(devname, sizeof(devname), "DEVNAME=%s", argv[1]);
	if (!strcmp(argv[2], "flush")) {
		if (argc < 4) {
			fprintf(stderr, "flush needs a DEVICE\n");
			return 2;
		}
		dev_fd = open(argv[3], O_RDWR | O_DIRECT);
		if (dev_fd < 0) {
			perror(argv[3]);
			return 1;
		}
		used = 4;
	}
	/* Hand the remaining options (-f, -s, -d) to libfuse, with argv[0] in front. */
	argv[used - 1] = argv[0];
	memset(&ci, 0, sizeof(ci));
	ci.dev_info_argc = 1;
	ci.dev_info_argv = dev_info_argv;
	ci.flags = CUSE_UNRESTRICTED_IOCTL;
	return cuse_lowlevel_main(argc - used + 1, argv + used - 1, &ci, &ops, NULL);
}
