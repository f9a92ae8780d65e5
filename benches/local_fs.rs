//! Local-mode benchmark against the C daemon's figures (observed-behaviour
//! §6): the same workload through the real FUSE mount, three runs of three
//! repetitions on a fresh database, medians, and the ratio to C's medians.
//! Not a test: nothing here asserts a time.
//!
//!     cargo bench --bench local_fs        (as root; uses /dev/fuse)

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[path = "../tests/common/mod.rs"]
mod common;

use common::{scratch_dir as scratch, Daemon};

/// C medians (seconds; kB for memory) from observed-behaviour §6.
const C_CREATE: f64 = 0.163;
const C_READ: f64 = 0.055;
const C_OVERWRITE: f64 = 0.110;
const C_RENAME: f64 = 0.272;
const C_STARTUP_5000: f64 = 1.016;
const C_HWM_AFTER_OPS_KB: f64 = 13208.0;
const C_HWM_STARTUP_5000_KB: f64 = 15144.0;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    common::enter_namespace();
    run();
}

fn write_trunc(path: &Path, data: &[u8]) {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.write_all(data).unwrap();
}

struct Sample {
    create: f64,
    read: f64,
    overwrite: f64,
    rename: f64,
    hwm_kb: f64,
}

fn one_run() -> Sample {
    let dir = scratch("ops");
    let (mut d, _) = Daemon::start_waiting_for(&dir, ".version");
    let payload = vec![b'x'; 200];
    let paths: Vec<PathBuf> = (0..1000)
        .map(|i| d.mount.join(format!("dir{}/file{i}", i % 10)))
        .collect();
    for i in 0..10 {
        fs::create_dir(d.mount.join(format!("dir{i}"))).unwrap();
    }
    let t = Instant::now();
    for p in &paths {
        write_trunc(p, &payload);
    }
    let create = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for p in &paths {
        assert_eq!(fs::read(p).unwrap().len(), 200);
    }
    let read = t.elapsed().as_secs_f64();
    let target = d.mount.join("dir0/overwrite.cfg");
    let t = Instant::now();
    for _ in 0..1000 {
        write_trunc(&target, &payload);
    }
    let overwrite = t.elapsed().as_secs_f64();
    let target = d.mount.join("dir1/renamed.cfg");
    let t = Instant::now();
    for i in 0..1000 {
        let tmp = d.mount.join(format!("dir1/renamed.cfg.tmp.{i}"));
        write_trunc(&tmp, &payload);
        fs::rename(&tmp, &target).unwrap();
    }
    let rename = t.elapsed().as_secs_f64();
    let hwm_kb = d.hwm_kb();
    let _ = d.stop();
    let _ = fs::remove_dir_all(&dir);
    Sample {
        create,
        read,
        overwrite,
        rename,
        hwm_kb,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn run() {
    let mut samples = Vec::new();
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);
    for _ in 0..runs {
        samples.push(one_run());
    }
    let m = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());

    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/files-5000.db");
    let last_file = {
        let out = Command::new("sqlite3")
            .arg(&fixture)
            .arg("SELECT inode FROM tree WHERE type = 8 AND inode != 0 ORDER BY inode DESC LIMIT 1")
            .output()
            .unwrap();
        let inode: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        path_of(&fixture, inode)
    };
    let mut startups = Vec::new();
    let mut hwm5000 = Vec::new();
    for _ in 0..9 {
        let dir = scratch("f5000");
        fs::create_dir_all(dir.join("lib")).unwrap();
        fs::copy(&fixture, dir.join("lib/config.db")).unwrap();
        let (mut d, took) = Daemon::start_waiting_for(&dir, &last_file);
        startups.push(took.as_secs_f64());
        hwm5000.push(d.hwm_kb());
        let _ = d.stop();
        let _ = fs::remove_dir_all(&dir);
    }

    println!("local mode through FUSE, median of 9 (C median of 9 from observed-behaviour §6)");
    println!("{:<52} {:>10} {:>10} {:>7}", "metric", "ours", "C", "ratio");
    let row = |name: &str, ours: f64, c: f64, unit: &str| {
        println!(
            "{name:<52} {:>8.3}{unit} {:>8.3}{unit} {:>6.2}x",
            ours,
            c,
            ours / c
        );
    };
    row(
        "create 1000 files of 200 B in 10 dirs",
        m(|s| s.create),
        C_CREATE,
        " s",
    );
    row("read back 1000 files", m(|s| s.read), C_READ, " s");
    row(
        "overwrite one file 1000x (O_TRUNC + write)",
        m(|s| s.overwrite),
        C_OVERWRITE,
        " s",
    );
    row(
        "tmp file + rename onto target 1000x",
        m(|s| s.rename),
        C_RENAME,
        " s",
    );
    row(
        "start-up with the 5000-file DB to last file",
        median(startups),
        C_STARTUP_5000,
        " s",
    );
    println!(
        "{:<52} {:>7.0} kB {:>7.0} kB {:>6.2}x",
        "peak RSS (VmHWM) after the operations",
        m(|s| s.hwm_kb),
        C_HWM_AFTER_OPS_KB,
        m(|s| s.hwm_kb) / C_HWM_AFTER_OPS_KB
    );
    println!(
        "{:<52} {:>7.0} kB {:>7.0} kB {:>6.2}x",
        "peak RSS (VmHWM) after start-up, 5000-file DB",
        median(hwm5000.clone()),
        C_HWM_STARTUP_5000_KB,
        median(hwm5000) / C_HWM_STARTUP_5000_KB
    );
}

fn path_of(db: &Path, inode: u64) -> String {
    let mut parts = Vec::new();
    let mut cur = inode;
    while cur != 0 {
        let out = Command::new("sqlite3")
            .arg(db)
            .arg(format!(
                "SELECT parent || '|' || name FROM tree WHERE inode = {cur}"
            ))
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let (parent, name) = line.split_once('|').unwrap();
        parts.push(name.to_string());
        cur = parent.parse().unwrap();
    }
    parts.reverse();
    parts.join("/")
}
