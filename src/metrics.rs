//! The daemon's metrics file: the node core's health (`core::metrics`)
//! and the edges' counters, in the Prometheus text format, written
//! atomically every few seconds where node_exporter's textfile collector
//! reads it (Debian's prometheus-node-exporter:
//! `/var/lib/prometheus/node-exporter`). No port is opened.
//!
//! Where: `PMXCFS_METRICS_FILE` names the file (`off` turns it off);
//! without it, `pmxcfs.prom` in node_exporter's directory when that
//! directory exists, else nothing is written.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::core::logline::Subsystem;
use crate::core::metrics::{by, node_metrics, Metrics};
use crate::host::{now, Host};
use crate::log;

pub const METRICS_FILE_ENV: &str = "PMXCFS_METRICS_FILE";
/// node_exporter's textfile directory on Debian.
pub const TEXTFILE_DIR: &str = "/var/lib/prometheus/node-exporter";
/// How often the file is written.
pub const PERIOD: Duration = Duration::from_secs(5);

/// The file to write, if any.
pub fn path() -> Option<PathBuf> {
    match std::env::var_os(METRICS_FILE_ENV) {
        Some(v) if v == "off" => None,
        Some(v) => Some(PathBuf::from(v)),
        None => Path::new(TEXTFILE_DIR)
            .is_dir()
            .then(|| Path::new(TEXTFILE_DIR).join("pmxcfs.prom")),
    }
}

/// Everything, rendered now.
pub fn render(host: &Host) -> String {
    let mut m = Metrics::new();
    m.gauge(
        "pmxcfs_build_info",
        "The running daemon: pmxcfs-rs and its version.",
        vec![by("version", env!("CARGO_PKG_VERSION"), 1.0)],
    );
    let (transactions, pages, page_size, commits) = {
        let shared = host.lock();
        node_metrics(&mut m, &shared.node, now());
        let db = &shared.db;
        (
            db.transactions,
            db.pages_written,
            db.page_size,
            db.commit_seconds.clone(),
        )
    };
    let (waiting, oldest) = host.waiting_requests();
    m.value(
        "pmxcfs_requests_waiting",
        "Changes waiting for their answer (in cluster mode: for their delivery by the cluster).",
        waiting as f64,
    );
    m.value(
        "pmxcfs_request_oldest_wait_seconds",
        "How long the oldest change has been waiting for its answer.",
        oldest.map_or(0.0, |d| d.as_secs_f64()),
    );
    let (fuse, ipc, refused) = crate::stats::request_counters();
    m.counter(
        "pmxcfs_fuse_requests_total",
        "FUSE requests by operation.",
        fuse.into_iter()
            .map(|(op, n)| by("op", op, n as f64))
            .collect(),
    );
    m.counter(
        "pmxcfs_ipc_requests_total",
        "Requests on the pve2 IPC socket by opcode.",
        ipc.into_iter()
            .map(|(op, n)| by("opcode", op, n as f64))
            .collect(),
    );
    m.total(
        "pmxcfs_fuse_kernel_invalidations_total",
        "Names and attributes the kernel was told are stale: changes from other nodes, expired locks, syncs, quorum changes.",
        crate::stats::kernel_invalidations_total() as f64,
    );
    m.total(
        "pmxcfs_ipc_refused_clients_total",
        "IPC clients refused at connection (neither root nor group www-data).",
        refused as f64,
    );
    m.total(
        "pmxcfs_db_transactions_total",
        "Transactions committed to config.db.",
        transactions as f64,
    );
    m.total(
        "pmxcfs_db_pages_written_total",
        "Database pages written to config.db.",
        pages as f64,
    );
    m.total(
        "pmxcfs_db_bytes_written_total",
        "Bytes written to config.db's write-ahead log (pages and their frame headers; the checkpoint copies them into the main file).",
        (pages * (page_size + 24)) as f64,
    );
    m.histogram(
        "pmxcfs_db_commit_duration_seconds",
        "How long each config.db transaction took (commit latency).",
        vec![(Vec::new(), commits)],
    );
    m.histogram(
        "pmxcfs_change_duration_seconds",
        "From a local change's submission (FUSE or IPC) to its answer: in cluster mode the cluster's delivery of it, then its commit.",
        vec![(Vec::new(), crate::stats::CHANGE_TIME.snapshot())],
    );
    m.histogram(
        "pmxcfs_fuse_request_duration_seconds",
        "Time a FUSE thread spent on a request, by operation (for a change, until it was handed on: its wait is pmxcfs_change_duration_seconds).",
        crate::stats::fuse_times()
            .into_iter()
            .map(|(op, h)| (vec![("op", op.to_string())], h))
            .collect(),
    );
    m.total(
        "pmxcfs_rrd_samples_dropped_total",
        "RRD samples dropped because the RRD files were written slower than samples arrived.",
        host.rrd_dropped() as f64,
    );
    m.finish()
}

/// Write `text` to `path` atomically (a temporary file beside it renamed
/// over it), so node_exporter never reads half a file.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("prom.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Write the file every [`PERIOD`] until `stop` is set; then it is
/// removed, so that node_exporter does not go on exporting the last values
/// of a daemon that is gone (its `pmxcfs_build_info` disappears).
pub fn start(host: Arc<Host>, path: PathBuf, stop: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let mut failed = false;
            loop {
                if stop.load(Ordering::Relaxed) {
                    let _ = std::fs::remove_file(&path);
                    return;
                }
                match write_atomically(&path, &render(&host)) {
                    Ok(()) => failed = false,
                    Err(e) if !failed => {
                        failed = true;
                        log::warning(
                            Subsystem::Main,
                            &format!("cannot write metrics to '{}': {e}", path.display()),
                        );
                    }
                    Err(_) => {}
                }
                // Woken early at shutdown.
                let mut slept = Duration::ZERO;
                while slept < PERIOD && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    slept += Duration::from_millis(100);
                }
            }
        });
    if let Err(e) = spawned {
        log::warning(
            Subsystem::Main,
            &format!("cannot start the metrics writer: {e}"),
        );
    }
}
