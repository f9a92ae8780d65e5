//! The edges' counters for the metrics file and the benchmarks: FUSE
//! requests by opcode and their time, IPC requests, the wait of changes
//! (SQLite's transactions and pages are the database edge's). With the
//! environment variable `PMXCFS_STATS_FILE` set, SIGUSR2 makes the daemon
//! write them to that file as one JSON object (atomically: a temporary
//! file renamed over it); without it the signal is not handled.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::core::metrics::{Histogram, BUCKETS};

/// A histogram of durations the FUSE and IPC threads add to without a
/// lock: one relaxed atomic add per bucket and one for the sum.
pub struct AtomicHistogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl AtomicHistogram {
    pub const fn new() -> AtomicHistogram {
        AtomicHistogram {
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len() + 1],
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        self.buckets[Histogram::bucket(d.as_secs_f64())].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    pub fn snapshot(&self) -> Histogram {
        let mut h = Histogram::default();
        for (slot, b) in h.buckets.iter_mut().zip(&self.buckets) {
            *slot = b.load(Ordering::Relaxed);
        }
        h.sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        h
    }
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        AtomicHistogram::new()
    }
}

/// The FUSE requests counted, by the name the kernel protocol gives them.
pub const FUSE_OPS: [&str; 24] = [
    "lookup",
    "forget",
    "getattr",
    "setattr",
    "readlink",
    "mknod",
    "mkdir",
    "unlink",
    "rmdir",
    "rename",
    "open",
    "read",
    "write",
    "flush",
    "release",
    "fsync",
    "opendir",
    "readdir",
    "releasedir",
    "statfs",
    "create",
    "access",
    "getxattr",
    "other",
];

/// Per operation, its requests and the time the FUSE threads took on them
/// (a request is counted when its handler is done).
static FUSE_TIME: [AtomicHistogram; FUSE_OPS.len()] =
    [const { AtomicHistogram::new() }; FUSE_OPS.len()];

/// One request of opcode `op` (one of [`FUSE_OPS`]), timed until the
/// returned guard is dropped (the end of the handler: for a change, its
/// hand-off; the wait for its answer is [`CHANGE_TIME`]).
#[must_use = "the request is timed until the guard is dropped"]
pub fn fuse_request(op: &str) -> FuseTimer {
    let i = FUSE_OPS
        .iter()
        .position(|o| *o == op)
        .unwrap_or(FUSE_OPS.len() - 1);
    FuseTimer {
        op: i,
        start: Instant::now(),
    }
}

pub struct FuseTimer {
    op: usize,
    start: Instant,
}

impl Drop for FuseTimer {
    fn drop(&mut self) {
        FUSE_TIME[self.op].observe(self.start.elapsed());
    }
}

/// The time FUSE threads took per operation, for the ops seen.
pub fn fuse_times() -> Vec<(&'static str, Histogram)> {
    FUSE_OPS
        .iter()
        .zip(FUSE_TIME.iter())
        .map(|(op, h)| (*op, h.snapshot()))
        .filter(|(_, h)| h.count() > 0)
        .collect()
}

/// From a local change's submission to its answer (in cluster mode: the
/// cluster's delivery of it, then its commit).
pub static CHANGE_TIME: AtomicHistogram = AtomicHistogram::new();

/// IPC requests by opcode (1..=12; 0 counts any other), and clients
/// refused at connection time.
static IPC: [AtomicU64; 13] = [const { AtomicU64::new(0) }; 13];
static IPC_REFUSED: AtomicU64 = AtomicU64::new(0);

/// One IPC request with opcode `id` (the request header's id).
pub fn ipc_request(id: i32) {
    let i = usize::try_from(id)
        .ok()
        .filter(|i| (1..=12).contains(i))
        .unwrap_or(0);
    IPC[i].fetch_add(1, Ordering::Relaxed);
}

/// One IPC client refused (neither root nor www-data).
pub fn ipc_refused() {
    IPC_REFUSED.fetch_add(1, Ordering::Relaxed);
}

/// The counters of FUSE and IPC requests, for the metrics file.
pub fn request_counters() -> (Vec<(&'static str, u64)>, Vec<(String, u64)>, u64) {
    let fuse = FUSE_OPS
        .iter()
        .zip(FUSE_TIME.iter())
        .map(|(name, h)| (*name, h.count()))
        .collect();
    let ipc = IPC
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let name = if i == 0 {
                "unknown".to_string()
            } else {
                format!("{:?}", pmxcfs_wire::ipc::Opcode::from(i as i32))
            };
            (name, n.load(Ordering::Relaxed))
        })
        .collect();
    (fuse, ipc, IPC_REFUSED.load(Ordering::Relaxed))
}

/// Names and numbers the kernel was told are stale (`fuse::notify`).
static KERNEL_INVALIDATIONS: AtomicU64 = AtomicU64::new(0);

pub fn kernel_invalidations(n: usize) {
    KERNEL_INVALIDATIONS.fetch_add(n as u64, Ordering::Relaxed);
}

pub fn kernel_invalidations_total() -> u64 {
    KERNEL_INVALIDATIONS.load(Ordering::Relaxed)
}

/// The environment variable naming the stats file.
pub const STATS_FILE_ENV: &str = "PMXCFS_STATS_FILE";

/// The counters as JSON: FUSE requests, then the database's.
pub fn to_json(db_transactions: u64, db_pages_written: u64) -> String {
    let fuse: Vec<String> = FUSE_OPS
        .iter()
        .zip(FUSE_TIME.iter())
        .map(|(name, h)| format!("\"{name}\": {}", h.count()))
        .collect();
    format!(
        "{{\"fuse\": {{{}}}, \"db\": {{\"transactions\": {db_transactions}, \"pages_written\": {db_pages_written}}}}}\n",
        fuse.join(", ")
    )
}

/// Write the counters to `path`.
pub fn dump(path: &std::path::Path, db_transactions: u64, db_pages_written: u64) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, to_json(db_transactions, db_pages_written)).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}
