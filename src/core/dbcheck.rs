//! `pmxcfs --check-db`: everything in a database's rows that the daemon
//! would refuse or repair, all of it (the loader stops at the first
//! problem), in plain words with paths, for an operator before a swap or
//! for support looking at a database a node refused.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pmxcfs_wire::dcdb::{DT_DIR, DT_REG};

use super::memdb::{Memdb, Row};
use super::paths;

/// What the rows hold and what is wrong with them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub directories: usize,
    pub files: usize,
    /// The global version of the `__version__` row.
    pub version: u64,
    /// What makes the daemon refuse the database.
    pub refusals: Vec<String>,
    /// What the daemon repairs when it opens the database.
    pub repairs: Vec<String>,
}

impl Report {
    /// Whether the daemon would start on the database.
    pub fn starts(&self) -> bool {
        self.refusals.is_empty()
    }
}

/// The path of an entry (without a leading `/`) as far as its parents
/// resolve: `entry(inode)` gives an inode's parent and name; a missing
/// parent shows as `<missing directory N>`, a loop stops the walk.
pub fn path_of<'a>(inode: u64, entry: impl Fn(u64) -> Option<(u64, &'a [u8])>) -> String {
    let mut parts = Vec::new();
    let mut cur = inode;
    let mut seen = BTreeSet::new();
    while cur != 0 && seen.insert(cur) {
        match entry(cur) {
            Some((parent, name)) => {
                parts.push(String::from_utf8_lossy(name).into_owned());
                cur = parent;
            }
            None => {
                parts.push(format!("<missing directory {cur}>"));
                break;
            }
        }
    }
    parts.reverse();
    parts.join("/")
}

/// Check the rows of a `tree` table.
pub fn check(rows: &[Row]) -> Report {
    let mut r = Report::default();
    let by_inode: HashMap<u64, &Row> = rows.iter().map(|row| (row.inode, row)).collect();
    // A readable name for an inode: its path as far as it resolves.
    let path = |inode: u64| {
        format!(
            "/{}",
            path_of(inode, |i| by_inode.get(&i).map(|r| (r.parent, &r.name[..])))
        )
    };
    match by_inode.get(&0) {
        None => r
            .refusals
            .push("the `__version__` row (inode 0) is missing".into()),
        Some(v) if v.name != b"__version__" => r.refusals.push(format!(
            "inode 0 is named '{}' instead of '__version__'",
            String::from_utf8_lossy(&v.name)
        )),
        Some(v) => r.version = v.version,
    }
    let mut children: BTreeMap<(u64, Vec<u8>), Vec<u64>> = BTreeMap::new();
    let mut max_version = 0u64;
    for row in rows.iter().filter(|row| row.inode != 0) {
        max_version = max_version.max(row.version).max(row.inode);
        if row.name.is_empty() {
            r.refusals
                .push(format!("entry inode {} has an empty name", row.inode));
        }
        match row.entry_type {
            DT_DIR => {
                r.directories += 1;
                if row.data.as_ref().is_some_and(|d| !d.is_empty()) {
                    r.refusals.push(format!(
                        "directory {} (inode {}) has data",
                        path(row.inode),
                        row.inode
                    ));
                }
            }
            DT_REG => r.files += 1,
            t => r.refusals.push(format!(
                "entry {} (inode {}) has the unknown type {t} (expected 4 or 8)",
                path(row.inode),
                row.inode
            )),
        }
        match by_inode.get(&row.parent) {
            _ if row.parent == 0 => {}
            None => r.refusals.push(format!(
                "entry '{}' (inode {}) is an orphan: its parent directory inode {} does not exist",
                String::from_utf8_lossy(&row.name),
                row.inode,
                row.parent
            )),
            Some(p) if p.entry_type != DT_DIR => r.refusals.push(format!(
                "entry {} (inode {}) is below {}, which is not a directory",
                path(row.inode),
                row.inode,
                path(row.parent)
            )),
            Some(_) => {}
        }
        children
            .entry((row.parent, row.name.clone()))
            .or_default()
            .push(row.inode);
    }
    for ((parent, name), inodes) in &children {
        if inodes.len() > 1 {
            r.refusals.push(format!(
                "found entry with duplicate name '{}' in directory {} (inodes {})",
                String::from_utf8_lossy(name),
                path(*parent),
                inodes
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    // Entries that never reach the root (a parent loop).
    let mut reached: BTreeSet<u64> = BTreeSet::from([0]);
    let mut grew = true;
    while grew {
        grew = false;
        for row in rows.iter().filter(|row| row.inode != 0) {
            if !reached.contains(&row.inode) && reached.contains(&row.parent) {
                reached.insert(row.inode);
                grew = true;
            }
        }
    }
    for row in rows.iter().filter(|row| row.inode != 0) {
        let known_parent = row.parent == 0 || by_inode.contains_key(&row.parent);
        if !reached.contains(&row.inode) && known_parent {
            r.refusals.push(format!(
                "entry '{}' (inode {}) is not reachable from the root (a directory loop)",
                String::from_utf8_lossy(&row.name),
                row.inode
            ));
        }
    }
    // The same VMID configured more than once.
    let mut vms: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for row in rows.iter().filter(|row| row.entry_type == DT_REG) {
        let p = path(row.inode);
        if let Some(vm) = paths::vm_config(p.trim_start_matches('/').as_bytes()) {
            vms.entry(vm.vmid).or_default().push(p);
        }
    }
    for (vmid, places) in vms {
        if places.len() > 1 {
            r.refusals.push(format!(
                "VMID {vmid} is configured more than once: {}",
                places.join(", ")
            ));
        }
    }
    if r.refusals.is_empty() {
        // What the loader itself says, should a rule above be missing.
        if let Err(e) = Memdb::from_rows(rows.to_vec(), 0) {
            r.refusals.push(e.to_string());
        }
    }
    if by_inode.contains_key(&0) && r.version < max_version {
        r.repairs.push(format!(
            "the database version {} is lower than an entry's ({max_version}): the daemon raises it to {max_version}, so that new entries do not reuse inode numbers",
            r.version
        ));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(inode: u64, parent: u64, version: u64, entry_type: u8, name: &str) -> Row {
        Row {
            inode,
            parent,
            version,
            writer: 0,
            mtime: 0,
            entry_type,
            name: name.as_bytes().to_vec(),
            data: None,
        }
    }

    #[test]
    fn a_good_database_starts() {
        let rows = [
            row(0, 0, 3, DT_REG, "__version__"),
            row(2, 0, 2, DT_DIR, "nodes"),
            row(3, 2, 3, DT_REG, "x"),
        ];
        let r = check(&rows);
        assert!(r.starts(), "{r:?}");
        assert_eq!((r.directories, r.files, r.version), (1, 1, 3));
        assert!(r.repairs.is_empty());
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let rows = [
            row(0, 0, 5, DT_REG, "__version__"),
            row(2, 0, 2, DT_DIR, "nodes"),
            row(3, 2, 3, DT_REG, "dup"),
            row(4, 2, 4, DT_REG, "dup"),
            row(5, 99, 5, DT_REG, "lost"),
            row(6, 2, 9, DT_DIR, "a"),
            row(7, 6, 7, DT_DIR, "qemu-server"),
            row(8, 7, 8, DT_REG, "100.conf"),
        ];
        let mut rows = rows.to_vec();
        rows.push(row(10, 2, 10, DT_DIR, "b"));
        rows.push(row(11, 10, 11, DT_DIR, "lxc"));
        rows.push(row(12, 11, 12, DT_REG, "100.conf"));
        let r = check(&rows);
        assert!(!r.starts());
        let all = r.refusals.join("\n");
        assert!(
            all.contains("found entry with duplicate name 'dup' in directory /nodes (inodes 3, 4)"),
            "{all}"
        );
        assert!(
            all.contains(
                "entry 'lost' (inode 5) is an orphan: its parent directory inode 99 does not exist"
            ),
            "{all}"
        );
        assert!(
            all.contains("VMID 100 is configured more than once: /nodes/a/qemu-server/100.conf, /nodes/b/lxc/100.conf"),
            "{all}"
        );
        assert!(r.repairs[0].contains("version 5 is lower than an entry's (12)"));
    }

    #[test]
    fn a_missing_version_row() {
        let r = check(&[row(2, 0, 2, DT_DIR, "nodes")]);
        assert_eq!(r.refusals, ["the `__version__` row (inode 0) is missing"]);
    }
}
