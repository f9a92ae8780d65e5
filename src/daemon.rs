//! The daemon edge: command line, node identity, files and directories,
//! the single-instance lock, daemonizing, signals and an orderly shutdown,
//! with the defaults of the C pmxcfs (spec §7.5, §7.6).

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{IpAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::logline::Subsystem;
use crate::core::node::{Input, Node, NodeConfig};
use crate::database::{Database, DbError, PageSizeAtOpen};
use crate::fuse::{mount_config, PveFs};
use crate::host::{now, Host, Shared};
use crate::ipc::IpcServer;
use crate::log;
use crate::rrd::RrdWriter;

/// Where everything lives. The defaults are those of the C daemon.
#[derive(Clone, Debug)]
pub struct Paths {
    pub mountpoint: PathBuf,
    pub statedir: PathBuf,
    pub rundir: PathBuf,
    pub pidfile: PathBuf,
    pub rrd_dir: PathBuf,
    pub rrdcached_socket: PathBuf,
    pub corosync_conf: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            mountpoint: "/etc/pve".into(),
            statedir: "/var/lib/pve-cluster".into(),
            rundir: "/run/pve-cluster".into(),
            pidfile: "/var/run/pve-cluster.pid".into(),
            rrd_dir: "/var/lib/rrdcached/db".into(),
            rrdcached_socket: "/var/run/rrdcached.sock".into(),
            corosync_conf: "/etc/corosync/corosync.conf".into(),
        }
    }
}

impl Paths {
    pub fn database(&self) -> PathBuf {
        self.statedir.join("config.db")
    }
    pub fn lockfile(&self) -> PathBuf {
        self.statedir.join(".pmxcfs.lockfile")
    }
    pub fn restart_flag(&self) -> PathBuf {
        self.rundir.join("cfs-restart-flag")
    }
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    pub debug: bool,
    pub foreground: bool,
    pub local: bool,
    pub paths: Paths,
    /// Test option only: lock expiry in seconds instead of C's 120.
    pub test_lock_timeout: Option<u32>,
    /// Record our CPG events to this capture file (cluster mode).
    pub record: Option<PathBuf>,
}

/// The node name: `uname` nodename up to the first dot.
pub fn short_hostname() -> String {
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills the struct we own.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    let raw = unsafe { std::ffi::CStr::from_ptr(u.nodename.as_ptr()) };
    let name = raw.to_string_lossy();
    name.split('.').next().unwrap_or_default().to_string()
}

/// The node's IP as C picks it: the first IPv4 address outside 127/8, else
/// the first IPv6 address other than ::1. Loopback-only is an error.
pub fn resolve_node_ip(hostname: &str) -> Result<IpAddr, String> {
    let addrs: Vec<IpAddr> = (hostname, 0)
        .to_socket_addrs()
        .map_err(|e| format!("Unable to resolve node name '{hostname}': {e}"))?
        .map(|a| a.ip())
        .collect();
    let v4 = addrs
        .iter()
        .find(|a| matches!(a, IpAddr::V4(v) if !v.is_loopback()));
    let v6 = addrs.iter().find(|a| matches!(a, IpAddr::V6(v) if !v.is_loopback() && v.to_ipv4_mapped().is_none_or(|m| !m.is_loopback())));
    v4.or(v6).copied().ok_or_else(|| {
        format!(
            "Unable to resolve node name '{hostname}' to a non-loopback IP address - missing entry in '/etc/hosts' or DNS?"
        )
    })
}

fn www_data_gid() -> Result<u32, String> {
    let name = CString::new("www-data").expect("no NUL");
    // SAFETY: getgrnam returns a pointer to static storage or NULL.
    let g = unsafe { libc::getgrnam(name.as_ptr()) };
    if g.is_null() {
        return Err("Unable to get www-data group ID".into());
    }
    Ok(unsafe { (*g).gr_gid })
}

fn mkdir_mode(path: &Path, mode: u32) -> Result<(), String> {
    match fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!(
            "unable to create directory '{}': {e}",
            path.display()
        )),
    }
}

fn chown(path: &Path, uid: u32, gid: u32) {
    if let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) {
        // SAFETY: plain syscall on a NUL-terminated path.
        unsafe { libc::chown(c.as_ptr(), uid, gid) };
    }
}

/// The single-instance lock: 11 attempts, 1 s apart, as C.
fn take_lock(path: &Path) -> Result<File, String> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("unable to open lock file '{}': {e}", path.display()))?;
    for attempt in 0..11 {
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(file);
        }
        if attempt == 0 {
            log::crit(
                Subsystem::Main,
                "unable to acquire pmxcfs lock - trying again",
            );
        }
        if attempt < 10 {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    Err(format!(
        "unable to acquire pmxcfs lock '{}': another instance is running",
        path.display()
    ))
}

/// Detach from a stale or dead mount left by a previous instance.
fn clear_stale_mount(mountpoint: &Path) {
    if let Ok(c) = CString::new(mountpoint.as_os_str().as_encoded_bytes()) {
        // SAFETY: plain syscalls on a NUL-terminated path; failures are fine.
        unsafe {
            if libc::umount2(c.as_ptr(), libc::MNT_FORCE) != 0 {
                libc::umount2(c.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

fn write_restart_flag(path: &Path, gid: u32) {
    if let Ok(f) = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o440)
        .open(path)
    {
        drop(f);
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o440));
        chown(path, 0, gid);
    }
}

/// Write `"<pid>\n"` atomically.
fn write_pidfile(path: &Path, pid: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("pid.tmp");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        writeln!(f, "{pid}")?;
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))?;
    fs::rename(&tmp, path)
}

fn block_signals() -> libc::sigset_t {
    // SAFETY: building and installing a signal mask for this thread; the
    // threads spawned afterwards inherit it, so only `wait_for_signal`
    // receives these signals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        if std::env::var_os(crate::stats::STATS_FILE_ENV).is_some() {
            libc::sigaddset(&mut set, libc::SIGUSR2);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Wait up to `timeout` for one of the blocked signals.
fn wait_for_signal(set: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: sigtimedwait with our own set and timespec.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// Fork for daemon mode. The parent waits for the child's word on a pipe:
/// `1` once the filesystem is mounted and served, or `0` and the reason
/// it could not start. On `1` it writes the pid file (the child's pid)
/// and exits 0; otherwise it prints the reason and exits 255. The child
/// gets the pipe's write end.
fn daemonize(pidfile: &Path) -> Result<File, String> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe and fork before any thread exists.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err("pipe failed".into());
    }
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err("fork failed".into());
    }
    if pid > 0 {
        unsafe { libc::close(fds[1]) };
        let mut reader = unsafe { File::from_raw_fd(fds[0]) };
        let mut word = Vec::new();
        let _ = reader.read_to_end(&mut word);
        if word.first() != Some(&b'1') {
            let why = String::from_utf8_lossy(word.get(1..).unwrap_or_default());
            let why = if why.is_empty() {
                "the server exited during start-up".into()
            } else {
                why
            };
            eprintln!("pmxcfs: failed to start: {why}");
            std::process::exit(255);
        }
        if let Err(e) = write_pidfile(pidfile, pid as u32) {
            eprintln!(
                "pmxcfs: unable to write pid file '{}': {e}",
                pidfile.display()
            );
            // SAFETY: the child is ours; it is stopped, not left behind.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            std::process::exit(255);
        }
        std::process::exit(0);
    }
    unsafe {
        libc::close(fds[0]);
        libc::setsid();
    }
    Ok(unsafe { File::from_raw_fd(fds[1]) })
}

fn redirect_stdio_to_null() {
    if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
        // SAFETY: dup2 onto the standard descriptors.
        unsafe {
            for fd in 0..3 {
                libc::dup2(null.as_raw_fd(), fd);
            }
        }
    }
}

/// Run the daemon; returns the process exit code.
pub fn run(options: Options) -> i32 {
    // One malloc arena for every thread, before any thread exists. The
    // threads that allocate (two FUSE threads, IPC, corosync, RRD, metrics)
    // take turns on the node's lock anyway; glibc's arena per thread kept
    // freed memory in each (a walk of 52 000 files: VmHWM 106 -> 94 MB, the
    // same time; docs/performance.md).
    // SAFETY: mallopt only changes glibc's allocator settings.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    if options.debug {
        log::set_debug(true);
    }
    if !options.foreground {
        // Before the fork: every line of the child goes to syslog.
        log::use_syslog();
    }
    let mut ready_pipe = if options.foreground {
        None
    } else {
        match daemonize(&options.paths.pidfile) {
            Ok(p) => Some(p),
            Err(e) => {
                log::crit(Subsystem::Main, &e);
                return 255;
            }
        }
    };
    match serve(&options, &mut ready_pipe) {
        Ok(()) => 0,
        Err(e) => {
            log::crit(Subsystem::Main, &e);
            if let Some(mut pipe) = ready_pipe {
                let _ = pipe.write_all(format!("0{e}").as_bytes());
            }
            255
        }
    }
}

/// A large database of another page size (C's) gets [`crate::database::PAGE_SIZE`]
/// after the start, not before it: a copy is written beside it while the
/// daemon serves, and put in its place under the lock if no change was
/// persisted meanwhile (else tried again later). Readers and writers wait
/// only for the swap (close, rename, reopen).
fn convert_page_size_later(host: Arc<Host>, path: PathBuf) {
    const ATTEMPTS: u32 = 5;
    let spawned = std::thread::Builder::new()
        .name("db-convert".into())
        .spawn(move || {
            for attempt in 1..=ATTEMPTS {
                let before = {
                    let shared = host.lock();
                    if shared.node.storage_failed() {
                        return;
                    }
                    shared.db.transactions
                };
                let (copy, old) = match Database::copy_with_small_pages(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        log_page_size_kept(&e);
                        return;
                    }
                };
                let mut shared = host.lock();
                let swapped = if shared.db.transactions == before {
                    shared.db.replace_file(&copy)
                } else {
                    Err("changes kept coming while it was copied".into())
                };
                drop(shared);
                let _ = fs::remove_file(&copy);
                match swapped {
                    Ok(()) => {
                        log_page_size_changed(old, crate::database::PAGE_SIZE.into());
                        return;
                    }
                    Err(e) if attempt == ATTEMPTS => {
                        log::notice(
                            Subsystem::Database,
                            &format!("database page size left as it is for now: {e}"),
                        );
                    }
                    // Another process had it open, or a change came: later.
                    Err(_) => std::thread::sleep(Duration::from_secs(10 * u64::from(attempt))),
                }
            }
        });
    if let Err(e) = spawned {
        log_page_size_kept(&e.to_string());
    }
}

fn log_page_size_changed(old: i64, new: i64) {
    log::notice(
        Subsystem::Database,
        &format!("database page size {old} changed to {new} (fewer bytes written per change)"),
    );
}

fn log_page_size_kept(why: &str) {
    log::warning(
        Subsystem::Database,
        &format!("database page size left as it is: {why}"),
    );
}

fn db_error(e: DbError) -> String {
    e.to_string()
}

fn serve(options: &Options, ready_pipe: &mut Option<File>) -> Result<(), String> {
    let started = Instant::now();
    // Before the first thread (the RRD writer starts with the host): a
    // thread that does not block SIGTERM would take it and be killed by
    // it, the whole daemon with it, without the teardown below.
    let signals = block_signals();
    let paths = &options.paths;
    // The one line C does not log: which daemon this is, for a journal
    // read later (a node may run either).
    log::notice(
        Subsystem::Main,
        &format!("starting pmxcfs-rs {}", env!("CARGO_PKG_VERSION")),
    );
    let hostname = short_hostname();
    if hostname.is_empty() {
        return Err("unable to get the host name".into());
    }
    let ip = resolve_node_ip(&hostname)?;
    log::notice(
        Subsystem::Main,
        &format!("resolved node name '{hostname}' to '{ip}' for default node IP address"),
    );
    let gid = www_data_gid()?;
    // SAFETY: umask only changes this process's file creation mask.
    unsafe { libc::umask(0o027) };
    mkdir_mode(&paths.statedir, 0o750)?;
    mkdir_mode(&paths.rundir, 0o750)?;
    chown(&paths.rundir, 0, gid);
    let _lock = take_lock(&paths.lockfile())?;

    // The database is checked before anything is written to it.
    let rows = Database::read(&paths.database()).map_err(db_error)?;
    let new_database = rows.is_none();
    let host_conf = fs::read(&paths.corosync_conf).ok();
    if let Some(secs) = options.test_lock_timeout {
        log::notice(
            Subsystem::Main,
            &format!("TEST OPTION: locks expire after {secs} s instead of 120 s"),
        );
    }
    let start = now();
    let node = Node::boot(
        NodeConfig {
            nodename: hostname.clone(),
            node_ip: ip.to_string(),
            pid: std::process::id(),
            force_local: options.local,
            debug: options.debug,
            lock_timeout: options.test_lock_timeout,
        },
        rows,
        host_conf.as_deref(),
        start,
    )
    .map_err(|e| format!("{}: {e}", paths.database().display()))?;
    // The rows read and the loading's indexes are freed now, in the middle
    // of the heap: give their pages back (a 52 000-file tree: 9 MB).
    crate::host::release_free_memory();
    // A copy a background conversion left behind (the daemon stopped).
    let _ = fs::remove_file(Database::conversion_path(&paths.database()));
    let db = Database::open(&paths.database()).map_err(db_error)?;
    match &db.page_size_at_open {
        PageSizeAtOpen::Changed { old, new } => log_page_size_changed(*old, *new),
        PageSizeAtOpen::Failed(e) => log_page_size_kept(e),
        PageSizeAtOpen::Kept | PageSizeAtOpen::Later => {}
    }
    let mut shared = Shared { node, db };
    let initial = shared.step(start, Input::Start);
    if shared.node.storage_failed() {
        return Err(format!(
            "unable to write the database '{}'",
            paths.database().display()
        ));
    }
    let cluster_mode = shared.node.is_cluster();
    if new_database && cluster_mode {
        log::debug(
            Subsystem::Main,
            &format!(
                "imported {} into the new database",
                paths.corosync_conf.display()
            ),
        );
    }
    let host = Arc::new(Host::new(
        shared,
        Some(RrdWriter::new(&paths.rrd_dir, &paths.rrdcached_socket)),
    ));

    clear_stale_mount(&paths.mountpoint);
    mkdir_mode(&paths.mountpoint, 0o750)?;
    let fs = PveFs::new(host.clone(), gid);
    let fs_state = fs.state();
    let session = fuser::Session::new(fs, &paths.mountpoint, &mount_config())
        .and_then(|s| s.spawn())
        .map_err(|e| format!("fuse mount on '{}' failed: {e}", paths.mountpoint.display()))?;
    let kernel_caches = crate::fuse::notify::start(fs_state, session.notifier())
        .map_err(|e| format!("cannot start the mount's notifier: {e}"))?;
    host.set_kernel_caches(kernel_caches);
    if cluster_mode {
        let recorder = match &options.record {
            Some(path) => Some(
                crate::record::Recorder::create(path)
                    .map_err(|e| format!("cannot record to '{}': {e}", path.display()))?,
            ),
            None => None,
        };
        let link = crate::corosync::start(host.clone(), &paths.corosync_conf, recorder, initial)
            .map_err(|e| format!("cannot start the corosync thread: {e}"))?;
        host.set_cluster(link);
        // C serves IPC after the first second of its service loop, by
        // which a cluster has synced: PVE's daemons then read the
        // cluster's data, not this node's old copy.
        host.wait_first_sync(Duration::from_secs(1));
    } else {
        host.start_local(initial);
    }
    let ipc = IpcServer::start(host.clone(), gid)?;
    let _ = fs::remove_file(paths.restart_flag());
    log::debug(
        Subsystem::Main,
        &format!(
            "mounted {} in {} mode, serving after {} ms",
            paths.mountpoint.display(),
            if cluster_mode { "cluster" } else { "local" },
            started.elapsed().as_millis()
        ),
    );
    if let Some(mut pipe) = ready_pipe.take() {
        let _ = pipe.write_all(b"1");
        redirect_stdio_to_null();
    }

    if host.lock().db.page_size_at_open == PageSizeAtOpen::Later {
        convert_page_size_later(host.clone(), paths.database());
    }
    let metrics_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(path) = crate::metrics::path() {
        crate::metrics::start(host.clone(), path, metrics_stop.clone());
    }
    let stats_file = std::env::var_os(crate::stats::STATS_FILE_ENV).map(PathBuf::from);
    loop {
        if let Some(sig) = wait_for_signal(&signals, Duration::from_millis(500)) {
            if sig == libc::SIGUSR2 {
                if let Some(path) = &stats_file {
                    let state = host.lock();
                    let (t, p) = (state.db.transactions, state.db.pages_written);
                    drop(state);
                    crate::stats::dump(path, t, p);
                }
                continue;
            }
            log::debug(Subsystem::Main, &format!("received signal {sig}"));
            break;
        }
        if !cluster_mode {
            host.local_timers();
        }
        if session.guard.is_finished() {
            log::notice(
                Subsystem::Main,
                "the filesystem was unmounted, shutting down",
            );
            break;
        }
    }

    metrics_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    log::notice(Subsystem::Main, "teardown filesystem");
    write_restart_flag(&paths.restart_flag(), gid);
    // Every step below is bounded: pve-cluster.service kills the daemon
    // 10 s after SIGTERM, and a frozen corosync answers nothing. Changes
    // still waiting for the cluster are answered EBUSY (they were never
    // delivered, so nothing of them is on disk).
    unmount(session, &paths.mountpoint);
    if let Some(link) = host.cluster_link() {
        if !link.shutdown(Duration::from_secs(3)) {
            log::notice(
                Subsystem::Main,
                "corosync does not answer; leaving the cluster groups without it",
            );
            host.abort_all();
        }
    }
    ipc.stop();
    // Waiting for the lock lets a change in progress finish and commit.
    let state = host.lock();
    state.db.checkpoint();
    drop(state);
    if !options.foreground {
        let _ = fs::remove_file(&paths.pidfile);
    }
    log::notice(Subsystem::Main, "exit proxmox configuration filesystem (0)");
    Ok(())
}

/// Unmount and wait for the FUSE threads; if the mount is busy, detach it
/// lazily and stop waiting after a few seconds.
fn unmount(session: fuser::BackgroundSession, mountpoint: &Path) {
    let c = CString::new(mountpoint.as_os_str().as_encoded_bytes()).ok();
    // SAFETY: plain umount syscall on a NUL-terminated path.
    let busy = c
        .as_ref()
        .is_some_and(|c| unsafe { libc::umount(c.as_ptr()) } != 0);
    if busy {
        if let Some(c) = &c {
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = session.umount_and_join();
        let _ = tx.send(());
    });
    if rx.recv_timeout(Duration::from_secs(5)).is_err() {
        log::notice(
            Subsystem::Main,
            "filesystem threads still busy after unmount; exiting anyway",
        );
    }
}
