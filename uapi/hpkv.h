/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * hpkv.h - the /dev/hpkv interface served by hpkvd.
 *
 * This header is the single source of truth for command numbers, limits and
 * layouts: hpkvd and the Rust client take them from here through bindgen, so
 * C callers and the daemon cannot drift apart. It is plain C99 and needs only
 * the kernel's uapi headers.
 *
 * Two families of commands share the device:
 *
 *  - The HPKV kernel module's commands 0..5: plain integers, NOT _IOC-encoded.
 *    Their argument layout depends on the profile the daemon serves
 *    (hpkvd --abi readme|v1.3); see docs/ABI.md and README.md.
 *  - hpkv's extensions: _IOC-encoded with type 'H', each with a flat,
 *    fixed-layout struct (no pointers), so that each costs the fewest CUSE
 *    round trips. Variable-length output follows the struct directly in the
 *    caller's memory (struct hpkv_get.value[], struct hpkv_range.data[]).
 *
 * All integers are little-endian (the host's order on x86_64 and aarch64).
 * Every call returns 0 on success, or -1 with errno set.
 */
#ifndef _UAPI_LINUX_HPKV_H
#define _UAPI_LINUX_HPKV_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* ---------------------------------------------------------------- limits */

/* Key length through the binary layouts (ioctl 4 and 5, v1.3 GET/DELETE, extensions). */
#define HPKV_KEY_MAX 512
/* Key length through write() and readme-profile string keys (512 with the NUL). */
#define HPKV_STR_KEY_MAX 511
/* Value length through the binary layouts. */
#define HPKV_VALUE_MAX 102400
/* The part of a write() after the first colon. */
#define HPKV_WRITE_VALUE_MAX 102399
/* The largest write() accepted: one request, key ':' value. */
#define HPKV_WRITE_MAX 102913

/* ------------------------------------------ the module's commands (0..5) */

/*
 * GET. readme profile: in, a NUL-terminated key at arg; out, the value and
 * one NUL at arg (the caller sizes the buffer). v1.3 profile: in,
 * struct hpkv_v13_key at arg; out, a __u64 value length at arg + 2 and the
 * value at arg + 10, no NUL.
 */
#define HPKV_IOCTL_GET 0
/* DELETE. Key as for GET in the same profile. */
#define HPKV_IOCTL_DELETE 1
/* Command 2 never reaches a driver: the kernel answers FIGETBSZ itself. */
/* PURGE: removes every record; arg is ignored. */
#define HPKV_IOCTL_PURGE 3
/* INSERT (upsert): struct hpkv_kv at arg, key then value right after it. */
#define HPKV_IOCTL_INSERT 4
/* PARTIAL_UPDATE (append; a missing key is inserted): same layout as INSERT. */
#define HPKV_IOCTL_PARTIAL_UPDATE 5

/* Header of ioctl 4 and 5: key_len bytes of key, then value_len bytes of value follow. */
struct hpkv_kv {
	__u16 key_len;   /* 1..HPKV_KEY_MAX */
	__u64 value_len; /* 1..HPKV_VALUE_MAX */
} __attribute__((packed));

/* v1.3 profile, GET and DELETE: key_len bytes of key follow. */
struct hpkv_v13_key {
	__u16 key_len; /* 1..HPKV_KEY_MAX */
} __attribute__((packed));

/* v1.3 profile, GET output: where the length and the value are written, from arg. */
#define HPKV_V13_VALUE_LEN_OFFSET 2
#define HPKV_V13_VALUE_OFFSET 10

/* ------------------------------------------------- extensions (type 'H') */

#define HPKV_IOC_MAGIC 'H'

/*
 * Safe GET: like GET, with a bound. The value is written to value[], the
 * capacity bytes that follow the struct in the caller's memory.
 * Errors: ENOENT (missing key; nothing written), EINVAL (key_len 0 or over
 * HPKV_KEY_MAX, flags or reserved not 0), ERANGE (the value is longer than
 * capacity: value_len holds the length needed, value[] is untouched).
 */
struct hpkv_get {
	__u16 key_len;   /* in: 1..HPKV_KEY_MAX */
	__u16 flags;     /* in: 0 */
	__u32 reserved;  /* in: 0 */
	__u64 capacity;  /* in: bytes available in value[] */
	__u64 value_len; /* out: the value's length, also on ERANGE */
	__u8 key[HPKV_KEY_MAX]; /* in */
	__u8 value[];    /* out: capacity bytes follow the struct */
};

/*
 * RANGE: the records with keys in [start, end), in bytewise key order
 * (shorter key first on a common prefix), at most max_count records and
 * capacity bytes of data[]. A zero start_len means "from the first key", a
 * zero end_len "to the last key". To continue, pass the last key returned
 * as start with HPKV_RANGE_START_EXCLUSIVE; HPKV_RANGE_MORE in the output
 * flags says whether records remain.
 * data[] holds count entries, each a struct hpkv_range_entry, the key, the
 * value, then zero padding to a multiple of 8 bytes (HPKV_RANGE_ENTRY_SIZE).
 * Errors: EINVAL (a key length over HPKV_KEY_MAX, unknown flags, capacity
 * over HPKV_RANGE_CAPACITY_MAX), ERANGE (the first record does not fit in
 * capacity: data_len holds the bytes it needs; nothing else is written).
 */
#define HPKV_RANGE_START_EXCLUSIVE (1u << 0) /* in: skip the start key itself */
#define HPKV_RANGE_MORE (1u << 31)           /* out: records remain in range */
#define HPKV_RANGE_CAPACITY_MAX 122880       /* fits one largest entry */

struct hpkv_range {
	__u16 start_len;  /* in: 0..HPKV_KEY_MAX, 0 = from the first key */
	__u16 end_len;    /* in: 0..HPKV_KEY_MAX, 0 = to the last key */
	__u32 flags;      /* in: HPKV_RANGE_START_EXCLUSIVE; out: adds HPKV_RANGE_MORE */
	__u32 max_count;  /* in: at most this many records, 0 = no count limit */
	__u32 count;      /* out: records in data[] */
	__u64 capacity;   /* in: bytes available in data[] */
	__u64 data_len;   /* out: bytes used in data[]; on ERANGE, bytes needed */
	__u8 start[HPKV_KEY_MAX]; /* in */
	__u8 end[HPKV_KEY_MAX];   /* in */
	__u8 data[];      /* out: capacity bytes follow the struct */
};

/* The part of struct hpkv_range that the daemon writes back. */
#define HPKV_RANGE_HEADER_SIZE 32

struct hpkv_range_entry {
	__u16 key_len;
	__u16 reserved;
	__u32 value_len;
	/* key_len bytes of key, value_len bytes of value, zero padding to 8 */
};

#define HPKV_RANGE_ENTRY_SIZE(key_len, value_len) \
	((sizeof(struct hpkv_range_entry) + (key_len) + (value_len) + 7) & ~(__u64)7)

/*
 * STATS: the three numbers of the module's /proc/hpkv_stats and more.
 * Counters count since hpkvd started; sizes are current.
 */
struct hpkv_stats {
	__u64 records;              /* "Total records": live keys */
	__u64 disk_usage_bytes;     /* "Total disk usage": sum of live value lengths */
	__u64 device_size_bytes;    /* "Device size" */
	__u64 free_bytes;           /* space in free segments */
	__u64 log_bytes;            /* space held by the log: live records and garbage */
	__u64 live_bytes;           /* on-disk bytes of live records and needed tombstones */
	__u64 segment_size_bytes;
	__u64 segments_total;
	__u64 segments_free;
	__u64 cache_capacity_bytes; /* 0 = cache off */
	__u64 cache_used_bytes;
	__u64 cache_hits;
	__u64 cache_misses;
	__u64 gets;
	__u64 puts;                 /* inserts and overwrites */
	__u64 appends;
	__u64 deletes;
	__u64 purges;
	__u64 device_writes;        /* write requests to the block device */
	__u64 device_flushes;       /* cache flushes (a group commit is one flush) */
	__u64 compactions;          /* segments compacted */
	__u64 compaction_bytes_moved;
	__u64 compaction_bytes_reclaimed;
	__u64 uptime_ms;
	__u64 abi_profile;          /* the daemon's profile: HPKV_ABI_README or HPKV_ABI_V13 */
	__u64 index_heap_bytes;     /* memory held by the index */
	__u64 read_only;            /* 1 after a device error stopped writes (restart hpkvd) */
	__u64 ioctl_requests;       /* ioctl requests received, each round of a retry counted */
	__u64 ioctl_retries;        /* of these, answered with a retry (CUSE's unrestricted ioctls) */
	__u64 reserved[3];
};

#define HPKV_ABI_README 0
#define HPKV_ABI_V13 1

/* SYNC: returns once every write acknowledged before it is on stable media. */

/*
 * INFO: who serves the device. The texts are NUL-padded bytes (UTF-8 for the
 * version and the name); one longer than its field is cut to fit, with at
 * least one NUL left.
 */
#define HPKV_INFO_VERSION_MAX 64
#define HPKV_INFO_NAME_MAX 256
#define HPKV_INFO_PATH_MAX 4096

struct hpkv_info {
	__u8 store_uuid[16];        /* the store's identity, from its superblock */
	__u64 abi_profile;          /* HPKV_ABI_README or HPKV_ABI_V13 */
	__u64 durability;           /* HPKV_DURABILITY_SYNC or HPKV_DURABILITY_WRITE_BEHIND */
	__u64 write_behind_delay_ms; /* write-behind: the longest a write waits for a flush */
	__u64 write_behind_writes;  /* write-behind: the most writes between two flushes */
	__u64 started_unix_ms;      /* when hpkvd opened the store, in ms since 1970 (UTC) */
	__u8 version[HPKV_INFO_VERSION_MAX];  /* hpkvd's version, commit and build profile */
	__u8 name[HPKV_INFO_NAME_MAX];        /* the node's name: /dev/NAME (hpkvd --name) */
	__u8 device_path[HPKV_INFO_PATH_MAX]; /* the store's block device or image file */
	__u64 reserved[8];
};

#define HPKV_DURABILITY_SYNC 0
#define HPKV_DURABILITY_WRITE_BEHIND 1

/*
 * PUT_BATCH: stores count records in one request, in order (a later
 * duplicate key wins), and answers once every one is acknowledged under the
 * daemon's durability (in sync mode with one flush for the whole batch).
 * The argument is struct hpkv_put_batch, then bytes bytes of entries; each
 * entry is a struct hpkv_batch_entry, the key, the value, then padding to a
 * multiple of 8 bytes (HPKV_BATCH_ENTRY_SIZE; its bytes are not looked at).
 * Header and entries together are at most HPKV_PUT_BATCH_MAX bytes: what
 * CUSE carries into one ioctl. Keys are 1..HPKV_KEY_MAX bytes, values
 * 1..HPKV_VALUE_MAX, both binary, as for INSERT.
 * Returns the number of records stored: count, or fewer when the device
 * filled in the middle (the first ones, in order; ENOSPC when none was).
 * Errors: EINVAL (count 0; flags or a reserved field not 0; a length out of
 * bounds; entries that do not fill exactly bytes bytes; nothing is stored),
 * EMSGSIZE (bytes over HPKV_PUT_BATCH_MAX - sizeof(struct hpkv_put_batch)),
 * ENOSPC, EIO, EFAULT.
 */
#define HPKV_PUT_BATCH_MAX 131072 /* header and entries: 32 pages of 4096 */

struct hpkv_put_batch {
	__u32 count;    /* in: records that follow, at least 1 */
	__u32 bytes;    /* in: bytes of the entries that follow the struct */
	__u32 flags;    /* in: 0 */
	__u32 reserved; /* in: 0 */
	/* bytes bytes of entries follow */
};

struct hpkv_batch_entry {
	__u16 key_len;   /* 1..HPKV_KEY_MAX */
	__u16 reserved;  /* 0 */
	__u32 value_len; /* 1..HPKV_VALUE_MAX */
	/* key_len bytes of key, value_len bytes of value, padding to 8 */
};

#define HPKV_BATCH_ENTRY_SIZE(key_len, value_len) \
	((sizeof(struct hpkv_batch_entry) + (key_len) + (value_len) + 7) & ~(__u64)7)

#define HPKV_IOC_GET _IOWR(HPKV_IOC_MAGIC, 1, struct hpkv_get)
#define HPKV_IOC_RANGE _IOWR(HPKV_IOC_MAGIC, 2, struct hpkv_range)
#define HPKV_IOC_STATS _IOR(HPKV_IOC_MAGIC, 3, struct hpkv_stats)
#define HPKV_IOC_SYNC _IO(HPKV_IOC_MAGIC, 4)
#define HPKV_IOC_INFO _IOR(HPKV_IOC_MAGIC, 5, struct hpkv_info)
#define HPKV_IOC_PUT_BATCH _IOW(HPKV_IOC_MAGIC, 6, struct hpkv_put_batch)

#endif /* _UAPI_LINUX_HPKV_H */
