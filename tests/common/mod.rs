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
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pmxcfs"));
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
        d.wait_for(rel);
        (d, started.elapsed())
    }

    /// The daemon's peak resident set (VmHWM), in kB.
    pub fn hwm_kb(&self) -> f64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn wait_for(&mut self, rel: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if fs::symlink_metadata(self.mount.join(rel)).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("pmxcfs exited during start-up ({status}): {}", self.log());
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        panic!("pmxcfs did not serve {rel} within 10 s: {}", self.log());
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
