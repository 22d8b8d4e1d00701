/*
 * view_get.c - reads keys with libhpkv (uapi/hpkv_view.h): from hpkvd's shared view when it
 * holds them, else from the device.
 *
 *     cc -std=c99 -Iuapi examples/view_get.c -Ltarget/release -lhpkv -o view_get
 *     LD_LIBRARY_PATH=target/release ./view_get hpkv mykey otherkey
 *
 * Prints "KEY: VALUE" for each key found, "KEY: no such key" for the others, and where the
 * answers came from.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hpkv_view.h"

int main(int argc, char **argv)
{
	struct hpkv *h;
	struct hpkv_counters c;
	int i, failed = 0;

	if (argc < 3) {
		fprintf(stderr, "usage: %s STORE KEY...\n", argv[0]);
		return 2;
	}
	h = hpkv_open(argv[1]);
	if (!h) {
		fprintf(stderr, "%s: cannot open %s: %s\n", argv[0], argv[1], strerror(errno));
		return 1;
	}
	for (i = 2; i < argc; i++) {
		char small[64];
		char *value = small;
		size_t len = 0;
		int r = hpkv_get(h, argv[i], strlen(argv[i]), small, sizeof small, &len);
		if (r != 0 && errno == ERANGE) {
			/* Too long for the first buffer: len says how much room it needs. */
			value = malloc(len);
			if (!value)
				return 1;
			r = hpkv_get(h, argv[i], strlen(argv[i]), value, len, &len);
		}
		if (r == 0)
			printf("%s: %.*s\n", argv[i], (int)len, value);
		else if (errno == ENOENT)
			printf("%s: no such key\n", argv[i]);
		else {
			printf("%s: %s\n", argv[i], strerror(errno));
			failed = 1;
		}
		if (value != small)
			free(value);
	}
	hpkv_counters(h, &c);
	printf("view: %s; answers: %llu view hits, %llu view misses, %llu from the device\n",
	       hpkv_view_live(h) ? "live" : "not in use", (unsigned long long)c.view_hits,
	       (unsigned long long)c.view_misses, (unsigned long long)c.device_gets);
	hpkv_close(h);
	return failed;
}
