//! The daemon around the filesystem: databases written by the C daemon,
//! databases it must refuse (untouched), crash safety, shutdown, the
//! restart flag, the single-instance lock, daemonizing and the node-name
//! rule. Each test runs in its own namespace (see `common`).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{sqlite, Daemon};

/// path → content of every regular file, from an SQLite dump (an
/// independent reader of the database).
fn files_in_db(db: &Path) -> BTreeMap<String, Vec<u8>> {
    let rows = sqlite(
        db,
        "SELECT inode, parent, type, name, hex(data) FROM tree WHERE inode != 0",
    );
    let mut nodes: BTreeMap<u64, (u64, u8, String, Vec<u8>)> = BTreeMap::new();
    for line in rows.lines() {
        let f: Vec<&str> = line.splitn(5, '|').collect();
        let data = (0..f[4].len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&f[4][i..i + 2], 16).unwrap())
            .collect();
        nodes.insert(
            f[0].parse().unwrap(),
            (
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].to_string(),
                data,
            ),
        );
    }
    let path_of = |mut inode: u64| {
        let mut parts = Vec::new();
        while inode != 0 {
            let (parent, _, name, _) = &nodes[&inode];
            parts.push(name.clone());
            inode = *parent;
        }
        parts.reverse();
        parts.join("/")
    };
    nodes
        .iter()
        .filter(|(_, n)| n.1 == 8)
        .map(|(i, n)| (path_of(*i), n.3.clone()))
        .collect()
}

/// path → content of every regular file below the mount.
fn files_in_mount(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let ft = fs::symlink_metadata(&path).unwrap().file_type();
            if dir == root
                && rel.starts_with('.')
                && ["version", "members", "vmlist", "rrd", "clusterlog", "debug"]
                    .contains(&&rel[1..])
            {
                continue;
            }
            if ft.is_symlink() {
                continue;
            } else if ft.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn install_fixture(dir: &Path, name: &str) {
    let lib = dir.join("lib");
    fs::create_dir_all(&lib).unwrap();
    fs::copy(common::fixture(name), lib.join("config.db")).unwrap();
}

#[test]
fn serves_the_c_functional_database_unchanged() {
    if !common::in_namespace("serves_the_c_functional_database_unchanged") {
        return;
    }
    let dir = common::scratch_dir("functional");
    install_fixture(&dir, "functional.db");
    let db = dir.join("lib/config.db");
    let expected = files_in_db(&db);
    assert!(expected.contains_key("nodes/refnode1/qemu-server/100.conf"));
    let mut d = Daemon::start(&dir);
    assert_eq!(files_in_mount(&d.mount), expected);
    // The renamed directory stored with a zero-length blob is a directory.
    assert!(fs::metadata(d.path("testdir/empty2")).unwrap().is_dir());
    let vmlist = fs::read_to_string(d.path(".vmlist")).unwrap();
    for id in ["100", "101", "102"] {
        assert!(vmlist.contains(&format!("\"{id}\": {{")), "{vmlist}");
    }
    // A change is written the way C writes it.
    fs::write(d.path("storage.cfg"), b"dir: local\n\tpath /srv\n").unwrap();
    fs::create_dir(d.path("newdir")).unwrap();
    d.stop_cleanly();
    assert_eq!(
        files_in_db(&db)["storage.cfg"],
        b"dir: local\n\tpath /srv\n"
    );
    assert_eq!(sqlite(&db, "PRAGMA journal_mode"), "wal\n");
    let version_row = sqlite(
        &db,
        "SELECT version, writer, type, name, quote(data) FROM tree WHERE inode = 0",
    );
    assert_eq!(version_row, "105|0|8|__version__|NULL\n");
    assert_eq!(
        sqlite(
            &db,
            "SELECT type, quote(data) FROM tree WHERE name = 'newdir'"
        ),
        "4|NULL\n"
    );
    assert_eq!(
        sqlite(&db, "SELECT count(*) FROM tree WHERE typeof(inode)||typeof(parent)||typeof(version)||typeof(writer)||typeof(mtime)||typeof(type) != 'integerintegerintegerintegerintegerinteger' OR typeof(name) != 'text'"),
        "0\n"
    );
    assert_eq!(sqlite(&db, "PRAGMA integrity_check"), "ok\n");

    // It opens again with the same tree.
    let mut d = Daemon::start(&dir);
    assert_eq!(files_in_mount(&d.mount), files_in_db(&db));
    d.stop_cleanly();
}

#[test]
fn serves_the_5000_file_database() {
    if !common::in_namespace("serves_the_5000_file_database") {
        return;
    }
    let dir = common::scratch_dir("f5000");
    install_fixture(&dir, "files-5000.db");
    let expected = files_in_db(&dir.join("lib/config.db"));
    // 5000 files (the fixture's README counts the type-8 `__version__` row too).
    assert_eq!(expected.len(), 5000);
    let mut d = Daemon::start(&dir);
    assert_eq!(files_in_mount(&d.mount), expected);
    d.stop_cleanly();
}

/// The daemon must refuse a bad database with a message naming the problem
/// and leave the file exactly as it was.
/// The daemon refuses the database with `message`, and leaves it alone;
/// `pmxcfs --check-db` says so too (`check_message`), exit 1.
fn refuses(dir: &Path, setup_sql: Option<&str>, raw: Option<&[u8]>, message: &str) {
    refuses_checked(dir, setup_sql, raw, message, message)
}

fn refuses_checked(
    dir: &Path,
    setup_sql: Option<&str>,
    raw: Option<&[u8]>,
    message: &str,
    check_message: &str,
) {
    let lib = dir.join("lib");
    fs::create_dir_all(&lib).unwrap();
    let db = lib.join("config.db");
    if let Some(bytes) = raw {
        fs::write(&db, bytes).unwrap();
    }
    if let Some(sql) = setup_sql {
        sqlite(&db, sql);
    }
    let before = fs::read(&db).unwrap();
    let out = Daemon::command(dir).output().unwrap();
    assert!(!out.status.success(), "started on a bad database");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(message),
        "expected '{message}' in: {stderr}"
    );
    assert_eq!(
        fs::read(&db).unwrap(),
        before,
        "the bad database was modified"
    );
    assert!(!dir.join("pve").join(".version").exists());
    let check = Command::new(env!("CARGO_BIN_EXE_pmxcfs"))
        .arg("--check-db")
        .arg(&db)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(check_message),
        "expected '{check_message}' in: {stdout}"
    );
    assert!(stdout.contains("result: the daemon would NOT start on this database"));
    assert_eq!(fs::read(&db).unwrap(), before, "--check-db modified it");
}

const SCHEMA: &str = "CREATE TABLE tree (  inode INTEGER PRIMARY KEY NOT NULL,  parent INTEGER NOT NULL CHECK(typeof(parent)=='integer'),  version INTEGER NOT NULL CHECK(typeof(version)=='integer'),  writer INTEGER NOT NULL CHECK(typeof(writer)=='integer'),  mtime INTEGER NOT NULL CHECK(typeof(mtime)=='integer'),  type INTEGER NOT NULL CHECK(typeof(type)=='integer'),  name TEXT NOT NULL,  data BLOB);";

#[test]
fn refuses_bad_databases_without_touching_them() {
    if !common::in_namespace("refuses_bad_databases_without_touching_them") {
        return;
    }
    let case = |tag: &str| common::scratch_dir(tag);
    refuses(
        &case("notsqlite"),
        None,
        Some(&[0x42; 4096]),
        "not an SQLite database",
    );
    refuses(
        &case("schema"),
        Some("CREATE TABLE tree (inode INTEGER, name TEXT);"),
        None,
        "table `tree` has columns",
    );
    refuses(
        &case("notable"),
        Some("CREATE TABLE other (x);"),
        None,
        "no table `tree`",
    );
    let base = format!("{SCHEMA} INSERT INTO tree VALUES (0,0,9,0,0,8,'__version__',NULL); INSERT INTO tree VALUES (2,0,2,0,0,4,'nodes',NULL);");
    refuses_checked(
        &case("dupname"),
        Some(&format!(
            "{base} INSERT INTO tree VALUES (3,0,3,0,0,8,'nodes',NULL);"
        )),
        None,
        "found entry with duplicate name 'nodes' in directory inode 0 (inode 3)",
        "found entry with duplicate name 'nodes' in directory / (inodes 2, 3)",
    );
    refuses(
        &case("dupvmid"),
        Some(&format!(
            "{base} INSERT INTO tree VALUES (3,2,3,0,0,4,'a',NULL); INSERT INTO tree VALUES (4,3,4,0,0,4,'qemu-server',NULL);
             INSERT INTO tree VALUES (5,4,5,0,0,8,'100.conf',X'00'); INSERT INTO tree VALUES (6,2,6,0,0,4,'b',NULL);
             INSERT INTO tree VALUES (7,6,7,0,0,4,'lxc',NULL); INSERT INTO tree VALUES (8,7,8,0,0,8,'100.conf',X'00');"
        )),
        None,
        "VMID 100 is configured more than once",
    );
    refuses(
        &case("noversion"),
        Some(&format!(
            "{SCHEMA} INSERT INTO tree VALUES (2,0,2,0,0,4,'nodes',NULL);"
        )),
        None,
        "`__version__` row (inode 0) is missing",
    );
    refuses_checked(
        &case("orphan"),
        Some(&format!(
            "{base} INSERT INTO tree VALUES (3,99,3,0,0,8,'lost',NULL);"
        )),
        None,
        "parent directory inode 99 does not exist",
        "entry 'lost' (inode 3) is an orphan: its parent directory inode 99 does not exist",
    );
    refuses_checked(
        &case("badtype"),
        Some(&format!(
            "{base} INSERT INTO tree VALUES (3,0,3,0,0,5,'odd',NULL);"
        )),
        None,
        "row inode 3: unknown type 5",
        "entry /odd (inode 3) has the unknown type 5 (expected 4 or 8)",
    );
    refuses_checked(
        &case("dupvmid-check"),
        Some(&format!(
            "{base} INSERT INTO tree VALUES (3,2,3,0,0,4,'a',NULL); INSERT INTO tree VALUES (4,3,4,0,0,4,'qemu-server',NULL);
             INSERT INTO tree VALUES (5,4,5,0,0,8,'100.conf',X'00'); INSERT INTO tree VALUES (6,2,6,0,0,4,'b',NULL);
             INSERT INTO tree VALUES (7,6,7,0,0,4,'lxc',NULL); INSERT INTO tree VALUES (8,7,8,0,0,8,'100.conf',X'00');"
        )),
        None,
        "VMID 100 is configured more than once",
        "VMID 100 is configured more than once: /nodes/a/qemu-server/100.conf, /nodes/b/lxc/100.conf",
    );
}

/// `pmxcfs --check-db` on databases the daemon starts on: the C daemon's
/// two, and one whose version is below an entry's (repaired at start).
#[test]
fn check_db_accepts_what_the_daemon_starts_on() {
    let check = |db: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_pmxcfs"))
            .arg("--check-db")
            .arg(db)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    for name in ["functional.db", "files-5000.db"] {
        let (code, out) = check(&common::fixture(name));
        assert_eq!(code, Some(0), "{out}");
        assert!(
            out.contains("result: the daemon would start on this database"),
            "{out}"
        );
    }
    let dir = common::scratch_dir("check-db-repair");
    let db = dir.join("config.db");
    sqlite(
        &db,
        &format!("{SCHEMA} INSERT INTO tree VALUES (0,0,2,0,0,8,'__version__',NULL); INSERT INTO tree VALUES (7,0,7,0,0,8,'x.cfg',X'00');"),
    );
    let (code, out) = check(&db);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("repaired at start: the database version 2 is lower than an entry's (7)"),
        "{out}"
    );
    let (code, out) = check(&dir.join("missing.db"));
    assert_eq!(code, Some(0), "{out}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigkill_during_writes_loses_no_acknowledged_write() {
    if !common::in_namespace("sigkill_during_writes_loses_no_acknowledged_write") {
        return;
    }
    let dir = common::scratch_dir("kill9");
    let db = dir.join("lib/config.db");
    // Killed at a few points of a storm of small writes; every write that
    // returned success is in config.db as the daemon left it (read by an
    // independent reader before anything restarts), and served after.
    let mut acknowledged: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (round, after_ms) in [170u64, 320, 610].into_iter().enumerate() {
        let mut d = Daemon::start(&dir);
        let mount = d.mount.clone();
        let writer = std::thread::spawn(move || {
            let mut done = Vec::new();
            for i in 0..100_000 {
                let name = format!("r{round}f{i}");
                let content = format!("content {round} {i}\n");
                if fs::write(mount.join(&name), &content).is_err() {
                    break;
                }
                done.push((name, content.into_bytes()));
            }
            done
        });
        std::thread::sleep(Duration::from_millis(after_ms));
        d.kill9();
        let done = writer.join().unwrap();
        assert!(
            done.len() > 10,
            "too few writes before the kill: {}",
            done.len()
        );
        assert_eq!(sqlite(&db, "PRAGMA integrity_check"), "ok\n");
        acknowledged.extend(done);
        let on_disk = files_in_db(&db);
        for (name, content) in &acknowledged {
            assert_eq!(on_disk.get(name), Some(content), "{name} in config.db");
        }
    }
    let mut d = Daemon::start(&dir);
    let served = files_in_mount(&d.mount);
    for (name, content) in &acknowledged {
        assert_eq!(served.get(name), Some(content), "{name} served");
    }
    d.stop_cleanly();
}

/// Fill the file system of `dir` (a small tmpfs) with a filler file, but
/// for a few pages, so that some writes still fit.
fn fill(dir: &Path) -> std::path::PathBuf {
    let filler = dir.join("filler");
    let mut f = fs::File::create(&filler).unwrap();
    use std::io::Write;
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(48 * 1024)).unwrap();
    filler
}

#[test]
fn a_full_disk_refuses_changes_until_it_has_space_and_loses_nothing_acknowledged() {
    if !common::in_namespace(
        "a_full_disk_refuses_changes_until_it_has_space_and_loses_nothing_acknowledged",
    ) {
        return;
    }
    let dir = common::scratch_dir("diskfull");
    let lib = dir.join("lib");
    fs::create_dir_all(&lib).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&lib)
        .status()
        .unwrap();
    assert!(mounted.success());
    let mut d = Daemon::start(&dir);
    fs::write(d.path("before.cfg"), "before\n").unwrap();
    let filler = fill(&lib);
    // Write until the database refuses: each failure is an error for the
    // caller, never a success that is not on disk.
    let mut acknowledged = BTreeMap::new();
    let mut failed = 0;
    for i in 0..400 {
        let name = format!("f{i}");
        let content = vec![b'a' + (i % 26) as u8; 3000];
        match fs::write(d.path(&name), &content) {
            Ok(()) => {
                acknowledged.insert(name, content);
            }
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "{name}: {e}");
                failed += 1;
                if failed >= 3 {
                    break;
                }
            }
        }
    }
    assert!(failed >= 3, "the full disk never refused a write");
    assert!(
        !acknowledged.is_empty(),
        "no write fitted before the disk was full"
    );
    // From the first failure on, every change is EIO (C: until a restart;
    // here: until the database takes writes again); reads still work.
    assert_eq!(
        fs::write(d.path("later.cfg"), "x")
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EIO)
    );
    assert_eq!(
        fs::read_to_string(d.path("before.cfg")).unwrap(),
        "before\n"
    );
    let log = d.log();
    assert!(
        log.contains("[database] crit: commit transaction failed: database or disk is full#010"),
        "{log}"
    );
    // Space again: the daemon finds out by itself (it probes the
    // database), reloads it, and takes changes without a restart; what
    // failed is not in memory either.
    fs::remove_file(&filler).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while fs::write(d.path("recovered.cfg"), "recovered\n").is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "changes are still refused with space again\n{}",
            d.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        d.log()
            .contains("config.db takes writes again - reloaded it"),
        "{}",
        d.log()
    );
    let listed: Vec<String> = fs::read_dir(&d.mount)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    d.kill9();
    let on_disk = files_in_db(&lib.join("config.db"));
    assert_eq!(
        on_disk.get("before.cfg").map(Vec::as_slice),
        Some(&b"before\n"[..])
    );
    assert_eq!(
        on_disk.get("recovered.cfg").map(Vec::as_slice),
        Some(&b"recovered\n"[..])
    );
    for (name, content) in &acknowledged {
        assert_eq!(on_disk.get(name), Some(content), "{name} in config.db");
    }
    for name in listed
        .iter()
        .filter(|n| n.ends_with(".cfg") || n.starts_with('f'))
    {
        assert!(
            on_disk.contains_key(name),
            "{name} was served after the reload but is not in config.db"
        );
    }
    // With space again, a restarted daemon takes changes.
    let mut d = Daemon::start(&dir);
    fs::write(d.path("after.cfg"), "after\n").unwrap();
    for (name, content) in &acknowledged {
        assert_eq!(&fs::read(d.path(name)).unwrap(), content, "{name}");
    }
    d.stop_cleanly();
}

#[test]
fn shutdown_restart_flag_lock_and_daemon_mode() {
    if !common::in_namespace("shutdown_restart_flag_lock_and_daemon_mode") {
        return;
    }
    let dir = common::scratch_dir("lifecycle");
    let mut d = Daemon::start(&dir);
    let flag = d.rundir.join("cfs-restart-flag");
    assert!(!flag.exists());
    // The run directory: 0750 root:www-data.
    let md = fs::metadata(&d.rundir).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(md.mode() & 0o7777, 0o750);
    // A second instance waits for the lock, then gives up.
    let started = Instant::now();
    let second = Daemon::command(&dir).output().unwrap();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("unable to acquire pmxcfs lock"));
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "11 attempts 1 s apart"
    );
    // SIGTERM: unmount, restart flag, exit 0.
    d.stop_cleanly();
    assert!(flag.exists());
    assert_eq!(fs::metadata(&flag).unwrap().mode() & 0o7777, 0o440);
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(d.mount.to_str().unwrap()), "still mounted");
    assert!(d.log().contains("teardown filesystem"));

    // Daemon mode: the parent exits once the mount is ready and leaves the
    // child's pid in the pid file; the flag is gone while it runs.
    let pidfile = dir.join("pmxcfs.pid");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pmxcfs"));
    cmd.args(["-l", "--mountpoint"])
        .arg(&d.mount)
        .arg("--statedir")
        .arg(&d.statedir)
        .arg("--rundir")
        .arg(&d.rundir)
        .arg("--pidfile")
        .arg(&pidfile);
    assert!(cmd.status().unwrap().success());
    assert!(
        fs::metadata(d.mount.join(".version")).is_ok(),
        "mounted when the parent returns"
    );
    assert!(!flag.exists());
    let pid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while pidfile.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pidfile.exists(), "pid file removed at exit");
    assert!(flag.exists());
}

#[test]
fn refuses_a_node_name_that_resolves_only_to_loopback() {
    if !common::in_namespace("refuses_a_node_name_that_resolves_only_to_loopback") {
        return;
    }
    let dir = common::scratch_dir("loopback");
    let hosts = dir.join("hosts");
    fs::write(&hosts, format!("127.0.1.1 {}\n", common::HOSTNAME)).unwrap();
    assert!(Command::new("mount")
        .arg("--bind")
        .arg(&hosts)
        .arg("/etc/hosts")
        .status()
        .unwrap()
        .success());
    let out = Daemon::command(&dir).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("to a non-loopback IP address"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing was created.
    assert!(!dir.join("lib/config.db").exists());
}

#[test]
fn command_line_is_that_of_c() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pmxcfs"))
            .args(args)
            .output()
            .unwrap()
    };
    // An extra argument or an unknown option: said, with the usage, exit 1.
    for bad in [&["extra"][..], &["-x"], &["--bogus"]] {
        let out = run(bad);
        assert_eq!(out.status.code(), Some(1), "{bad:?}");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("Usage: pmxcfs"), "{said}");
    }
    let help = run(&["--help"]);
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in ["-d, --debug", "-f, --foreground", "-l, --local"] {
        assert!(help.contains(flag), "{help}");
    }
    // Options for test setups are not an administrator's.
    assert!(
        !help.contains("--test-lock-timeout") && !help.contains("--statedir"),
        "{help}"
    );
    let version = run(&["--version"]);
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("pmxcfs (pmxcfs-rs) "));
}

/// As a service (no `-f`) the daemon logs to syslog through /dev/log,
/// ident `pmxcfs`, facility daemon, with its pid, from the first line on
/// (nothing lost around the fork). Here /dev is a private tmpfs with the
/// devices the daemon needs, and /dev/log a datagram socket of the test.
#[test]
fn as_a_service_it_logs_to_syslog_from_the_first_line() {
    if !common::in_namespace("as_a_service_it_logs_to_syslog_from_the_first_line") {
        return;
    }
    use std::os::unix::net::UnixDatagram;
    let dir = common::scratch_dir("syslog");
    let olddev = dir.join("olddev");
    fs::create_dir_all(&olddev).unwrap();
    let sh = |script: &str| {
        let ok = Command::new("sh")
            .args(["-c", script])
            .status()
            .unwrap()
            .success();
        assert!(ok, "{script}");
    };
    sh(&format!(
        "mount --bind /dev {d} && mount -t tmpfs tmpfs /dev && mkdir /dev/shm && mount --bind {d}/shm /dev/shm && \
         for n in null zero full random urandom fuse; do touch /dev/$n && mount --bind {d}/$n /dev/$n; done",
        d = olddev.display()
    ));
    let log = UnixDatagram::bind("/dev/log").unwrap();
    log.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (mount, statedir, rundir) = Daemon::paths(&dir);
    let pidfile = dir.join("pmxcfs.pid");
    let status = Command::new(env!("CARGO_BIN_EXE_pmxcfs"))
        .arg("-l")
        .arg("--mountpoint")
        .arg(&mount)
        .arg("--statedir")
        .arg(&statedir)
        .arg("--rundir")
        .arg(&rundir)
        .arg("--pidfile")
        .arg(&pidfile)
        .status()
        .unwrap();
    assert!(status.success());
    let pid: u32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut receive = |until: &str| -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let n = log.recv(&mut buf).expect("a syslog datagram");
            let line = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = line.contains(until);
            lines.push(line);
            if done {
                return lines;
            }
        }
    };
    let start = receive("[libqb] info: server name: pve2");
    let tag = format!("pmxcfs[{pid}]: ");
    // <29> is daemon.notice, <30> daemon.info.
    // The first line names the daemon and its version (ours only), then C's.
    assert!(
        start[0].starts_with("<29>")
            && start[0].ends_with(&format!(
                "{tag}[main] notice: starting pmxcfs-rs {}",
                env!("CARGO_PKG_VERSION")
            )),
        "{start:?}"
    );
    assert!(
        start[1].starts_with("<29>")
            && start[1].ends_with(&format!(
                "{tag}[main] notice: resolved node name 'refnode1' to '192.0.2.11' for default node IP address"
            )),
        "{start:?}"
    );
    assert!(start.last().unwrap().starts_with("<30>"), "{start:?}");
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let stop = receive("exit proxmox configuration filesystem (0)");
    let texts: Vec<&str> = stop
        .iter()
        .filter_map(|l| l.split_once(&tag).map(|(_, t)| t))
        .collect();
    assert_eq!(
        texts,
        [
            "[main] notice: teardown filesystem",
            "[libqb] info: withdrawing server sockets",
            "[main] notice: exit proxmox configuration filesystem (0)"
        ],
        "{stop:?}"
    );
}

/// `1` written to /etc/pve/.debug turns debug lines on (with C's notice),
/// `0` off again; `-d` starts with them.
#[test]
fn the_debug_switch_turns_debug_lines_on_and_off() {
    if !common::in_namespace("the_debug_switch_turns_debug_lines_on_and_off") {
        return;
    }
    let dir = common::scratch_dir("debug");
    let mut d = Daemon::start(&dir);
    fs::create_dir(d.path("quiet")).unwrap();
    assert!(!d.log().contains("debug:"), "{}", d.log());
    fs::write(d.path(".debug"), "1\n").unwrap();
    fs::create_dir(d.path("traced")).unwrap();
    fs::write(d.path("traced/file"), "x").unwrap();
    let _ = fs::read(d.path("traced/file")).unwrap();
    let log = d.log();
    assert!(log.contains("[main] notice: enable debug mode ("), "{log}");
    for line in [
        "[main] debug: fuse mkdir 'traced': Ok(0)",
        "[main] debug: fuse create 'traced/file': Ok(0)",
        "[main] debug: fuse write 'traced/file' 1 bytes at 0: Ok(1)",
        "[main] debug: fuse read 'traced/file'",
    ] {
        assert!(log.contains(line), "{line}\n{log}");
    }
    assert_eq!(fs::read_to_string(d.path(".debug")).unwrap(), "1\n");
    fs::write(d.path(".debug"), "0\n").unwrap();
    let before = d.log().len();
    fs::create_dir(d.path("quiet-again")).unwrap();
    let log = d.log();
    assert!(log.contains("[main] notice: disable debug mode ("), "{log}");
    assert!(!log[before..].contains("debug:"), "{}", &log[before..]);
    d.stop_cleanly();
    // -d: debug from the start.
    let mut cmd = Daemon::command(&dir);
    cmd.arg("-d");
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(dir.join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    let mut d = Daemon {
        child: Some(child),
        dir: dir.clone(),
        mount: d.mount.clone(),
        statedir: d.statedir.clone(),
        rundir: d.rundir.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::metadata(d.path(".version")).is_err() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = fs::metadata(d.path("quiet"));
    assert!(
        d.log().contains("[main] debug: fuse lookup 'quiet'"),
        "{}",
        d.log()
    );
    d.stop_cleanly();
}

#[test]
fn fsync_puts_committed_changes_into_the_database_file_itself() {
    if !common::in_namespace("fsync_puts_committed_changes_into_the_database_file_itself") {
        return;
    }
    let dir = common::scratch_dir("fsync");
    let mut d = Daemon::start(&dir);
    let db = d.statedir.join("config.db");
    // The main file alone (no write-ahead log): what a power loss leaves
    // of changes committed with synchronous=NORMAL and not yet
    // checkpointed.
    let main_file_only = |tag: &str| {
        let copy = dir.join(format!("copy-{tag}"));
        fs::create_dir_all(&copy).unwrap();
        fs::copy(&db, copy.join("config.db")).unwrap();
        files_in_db(&copy.join("config.db"))
    };
    let fsync = |name: &str| {
        fs::OpenOptions::new()
            .write(true)
            .open(d.path(name))
            .unwrap()
            .sync_all()
    };
    // A first fsync brings the new database's table into the main file.
    fs::write(d.path("base.cfg"), "base\n").unwrap();
    fsync("base.cfg").expect("fsync answers");
    assert!(main_file_only("base").contains_key("base.cfg"));
    fs::write(d.path("unsynced.cfg"), "committed\n").unwrap();
    assert!(
        !main_file_only("before").contains_key("unsynced.cfg"),
        "a commit alone reaches only the write-ahead log"
    );
    fsync("unsynced.cfg").expect("fsync answers");
    assert_eq!(
        main_file_only("after")
            .get("unsynced.cfg")
            .map(Vec::as_slice),
        Some(&b"committed\n"[..])
    );
    d.stop_cleanly();
}

/// The value of an unlabelled or labelled sample in a metrics text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_for_node_exporter_are_written_and_removed_at_stop() {
    if !common::in_namespace("metrics_for_node_exporter_are_written_and_removed_at_stop") {
        return;
    }
    let dir = common::scratch_dir("metrics");
    let mut d = Daemon::start(&dir);
    fs::write(d.path("counted.cfg"), "x\n").unwrap();
    let file = dir.join("metrics.prom");
    // Written every 5 s: wait for one taken after the write was answered
    // (one taken while it was under way counts it as waiting).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let text = loop {
        let text = fs::read_to_string(&file).unwrap_or_default();
        if sample(&text, "pmxcfs_fuse_requests_total{op=\"write\"}").is_some_and(|n| n >= 1.0)
            && sample(&text, "pmxcfs_requests_waiting") == Some(0.0)
        {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no metrics counting the write: {text}\n{}",
            d.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(sample(&text, "pmxcfs_quorate"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "pmxcfs_cluster_mode"), Some(0.0));
    assert_eq!(
        sample(&text, "pmxcfs_request_oldest_wait_seconds"),
        Some(0.0)
    );
    assert!(sample(&text, "pmxcfs_db_transactions_total").is_some_and(|n| n >= 1.0));
    assert!(sample(&text, "pmxcfs_tree_entries").is_some_and(|n| n >= 1.0));
    // The write's commit, its wait and its FUSE request, timed; its bytes.
    assert!(
        sample(&text, "pmxcfs_db_commit_duration_seconds_count").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        sample(&text, "pmxcfs_change_duration_seconds_count").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "pmxcfs_fuse_request_duration_seconds_count{op=\"write\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "pmxcfs_fuse_request_duration_seconds_bucket{op=\"write\",le=\"+Inf\"}"
        ),
        sample(
            &text,
            "pmxcfs_fuse_request_duration_seconds_count{op=\"write\"}"
        )
    );
    assert!(
        sample(&text, "pmxcfs_db_bytes_written_total").is_some_and(|n| n >= 1024.0),
        "{text}"
    );
    // Local mode: no messages, no syncs, no errors.
    assert_eq!(
        sample(&text, "pmxcfs_errors_total{kind=\"persist_failed\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "pmxcfs_sync_rounds_total{group=\"dcdb\"}"),
        Some(0.0)
    );
    assert!(text.contains(&format!(
        "pmxcfs_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    // The text format node_exporter parses: HELP and TYPE, then samples.
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        assert!(series.starts_with("pmxcfs_"), "{line}");
        value.parse::<f64>().expect("a number");
    }
    assert!(!dir.join("metrics.prom.tmp").exists(), "written atomically");
    d.stop_cleanly();
    assert!(!file.exists(), "a stopped daemon leaves no metrics behind");
}
