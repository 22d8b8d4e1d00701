//! `struct hpkv_stats`: the reply of `HPKV_IOC_STATS`, built by the daemon and parsed by
//! clients with the same code.

use std::mem::offset_of;

use crate::le::{set_u64, u64_at};
use crate::{uapi, STATS_COUNTERS_SIZE, STATS_STRUCT_SIZE};

/// Defines [`StatsRecord`] and its codec from one list of the counters of `struct
/// hpkv_stats` (all but `reserved`), in the header's order.
macro_rules! stats_record {
    ($($(#[doc = $doc:literal])* $kind:ident $field:ident,)*) => {
        /// The numbers of `struct hpkv_stats`: what the engine reports, plus what the device
        /// layer knows (the profile it serves, the ioctl rounds it answered). Counters count
        /// since hpkvd started; sizes are current.
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct StatsRecord {
            $($(#[doc = $doc])* pub $field: u64,)*
        }

        impl StatsRecord {
            /// `struct hpkv_stats` as bytes (the daemon's side); `reserved` is zeros.
            pub fn encode(&self) -> Vec<u8> {
                let mut b = vec![0u8; STATS_STRUCT_SIZE];
                $(set_u64(&mut b, offset_of!(uapi::hpkv_stats, $field), self.$field);)*
                b
            }

            /// The record in `b` (the client's side), or `None` when `b` is shorter than
            /// `struct hpkv_stats`.
            pub fn decode(b: &[u8]) -> Option<StatsRecord> {
                if b.len() < STATS_STRUCT_SIZE {
                    return None;
                }
                Some(StatsRecord {
                    $($field: u64_at(b, offset_of!(uapi::hpkv_stats, $field)),)*
                })
            }

            /// Every counter with its name (the field's name in `struct hpkv_stats`), in
            /// the header's order.
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($field), self.$field),)*]
            }
        }

        /// What every field of [`StatsRecord`] is, in the header's order.
        pub const STATS_FIELDS: &[StatField] = &[$(StatField {
            name: stringify!($field),
            kind: StatKind::$kind,
            help: concat!($($doc),*),
        },)*];
    };
}

/// Whether a number counts events since hpkvd started or measures something now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatKind {
    /// Only grows, from 0 at hpkvd's start (Prometheus's counter).
    Counter,
    /// A size or state now (Prometheus's gauge).
    Gauge,
}

/// One field of `struct hpkv_stats`: its name, its kind, and what it means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatField {
    /// The field's name in `struct hpkv_stats` and [`StatsRecord`].
    pub name: &'static str,
    /// A counter or a gauge.
    pub kind: StatKind,
    /// What it means, one sentence (its documentation).
    pub help: &'static str,
}

stats_record! {
    /// "Total records": live keys.
    Gauge records,
    /// "Total disk usage": the sum of the live values' lengths.
    Gauge disk_usage_bytes,
    /// "Device size": the store's device.
    Gauge device_size_bytes,
    /// Space in free segments.
    Gauge free_bytes,
    /// Space held by the log: live records and garbage.
    Gauge log_bytes,
    /// On-disk bytes of live records and the tombstones still needed.
    Gauge live_bytes,
    /// The size of one segment.
    Gauge segment_size_bytes,
    /// Segments on the device.
    Gauge segments_total,
    /// Segments free for writing.
    Gauge segments_free,
    /// The value cache's size; 0: the cache is off.
    Gauge cache_capacity_bytes,
    /// Bytes the value cache holds.
    Gauge cache_used_bytes,
    /// Reads answered from the value cache.
    Counter cache_hits,
    /// Reads that went to the device.
    Counter cache_misses,
    /// GETs (all three kinds) answered.
    Counter gets,
    /// Inserts and overwrites.
    Counter puts,
    /// Appends.
    Counter appends,
    /// Deletes of a key that was there.
    Counter deletes,
    /// PURGEs.
    Counter purges,
    /// Write requests to the block device.
    Counter device_writes,
    /// Device cache flushes (a group commit is one flush).
    Counter device_flushes,
    /// Segments compacted.
    Counter compactions,
    /// Bytes of live records compaction copied.
    Counter compaction_bytes_moved,
    /// Bytes compaction gave back.
    Counter compaction_bytes_reclaimed,
    /// Time since hpkvd opened the store.
    Gauge uptime_ms,
    /// The daemon's profile: [`crate::ABI_README`] or [`crate::ABI_V13`].
    Gauge abi_profile,
    /// Memory held by the index.
    Gauge index_heap_bytes,
    /// 1 after a device error stopped writes (restart hpkvd).
    Gauge read_only,
    /// ioctl requests the daemon received, every round of the retry protocol counted.
    Counter ioctl_requests,
    /// Of those, the ones answered with a retry.
    Counter ioctl_retries,
}

impl StatsRecord {
    /// The module's `/proc/hpkv_stats`, exactly three lines.
    pub fn proc_text(&self) -> String {
        format!(
            "Total records: {}\nTotal disk usage: {} bytes\nDevice size: {} bytes\n",
            self.records, self.disk_usage_bytes, self.device_size_bytes
        )
    }
}

const _: () = assert!(
    STATS_COUNTERS_SIZE == size_of::<StatsRecord>(),
    "every counter"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_round_trip_and_proc_text() {
        let s = StatsRecord {
            records: 3,
            disk_usage_bytes: 18,
            device_size_bytes: 1 << 30,
            uptime_ms: 9,
            ..Default::default()
        };
        assert_eq!(StatsRecord::decode(&s.encode()), Some(s.clone()));
        assert_eq!(
            s.proc_text(),
            "Total records: 3\nTotal disk usage: 18 bytes\nDevice size: 1073741824 bytes\n"
        );
        assert_eq!(StatsRecord::decode(&[0; STATS_STRUCT_SIZE - 1]), None);
    }

    #[test]
    fn stats_fields_cover_every_counter_of_the_header() {
        // A counter missing from the list would come back as zeros here.
        let ones = vec![0xffu8; STATS_STRUCT_SIZE];
        let enc = StatsRecord::decode(&ones).unwrap().encode();
        assert!(enc[..STATS_COUNTERS_SIZE].iter().all(|&b| b == 0xff));
        assert!(enc[STATS_COUNTERS_SIZE..].iter().all(|&b| b == 0));
        assert_eq!(
            StatsRecord::default().fields().len() * 8,
            STATS_COUNTERS_SIZE
        );
    }
}
