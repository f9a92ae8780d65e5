//! Shared by the benchmarks: run inside private mount/UTS/network
//! namespaces (as root) with a hostname that resolves, and start the real
//! daemon on a scratch directory.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSIDE: &str = "PMXCFS_BENCH_IN_NAMESPACE";
const HOSTNAME: &str = "benchnode";

pub fn enter_namespace() {
    if std::env::var_os(INSIDE).is_none() {
        let exe = std::env::current_exe().unwrap();
        let status = Command::new("unshare")
            .args(["-m", "-u", "-n", "--propagation", "private"])
            .arg(exe)
            .env(INSIDE, "1")
            .status()
            .expect("unshare (run as root)");
        std::process::exit(status.code().unwrap_or(1));
    }
    setup_identity();
}

fn setup_identity() {
    let name = std::ffi::CString::new(HOSTNAME).unwrap();
    assert_eq!(
        unsafe { libc::sethostname(name.as_ptr(), HOSTNAME.len()) },
        0
    );
    let dir = scratch("hosts");
    fs::write(
        dir.join("hosts"),
        format!("127.0.0.1 localhost\n192.0.2.21 {HOSTNAME}\n"),
    )
    .unwrap();
    assert!(Command::new("mount")
        .arg("--bind")
        .arg(dir.join("hosts"))
        .arg("/etc/hosts")
        .status()
        .unwrap()
        .success());
}

pub fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pmxcfs-bench-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

pub struct Daemon {
    pub child: Child,
    pub mount: PathBuf,
}

pub fn start(dir: &Path, wait_for: &str) -> (Daemon, Duration) {
    let mount = dir.join("pve");
    let t = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_pmxcfs"))
        .args(["-f", "-l", "--mountpoint"])
        .arg(&mount)
        .arg("--statedir")
        .arg(dir.join("lib"))
        .arg("--rundir")
        .arg(dir.join("run"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let target = mount.join(wait_for);
    while fs::metadata(&target).is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "no mount");
        std::thread::sleep(Duration::from_micros(200));
    }
    let took = t.elapsed();
    (Daemon { child, mount }, took)
}

impl Daemon {
    pub fn hwm_kb(&self) -> f64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    pub fn stop(mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}
