/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * hpkv_view.h - libhpkv: GET for C programs, from hpkvd's shared view.
 *
 * hpkvd publishes a read-only view of its store in shared memory (/run/hpkv/NAME.view
 * for the node /dev/NAME): every live key, and the values its cache holds. A GET through
 * this library reads that view with plain loads, without a system call: a hit copies the
 * value, a miss is an authoritative ENOENT. When the view cannot answer (the value is not
 * in it, the view is missing, stale or being replaced), the library asks the device with
 * the safe GET ioctl (HPKV_IOC_GET of hpkv.h). Either way the caller sees one answer, as
 * fresh as the device's: a GET that starts after a write was acknowledged to any process
 * sees that write or a later one.
 *
 * Link with -lhpkv (target/release/libhpkv.so or libhpkv.a; the static library also needs
 * -lpthread -ldl -lm). Plain C99; every function is thread-safe, and one handle may be
 * shared by any number of threads. The handle survives hpkvd restarts: a view that dies
 * is looked for again at most every 200 ms, and meanwhile the device answers.
 *
 *     struct hpkv *h = hpkv_open("hpkv");               // /dev/hpkv and its view
 *     char value[1024];
 *     size_t len;
 *     if (hpkv_get(h, "mykey", 5, value, sizeof value, &len) == 0)
 *             printf("%.*s\n", (int)len, value);       // binary safe: no NUL added
 *     else if (errno == ENOENT) ...                      // no such key
 *     else if (errno == ERANGE) ...                      // len bytes needed
 *     hpkv_close(h);
 *
 * Environment: HPKV_NAME names the store for hpkv_open(NULL) (default "hpkv");
 * HPKV_VIEW_DIR replaces /run/hpkv; HPKV_VIEW names one view file to use for any node
 * (tests). A view is used only if it says it describes the opened node (its st_rdev).
 */
#ifndef HPKV_VIEW_H
#define HPKV_VIEW_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A store: its device node and, when hpkvd publishes one, its view. Opaque. */
struct hpkv;

/*
 * Opens the store NAME: "hpkv" or "/dev/hpkv" for the node /dev/hpkv (any path with a
 * slash is taken as the node's path), NULL for $HPKV_NAME or "hpkv". The view is found by
 * the node's name. Returns NULL with errno set when the node cannot be opened (ENOENT: no
 * hpkvd serves it; EACCES: not in the node's group). A missing view is not an error: the
 * device answers until a view appears.
 */
struct hpkv *hpkv_open(const char *name);

/*
 * Opens the node at DEVICE_PATH and the view at VIEW_PATH (NULL: the device only).
 * Returns NULL with errno set when the node cannot be opened.
 */
struct hpkv *hpkv_open_paths(const char *device_path, const char *view_path);

/*
 * Reads the value of the KEY_LEN-byte KEY (binary safe, 1..512 bytes) into BUF, which has
 * room for CAP bytes (BUF may be NULL when CAP is 0: a way to ask for the length).
 * Returns 0 and sets *VALUE_LEN to the value's length; the value is at BUF, with no NUL
 * added. Returns -1 with errno:
 *   ENOENT  no such key; BUF and *VALUE_LEN untouched;
 *   ERANGE  the value is longer than CAP: *VALUE_LEN holds its length, BUF untouched;
 *   EINVAL  KEY_LEN 0 or over 512, or a NULL HANDLE, KEY or VALUE_LEN (or BUF with CAP > 0);
 *   other   what the device answered (EIO, ECONNABORTED while hpkvd restarts, ...).
 */
int hpkv_get(const struct hpkv *handle, const void *key, size_t key_len, void *buf,
	     size_t cap, size_t *value_len);

/* 1 if a live view of this node is in use now, else 0 (the device answers every GET). */
int hpkv_view_live(const struct hpkv *handle);

/* What hpkv_get did so far on this handle. */
struct hpkv_counters {
	uint64_t view_hits;   /* answered by the view with a value (ERANGE included) */
	uint64_t view_misses; /* answered by the view with ENOENT */
	uint64_t device_gets; /* answered by the device */
};

void hpkv_counters(const struct hpkv *handle, struct hpkv_counters *out);

/* Closes the handle (NULL is ignored). No thread may use it any more. */
void hpkv_close(struct hpkv *handle);

#ifdef __cplusplus
}
#endif

#endif /* HPKV_VIEW_H */
