//! /etc/pve in local mode against the C daemon's observed behaviour
//! (observed-behaviour.md §3): every row of the operation table, the
//! special files, modes and ownership. Each test mounts the real daemon in
//! its own mount namespace (see `common`).

mod common;

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use common::{cpath, errno, last_errno, Daemon, HOSTNAME};
use libc::{
    EACCES, EEXIST, EFBIG, EINVAL, EIO, EISDIR, ENOENT, ENOSYS, ENOTDIR, ENOTEMPTY, ENOTSUP, EPERM,
};

fn write_file(p: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(p)?;
    f.write_all(data)
}

fn www_data() -> u32 {
    let name = std::ffi::CString::new("www-data").unwrap();
    unsafe { (*libc::getgrnam(name.as_ptr())).gr_gid }
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// The base layout of the observed run.
fn base_layout(d: &Daemon) {
    for dir in [
        "nodes",
        "nodes/refnode1",
        "nodes/refnode1/qemu-server",
        "nodes/refnode1/lxc",
        "priv",
        "priv/lock",
    ] {
        fs::create_dir(d.path(dir)).unwrap_or_else(|e| panic!("mkdir {dir}: {e}"));
    }
}

#[test]
fn fresh_mount_root_listing_and_special_files() {
    if !common::in_namespace("fresh_mount_root_listing_and_special_files") {
        return;
    }
    let dir = common::scratch_dir("fresh");
    let mut d = Daemon::start(&dir);
    let gid = www_data();

    let root = fs::metadata(&d.mount).unwrap();
    assert_eq!(
        (root.mode() & 0o7777, root.uid(), root.gid(), root.mtime()),
        (0o755, 0, gid, 0)
    );
    let mut names: Vec<String> = fs::read_dir(&d.mount)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".clusterlog",
            ".debug",
            ".members",
            ".rrd",
            ".version",
            ".vmlist",
            "local",
            "lxc",
            "openvz",
            "qemu-server"
        ]
    );
    // Symlinks: 0755 (quorate), owner root:www-data, relative targets.
    for (name, target) in [
        ("local", "nodes/refnode1"),
        ("lxc", "nodes/refnode1/lxc"),
        ("openvz", "nodes/refnode1/openvz"),
        ("qemu-server", "nodes/refnode1/qemu-server"),
    ] {
        let m = fs::symlink_metadata(d.path(name)).unwrap();
        assert!(m.file_type().is_symlink());
        assert_eq!(
            (m.mode() & 0o7777, m.uid(), m.gid(), m.size(), m.blocks()),
            (0o755, 0, gid, target.len() as u64, 0)
        );
        assert_eq!(
            fs::read_link(d.path(name)).unwrap().to_str().unwrap(),
            target
        );
    }
    // check_cfs_quorum: the owner-write bit of the `local` symlink.
    assert_ne!(mode(&d.path("local")) & 0o200, 0);

    // Special files: modes, mtime 0, exact bytes.
    for (name, m) in [
        (".version", 0o440),
        (".members", 0o440),
        (".vmlist", 0o440),
        (".rrd", 0o440),
        (".clusterlog", 0o440),
        (".debug", 0o640),
    ] {
        let md = fs::metadata(d.path(name)).unwrap();
        // C reports no blocks for special files, whatever their size.
        assert_eq!(
            (md.mode() & 0o7777, md.mtime(), md.gid(), md.blocks()),
            (m, 0, gid, 0),
            "{name}"
        );
        assert_eq!(
            md.size(),
            fs::read(d.path(name)).unwrap().len() as u64,
            "{name} size"
        );
    }
    assert_eq!(
        fs::read_to_string(d.path(".members")).unwrap(),
        format!("{{\n\"nodename\": \"{HOSTNAME}\",\n\"version\": 0\n}}\n")
    );
    assert_eq!(
        fs::read_to_string(d.path(".vmlist")).unwrap(),
        "{\n\"version\": 0\n\n}\n"
    );
    assert_eq!(fs::read(d.path(".rrd")).unwrap(), b"");
    assert_eq!(fs::read_to_string(d.path(".debug")).unwrap(), "0\n");
    let version = fs::read_to_string(d.path(".version")).unwrap();
    assert_eq!(version.len(), 1049, "{version}");
    assert!(version.starts_with("{\n\"starttime\": "));
    assert!(version.contains("\n\"clinfo\": 0,\n\"vmlist\": 0,\n\"corosync.conf\": 1,\n"));
    assert!(version.ends_with(&format!(
        "\"kvstore\": {{\n\"{HOSTNAME}\": {{\n}}\n}}\n}}\n"
    )));
    let log = fs::read_to_string(d.path(".clusterlog")).unwrap();
    let pid = d.pid();
    assert!(
        log.starts_with("{\n\"data\": [\n{\"uid\": 1, \"time\": "),
        "{log}"
    );
    assert!(
        log.ends_with(&format!(
            "\"pri\": 6, \"tag\": \"cluster\", \"pid\": {pid}, \"node\": \"{HOSTNAME}\", \"user\": \"root\", \"msg\": \"starting cluster log\"}}\n]\n}}\n"
        )),
        "{log}"
    );

    // statfs: synthetic numbers.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::statvfs(cpath(&d.mount).as_ptr(), &mut st) },
        0
    );
    assert_eq!(
        (st.f_bsize, st.f_blocks, st.f_files, st.f_namemax),
        (4096, 32768, 262144, 256)
    );
    assert_eq!(st.f_ffree, 262144 - 1);

    // nodes/ does not exist on a fresh database: the symlinks dangle.
    assert_eq!(errno(fs::metadata(d.path("local"))), ENOENT);
    d.stop_cleanly();
}

#[test]
fn special_files_are_fresh_and_debug_is_writable() {
    if !common::in_namespace("special_files_are_fresh_and_debug_is_writable") {
        return;
    }
    let dir = common::scratch_dir("special");
    let mut d = Daemon::start(&dir);
    base_layout(&d);
    // An open+read without a preceding stat still sees the new content.
    let mut f = fs::File::open(d.path(".vmlist")).unwrap();
    write_file(&d.path("nodes/refnode1/qemu-server/100.conf"), b"name: a\n").unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    let mut again = String::new();
    fs::File::open(d.path(".vmlist"))
        .unwrap()
        .read_to_string(&mut again)
        .unwrap();
    assert!(
        again.contains("\"100\": { \"node\": \"refnode1\", \"type\": \"qemu\""),
        "{again}"
    );

    // .debug: 1\n / 0\n at offset 0, anything else EIO; truncate is fine.
    fs::write(d.path(".debug"), b"1\n").unwrap();
    assert_eq!(fs::read_to_string(d.path(".debug")).unwrap(), "1\n");
    fs::write(d.path(".debug"), b"0\n").unwrap();
    assert_eq!(fs::read_to_string(d.path(".debug")).unwrap(), "0\n");
    assert_eq!(errno(fs::write(d.path(".debug"), b"x\n")), EIO);
    let f = OpenOptions::new()
        .write(true)
        .open(d.path(".debug"))
        .unwrap();
    assert_eq!(errno(f.write_at(b"1\n", 1)), EIO);
    // An open with O_TRUNC of another special file: EIO, as C's truncate.
    assert_eq!(
        errno(
            OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(d.path(".version"))
        ),
        EIO
    );
    // Writes to read-only special files: EIO.
    assert_eq!(
        errno(
            OpenOptions::new()
                .write(true)
                .open(d.path(".version"))
                .and_then(|mut f| f.write_all(b"x"))
        ),
        EIO
    );
    assert_eq!(
        errno(
            OpenOptions::new()
                .write(true)
                .open(d.path(".members"))
                .and_then(|mut f| f.write_all(b"x"))
        ),
        EIO
    );
    d.stop_cleanly();
}

#[test]
fn operation_table_files_and_directories() {
    if !common::in_namespace("operation_table_files_and_directories") {
        return;
    }
    let dir = common::scratch_dir("ops");
    let mut d = Daemon::start(&dir);
    let p = |s: &str| d.path(s);
    base_layout(&d);
    assert_eq!(errno(fs::create_dir(p("nodes"))), EEXIST);
    assert_eq!(errno(fs::create_dir(p("missing/x"))), ENOENT);

    let conf = b"name: test100\nmemory: 512\ncores: 1\n";
    assert_eq!(conf.len(), 35);
    write_file(&p("nodes/refnode1/qemu-server/100.conf"), conf).unwrap();
    assert_eq!(
        fs::read(p("nodes/refnode1/qemu-server/100.conf")).unwrap(),
        conf
    );
    assert_eq!(fs::read(p("qemu-server/100.conf")).unwrap(), conf);
    assert!(fs::read_to_string(p(".vmlist"))
        .unwrap()
        .contains("\"100\": { \"node\": \"refnode1\", \"type\": \"qemu\""));

    // Duplicate VMIDs.
    fs::create_dir_all(p("nodes/othernode/qemu-server")).unwrap();
    assert_eq!(
        errno(write_file(&p("nodes/othernode/qemu-server/100.conf"), b"x")),
        EEXIST
    );
    write_file(&p("nodes/othernode/qemu-server/102.conf"), conf).unwrap();
    write_file(&p("nodes/refnode1/lxc/101.conf"), b"hostname: ct101\n").unwrap();
    assert_eq!(
        errno(fs::rename(p("lxc/101.conf"), p("qemu-server/102.conf"))),
        EEXIST
    );
    // Migration between node directories.
    fs::rename(
        p("nodes/refnode1/qemu-server/100.conf"),
        p("nodes/othernode/qemu-server/100.conf"),
    )
    .unwrap();
    assert!(fs::read_to_string(p(".vmlist"))
        .unwrap()
        .contains("\"100\": { \"node\": \"othernode\", \"type\": \"qemu\""));
    fs::rename(
        p("nodes/othernode/qemu-server/100.conf"),
        p("nodes/refnode1/qemu-server/100.conf"),
    )
    .unwrap();

    // Creation errors.
    let excl = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(p("nodes/refnode1/qemu-server/100.conf"));
    assert_eq!(errno(excl), EEXIST);
    assert_eq!(errno(write_file(&p("nope/file"), b"x")), ENOENT);
    assert_eq!(
        errno(OpenOptions::new().write(true).open(p("nodes"))),
        EISDIR
    );
    assert_eq!(errno(write_file(&p("nodes"), b"x")), EISDIR);
    write_file(&p("plain"), b"x").unwrap();
    assert_eq!(errno(fs::create_dir(p("plain"))), EEXIST);

    // The fixed root entries.
    assert_eq!(errno(fs::remove_file(p(".version"))), EACCES);
    assert_eq!(errno(fs::rename(p(".vmlist"), p("x"))), EACCES);
    assert_eq!(errno(fs::rename(p("plain"), p(".vmlist"))), EACCES);
    assert_eq!(errno(fs::rename(p("plain"), p(".rrd"))), EACCES);
    assert_eq!(errno(fs::remove_file(p("local"))), EACCES);
    assert_eq!(
        fs::read_link(p("local")).unwrap().to_str().unwrap(),
        "nodes/refnode1"
    );
    fs::remove_dir(p("nodes/refnode1/lxc")).ok();
    // `local` points at nodes/refnode1, which exists now: create through it
    // works; with a dangling symlink the kernel answers ENOENT.
    assert_eq!(errno(fs::create_dir(p("local"))), EEXIST);
    write_file(&p(".newdotfile"), b"x").unwrap();
    fs::remove_file(p(".newdotfile")).unwrap();

    // Unsupported operations fail the way C fails.
    let target = cpath(&p("x-link"));
    assert_eq!(unsafe { libc::symlink(c"a".as_ptr(), target.as_ptr()) }, -1);
    assert_eq!(last_errno(), ENOSYS);
    assert_eq!(errno(fs::hard_link(p("plain"), p("hard"))), EPERM);
    assert_eq!(
        unsafe { libc::mkfifo(cpath(&p("fifo")).as_ptr(), 0o600) },
        -1
    );
    assert_eq!(last_errno(), ENOSYS);
    assert_eq!(
        unsafe { libc::mknod(cpath(&p("mknodreg")).as_ptr(), libc::S_IFREG | 0o600, 0) },
        0
    );
    assert_eq!(fs::metadata(p("mknodreg")).unwrap().len(), 0);
    let attr = c"user.test";
    assert_eq!(
        unsafe {
            libc::setxattr(
                cpath(&p("plain")).as_ptr(),
                attr.as_ptr(),
                c"v".as_ptr().cast(),
                1,
                0,
            )
        },
        -1
    );
    assert_eq!(last_errno(), ENOTSUP);
    let mut buf = [0u8; 16];
    assert_eq!(
        unsafe {
            libc::getxattr(
                cpath(&p("plain")).as_ptr(),
                attr.as_ptr(),
                buf.as_mut_ptr().cast(),
                16,
            )
        },
        -1
    );
    assert_eq!(last_errno(), ENOTSUP);
    assert_eq!(
        unsafe { libc::listxattr(cpath(&p("plain")).as_ptr(), buf.as_mut_ptr().cast(), 16) },
        -1
    );
    assert_eq!(last_errno(), ENOTSUP);

    // Renames.
    write_file(&p("r1"), b"1").unwrap();
    write_file(&p("r2"), b"2").unwrap();
    fs::rename(p("r1"), p("r3")).unwrap();
    fs::rename(p("r3"), p("r2")).unwrap();
    assert_eq!(fs::read(p("r2")).unwrap(), b"1");
    fs::create_dir(p("e1")).unwrap();
    fs::rename(p("e1"), p("e2")).unwrap();
    fs::create_dir(p("full")).unwrap();
    write_file(&p("full/f"), b"f").unwrap();
    assert_eq!(errno(fs::rename(p("full"), p("full2"))), ENOTEMPTY);
    assert_eq!(errno(fs::rename(p("r2"), p("nodir/r2"))), ENOENT);
    assert_eq!(errno(fs::rename(p("e2"), p("e2/inner"))), EINVAL);
    assert_eq!(errno(fs::rename(p("r2"), p("e2"))), EISDIR);
    assert_eq!(errno(fs::rename(p("e2"), p("r2"))), ENOTDIR);
    fs::rename(p("r2"), p("r2")).unwrap();
    // Renaming a non-empty directory onto an empty one keeps the target
    // (C drops it from memory; that bug is not copied).
    fs::create_dir(p("e3")).unwrap();
    assert_eq!(errno(fs::rename(p("full"), p("e3"))), ENOTEMPTY);
    assert!(fs::metadata(p("e3")).unwrap().is_dir());

    // Removal.
    assert_eq!(errno(fs::remove_dir(p("full"))), ENOTEMPTY);
    assert_eq!(errno(fs::remove_file(p("full"))), EISDIR);
    assert_eq!(errno(fs::remove_dir(p("r2"))), ENOTDIR);
    assert_eq!(errno(fs::remove_file(p("missing"))), ENOENT);

    // Long names: 255 works (the kernel refuses longer names itself).
    let long = "n".repeat(255);
    write_file(&p(&long), b"x").unwrap();
    assert_eq!(fs::read(p(&long)).unwrap(), b"x");
    d.stop_cleanly();
}

#[test]
fn operation_table_data_sizes_and_times() {
    if !common::in_namespace("operation_table_data_sizes_and_times") {
        return;
    }
    let dir = common::scratch_dir("data");
    let mut d = Daemon::start(&dir);
    let f = d.path("data");
    write_file(&f, b"0123456789").unwrap();
    let h = OpenOptions::new().write(true).open(&f).unwrap();
    h.write_at(b"ab", 4).unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"0123ab6789");
    let mut app = OpenOptions::new().append(true).open(&f).unwrap();
    app.write_all(b"++").unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"0123ab6789++");
    h.write_at(b"!", 15).unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"0123ab6789++\0\0\0!");
    h.set_len(4).unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"0123");
    h.set_len(6).unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"0123\0\0");

    // 1 MiB limit.
    let big = d.path("big");
    write_file(&big, &vec![b'a'; 1024 * 1024]).unwrap();
    assert_eq!(fs::metadata(&big).unwrap().len(), 1024 * 1024);
    let mut w = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&big)
        .unwrap();
    let n = w.write(&vec![b'b'; 1024 * 1024 + 1]).unwrap();
    assert_eq!(n, 1024 * 1024, "a write past 1 MiB is short");
    assert_eq!(errno(w.write(b"c")), EFBIG);
    assert_eq!(fs::metadata(&big).unwrap().len(), 1024 * 1024);
    assert_eq!(
        errno(
            OpenOptions::new()
                .write(true)
                .open(&big)
                .unwrap()
                .set_len(2 * 1024 * 1024)
        ),
        EFBIG
    );

    // How many changes one write(2) makes: the kernel hands C 128 KiB
    // pieces for a file it has just created (a create and 8 writes for
    // 1 MiB), whatever the alignment of the caller's buffer; every later
    // inode and version depends on it.
    let version = || -> u64 {
        common::sqlite(
            &d.statedir.join("config.db"),
            "SELECT version FROM tree WHERE inode = 0",
        )
        .trim()
        .parse()
        .unwrap()
    };
    // Written from one byte into a heap buffer: not page-aligned, which
    // is what makes a direct-I/O write come in smaller pieces.
    let unaligned = vec![b'u'; 1024 * 1024 + 2];
    for (name, len, changes) in [
        ("chunk-1m", 1024 * 1024, 9),
        ("chunk-200k", 200 * 1024, 3),
        ("chunk-1m-plus-1", 1024 * 1024 + 1, 9),
    ] {
        let before = version();
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(d.path(name))
            .unwrap();
        let n = f.write(&unaligned[1..1 + len]).unwrap();
        assert_eq!(n, len.min(1024 * 1024), "{name}");
        if len > 1024 * 1024 {
            assert_eq!(errno(f.write(&unaligned[..1])), EFBIG, "{name}");
        }
        drop(f);
        assert_eq!(version() - before, changes, "{name}: create + pieces");
        assert_eq!(
            fs::read(d.path(name)).unwrap(),
            &unaligned[1..1 + len.min(1024 * 1024)],
            "{name}"
        );
    }

    // utime: any time, or now.
    let t = libc::timespec {
        tv_sec: 1_795_000_000,
        tv_nsec: 0,
    };
    let times = [t, t];
    assert_eq!(
        unsafe { libc::utimensat(libc::AT_FDCWD, cpath(&f).as_ptr(), times.as_ptr(), 0) },
        0
    );
    assert_eq!(fs::metadata(&f).unwrap().mtime(), 1_795_000_000);
    assert_eq!(
        unsafe { libc::utimensat(libc::AT_FDCWD, cpath(&f).as_ptr(), std::ptr::null(), 0) },
        0
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((fs::metadata(&f).unwrap().mtime() - now).abs() <= 2);

    // Reading at offsets.
    let mut r = fs::File::open(&f).unwrap();
    r.seek(SeekFrom::Start(2)).unwrap();
    let mut two = [0u8; 2];
    r.read_exact(&mut two).unwrap();
    assert_eq!(&two, b"23");
    d.stop_cleanly();
}

#[test]
fn operation_table_modes_and_ownership() {
    if !common::in_namespace("operation_table_modes_and_ownership") {
        return;
    }
    let dir = common::scratch_dir("modes");
    let mut d = Daemon::start(&dir);
    let p = |s: &str| d.path(s);
    base_layout(&d);
    let gid = www_data();
    write_file(&p("file"), b"x").unwrap();
    write_file(&p("priv/secret"), b"s3cret\n").unwrap();
    fs::create_dir(p("nodes/refnode1/priv")).unwrap();
    write_file(&p("nodes/refnode1/priv/key"), b"k").unwrap();
    // The mode passed to mkdir/create is ignored.
    fs::DirBuilder::new()
        .mode(0o700)
        .create(p("madedir"))
        .unwrap();
    OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o600)
        .open(p("madefile"))
        .unwrap();
    for (path, m) in [
        ("file", 0o640),
        ("madefile", 0o640),
        ("madedir", 0o755),
        ("nodes", 0o755),
        ("priv", 0o700),
        ("priv/lock", 0o700),
        ("priv/secret", 0o600),
        ("nodes/refnode1/priv", 0o700),
        ("nodes/refnode1/priv/key", 0o600),
    ] {
        let md = fs::symlink_metadata(p(path)).unwrap();
        assert_eq!(
            (md.mode() & 0o7777, md.uid(), md.gid()),
            (m, 0, gid),
            "{path}"
        );
        assert_eq!(md.nlink(), if md.is_dir() { 2 } else { 1 }, "{path}");
        if md.is_dir() {
            assert_eq!(md.size(), 0);
        }
    }
    let chmod =
        |path: &str, m: u32| errno(fs::set_permissions(p(path), fs::Permissions::from_mode(m)));
    assert_eq!(chmod("file", 0o640), 0);
    for m in [0o644, 0o600, 0o660, 0o755, 0o000] {
        assert_eq!(chmod("file", m), EPERM, "chmod file {m:o}");
    }
    assert_eq!(chmod("priv/secret", 0o600), 0);
    assert_eq!(chmod("priv/secret", 0o640), EPERM);
    assert_eq!(chmod("priv/secret", 0o700), EPERM);
    assert_eq!(chmod("madedir", 0o755), EPERM);
    assert_eq!(chmod("madedir", 0o750), EPERM);
    assert_eq!(chmod("madedir", 0o640), 0);
    assert_eq!(mode(&p("file")), 0o640, "chmod never changes anything");
    let chown = |uid: u32, g: u32| unsafe { libc::chown(cpath(&p("file")).as_ptr(), uid, g) };
    assert_eq!(chown(0, gid), 0);
    assert_eq!(chown(0, u32::MAX), 0);
    assert_eq!(chown(1000, gid), -1);
    assert_eq!(last_errno(), EPERM);
    assert_eq!(chown(0, 0), -1);
    assert_eq!(last_errno(), EPERM);

    // default_permissions: www-data reads non-private files, nothing else.
    let as_www_data = |path: &Path| {
        let status = std::process::Command::new("setpriv")
            .args(["--reuid=33", "--regid=33", "--clear-groups", "cat"])
            .arg(path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        status.success()
    };
    assert!(as_www_data(&p("file")));
    assert!(!as_www_data(&p("priv/secret")));
    d.stop_cleanly();
}

#[test]
fn operation_table_locks() {
    if !common::in_namespace("operation_table_locks") {
        return;
    }
    let dir = common::scratch_dir("locks");
    let mut d = Daemon::start(&dir);
    base_layout(&d);
    let lock = d.path("priv/lock/testlock");
    fs::create_dir(&lock).unwrap();
    assert_eq!(errno(fs::create_dir(&lock)), EEXIST);
    assert_eq!(errno(fs::rename(&lock, d.path("priv/lock/other"))), EACCES);
    let zero = [libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    }; 2];
    assert_eq!(
        unsafe { libc::utimensat(libc::AT_FDCWD, cpath(&lock).as_ptr(), zero.as_ptr(), 0) },
        -1
    );
    assert_eq!(last_errno(), EACCES);
    // Refresh with the current time works.
    assert_eq!(
        unsafe { libc::utimensat(libc::AT_FDCWD, cpath(&lock).as_ptr(), std::ptr::null(), 0) },
        0
    );
    fs::remove_dir(&lock).unwrap();
    assert_eq!(errno(fs::metadata(&lock)), ENOENT);
    d.stop_cleanly();
}
