//! `pmxcfs --repair-db` and `--export-db` on databases broken the way the
//! field breaks them, written as C writes them: a copy of a database the C
//! daemon wrote (C's schema, C's 4 KiB pages), with rows added by
//! `REPLACE INTO tree`, C's statement.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rusqlite::{params, Connection, OpenFlags};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/config-db/functional.db")
}

fn pmxcfs(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pmxcfs"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

type TreeRow = (i64, i64, i64, i64, i64, i64, String, Option<Vec<u8>>);

fn rows(db: &Path) -> Vec<TreeRow> {
    let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut s = c.prepare("SELECT inode, parent, version, writer, mtime, type, name, data FROM tree ORDER BY inode").unwrap();
    let r = s
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    r
}

fn schema(db: &Path) -> Vec<String> {
    let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut s = c
        .prepare("SELECT sql FROM sqlite_master ORDER BY name")
        .unwrap();
    let r = s
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    r
}

/// C's database with a duplicate `storage.cfg` (the added one newer), an
/// orphan, VMID 100 configured on a second node, and a `__version__`
/// below its entries'.
fn broken_db(dir: &Path) -> PathBuf {
    let db = dir.join("broken.db");
    fs::copy(fixture(), &db).unwrap();
    let c = Connection::open(&db).unwrap();
    let replace = "REPLACE INTO tree (inode, parent, version, writer, mtime, type, name, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
    let t = 1_765_000_000i64;
    c.execute(
        replace,
        params![
            200,
            0,
            150,
            1,
            t,
            8,
            "storage.cfg",
            b"dir: newer\n".to_vec()
        ],
    )
    .unwrap();
    c.execute(
        replace,
        params![201, 9999, 151, 1, t, 8, "lost.cfg", b"orphan\n".to_vec()],
    )
    .unwrap();
    // nodes/othernode/qemu-server is inode 9; VMID 100 is on refnode1 (version 75).
    c.execute(
        replace,
        params![202, 9, 52, 1, t, 8, "100.conf", b"memory: 1\n".to_vec()],
    )
    .unwrap();
    c.execute("UPDATE tree SET version = 60 WHERE inode = 0", [])
        .unwrap();
    drop(c);
    db
}

#[test]
fn repair_db_writes_a_copy_that_passes_check_and_keeps_every_entry() {
    let dir = common::scratch_dir("repair");
    let broken = broken_db(&dir);
    let before = fs::read(&broken).unwrap();
    let check = pmxcfs(&["--check-db".as_ref(), broken.as_os_str()]);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));

    let out = dir.join("repaired.db");
    let repair = pmxcfs(&["--repair-db".as_ref(), broken.as_os_str(), out.as_os_str()]);
    let said = text(&repair);
    assert_eq!(repair.status.code(), Some(0), "{said}");
    for change in [
        "/storage.cfg (inode 22) set aside: found entry with duplicate name: inode 200 is kept, its version 150 is newer than 23",
        "/<missing directory 9999>/lost.cfg (inode 201) set aside: an orphan, its parent directory (inode 9999) does not exist",
        "/nodes/othernode/qemu-server/100.conf (inode 202) set aside: VMID 100 is configured more than once; /nodes/refnode1/qemu-server/100.conf (version 75) is kept",
        "the database version 60 was lower than an entry's: raised to 202",
        "passes --check-db",
        "set aside: inode 22 written to ",
        "repaired.db.set-aside/storage.cfg",
    ] {
        assert!(said.contains(change), "{change}\nmissing from:\n{said}");
    }
    assert_eq!(fs::read(&broken).unwrap(), before, "IN is never changed");

    // The copy: C's schema, every row of IN but the three set aside, as it was.
    assert_eq!(schema(&out), schema(&fixture()));
    let (ins, outs) = (rows(&broken), rows(&out));
    let gone = [22, 201, 202];
    let expected: Vec<TreeRow> = ins
        .iter()
        .filter(|r| !gone.contains(&r.0))
        .map(|r| {
            if r.0 == 0 {
                (0, 0, 202, r.3, r.4, r.5, r.6.clone(), r.7.clone())
            } else {
                r.clone()
            }
        })
        .collect();
    assert_eq!(outs, expected);
    let check = pmxcfs(&["--check-db".as_ref(), out.as_os_str()]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    assert!(
        !text(&check).contains("repaired at start"),
        "{}",
        text(&check)
    );

    // What was set aside is there, as plain files.
    let aside = dir.join("repaired.db.set-aside");
    assert_eq!(
        fs::read(aside.join("storage.cfg")).unwrap(),
        ins.iter().find(|r| r.0 == 22).unwrap().7.clone().unwrap()
    );
    assert_eq!(
        fs::read(aside.join("<missing directory 9999>/lost.cfg")).unwrap(),
        b"orphan\n"
    );
    assert_eq!(
        fs::read(aside.join("nodes/othernode/qemu-server/100.conf")).unwrap(),
        b"memory: 1\n"
    );

    // Never over an existing file.
    let again = pmxcfs(&["--repair-db".as_ref(), broken.as_os_str(), out.as_os_str()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("already exists"));
    // Not a database: said, nothing written.
    let junk = dir.join("junk.db");
    fs::write(&junk, b"not sqlite at all, not even close to it....................................................").unwrap();
    let nothing = dir.join("nothing.db");
    let bad = pmxcfs(&[
        "--repair-db".as_ref(),
        junk.as_os_str(),
        nothing.as_os_str(),
    ]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(!nothing.exists());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn export_db_writes_the_tree_as_private_plain_files() {
    let dir = common::scratch_dir("export");
    let to = dir.join("tree");
    let export = pmxcfs(&[
        "--export-db".as_ref(),
        fixture().as_os_str(),
        to.as_os_str(),
    ]);
    assert_eq!(export.status.code(), Some(0), "{}", text(&export));
    assert!(
        text(&export).contains("exported: 11 directories, 12 files"),
        "{}",
        text(&export)
    );
    // C's database holds a name of 256 bytes (C's limit is not a file
    // system's): written under a shorter name, said.
    assert!(
        text(&export).contains("inode 57: a name of 256 bytes"),
        "{}",
        text(&export)
    );
    let all = rows(&fixture());
    let data = |inode: i64| {
        all.iter()
            .find(|r| r.0 == inode)
            .unwrap()
            .7
            .clone()
            .unwrap_or_default()
    };
    assert_eq!(fs::read(to.join("storage.cfg")).unwrap(), data(22));
    assert_eq!(
        fs::read(to.join("nodes/refnode1/qemu-server/100.conf")).unwrap(),
        data(12)
    );
    assert_eq!(fs::read(to.join("priv/secret")).unwrap(), data(20));
    assert_eq!(
        fs::metadata(&to).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        fs::metadata(to.join("priv/secret"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let mtime = fs::metadata(to.join("storage.cfg"))
        .unwrap()
        .modified()
        .unwrap();
    let row_mtime = all.iter().find(|r| r.0 == 22).unwrap().4 as u64;
    assert_eq!(
        mtime,
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(row_mtime)
    );

    // Not into a directory that holds something.
    let again = pmxcfs(&[
        "--export-db".as_ref(),
        fixture().as_os_str(),
        to.as_os_str(),
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("not empty"));

    // A broken database: what resolves is written, the rest named.
    let broken = broken_db(&dir);
    let to2 = dir.join("tree2");
    let export = pmxcfs(&["--export-db".as_ref(), broken.as_os_str(), to2.as_os_str()]);
    let said = text(&export);
    assert_eq!(export.status.code(), Some(1), "{said}");
    assert!(
        said.contains("problem: inode 201 'lost.cfg' does not reach the root"),
        "{said}"
    );
    assert!(said.contains("found entry with duplicate name"), "{said}");
    assert!(to2.join("nodes/othernode/qemu-server/100.conf").exists());
    let _ = fs::remove_dir_all(&dir);
}

/// The daemon starts on a repaired database and serves the entry kept.
#[test]
fn the_daemon_starts_on_a_repaired_database() {
    if !common::in_namespace("the_daemon_starts_on_a_repaired_database") {
        return;
    }
    let dir = common::scratch_dir("repaired-start");
    let broken = broken_db(&dir);
    let (_, statedir, _) = common::Daemon::paths(&dir);
    fs::create_dir_all(&statedir).unwrap();
    let out = statedir.join("config.db");
    let repair = pmxcfs(&["--repair-db".as_ref(), broken.as_os_str(), out.as_os_str()]);
    assert_eq!(repair.status.code(), Some(0), "{}", text(&repair));
    let mut d = common::Daemon::start(&dir);
    assert_eq!(fs::read(d.path("storage.cfg")).unwrap(), b"dir: newer\n");
    assert!(d.path("nodes/refnode1/qemu-server/100.conf").exists());
    assert!(!d.path("nodes/othernode/qemu-server/100.conf").exists());
    d.stop_cleanly();
    let _ = fs::remove_dir_all(&dir);
}
