//! Counters the benchmarks read: FUSE requests by opcode here, SQLite
//! transactions and pages written in the database edge. With the
//! environment variable `PMXCFS_STATS_FILE` set, SIGUSR2 makes the daemon
//! write them to that file as one JSON object (atomically: a temporary
//! file renamed over it); without it the signal is not handled.

use std::sync::atomic::{AtomicU64, Ordering};

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

static FUSE: [AtomicU64; FUSE_OPS.len()] = [const { AtomicU64::new(0) }; FUSE_OPS.len()];

/// One request of opcode `op` (one of [`FUSE_OPS`]).
pub fn fuse_request(op: &str) {
    let i = FUSE_OPS
        .iter()
        .position(|o| *o == op)
        .unwrap_or(FUSE_OPS.len() - 1);
    FUSE[i].fetch_add(1, Ordering::Relaxed);
}

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
        .zip(FUSE.iter())
        .map(|(name, n)| (*name, n.load(Ordering::Relaxed)))
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

/// The environment variable naming the stats file.
pub const STATS_FILE_ENV: &str = "PMXCFS_STATS_FILE";

/// The counters as JSON: FUSE requests, then the database's.
pub fn to_json(db_transactions: u64, db_pages_written: u64) -> String {
    let fuse: Vec<String> = FUSE_OPS
        .iter()
        .zip(FUSE.iter())
        .map(|(name, n)| format!("\"{name}\": {}", n.load(Ordering::Relaxed)))
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
