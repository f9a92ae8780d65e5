//! The Debian packages (built by `scripts/build-deb.sh` into target/deb/)
//! installed and removed in throwaway roots: an overlay of / in a private
//! mount namespace, once with a stand-in `pve-cluster` package that
//! provides /usr/bin/pmxcfs and pve-cluster.service (Proxmox's own package
//! is not in Debian), once without. Then the service contract of the
//! packaged daemon: forking, pid file, failing starts, SIGTERM.

mod common;

use common::debian::{deb, stand_in_pve_cluster, unpacked, PVE_CLUSTER_FILES};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn sh(script: &str) -> Output {
    Command::new("sh").args(["-c", script]).output().unwrap()
}

fn ok(script: &str) -> String {
    let out = sh(script);
    assert!(
        out.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A copy-on-write root: the host's / (or another system's root) below,
/// writes in a tmpfs.
struct Root {
    merged: PathBuf,
}

impl Root {
    fn new(dir: &Path) -> Root {
        Root::over(Path::new("/"), dir)
    }

    fn over(lower: &Path, dir: &Path) -> Root {
        let layers = dir.join("layers");
        let merged = dir.join("merged");
        fs::create_dir_all(&layers).unwrap();
        fs::create_dir_all(&merged).unwrap();
        ok(&format!(
            "mount -t tmpfs tmpfs {l} && mkdir {l}/upper {l}/work && \
             mount -t overlay overlay -o lowerdir={lower},upperdir={l}/upper,workdir={l}/work {m} && \
             mount --bind /proc {m}/proc && mount --rbind /dev {m}/dev && mount -t tmpfs tmpfs {m}/tmp && \
             mount -t tmpfs tmpfs {m}/run",
            lower = lower.display(),
            l = layers.display(),
            m = merged.display()
        ));
        Root { merged }
    }

    /// A shell command in the root; its output.
    fn run(&self, script: &str) -> Output {
        Command::new("chroot")
            .arg(&self.merged)
            .args(["sh", "-c", script])
            .output()
            .unwrap()
    }

    fn ok(&self, script: &str) -> String {
        let out = self.run(script);
        assert!(
            out.status.success(),
            "in the root: {script}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn path(&self, p: &str) -> PathBuf {
        self.merged.join(p.trim_start_matches('/'))
    }

    /// Copy a package into the root; its path there.
    fn add(&self, deb: &Path) -> String {
        let name = format!("/tmp/{}", deb.file_name().unwrap().to_string_lossy());
        fs::copy(deb, self.path(&name)).unwrap();
        name
    }
}

const DIVERSION: &str = "diversion of /usr/bin/pmxcfs to /usr/bin/pmxcfs.distrib by pmxcfs-rs";
const MAN_DIVERSION: &str = "diversion of /usr/share/man/man8/pmxcfs.8.gz to /usr/share/man/man8/pmxcfs.distrib.8.gz by pmxcfs-rs";

/// The cluster's data, which no package operation may touch.
fn seed_cluster_data(root: &Root) {
    root.ok(
        "mkdir -p /var/lib/pve-cluster /etc/pve /etc/corosync && echo db > /var/lib/pve-cluster/config.db && \
         echo conf > /etc/corosync/corosync.conf && echo key > /etc/corosync/authkey",
    );
}

fn assert_cluster_data_kept(root: &Root) {
    assert_eq!(
        root.ok(
            "cat /var/lib/pve-cluster/config.db /etc/corosync/corosync.conf /etc/corosync/authkey"
        ),
        "db\nconf\nkey\n"
    );
    assert!(root.path("/etc/pve").is_dir());
}

#[test]
fn the_package_diverts_pve_clusters_binary_and_gives_it_back() {
    if !common::in_namespace("the_package_diverts_pve_clusters_binary_and_gives_it_back") {
        return;
    }
    let dir = common::scratch_dir("package");
    let ours = deb("pmxcfs-rs");
    let ours_files = unpacked(&ours, &dir);
    let ours_binary = fs::read(ours_files.join("usr/bin/pmxcfs")).unwrap();
    let stand_in = stand_in_pve_cluster(&dir, "9.1.6-1", None);
    let stand_in_next = stand_in_pve_cluster(&dir, "9.1.7-1", None);

    // A PVE node: pve-cluster there first.
    let root = Root::new(&dir.join("pve"));
    seed_cluster_data(&root);
    let p = root.add(&stand_in);
    root.ok(&format!("dpkg -i {p} >/dev/null"));
    let unit = fs::read(root.path("/lib/systemd/system/pve-cluster.service")).unwrap();
    assert_eq!(root.ok("/usr/bin/pmxcfs"), "C pmxcfs 9.1.6-1\n");
    let p = root.add(&ours);
    root.ok(&format!("dpkg -i {p} >/dev/null"));
    assert_eq!(fs::read(root.path("/usr/bin/pmxcfs")).unwrap(), ours_binary);
    assert_eq!(root.ok("/usr/bin/pmxcfs.distrib"), "C pmxcfs 9.1.6-1\n");
    assert_eq!(
        root.ok("dpkg-divert --list /usr/bin/pmxcfs").trim(),
        DIVERSION
    );
    assert!(root
        .ok("/usr/bin/pmxcfs --version")
        .starts_with("pmxcfs (pmxcfs-rs) "));
    assert_eq!(
        fs::read(root.path("/lib/systemd/system/pve-cluster.service")).unwrap(),
        unit,
        "pve-cluster's unit is unchanged"
    );
    assert_eq!(root.ok("dpkg -S /usr/bin/pmxcfs").trim(), "diversion by pmxcfs-rs from: /usr/bin/pmxcfs\ndiversion by pmxcfs-rs to: /usr/bin/pmxcfs.distrib\npmxcfs-rs, pve-cluster: /usr/bin/pmxcfs");
    // The units verify, with our binary behind pve-cluster's.
    for unit in ["pve-cluster.service", "pmxcfs-rs.service"] {
        let out = root.run(&format!(
            "systemd-analyze verify /lib/systemd/system/{unit} 2>&1"
        ));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !text.contains(unit),
            "systemd-analyze verify {unit}: {text}"
        );
    }
    // pve-cluster upgraded while diverted: its binary goes aside.
    let p = root.add(&stand_in_next);
    root.ok(&format!("dpkg -i {p} >/dev/null"));
    assert_eq!(fs::read(root.path("/usr/bin/pmxcfs")).unwrap(), ours_binary);
    assert_eq!(root.ok("/usr/bin/pmxcfs.distrib"), "C pmxcfs 9.1.7-1\n");
    // Removing ours brings C back; nothing of the cluster is touched.
    root.ok("dpkg -r pmxcfs-rs >/dev/null");
    assert_eq!(root.ok("/usr/bin/pmxcfs"), "C pmxcfs 9.1.7-1\n");
    assert!(!root.path("/usr/bin/pmxcfs.distrib").exists());
    assert_eq!(root.ok("dpkg-divert --list /usr/bin/pmxcfs"), "");
    root.ok("dpkg -i /tmp/pmxcfs-rs_*.deb >/dev/null && dpkg --purge pmxcfs-rs >/dev/null");
    assert_eq!(root.ok("/usr/bin/pmxcfs"), "C pmxcfs 9.1.7-1\n");
    assert_cluster_data_kept(&root);

    // A plain Debian machine with corosync but no pve-cluster.
    let root = Root::new(&dir.join("plain"));
    seed_cluster_data(&root);
    assert!(!root.path("/usr/bin/pmxcfs").exists());
    let p = root.add(&ours);
    root.ok(&format!("dpkg -i {p} >/dev/null"));
    assert_eq!(fs::read(root.path("/usr/bin/pmxcfs")).unwrap(), ours_binary);
    assert!(!root.path("/usr/bin/pmxcfs.distrib").exists());
    assert_eq!(
        root.ok("dpkg-divert --list /usr/bin/pmxcfs").trim(),
        DIVERSION
    );
    // Its own unit, which the operator enables; nothing started.
    assert!(root.path("/lib/systemd/system/pmxcfs-rs.service").exists());
    assert!(!root
        .path("/etc/systemd/system/multi-user.target.wants/pmxcfs-rs.service")
        .exists());
    root.ok("dpkg --purge pmxcfs-rs >/dev/null");
    assert!(!root.path("/usr/bin/pmxcfs").exists());
    assert_eq!(root.ok("dpkg-divert --list /usr/bin/pmxcfs"), "");
    assert_cluster_data_kept(&root);

    // The analysis tool needs neither corosync nor FUSE.
    let tools = deb("pmxcfs-rs-tools");
    let p = root.add(&tools);
    root.ok(&format!("dpkg -i {p} >/dev/null"));
    let libs = root.ok("ldd /usr/bin/pmxcfs-replay");
    for lib in ["libqb", "libcpg", "libfuse", "libquorum", "librrd"] {
        assert!(!libs.contains(lib), "pmxcfs-replay links {lib}: {libs}");
    }
    let dir_captures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/s1-formation-and-writes");
    let mut out = Command::new(root.path("/usr/bin/pmxcfs-replay"));
    let run = out.arg("check").arg(&dir_captures).output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
    let control = ok(&format!("dpkg-deb -f {} Depends", tools.display()));
    for dep in ["corosync", "libcpg", "libqb", "fuse"] {
        assert!(!control.contains(dep), "{control}");
    }
    // The Wireshark dissector, where Wireshark looks for global Lua plugins.
    let arch = ok("dpkg-architecture -qDEB_HOST_MULTIARCH");
    let plugin = format!("/usr/lib/{}/wireshark/plugins/pmxcfs.lua", arch.trim());
    assert_eq!(
        fs::read(root.path(&plugin)).unwrap(),
        fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/wireshark/pmxcfs.lua"))
            .unwrap()
    );
}

/// What systemd relies on, with the daemon from the package: without `-f`
/// the parent returns 0 once /etc/pve is served, the pid file holding the
/// daemon's pid; a start that fails returns non-zero with the reason;
/// SIGTERM to the pid in the pid file unmounts and exits within
/// pve-cluster's TimeoutStopSec (10 s).
#[test]
fn the_packaged_daemon_keeps_the_service_contract() {
    if !common::in_namespace("the_packaged_daemon_keeps_the_service_contract") {
        return;
    }
    let dir = common::scratch_dir("contract");
    let files = unpacked(&deb("pmxcfs-rs"), &dir);
    let binary = files.join("usr/bin/pmxcfs");
    let (mount, statedir, rundir) = common::Daemon::paths(&dir);
    let pidfile = dir.join("pve-cluster.pid");
    let start = |extra: &[&str]| {
        let t = Instant::now();
        let out = Command::new(&binary)
            .args(["-l", "--mountpoint"])
            .arg(&mount)
            .arg("--statedir")
            .arg(&statedir)
            .arg("--rundir")
            .arg(&rundir)
            .arg("--pidfile")
            .arg(&pidfile)
            .args(extra)
            .output()
            .unwrap();
        (out, t.elapsed())
    };
    let (out, took) = start(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        fs::metadata(mount.join(".version")).is_ok(),
        "served when the parent returns"
    );
    let pid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
        binary,
        "the pid file names the daemon"
    );
    fs::write(mount.join("written.cfg"), "x\n").unwrap();

    // A second instance: the lock is held; it gives up after C's 11 tries.
    let (out, took) = start(&[]);
    assert!(!out.status.success());
    assert!(took >= Duration::from_secs(9), "{took:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unable to acquire pmxcfs lock"), "{err}");
    assert_eq!(
        fs::read_to_string(&pidfile).unwrap().trim(),
        pid.to_string(),
        "the running daemon's pid file stays"
    );

    // SIGTERM: unmount, exit, pid file gone, well within 10 s.
    let t = Instant::now();
    unsafe { libc::kill(pid, libc::SIGTERM) };
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "still running after 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pidfile.exists());
    assert!(!fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .contains(mount.to_str().unwrap()));

    // A database the daemon refuses: non-zero, with the reason.
    let saved = fs::read(statedir.join("config.db")).unwrap();
    fs::write(statedir.join("config.db"), [0x42; 4096]).unwrap();
    let (out, _) = start(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not an SQLite database"), "{err}");
    assert!(!pidfile.exists());
    fs::write(statedir.join("config.db"), saved).unwrap();

    // A node name that resolves to loopback only.
    ok("echo '127.0.0.1 localhost refnode1' > /tmp/hosts.loopback && mount --bind /tmp/hosts.loopback /etc/hosts");
    let (out, _) = start(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Unable to resolve node name 'refnode1' to a non-loopback IP address"),
        "{err}"
    );
    ok("umount /etc/hosts");
    let (out, _) = start(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read_to_string(mount.join("written.cfg")).unwrap(),
        "x\n"
    );
    let pid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let t = Instant::now();
    while unsafe { libc::kill(pid, 0) } == 0 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a file of the stand-in holds (its man page compressed).
fn stand_in_text(root: &Root, path: &str) -> String {
    if path.ends_with(".gz") {
        root.ok(&format!("gzip -dc {path}"))
    } else {
        root.ok(&format!("cat {path}"))
    }
}

/// Install, upgrade of pve-cluster under the diversions, remove and purge,
/// next to pve-cluster's whole file list; the relations that keep the
/// package off pve-cluster versions it was not verified with.
fn install_cycle_beside_pve_cluster(root: &Root, dir: &Path) {
    let ours = deb("pmxcfs-rs");
    let ours_files = unpacked(&ours, dir);
    let ours_binary = fs::read(ours_files.join("usr/bin/pmxcfs")).unwrap();
    let ours_man = fs::read(ours_files.join("usr/share/man/man8/pmxcfs.8.gz")).unwrap();
    let stand_in = stand_in_pve_cluster(dir, "9.1.6-1", None);
    let stand_in_next = stand_in_pve_cluster(dir, "9.1.7-1", None);
    seed_cluster_data(root);
    let p = root.add(&stand_in);
    root.ok(&format!("dpkg -i {p} >/dev/null"));
    let p = root.add(&ours);
    let note = root.ok(&format!("dpkg -i {p}"));
    assert!(
        note.contains("Nothing was restarted") && note.contains("systemctl restart pve-cluster"),
        "the install says how to switch: {note}"
    );
    assert_eq!(fs::read(root.path("/usr/bin/pmxcfs")).unwrap(), ours_binary);
    assert_eq!(root.ok("/usr/bin/pmxcfs.distrib"), "C pmxcfs 9.1.6-1\n");
    assert_eq!(
        fs::read(root.path("/usr/share/man/man8/pmxcfs.8.gz")).unwrap(),
        ours_man
    );
    assert_eq!(
        stand_in_text(root, "/usr/share/man/man8/pmxcfs.distrib.8.gz"),
        "pve-cluster 9.1.6-1: usr/share/man/man8/pmxcfs.8.gz\n"
    );
    let diversions = root.ok("dpkg-divert --list 'pmxcfs*' | sort");
    assert_eq!(
        diversions.lines().collect::<Vec<_>>(),
        [DIVERSION, MAN_DIVERSION],
        "{diversions}"
    );
    // Every other file of pve-cluster is its own, untouched.
    for file in PVE_CLUSTER_FILES {
        if file.ends_with("pmxcfs.8.gz") {
            continue;
        }
        assert_eq!(
            stand_in_text(root, &format!("/{file}")),
            format!("pve-cluster 9.1.6-1: {file}\n")
        );
    }
    // cpg-probe is no command of the admin's PATH.
    assert!(!root.path("/usr/bin/cpg-probe").exists());
    assert!(root.path("/usr/lib/pmxcfs-rs/cpg-probe").exists());
    // The runbook comes with the package.
    let runbook = root.ok("gzip -dc /usr/share/doc/pmxcfs-rs/README.Debian.gz");
    assert!(
        runbook.contains("# step: switch") && runbook.contains("Rollback"),
        "{runbook}"
    );
    // pve-cluster upgraded while diverted: its files go aside.
    let p = root.add(&stand_in_next);
    root.ok(&format!("dpkg -i {p} >/dev/null"));
    assert_eq!(fs::read(root.path("/usr/bin/pmxcfs")).unwrap(), ours_binary);
    assert_eq!(root.ok("/usr/bin/pmxcfs.distrib"), "C pmxcfs 9.1.7-1\n");
    assert_eq!(
        stand_in_text(root, "/usr/share/man/man8/pmxcfs.distrib.8.gz"),
        "pve-cluster 9.1.7-1: usr/share/man/man8/pmxcfs.8.gz\n"
    );
    // Removing ours gives everything back; nothing of the cluster is touched.
    root.ok("dpkg -r pmxcfs-rs >/dev/null");
    assert_eq!(root.ok("/usr/bin/pmxcfs"), "C pmxcfs 9.1.7-1\n");
    assert_eq!(
        stand_in_text(root, "/usr/share/man/man8/pmxcfs.8.gz"),
        "pve-cluster 9.1.7-1: usr/share/man/man8/pmxcfs.8.gz\n"
    );
    assert!(!root.path("/usr/bin/pmxcfs.distrib").exists());
    assert!(!root
        .path("/usr/share/man/man8/pmxcfs.distrib.8.gz")
        .exists());
    assert_eq!(root.ok("dpkg-divert --list 'pmxcfs*'"), "");
    root.ok(&format!(
        "dpkg -i {} >/dev/null && dpkg --purge pmxcfs-rs >/dev/null",
        root.add(&ours)
    ));
    assert_eq!(root.ok("/usr/bin/pmxcfs"), "C pmxcfs 9.1.7-1\n");
    assert_eq!(root.ok("dpkg-divert --list 'pmxcfs*'"), "");
    assert_cluster_data_kept(root);
    // pve-cluster versions the package was not verified with.
    for version in ["8.4.1", "9.2.0"] {
        let other = stand_in_pve_cluster(dir, version, None);
        root.ok(&format!("dpkg -i {} >/dev/null", root.add(&other)));
        let out = root.run(&format!("dpkg -i {} 2>&1", root.add(&ours)));
        assert!(
            !out.status.success(),
            "installed beside pve-cluster {version}"
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("breaks"), "{text}");
        root.ok("dpkg --purge pmxcfs-rs >/dev/null 2>&1 || true");
        assert_eq!(
            root.ok(&format!("/usr/bin/pmxcfs")),
            format!("C pmxcfs {version}\n")
        );
    }
}

/// A daemon this test started, killed by its PID if the test fails first.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The daemon of the installed package, in the root, in local mode: it
/// mounts /etc/pve, answers a PVE::IPCC-style call on `pve2`, and stops
/// on SIGTERM.
fn daemon_serves_in_the_root(root: &Root, dir: &Path) {
    let p = root.add(&deb("pmxcfs-rs"));
    root.ok(&format!("dpkg -i {p} >/dev/null"));
    // The node name resolves as on a PVE node (the namespace's host name).
    fs::write(
        root.path("/etc/hosts"),
        format!("127.0.0.1 localhost\n192.0.2.11 {}\n", common::HOSTNAME),
    )
    .unwrap();
    let log = fs::File::create(dir.join("daemon.log")).unwrap();
    // (Its output goes to the log only: an inherited pipe would keep the
    // test's parent waiting should the test fail with the daemon up.)
    let mut daemon = Stopped(
        Command::new("chroot")
            .arg(&root.merged)
            .args(["/usr/bin/pmxcfs", "-l", "-f"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let version = root.path("/etc/pve/.version");
    let t = Instant::now();
    while fs::metadata(&version).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the packaged daemon did not mount /etc/pve: {}",
            fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    fs::write(root.path("/etc/pve/storage.cfg"), "dir: local\n").unwrap();
    assert_eq!(
        fs::read_to_string(root.path("/etc/pve/storage.cfg")).unwrap(),
        "dir: local\n"
    );
    // What PVE::IPCC does: connect to pve2, send a request, read the answer.
    let c = {
        let t = Instant::now();
        loop {
            if let Some(c) = common::qb::QbClient::connect("pve2") {
                break c;
            }
            assert!(t.elapsed() < Duration::from_secs(5), "no pve2 service");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut path = b"storage.cfg".to_vec();
    path.push(0);
    let request = pmxcfs_wire::ipc::Request::new(pmxcfs_wire::ipc::RequestBody::GetConfig { path });
    let answer = pmxcfs_wire::ipc::Response::decode(&c.call(&request.to_bytes()).unwrap()).unwrap();
    assert_eq!(answer.header.error, 0);
    assert_eq!(answer.payload, b"dir: local\n");
    drop(c);
    unsafe { libc::kill(daemon.0.id() as i32, libc::SIGTERM) };
    let t = Instant::now();
    while daemon.0.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .contains(root.path("/etc/pve").to_str().unwrap()));
}

/// Debian 12 (Proxmox VE 8's base) and Debian 13 (PVE 9's), as made by
/// `scripts/debian-roots.sh` from the Debian archive: the package built on
/// this machine installs with its dependencies resolved there (librrd8 on
/// one, librrd8t64 on the other), beside pve-cluster's whole file list,
/// and its daemon serves.
#[test]
fn on_debian_12_and_13_roots() {
    if !common::in_namespace("on_debian_12_and_13_roots") {
        return;
    }
    for suite in ["bookworm", "trixie"] {
        let base = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/debian-roots")
            .join(suite);
        assert!(
            base.join("var/lib/dpkg/status").exists(),
            "no {suite} root in {}: run scripts/debian-roots.sh (scripts/test.sh does)",
            base.display()
        );
        let dir = common::scratch_dir(&format!("package-{suite}"));
        let root = Root::over(&base, &dir.join("root"));
        install_cycle_beside_pve_cluster(&root, &dir);
        let root = Root::over(&base, &dir.join("daemon"));
        daemon_serves_in_the_root(&root, &dir);
    }
}
