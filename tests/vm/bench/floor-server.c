/*
 * hpkv-floor — the floor of a write through /dev/hpkv: a CUSE server that does nothing but
 * what any such server must do, so that hpkvd's figures can be given as ratios to it.
 *
 * Usage: hpkv-floor NAME noop|flush|group [DEVICE] [-f] [-s] [-d]
 *   creates /dev/NAME (CUSE_UNRESTRICTED_IOCTL, like hpkvd);
 *   write():  noop: answers at once; flush: writes one 4 KiB block with O_DIRECT to DEVICE
 *             (at a rotating offset) and calls fdatasync, then answers;
 *             group: group commit and nothing else: the worker queues the request and goes
 *             back for the next one; a flusher thread takes every queued request, writes one
 *             4 KiB block and calls fdatasync for all of them, and hands them to an answer
 *             thread, which answers them while the next batch is written and flushed. What
 *             durable writers can get from concurrency here with no store behind the device;
 *             the bench compares hpkvd's 8 writers with its 8. Every 200 flushes it prints
 *             "GROUPSTAT writes=W flushes=F" (totals) on stderr.
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

/* group mode: requests waiting for a flush, then for their answer. */
#define GROUP_MAX 1024 /* more writers than this at once get EAGAIN */
struct group {
	fuse_req_t req[GROUP_MAX];
	size_t size[GROUP_MAX];
	int n;
};
static int group_mode;
static pthread_mutex_t group_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t group_queued = PTHREAD_COND_INITIALIZER; /* flusher: work to do */
static pthread_cond_t group_flushed = PTHREAD_COND_INITIALIZER; /* answerer: work to do */
static struct group waiting, durable; /* under group_lock */

/* Moves `from`'s requests to the end of `to` (both under group_lock; `to` has room). */
static void group_take(struct group *to, struct group *from)
{
	memcpy(to->req + to->n, from->req, (size_t)from->n * sizeof(from->req[0]));
	memcpy(to->size + to->n, from->size, (size_t)from->n * sizeof(from->size[0]));
	to->n += from->n;
	from->n = 0;
}

static void *group_flusher(void *unused)
{
	static struct group batch;
	long flushed_writes = 0, flushes = 0; /* reported on stderr every 200 flushes */

	(void)unused;
	pthread_mutex_lock(&group_lock);
	for (;;) {
		int err;

		while (waiting.n == 0)
			pthread_cond_wait(&group_queued, &group_lock);
		group_take(&batch, &waiting);
		pthread_mutex_unlock(&group_lock);
		err = write_block();
		pthread_mutex_lock(&group_lock);
		if (err) {
			for (int i = 0; i < batch.n; i++)
				fuse_reply_err(batch.req[i], err);
			batch.n = 0;
			continue;
		}
		flushed_writes += batch.n;
		if (++flushes % 200 == 0)
			fprintf(stderr, "GROUPSTAT writes=%ld flushes=%ld\n", flushed_writes, flushes);
		/* Room: admission keeps durable under GROUP_MAX / 2, and a batch is at most that. */
		group_take(&durable, &batch);
		pthread_cond_signal(&group_flushed);
	}
	return NULL;
}

static void *group_answerer(void *unused)
{
	static struct group batch;

	(void)unused;
	pthread_mutex_lock(&group_lock);
	for (;;) {
		while (durable.n == 0)
			pthread_cond_wait(&group_flushed, &group_lock);
		group_take(&batch, &durable);
		pthread_mutex_unlock(&group_lock);
		for (int i = 0; i < batch.n; i++)
			fuse_reply_write(batch.req[i], batch.size[i]);
		batch.n = 0;
		pthread_mutex_lock(&group_lock);
	}
	return NULL;
}

static void group_write(fuse_req_t req, size_t size)
{
	pthread_mutex_lock(&group_lock);
	if (waiting.n + durable.n >= GROUP_MAX / 2) {
		pthread_mutex_unlock(&group_lock);
		fuse_reply_err(req, EAGAIN);
		return;
	}
	waiting.req[waiting.n] = req;
	waiting.size[waiting.n] = size;
	if (waiting.n++ == 0)
		pthread_cond_signal(&group_queued);
	pthread_mutex_unlock(&group_lock);
}

static void floor_write(fuse_req_t req, const char *buf, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	(void)buf;
	(void)off;
	(void)fi;
	if (group_mode) {
		group_write(req, size);
		return;
	}
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

	if (argc < 3 || (strcmp(argv[2], "noop") && strcmp(argv[2], "flush") &&
			  strcmp(argv[2], "group"))) {
		fprintf(stderr, "usage: %s NAME noop|flush|group [DEVICE] [-f] [-s] [-d]\n", argv[0]);
		return 2;
	}
	snprintf(devname, sizeof(devname), "DEVNAME=%s", argv[1]);
	if (strcmp(argv[2], "noop")) {
		if (argc < 4) {
			fprintf(stderr, "%s needs a DEVICE\n", argv[2]);
			return 2;
		}
		dev_fd = open(argv[3], O_RDWR | O_DIRECT);
		if (dev_fd < 0) {
			perror(argv[3]);
			return 1;
		}
		used = 4;
	}
	if (!strcmp(argv[2], "group")) {
		pthread_t flusher, answerer;

		group_mode = 1;
		if (pthread_create(&flusher, NULL, group_flusher, NULL) ||
		    pthread_create(&answerer, NULL, group_answerer, NULL)) {
			fprintf(stderr, "cannot start the group threads\n");
			return 1;
		}
	}
	/* Hand the remaining options (-f, -s, -d) to libfuse, with argv[0] in front. */
	argv[used - 1] = argv[0];
	memset(&ci, 0, sizeof(ci));
	ci.dev_info_argc = 1;
	ci.dev_info_argv = dev_info_argv;
	ci.flags = CUSE_UNRESTRICTED_IOCTL;
	return cuse_lowlevel_main(argc - used + 1, argv + used - 1, &ci, &ops, NULL);
}
