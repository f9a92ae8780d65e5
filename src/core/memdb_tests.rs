//! memdb rules: check order and errno, the global version rule, the data
//! rules of pwrite, the vmlist and the lock table.

use super::*;
use crate::core::locks::LockTable;
use crate::core::paths::VmType;

fn fresh() -> Memdb {
    Memdb::new_empty(1000).0
}

fn tree(paths: &[&str]) -> Memdb {
    let mut m = fresh();
    for p in paths {
        if let Some(file) = p.strip_suffix('!') {
            m.create(file.as_bytes(), 0, 1000).unwrap();
        } else {
            m.mkdir(p.as_bytes(), 0, 1000, 1000).unwrap();
        }
    }
    m.take_changes();
    m
}

#[test]
fn fresh_database_starts_at_version_1() {
    let (m, change) = Memdb::new_empty(1234);
    assert_eq!(m.version(), 1);
    assert!(change.delete_inodes.is_empty());
    assert_eq!(change.write_rows.len(), 1);
    let v = &change.write_rows[0];
    assert_eq!((v.inode, v.version, v.mtime, v.entry_type), (0, 1, 1234, 8));
    // Counters are 1 after the load.
    assert_eq!(m.changes.get("storage.cfg"), Some(1));
}

#[test]
fn new_entries_take_the_new_version_as_inode() {
    let mut m = fresh();
    m.mkdir(b"nodes", 7, 50, 50).unwrap();
    let e = m.lookup(b"nodes").unwrap();
    assert_eq!((e.inode, e.version, e.writer, e.mtime), (2, 2, 7, 50));
    assert_eq!(
        (m.root().version, m.root().writer, m.root().mtime),
        (2, 7, 50)
    );
    m.create(b"nodes/a", 3, 60).unwrap();
    m.write(b"nodes/a", 3, 61, b"xyz", 0, false).unwrap();
    let a = m.lookup(b"nodes/a").unwrap();
    assert_eq!((a.inode, a.version, a.mtime, a.size), (3, 4, 61, 3));
    // Directories do not change when their children do.
    assert_eq!(m.lookup(b"nodes").unwrap().version, 2);
    let changes = m.take_changes();
    assert_eq!(changes.len(), 3);
    assert_eq!(changes[2].write_rows[0].data.as_deref(), Some(&b"xyz"[..]));
    assert_eq!(changes[2].write_rows[1].version, 4);
}

#[test]
fn mkdir_checks_in_c_order() {
    let mut m = tree(&["d", "f!"]);
    assert_eq!(m.mkdir(b"missing/x", 0, 1, 1), Err(ENOENT));
    assert_eq!(m.mkdir(b"f/x", 0, 1, 1), Err(ENOTDIR));
    assert_eq!(m.mkdir(b"d/..", 0, 1, 1), Err(EACCES));
    assert_eq!(m.mkdir(b"d", 0, 1, 1), Err(EEXIST));
    assert_eq!(m.mkdir(b"f", 0, 1, 1), Err(EEXIST));
    // Failures change nothing.
    assert!(m.take_changes().is_empty());
}

#[test]
fn write_and_create_checks_in_c_order() {
    let mut m = tree(&["d", "f!"]);
    assert_eq!(
        m.write(b"missing/x", 0, 1, b"a", 1024 * 1024, false),
        Err(EFBIG)
    );
    assert_eq!(m.write(b"missing/x", 0, 1, b"a", 0, false), Err(ENOENT));
    assert_eq!(m.write(b"f/x", 0, 1, b"a", 0, false), Err(ENOTDIR));
    assert_eq!(m.write(b"d", 0, 1, b"a", 0, false), Err(ENOTDIR));
    assert_eq!(m.write(b"nope", 0, 1, b"a", 0, false), Err(ENOENT));
    assert_eq!(m.create(b"f", 0, 1), Err(EEXIST));
    assert_eq!(m.create(b"d", 0, 1), Err(ENOTDIR));
    assert_eq!(
        m.write(b"f", 0, 1, &vec![0; 1024 * 1024], 0, false),
        Ok(1024 * 1024)
    );
    assert_eq!(m.write(b"f", 0, 1, b"x", 1024 * 1024, false), Err(EFBIG));
}

/// A file written in C's 128 KiB pieces, then overwritten shorter, holds
/// no more memory than its bytes (the tree keeps it for its whole life).
#[test]
fn file_buffers_hold_their_length_only() {
    let mut m = tree(&["f!"]);
    let piece = vec![7u8; 128 << 10];
    for i in 0..3 {
        m.write(b"f", 0, 1, &piece, i * (128 << 10), false).unwrap();
    }
    m.write(b"f", 0, 1, b"tail", 3 * (128 << 10), false)
        .unwrap();
    let d = m.lookup(b"f").unwrap().data.as_ref().unwrap();
    assert_eq!((d.len(), d.capacity()), ((3 << 17) + 4, (3 << 17) + 4));
    m.write(b"f", 0, 1, b"short", 0, true).unwrap();
    let d = m.lookup(b"f").unwrap().data.as_ref().unwrap();
    assert_eq!((d.len(), d.capacity()), (5, 5));
}

#[test]
fn pwrite_data_rules() {
    let mut m = tree(&["f!"]);
    m.write(b"f", 0, 1, b"hello world", 0, false).unwrap();
    // Overwrite inside: size kept.
    m.write(b"f", 0, 1, b"HE", 0, false).unwrap();
    assert_eq!(m.lookup(b"f").unwrap().data(), b"HEllo world");
    // Truncating write: cut.
    m.write(b"f", 0, 1, b"ab", 0, true).unwrap();
    assert_eq!(m.lookup(b"f").unwrap().data(), b"ab");
    // Past the end: zero-filled gap.
    m.write(b"f", 0, 1, b"z", 4, false).unwrap();
    assert_eq!(m.lookup(b"f").unwrap().data(), b"ab\0\0z");
    // Truncate to 0: size 0, no data.
    m.write(b"f", 0, 1, b"", 0, true).unwrap();
    let f = m.lookup(b"f").unwrap();
    assert_eq!((f.size, f.data.is_none()), (0, true));
    // Writing into an empty file at an offset.
    m.write(b"f", 0, 1, b"q", 2, false).unwrap();
    assert_eq!(m.lookup(b"f").unwrap().data(), b"\0\0q");
    // C quirk: truncating an empty file to N gives size N without data.
    m.create(b"g", 0, 1).unwrap();
    m.write(b"g", 0, 1, b"", 10, true).unwrap();
    let g = m.lookup(b"g").unwrap();
    assert_eq!((g.size, g.data.is_none()), (10, true));
}

#[test]
fn delete_rules() {
    let mut m = tree(&["d", "d/f!", "e"]);
    assert_eq!(m.delete(b"", 0, 1), Err(EACCES));
    assert_eq!(m.delete(b"x", 0, 1), Err(ENOENT));
    assert_eq!(m.delete(b"d", 0, 1), Err(ENOTEMPTY));
    let v = m.version();
    m.delete(b"d/f", 0, 9).unwrap();
    assert_eq!(m.version(), v + 1);
    let c = m.take_changes();
    assert_eq!(c[0].delete_inodes, vec![3]);
    assert_eq!(c[0].write_rows.len(), 1, "only the version row");
    // No type check: a directory goes like a file.
    m.delete(b"e", 0, 9).unwrap();
    assert!(m.lookup(b"e").is_none());
}

#[test]
fn rename_rules() {
    let mut m = tree(&["a", "a/f!", "b", "b/g!", "empty", "t!"]);
    assert_eq!(m.rename(b"x", b"y", 0, 1), Err(ENOENT));
    assert_eq!(m.rename(b"", b"y", 0, 1), Err(EACCES));
    assert_eq!(m.rename(b"a", b"z", 0, 1), Err(ENOTEMPTY));
    assert_eq!(m.rename(b"t", b"a", 0, 1), Err(ENOTEMPTY));
    assert_eq!(m.rename(b"t", b"missing/t", 0, 1), Err(ENOENT));
    assert_eq!(m.rename(b"t", b"a/f/t", 0, 1), Err(ENOTDIR));
    // The failed rename of a non-empty directory onto an existing one
    // leaves the target in place (C's quirk is not replicated).
    assert_eq!(m.rename(b"b", b"empty", 0, 1), Err(ENOTEMPTY));
    assert!(m.lookup(b"empty").is_some());
    assert!(m.take_changes().is_empty());

    let inode = m.lookup(b"t").unwrap().inode;
    let replaced = m.lookup(b"a/f").unwrap().inode;
    m.rename(b"t", b"a/f", 5, 77).unwrap();
    let moved = m.lookup(b"a/f").unwrap();
    assert_eq!((moved.inode, moved.writer, moved.mtime), (inode, 5, 77));
    assert_eq!(moved.version, m.version());
    assert!(m.lookup(b"t").is_none());
    let c = m.take_changes();
    assert_eq!(c[0].delete_inodes, vec![replaced]);
    assert_eq!(c[0].write_rows[0].inode, inode);
    // C stores a renamed entry with a zero-length blob.
    assert_eq!(c[0].write_rows[0].data, Some(Vec::new()));
    m.rename(b"empty", b"b/empty2", 0, 1).unwrap();
    assert!(m.lookup(b"b/empty2").unwrap().is_dir());
}

#[test]
fn vmid_uniqueness_and_vmlist_counters() {
    let mut m = tree(&[
        "nodes",
        "nodes/n1",
        "nodes/n1/qemu-server",
        "nodes/n1/lxc",
        "nodes/n2",
        "nodes/n2/qemu-server",
    ]);
    assert_eq!(m.vmlist.version(), 0);
    m.create(b"nodes/n1/qemu-server/100.conf", 0, 1).unwrap();
    m.write(b"nodes/n1/qemu-server/100.conf", 0, 1, b"x", 0, false)
        .unwrap();
    let vm = m.vmlist.get(100).unwrap();
    assert_eq!(
        (&vm.node[..], vm.vmtype, vm.version),
        (&b"n1"[..], VmType::Qemu, 2)
    );
    assert_eq!(m.vmlist.version(), 2);
    // Another node or type: EEXIST, and the create is not applied.
    assert_eq!(
        m.create(b"nodes/n2/qemu-server/100.conf", 0, 1),
        Err(EEXIST)
    );
    assert_eq!(m.create(b"nodes/n1/lxc/100.conf", 0, 1), Err(EEXIST));
    m.create(b"nodes/n1/lxc/101.conf", 0, 1).unwrap();
    m.create(b"nodes/n2/qemu-server/102.conf", 0, 1).unwrap();
    assert_eq!(
        m.rename(
            b"nodes/n1/lxc/101.conf",
            b"nodes/n1/qemu-server/102.conf",
            0,
            1
        ),
        Err(EEXIST)
    );
    // Migration: the same VMID moves between nodes.
    let before = m.vmlist.version();
    m.rename(
        b"nodes/n1/qemu-server/100.conf",
        b"nodes/n2/qemu-server/100.conf",
        0,
        1,
    )
    .unwrap();
    assert_eq!(&m.vmlist.get(100).unwrap().node[..], b"n2");
    assert_eq!(
        m.vmlist.version(),
        before + 2,
        "a rename deletes and registers"
    );
    m.delete(b"nodes/n2/qemu-server/100.conf", 0, 1).unwrap();
    assert!(m.vmlist.get(100).is_none());
    assert_eq!(m.vmlist.version(), before + 3);
}

#[test]
fn duplicate_vmids_fail_the_load() {
    let row = |inode: u64, parent: u64, t: u8, name: &str| Row {
        inode,
        parent,
        version: inode + 10,
        writer: 0,
        mtime: 0,
        entry_type: t,
        name: name.as_bytes().to_vec(),
        data: None,
    };
    let rows = vec![
        row(0, 0, 8, "__version__"),
        row(2, 0, 4, "nodes"),
        row(3, 2, 4, "a"),
        row(4, 3, 4, "qemu-server"),
        row(5, 4, 8, "100.conf"),
        row(6, 2, 4, "b"),
        row(7, 6, 4, "lxc"),
        row(8, 7, 8, "100.conf"),
    ];
    assert_eq!(
        Memdb::from_rows(rows.clone(), 1).unwrap_err(),
        LoadError::DuplicateVmid { vmid: 100 }
    );
    let mut fine = rows.clone();
    fine.pop();
    let (m, first) = Memdb::from_rows(fine, 1).unwrap();
    assert!(first.is_none());
    assert_eq!(m.vmlist.len(), 1);
    // The rebuild counts once when there are VMs.
    assert_eq!(m.vmlist.version(), 1);
    assert_eq!(m.vmlist.get(100).unwrap().version, 1);

    let mut dup_name = rows.clone();
    dup_name.truncate(5);
    dup_name.push(row(9, 4, 8, "100.conf"));
    assert!(matches!(
        Memdb::from_rows(dup_name, 1).unwrap_err(),
        LoadError::DuplicateName {
            inode: 9,
            parent: 4,
            ..
        } | LoadError::DuplicateName {
            inode: 5,
            parent: 4,
            ..
        }
    ));
    let mut orphan = rows.clone();
    orphan.truncate(5);
    orphan.push(row(9, 77, 8, "x"));
    assert_eq!(
        Memdb::from_rows(orphan, 1).unwrap_err(),
        LoadError::MissingParent { parent: 77 }
    );
    let mut dirdata = rows.clone();
    dirdata[1].data = Some(b"x".to_vec());
    assert_eq!(
        Memdb::from_rows(dirdata, 1).unwrap_err(),
        LoadError::DirectoryWithData { inode: 2 }
    );
    let mut file_parent = rows;
    file_parent.truncate(5);
    file_parent.push(row(9, 5, 8, "x"));
    assert_eq!(
        Memdb::from_rows(file_parent, 1).unwrap_err(),
        LoadError::ParentNotDirectory {
            inode: 9,
            parent: 5
        }
    );
}

#[test]
fn locks_in_local_mode() {
    let mut m = tree(&["priv", "priv/lock"]);
    m.mkdir(b"priv/lock/foo", 0, 100, 100).unwrap();
    assert!(m.locks.get(b"priv/lock/foo").is_some());
    assert_eq!(
        m.rename(b"priv/lock/foo", b"priv/lock/bar", 0, 1),
        Err(EACCES)
    );
    // Refresh: forward only, same writer.
    assert_eq!(m.set_mtime(b"priv/lock/foo", 0, 50, 100), Err(EACCES));
    assert_eq!(m.set_mtime(b"priv/lock/foo", 9, 150, 100), Err(EACCES));
    m.set_mtime(b"priv/lock/foo", 0, 150, 150).unwrap();
    // utime(0) on a fresh lock: not expired, the mtime fails.
    assert_eq!(m.unlock_or_touch(b"priv/lock/foo", 0, 200), Err(EACCES));
    assert!(m.lookup(b"priv/lock/foo").is_some());
    // More than 120 s after the last refresh: removed.
    assert_eq!(m.unlock_or_touch(b"priv/lock/foo", 0, 271), Ok(()));
    assert!(m.lookup(b"priv/lock/foo").is_none());
    assert!(m.locks.get(b"priv/lock/foo").is_none());
}

#[test]
fn lock_expiry_restarts_on_a_changed_checksum() {
    let mut t = LockTable::default();
    let (a, b) = ([1u8; 32], [2u8; 32]);
    assert!(!t.expired(b"priv/lock/x", &a, 100));
    assert!(!t.expired(b"priv/lock/x", &a, 220));
    assert!(t.expired(b"priv/lock/x", &a, 221));
    assert!(!t.expired(b"priv/lock/x", &b, 300));
    assert!(!t.expired(b"priv/lock/x", &b, 420));
    assert!(t.expired(b"priv/lock/x", &b, 421));
}

#[test]
fn index_and_checksum_follow_the_tree() {
    let mut m = tree(&["a", "a/f!"]);
    m.write(b"a/f", 0, 1, b"data", 0, false).unwrap();
    let index = m.index();
    assert_eq!(index.version, m.version());
    assert_eq!(index.entries.len(), 3);
    assert_eq!(index.entries[0].inode, 0);
    assert!(index.is_consistent());
    let sum = m.checksum();
    m.set_mtime(b"a/f", 0, 5, 5).unwrap();
    assert_ne!(m.checksum(), sum);
    assert_ne!(m.index(), index);
}

#[test]
fn change_counters_count_exact_paths() {
    let mut m = tree(&["ha"]);
    let base = m.changes.get("storage.cfg").unwrap();
    m.create(b"storage.cfg", 0, 1).unwrap();
    m.write(b"storage.cfg", 0, 1, b"x", 0, false).unwrap();
    m.create(b"ha/resources.cfg", 0, 1).unwrap();
    assert_eq!(m.changes.get("storage.cfg"), Some(base + 2));
    assert_eq!(m.changes.get("ha/resources.cfg"), Some(base + 1));
    m.rename(b"storage.cfg", b"user.cfg", 0, 1).unwrap();
    assert_eq!(m.changes.get("storage.cfg"), Some(base + 3));
    assert_eq!(m.changes.get("user.cfg"), Some(base + 1));
}

/// The rows of a tree, loaded again as a restart would.
fn reload(m: &Memdb) -> Result<Memdb, LoadError> {
    Memdb::from_rows(m.rows(), 2000).map(|(m, _)| m)
}

#[test]
fn a_rename_cannot_make_the_tree_unloadable() {
    let mut m = tree(&["a", "a/sub", "x", "f!", "g!"]);
    // A directory below itself (empty or not) would be cut off the root.
    m.rename(b"a/sub", b"elsewhere", 0, 1).unwrap();
    assert_eq!(m.rename(b"x", b"x/b", 0, 1), Err(EINVAL));
    m.mkdir(b"x/y", 0, 1, 1).unwrap();
    m.rename(b"x/y", b"y", 0, 1).unwrap();
    assert_eq!(m.rename(b"x", b"x/b", 0, 1), Err(EINVAL));
    assert_eq!(m.rename(b"a", b"a/b/c", 0, 1), Err(ENOENT));
    // Names no entry may have.
    assert_eq!(m.rename(b"f", b"x/.", 0, 1), Err(EACCES));
    assert_eq!(m.rename(b"g", b"x/..", 0, 1), Err(EACCES));
    assert!(m.lookup(b"f").is_some() && m.lookup(b"g").is_some());
    let again = reload(&m).expect("the rows load");
    assert_eq!(again.index().to_bytes(), m.index().to_bytes());
    // A directory may still move beside or above itself.
    m.rename(b"x", b"a/x", 0, 1).unwrap();
    reload(&m).expect("the rows load");
}

#[test]
fn an_exhausted_version_refuses_changes_instead_of_reusing_inode_0() {
    let mut rows = fresh().rows();
    rows[0].version = u64::MAX - 1;
    let (mut m, _) = Memdb::from_rows(rows, 1000).unwrap();
    m.mkdir(b"last", 0, 1, 1).unwrap();
    assert_eq!(m.version(), u64::MAX);
    assert_eq!(m.create(b"one-more", 0, 1), Err(EOVERFLOW));
    assert_eq!(m.mkdir(b"d", 0, 1, 1), Err(EOVERFLOW));
    assert_eq!(m.rename(b"last", b"moved", 0, 1), Err(EOVERFLOW));
    assert_eq!(m.root().inode, 0);
    assert!(m.root().is_dir());
    reload(&m).expect("the rows load");
}

#[test]
fn a_reload_numbers_guests_in_c_directory_order() {
    let mut m = tree(&[
        "nodes",
        "nodes/a",
        "nodes/a/lxc",
        "nodes/a/lxc/200.conf!",
        "nodes/a/openvz",
        "nodes/a/openvz/100.conf!",
        "nodes/a/qemu-server",
        "nodes/a/qemu-server/300.conf!",
        "nodes/b",
        "nodes/b/qemu-server",
        "nodes/b/qemu-server/50.conf!",
    ]);
    m.take_changes();
    let m = reload(&m).unwrap();
    let v = |id| m.vmlist.get(id).unwrap().version;
    // Per node: qemu-server, then openvz, then lxc (C's walk).
    assert!(
        v(300) < v(100) && v(100) < v(200),
        "{} {} {}",
        v(300),
        v(100),
        v(200)
    );
    assert!(v(200) < v(50), "node a before node b");
}
