//! Harness for daemon integration tests and benchmarks: each test (or
//! benchmark program) re-runs itself inside private mount, UTS and network
//! namespaces (`unshare -m -u -n`; the IPC socket is an abstract one,
//! private to the network namespace), where it sets a hostname that
//! resolves to a non-loopback address, starts the real daemon on a real
//! FUSE mount under a unique state directory, and stops only the process
//! it started. Needs root and /dev/fuse.

#![allow(dead_code)]

pub mod debian;
pub mod qb;
pub mod tree;

use std::fs;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const HOSTNAME: &str = "refnode1";
const INSIDE: &str = "PMXCFS_TEST_IN_NAMESPACE";

/// This executable again, with `args`, inside fresh namespaces.
fn in_fresh_namespaces(args: &[&str]) -> Command {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "this needs root (namespaces, /dev/fuse); run it as root"
    );
    assert!(Path::new("/dev/fuse").exists(), "this needs /dev/fuse");
    let mut c = Command::new("unshare");
    c.args(["-m", "-u", "-n", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args(args)
        .env(INSIDE, "1");
    c
}

/// Run the calling test inside a fresh namespace. Returns true in the
/// child, where the test body runs; false in the parent, after asserting
/// that the child passed.
pub fn in_namespace(test: &str) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        setup_identity();
        return true;
    }
    let child = in_fresh_namespaces(&["--exact", test, "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run unshare");
    // unshare execs the test: the pid names its scratch directories.
    let pid = child.id();
    let out = child.wait_with_output().expect("wait for the test");
    if out.status.success() {
        remove_scratch_dirs_of(pid);
    }
    // The inner run's output is shown only when it failed, so that its
    // summary lines do not count as tests of their own.
    assert!(
        out.status.success(),
        "{test} failed inside its namespace ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

/// Hostname `refnode1` resolving to 192.0.2.11, as the C reference runs.
fn setup_identity() {
    let name = std::ffi::CString::new(HOSTNAME).unwrap();
    assert_eq!(
        unsafe { libc::sethostname(name.as_ptr(), HOSTNAME.len()) },
        0
    );
    let hosts = scratch_dir("hosts").join("hosts");
    fs::write(
        &hosts,
        format!("127.0.0.1 localhost\n192.0.2.11 {HOSTNAME}\n"),
    )
    .unwrap();
    let ok = Command::new("mount")
        .args(["--bind"])
        .arg(&hosts)
        .arg("/etc/hosts")
        .status()
        .unwrap()
        .success();
    assert!(ok, "bind-mount /etc/hosts");
}

/// The scratch directories a process made (kept when its test failed, to
/// look at).
fn remove_scratch_dirs_of(pid: u32) {
    let marker = format!("-{pid}-");
    if let Ok(entries) = fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("pmxcfs-test-") && name.contains(&marker) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// For a program that is not a test (the benchmarks): re-run it inside
/// its own namespaces and exit with its status; inside, set up the host
/// name and return.
pub fn enter_namespace() {
    if std::env::var_os(INSIDE).is_some() {
        setup_identity();
        return;
    }
    let status = in_fresh_namespaces(&[]).status().expect("run unshare");
    std::process::exit(status.code().unwrap_or(1));
}

/// A new directory for one test's state, unique in this process (a
/// counter) and among processes (the pid); a left-over of an earlier run
/// with the same pid is cleared first.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "pmxcfs-test-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct Daemon {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub mount: PathBuf,
    pub statedir: PathBuf,
    pub rundir: PathBuf,
}

impl Daemon {
    pub fn paths(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        (dir.join("pve"), dir.join("lib"), dir.join("run"))
    }

    /// The daemon command (`-f -l` and the test's paths).
    pub fn command(dir: &Path) -> Command {
        let (mount, statedir, rundir) = Self::paths(dir);
        // PMXCFS_BIN: another build of the daemon (a benchmark's baseline).
        let binary = std::env::var_os("PMXCFS_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_pmxcfs")));
        let mut cmd = Command::new(binary);
        // Counters on SIGUSR2 (`Daemon::counters`).
        cmd.env("PMXCFS_STATS_FILE", dir.join("stats.json"));
        // The metrics file (`Daemon::metrics`).
        cmd.env("PMXCFS_METRICS_FILE", dir.join("metrics.prom"));
        cmd.args(["-f", "-l", "--mountpoint"])
            .arg(&mount)
            .arg("--statedir")
            .arg(&statedir)
            .arg("--rundir")
            .arg(&rundir)
            .arg("--pidfile")
            .arg(dir.join("pmxcfs.pid"))
            .arg("--rrd-dir")
            .arg(dir.join("rrd"))
            .arg("--rrdcached-socket")
            .arg(dir.join("rrdcached.sock"));
        cmd
    }

    /// Start on `dir` and wait until the mount answers.
    pub fn start(dir: &Path) -> Daemon {
        Self::start_waiting_for(dir, ".version").0
    }

    /// Start on `dir` and wait until `rel` is there below the mount; how
    /// long that took from the start of the process.
    pub fn start_waiting_for(dir: &Path, rel: &str) -> (Daemon, Duration) {
        Self::start_waiting_for_within(dir, rel, Duration::from_secs(10))
    }

    /// As `start_waiting_for`, waiting up to `within` (large trees).
    pub fn start_waiting_for_within(dir: &Path, rel: &str, within: Duration) -> (Daemon, Duration) {
        let (mount, statedir, rundir) = Self::paths(dir);
        let started = Instant::now();
        let child = Self::command(dir)
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("daemon.log")).unwrap())
            .spawn()
            .expect("start pmxcfs");
        let mut d = Daemon {
            child: Some(child),
            dir: dir.to_path_buf(),
            mount,
            statedir,
            rundir,
        };
        d.wait_for(rel, within);
        (d, started.elapsed())
    }

    /// The daemon's counters (FUSE requests by opcode, SQLite transactions
    /// and pages written), asked for with SIGUSR2.
    pub fn counters(&self) -> Counters {
        let file = self.dir.join("stats.json");
        let _ = fs::remove_file(&file);
        unsafe { libc::kill(self.pid(), libc::SIGUSR2) };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(text) = fs::read_to_string(&file) {
                return Counters::parse(&text, self.write_bytes(), self.cpu_ns());
            }
            assert!(Instant::now() < deadline, "no counters from the daemon");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Bytes the daemon caused to be written to storage (/proc/PID/io).
    pub fn write_bytes(&self) -> u64 {
        let io = fs::read_to_string(format!("/proc/{}/io", self.pid())).unwrap_or_default();
        io.lines()
            .find_map(|l| l.strip_prefix("write_bytes: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// CPU time of the daemon's threads, in ns (the first field of each
    /// thread's schedstat): less at the mercy of a busy host than wall
    /// time.
    pub fn cpu_ns(&self) -> u64 {
        let Ok(tasks) = fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return 0;
        };
        tasks
            .flatten()
            .filter_map(|t| fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// The daemon's peak resident set (VmHWM), in kB.
    pub fn hwm_kb(&self) -> f64 {
        self.status_kb("VmHWM:")
    }

    /// The daemon's resident set now (VmRSS), in kB.
    pub fn rss_kb(&self) -> f64 {
        self.status_kb("VmRSS:")
    }

    fn status_kb(&self, field: &str) -> f64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn wait_for(&mut self, rel: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if fs::symlink_metadata(self.mount.join(rel)).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("pmxcfs exited during start-up ({status}): {}", self.log());
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        panic!(
            "pmxcfs did not serve {rel} within {within:?}: {}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mount.join(rel)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "pmxcfs did not stop within 15 s after SIGTERM: {}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, wait, and insist on exit status 0; says the status and the
    /// daemon's log otherwise.
    pub fn stop_cleanly(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "pmxcfs stopped with {status}: {}",
            self.log()
        );
    }

    /// SIGKILL, wait, and clear the dead mount it leaves.
    pub fn kill9(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
    }
}

/// The daemon's counters at one moment.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub fuse: std::collections::BTreeMap<String, u64>,
    pub transactions: u64,
    pub pages_written: u64,
    pub write_bytes: u64,
    /// CPU time of all the daemon's threads (/proc/PID/task/*/schedstat).
    pub cpu_ns: u64,
}

impl Counters {
    fn parse(json: &str, write_bytes: u64, cpu_ns: u64) -> Counters {
        // `{"fuse": {"lookup": 1, ...}, "db": {"transactions": 2, ...}}`
        let mut c = Counters {
            write_bytes,
            cpu_ns,
            ..Counters::default()
        };
        let (fuse, db) = json.split_once("\"db\"").unwrap_or((json, ""));
        let pairs = |s: &str| -> Vec<(String, u64)> {
            s.split(',')
                .filter_map(|kv| {
                    let (k, v) = kv.rsplit_once(':')?;
                    let k = k.rsplit('"').nth(1)?.to_string();
                    let v: u64 = v.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok()?;
                    Some((k, v))
                })
                .collect()
        };
        for (k, v) in pairs(fuse) {
            c.fuse.insert(k, v);
        }
        for (k, v) in pairs(db) {
            match k.as_str() {
                "transactions" => c.transactions = v,
                "pages_written" => c.pages_written = v,
                _ => {}
            }
        }
        c
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Counters) -> Counters {
        Counters {
            fuse: self
                .fuse
                .iter()
                .map(|(k, v)| (k.clone(), v - before.fuse.get(k).copied().unwrap_or(0)))
                .filter(|(_, v)| *v > 0)
                .collect(),
            transactions: self.transactions - before.transactions,
            pages_written: self.pages_written - before.pages_written,
            write_bytes: self.write_bytes.saturating_sub(before.write_bytes),
            cpu_ns: self.cpu_ns.saturating_sub(before.cpu_ns),
        }
    }

    /// Per operation, for `ops` operations: "lookup 1.0 create 1.0 ...".
    pub fn per_op(&self, ops: u64) -> String {
        let mut s: Vec<String> = self
            .fuse
            .iter()
            .map(|(k, v)| format!("{k} {:.1}", *v as f64 / ops as f64))
            .collect();
        s.push(format!(
            "| sqlite tx {:.1}, pages {:.1}, disk {:.1} KiB | daemon CPU {:.0} µs",
            self.transactions as f64 / ops as f64,
            self.pages_written as f64 / ops as f64,
            self.write_bytes as f64 / 1024.0 / ops as f64,
            self.cpu_ns as f64 / 1000.0 / ops as f64
        ));
        s.join(" ")
    }
}

/// The errno of a failed call, or 0.
pub fn errno<T>(r: io::Result<T>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

pub fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

pub fn cpath(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

/// The rows of a config.db, through the sqlite3 shell (an independent
/// reader).
pub fn sqlite(db: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3");
    assert!(
        out.status.success(),
        "sqlite3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn fixture(name: &str) -> PathBuf {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    assert!(shared.exists(), "missing fixture {}", shared.display());
    shared
}
