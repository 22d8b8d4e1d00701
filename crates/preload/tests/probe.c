/*
 * probe.c - runs the operations named on its command line against the files it opens and
 * prints what each returned, the errno after it, and the bytes of every buffer, so that a
 * test can compare runs with and without LD_PRELOAD=libhpkv_preload.so byte for byte.
 *
 * errno is set to 99 before every call, so "errno 99" after a success shows that the call
 * left errno alone, as the device does.
 *
 * Operations (each takes the next arguments):
 *   open PATH r|w|rw|path   fopen PATH MODE   close FD   fclose-last
 *   dup FD   dup2 OLD NEW   dup3 OLD NEW   close-range FIRST LAST   closefrom FD
 *   readme FD KEY CAP       v13 FD KEY CAP   safe FD KEY CAPACITY ROOM
 *   raw FD CMD HEX CAP      (a CAP-byte buffer of 0xAA starting with the bytes HEX)
 *   null FD CMD             prot-none FD CMD   edge FD KEY
 *   read-only FD KEY        (a readme GET whose buffer was made read-only, then unmapped
 *                            and replaced by an unreadable page at the same address)
 *   cat PATH                fcat PATH   show PATH (prints the file as it is)
 *   fork-readme FD KEY CAP
 *   loop FD KEY N           (N readme GETs of KEY; prints how many returned 0)
 *   sleep MS                mark PATH (creates the file)   wait PATH (until it exists, 20 s at most)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hpkv.h"

static FILE *last_stream;

static void hex(const unsigned char *b, size_t n)
{
	size_t i;
	for (i = 0; i < n; i++)
		printf("%02x", b[i]);
}

static void result(const char *what, long r, int e)
{
	printf("%s ret %ld errno %d", what, r, e);
}

static void get_and_print(const char *what, int fd, unsigned long cmd, unsigned char *buf,
			  size_t n)
{
	int r, e;
	errno = 99;
	r = ioctl(fd, cmd, buf);
	e = errno;
	result(what, r, e);
	printf(" buf ");
	hex(buf, n);
	printf("\n");
}

static unsigned char *filled(size_t cap)
{
	unsigned char *b = malloc(cap ? cap : 1);
	if (!b)
		abort();
	memset(b, 0xAA, cap);
	return b;
}

static void readme(int fd, const char *key, size_t cap)
{
	unsigned char *b = filled(cap);
	memcpy(b, key, strlen(key) + 1);
	get_and_print("readme", fd, HPKV_IOCTL_GET, b, cap);
	free(b);
}

static void v13(int fd, const char *key, size_t cap)
{
	unsigned char *b = filled(cap);
	unsigned short len = (unsigned short)strlen(key);
	memcpy(b, &len, 2);
	memcpy(b + 2, key, len);
	get_and_print("v13", fd, HPKV_IOCTL_GET, b, cap);
	free(b);
}

static void safe(int fd, const char *key, unsigned long long capacity, size_t room)
{
	size_t n = sizeof(struct hpkv_get) + room;
	unsigned char *b = filled(n);
	struct hpkv_get *g = (struct hpkv_get *)b;
	memset(b, 0, sizeof(struct hpkv_get));
	g->key_len = (unsigned short)strlen(key);
	g->capacity = capacity;
	memcpy(g->key, key, g->key_len);
	get_and_print("safe", fd, HPKV_IOC_GET, b, n);
	free(b);
}

static void raw(int fd, unsigned long cmd, const char *hx, size_t cap)
{
	unsigned char *b = filled(cap);
	size_t i;
	for (i = 0; hx[2 * i] && hx[2 * i + 1] && i < cap; i++) {
		unsigned int v;
		sscanf(hx + 2 * i, "%2x", &v);
		b[i] = (unsigned char)v;
	}
	get_and_print("raw", fd, cmd, b, cap);
	free(b);
}

/* Two pages, the second PROT_NONE. */
static unsigned char *guarded(void)
{
	unsigned char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				-1, 0);
	if (p == MAP_FAILED || mprotect(p + 4096, 4096, PROT_NONE) != 0)
		abort();
	return p;
}

static void edge(int fd, const char *key)
{
	unsigned char *p = guarded();
	size_t n = strlen(key) + 1;
	memcpy(p + 4096 - n, key, n);
	get_and_print("edge", fd, HPKV_IOCTL_GET, p + 4096 - n, n);
	munmap(p, 8192);
}

static void prot_none(int fd, unsigned long cmd)
{
	unsigned char *p = guarded();
	int r, e;
	errno = 99;
	r = ioctl(fd, cmd, p + 4096);
	e = errno;
	result("prot-none", r, e);
	printf("\n");
	munmap(p, 8192);
}

static void read_only(int fd, const char *key)
{
	unsigned char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int r, e;
	if (p == MAP_FAILED)
		abort();
	memcpy(p, key, strlen(key) + 1);
	get_and_print("writable", fd, HPKV_IOCTL_GET, p, 16);
	memcpy(p, key, strlen(key) + 1);
	mprotect(p, 4096, PROT_READ);
	errno = 99;
	r = ioctl(fd, HPKV_IOCTL_GET, p);
	e = errno;
	result("read-only", r, e);
	printf("\n");
	munmap(p, 4096);
	if (mmap(p, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != p)
		abort();
	errno = 99;
	r = ioctl(fd, HPKV_IOCTL_GET, p);
	e = errno;
	result("remapped-none", r, e);
	printf("\n");
	munmap(p, 4096);
}

static void cat(const char *path, int with_stdio)
{
	char text[4096];
	size_t n = 0;
	if (with_stdio) {
		FILE *f;
		errno = 99;
		f = fopen(path, "r");
		if (!f) {
			printf("fcat errno %d\n", errno);
			return;
		}
		n = fread(text, 1, sizeof text - 1, f);
		fclose(f);
	} else {
		ssize_t r;
		int fd;
		errno = 99;
		fd = open(path, O_RDONLY);
		if (fd < 0) {
			printf("cat errno %d\n", errno);
			return;
		}
		while ((r = read(fd, text + n, sizeof text - 1 - n)) > 0)
			n += (size_t)r;
		errno = 99;
		r = write(fd, "x", 1);
		printf("cat write %ld errno %d\n", (long)r, errno);
		close(fd);
	}
	text[n] = 0;
	printf("%s text ", with_stdio ? "fcat" : "cat");
	hex((const unsigned char *)text, n);
	printf("\n");
}

static void fork_readme(int fd, const char *key, size_t cap)
{
	pid_t pid;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		readme(fd, key, cap);
		fflush(stdout);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
}

static void loop(int fd, const char *key, long n)
{
	char buf[1024];
	long i, ok = 0;
	for (i = 0; i < n; i++) {
		strcpy(buf, key);
		if (ioctl(fd, HPKV_IOCTL_GET, buf) == 0)
			ok++;
	}
	printf("loop ok %ld of %ld\n", ok, n);
}

static int open_mode(const char *m)
{
	if (!strcmp(m, "r"))
		return O_RDONLY;
	if (!strcmp(m, "w"))
		return O_WRONLY;
	if (!strcmp(m, "path"))
		return O_PATH;
	return O_RDWR;
}

int main(int argc, char **argv)
{
	int i = 1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* The ops name descriptors by number, so none may be inherited (a runner's lock file, a
	 * shell's redirection). close_range is called directly, not through libc's close, which the
	 * library under test intercepts; a kernel without it gets the loop. */
	if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0)
		for (int fd = 3; fd < 1024; fd++)
			syscall(SYS_close, fd);
#define ARG (i < argc ? argv[i++] : (fprintf(stderr, "missing argument\n"), exit(2), ""))
#define NUM strtol(ARG, NULL, 0)
	while (i < argc) {
		const char *op = argv[i++];
		long r;
		if (!strcmp(op, "open")) {
			const char *path = ARG;
			errno = 99;
			r = open(path, open_mode(ARG));
			printf("open ret %ld errno %d\n", r, errno);
		} else if (!strcmp(op, "fopen")) {
			const char *path = ARG;
			errno = 99;
			last_stream = fopen(path, ARG);
			printf("fopen fd %d errno %d\n", last_stream ? fileno(last_stream) : -1,
			       errno);
		} else if (!strcmp(op, "fclose-last")) {
			printf("fclose ret %d\n", fclose(last_stream));
		} else if (!strcmp(op, "close")) {
			printf("close ret %d\n", close((int)NUM));
		} else if (!strcmp(op, "dup")) {
			printf("dup ret %d\n", dup((int)NUM));
		} else if (!strcmp(op, "dup2")) {
			int a = (int)NUM;
			printf("dup2 ret %d\n", dup2(a, (int)NUM));
		} else if (!strcmp(op, "dup3")) {
			int a = (int)NUM;
			printf("dup3 ret %d\n", dup3(a, (int)NUM, O_CLOEXEC));
		} else if (!strcmp(op, "close-range")) {
			unsigned int a = (unsigned int)NUM;
			printf("close-range ret %d\n", close_range(a, (unsigned int)NUM, 0));
		} else if (!strcmp(op, "closefrom")) {
			closefrom((int)NUM);
			printf("closefrom\n");
		} else if (!strcmp(op, "readme")) {
			int fd = (int)NUM;
			const char *key = ARG;
			readme(fd, key, (size_t)NUM);
		} else if (!strcmp(op, "v13")) {
			int fd = (int)NUM;
			const char *key = ARG;
			v13(fd, key, (size_t)NUM);
		} else if (!strcmp(op, "safe")) {
			int fd = (int)NUM;
			const char *key = ARG;
			unsigned long long capacity = (unsigned long long)NUM;
			safe(fd, key, capacity, (size_t)NUM);
		} else if (!strcmp(op, "raw")) {
			int fd = (int)NUM;
			unsigned long cmd = (unsigned long)NUM;
			const char *hx = ARG;
			raw(fd, cmd, hx, (size_t)NUM);
		} else if (!strcmp(op, "null")) {
			int fd = (int)NUM;
			unsigned long cmd = (unsigned long)NUM;
			errno = 99;
			r = ioctl(fd, cmd, NULL);
			printf("null ret %ld errno %d\n", r, errno);
		} else if (!strcmp(op, "prot-none")) {
			int fd = (int)NUM;
			prot_none(fd, (unsigned long)NUM);
		} else if (!strcmp(op, "edge")) {
			int fd = (int)NUM;
			edge(fd, ARG);
		} else if (!strcmp(op, "read-only")) {
			int fd = (int)NUM;
			read_only(fd, ARG);
		} else if (!strcmp(op, "cat")) {
			cat(ARG, 0);
		} else if (!strcmp(op, "fcat")) {
			cat(ARG, 1);
		} else if (!strcmp(op, "fork-readme")) {
			int fd = (int)NUM;
			const char *key = ARG;
			fork_readme(fd, key, (size_t)NUM);
		} else if (!strcmp(op, "show")) {
			char text[4096];
			ssize_t n;
			int fd = open(ARG, O_RDONLY);
			if (fd < 0) {
				printf("show errno %d\n", errno);
				continue;
			}
			while ((n = read(fd, text, sizeof text)) > 0)
				fwrite(text, 1, (size_t)n, stdout);
			close(fd);
		} else if (!strcmp(op, "mark")) {
			int fd = open(ARG, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
			if (fd < 0)
				return 3;
			close(fd);
		} else if (!strcmp(op, "wait")) {
			const char *path = ARG;
			int tries = 0;
			while (access(path, F_OK) != 0) {
				if (++tries > 2000)
					return 3;
				usleep(10000);
			}
		} else if (!strcmp(op, "sleep")) {
			usleep((useconds_t)(NUM * 1000));
		} else if (!strcmp(op, "loop")) {
			int fd = (int)NUM;
			const char *key = ARG;
			loop(fd, key, NUM);
		} else {
			fprintf(stderr, "unknown operation %s\n", op);
			return 2;
		}
	}
	return 0;
}
