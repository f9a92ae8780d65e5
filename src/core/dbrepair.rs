//! `pmxcfs --repair-db`: the rows of a database the daemon refuses, made
//! into a tree it loads, with every change said in plain words. Pure: rows
//! in, rows out; the edge reads and writes the files.
//!
//! Nothing is thrown away: an entry that cannot stay in the tree is *set
//! aside* (the edge writes it as a plain file beside the repaired copy),
//! and a duplicate directory's entries are moved into the directory that
//! is kept. Which entry stays is decided by what a cluster decides by: the
//! newer version (the later change), then the higher inode (the later
//! created).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pmxcfs_wire::dcdb::{DT_DIR, DT_REG};

use super::dbcheck::path_of;
use super::memdb::Row;
use super::paths;

/// An entry taken out of the tree, with the path it had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetAside {
    /// Where it was (as far as its parents resolve), without a leading `/`.
    pub path: String,
    pub row: Row,
}

/// The repaired tree and what was done to get it.
#[derive(Clone, Debug, Default)]
pub struct Repair {
    /// Every row of the repaired database, `__version__` included.
    pub rows: Vec<Row>,
    /// Entries taken out of the tree (files with their data; directories
    /// are set aside with everything below them).
    pub set_aside: Vec<SetAside>,
    /// Every change, one sentence each, in the order made.
    pub changes: Vec<String>,
}

const VERSION_ROW: &[u8] = b"__version__";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A name no file system can hold (and FUSE can never look up): why, or
/// `None` for a usable one.
pub fn unusable_name(name: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        Some("an empty name")
    } else if name == b"." || name == b".." {
        Some("the name '.' or '..'")
    } else if name.contains(&b'/') || name.contains(&0) {
        Some("a '/' or NUL byte in its name")
    } else {
        None
    }
}

struct Tree {
    rows: BTreeMap<u64, Row>,
    repair: Repair,
}

impl Tree {
    /// The path of an entry as far as it resolves.
    fn path(&self, inode: u64) -> String {
        path_of(inode, |i| {
            self.rows.get(&i).map(|r| (r.parent, &r.name[..]))
        })
    }

    fn children(&self, parent: u64) -> Vec<u64> {
        self.rows
            .values()
            .filter(|r| r.parent == parent && r.inode != 0)
            .map(|r| r.inode)
            .collect()
    }

    /// Take an entry and everything below it out of the tree.
    fn set_aside(&mut self, inode: u64, why: String) {
        let path = self.path(inode);
        let mut stack = vec![inode];
        let mut taken = Vec::new();
        let mut seen = BTreeSet::new();
        while let Some(i) = stack.pop() {
            if !seen.insert(i) {
                continue;
            }
            if self.rows.get(&i).is_some_and(|r| r.entry_type == DT_DIR) {
                stack.extend(self.children(i));
            }
            taken.push((self.path(i), i));
        }
        let below = taken.len() - 1;
        for (p, i) in taken {
            if let Some(row) = self.rows.remove(&i) {
                self.repair.set_aside.push(SetAside { path: p, row });
            }
        }
        let with = if below > 0 {
            format!(" with the {below} entries below it")
        } else {
            String::new()
        };
        self.repair
            .changes
            .push(format!("/{path} (inode {inode}){with} set aside: {why}"));
    }

    /// Entries that reach the root through directories.
    fn reachable(&self) -> BTreeSet<u64> {
        let mut kids: HashMap<u64, Vec<u64>> = HashMap::new();
        for r in self.rows.values().filter(|r| r.inode != 0) {
            kids.entry(r.parent).or_default().push(r.inode);
        }
        let mut reached = BTreeSet::new();
        let mut stack = vec![0u64];
        while let Some(dir) = stack.pop() {
            for &k in kids.get(&dir).map(Vec::as_slice).unwrap_or(&[]) {
                if reached.insert(k) && self.rows[&k].entry_type == DT_DIR {
                    stack.push(k);
                }
            }
        }
        reached
    }

    /// Which of several entries stays: the newer version, then the later
    /// created (higher inode).
    fn newest(&self, inodes: &[u64]) -> u64 {
        *inodes
            .iter()
            .max_by_key(|i| (self.rows[i].version, **i))
            .expect("one or more")
    }
}

/// Repair the rows of a `tree` table.
pub fn repair(rows: &[Row]) -> Repair {
    let mut t = Tree {
        rows: rows.iter().map(|r| (r.inode, r.clone())).collect(),
        repair: Repair::default(),
    };

    // The `__version__` row.
    match t.rows.get_mut(&0) {
        None => t.repair.changes.push(
            "the `__version__` row (inode 0) was missing: added, with the highest version of the tree".into(),
        ),
        Some(v) => {
            if v.name != VERSION_ROW {
                t.repair.changes.push(format!(
                    "inode 0 was named '{}': renamed to `__version__`",
                    text(&v.name)
                ));
            }
        }
    }
    let mut version_row = t.rows.remove(&0).unwrap_or(Row {
        inode: 0,
        parent: 0,
        version: 0,
        writer: 0,
        mtime: 0,
        entry_type: DT_REG,
        name: Vec::new(),
        data: None,
    });
    let old_version = version_row.version;
    version_row.name = VERSION_ROW.to_vec();
    version_row.parent = 0;
    version_row.entry_type = DT_REG;

    // Entries that cannot be entries at all.
    let inodes: Vec<u64> = t.rows.keys().copied().collect();
    for inode in inodes {
        let Some(row) = t.rows.get(&inode) else {
            continue;
        };
        if let Some(why) = unusable_name(&row.name) {
            t.set_aside(inode, format!("it has {why}"));
            continue;
        }
        match row.entry_type {
            DT_REG => {}
            DT_DIR => {
                if row.data.as_ref().is_some_and(|d| !d.is_empty()) {
                    let path = t.path(inode);
                    let data = t.rows.get_mut(&inode).and_then(|r| r.data.take());
                    let len = data.as_ref().map_or(0, Vec::len);
                    let mut aside = t.rows[&inode].clone();
                    aside.entry_type = DT_REG;
                    aside.data = data;
                    t.repair.set_aside.push(SetAside {
                        path: format!("{path}.directory-data"),
                        row: aside,
                    });
                    t.repair.changes.push(format!(
                        "directory /{path} (inode {inode}) had {len} bytes of data: removed from the directory and set aside as /{path}.directory-data"
                    ));
                }
            }
            other => t.set_aside(
                inode,
                format!("its type {other} is neither a directory (4) nor a file (8)"),
            ),
        }
    }

    // Entries that do not reach the root: set aside, outermost first.
    loop {
        let reached = t.reachable();
        let lost: Vec<u64> = t
            .rows
            .keys()
            .copied()
            .filter(|i| !reached.contains(i))
            .collect();
        // The outermost: its parent is not itself a lost entry (or a loop).
        let top = lost
            .iter()
            .copied()
            .find(|&i| {
                let p = t.rows[&i].parent;
                !t.rows.contains_key(&p) || t.rows[&p].entry_type != DT_DIR
            })
            .or_else(|| lost.first().copied());
        let Some(inode) = top else { break };
        let parent = t.rows[&inode].parent;
        let why = match t.rows.get(&parent) {
            None => format!("an orphan, its parent directory (inode {parent}) does not exist"),
            Some(p) if p.entry_type != DT_DIR => format!(
                "its parent /{} (inode {parent}) is not a directory",
                t.path(parent)
            ),
            Some(_) => "its parents form a loop that never reaches the root".into(),
        };
        t.set_aside(inode, why);
    }

    // Duplicate names: one stays; a duplicate directory's entries move
    // into the one kept (which can make new duplicates: another pass, until
    // a pass finds none).
    loop {
        let mut by_name: BTreeMap<(u64, Vec<u8>), Vec<u64>> = BTreeMap::new();
        for r in t.rows.values() {
            by_name
                .entry((r.parent, r.name.clone()))
                .or_default()
                .push(r.inode);
        }
        let mut found = false;
        for (_, group) in by_name.into_iter().filter(|(_, v)| v.len() > 1) {
            // An earlier group's set-aside may have taken some of them.
            let dups: Vec<u64> = group
                .into_iter()
                .filter(|i| t.rows.contains_key(i))
                .collect();
            if dups.len() < 2 {
                continue;
            }
            found = true;
            let keep = t.newest(&dups);
            let kept_row = t.rows[&keep].clone();
            for other in dups.into_iter().filter(|&i| i != keep) {
                if !t.rows.contains_key(&other) {
                    continue;
                }
                let path = t.path(other);
                let row = &t.rows[&other];
                let reason = if row.version != kept_row.version {
                    format!(
                        "inode {keep} is kept, its version {} is newer than {}",
                        kept_row.version, row.version
                    )
                } else {
                    format!("inode {keep} is kept, of the same version and created later")
                };
                if row.entry_type == DT_DIR && kept_row.entry_type == DT_DIR {
                    let moved = t.children(other);
                    for c in &moved {
                        if let Some(r) = t.rows.get_mut(c) {
                            r.parent = keep;
                        }
                    }
                    t.rows.remove(&other);
                    t.repair.changes.push(format!(
                        "found entry with duplicate name: directory /{path} (inode {other}) removed, {reason}; its {} entries moved into it",
                        moved.len()
                    ));
                } else {
                    t.set_aside(other, format!("found entry with duplicate name: {reason}"));
                }
            }
        }
        if !found {
            break;
        }
    }

    // A VMID configured more than once: the newest configuration stays.
    let mut vms: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for r in t.rows.values().filter(|r| r.entry_type == DT_REG) {
        if let Some(vm) = paths::vm_config(t.path(r.inode).as_bytes()) {
            vms.entry(vm.vmid).or_default().push(r.inode);
        }
    }
    for (vmid, configs) in vms.into_iter().filter(|(_, c)| c.len() > 1) {
        let keep = t.newest(&configs);
        let kept = format!("/{} (version {})", t.path(keep), t.rows[&keep].version);
        for other in configs.into_iter().filter(|&i| i != keep) {
            t.set_aside(
                other,
                format!("VMID {vmid} is configured more than once; {kept} is kept, the newer configuration"),
            );
        }
    }

    // The database version: at least every entry's version and inode, so
    // that new entries do not reuse an inode number.
    // Entries set aside count too: their inode numbers may still be in
    // use on other nodes.
    let highest = rows
        .iter()
        .filter(|r| r.inode != 0)
        .map(|r| r.version.max(r.inode))
        .max()
        .unwrap_or(0);
    if highest > version_row.version {
        if rows.iter().any(|r| r.inode == 0) {
            t.repair.changes.push(format!(
                "the database version {old_version} was lower than an entry's: raised to {highest}, so that new entries do not reuse inode numbers"
            ));
        }
        version_row.version = highest;
    }
    let mut out: Vec<Row> = vec![version_row];
    out.extend(t.rows.into_values());
    t.repair.rows = out;
    t.repair
}

#[cfg(test)]
mod tests {
    use super::super::dbcheck;
    use super::*;

    fn row(
        inode: u64,
        parent: u64,
        version: u64,
        entry_type: u8,
        name: &str,
        data: Option<&str>,
    ) -> Row {
        Row {
            inode,
            parent,
            version,
            writer: 1,
            mtime: 1_700_000_000,
            entry_type,
            name: name.as_bytes().to_vec(),
            data: data.map(|d| d.as_bytes().to_vec()),
        }
    }
    fn dir(inode: u64, parent: u64, version: u64, name: &str) -> Row {
        row(inode, parent, version, DT_DIR, name, None)
    }
    fn file(inode: u64, parent: u64, version: u64, name: &str, data: &str) -> Row {
        row(inode, parent, version, DT_REG, name, Some(data))
    }

    fn repaired(rows: &[Row]) -> Repair {
        assert!(
            !dbcheck::check(rows).starts(),
            "the test database is not broken"
        );
        let r = repair(rows);
        let check = dbcheck::check(&r.rows);
        assert!(
            check.starts() && check.repairs.is_empty(),
            "{check:?}\n{:#?}",
            r.changes
        );
        r
    }

    #[test]
    fn a_good_database_is_left_as_it_is() {
        let rows = vec![
            file(0, 0, 3, "__version__", ""),
            dir(2, 0, 2, "nodes"),
            file(3, 2, 3, "x", "1"),
        ];
        let mut rows = rows;
        rows[0].data = None;
        let r = repair(&rows);
        assert!(r.changes.is_empty(), "{:?}", r.changes);
        assert_eq!(r.rows, rows);
    }

    #[test]
    fn duplicate_files_keep_the_newer_version_and_set_the_other_aside() {
        let mut v = file(0, 0, 9, "__version__", "");
        v.data = None;
        let rows = [
            v,
            file(3, 0, 9, "storage.cfg", "new"),
            file(5, 0, 4, "storage.cfg", "old"),
        ];
        let r = repaired(&rows);
        assert_eq!(r.rows.len(), 2);
        assert_eq!(r.rows[1].data.as_deref(), Some(&b"new"[..]));
        assert_eq!(r.set_aside.len(), 1);
        assert_eq!(r.set_aside[0].path, "storage.cfg");
        assert_eq!(r.set_aside[0].row.data.as_deref(), Some(&b"old"[..]));
        assert!(
            r.changes[0].contains("/storage.cfg (inode 5) set aside: found entry with duplicate name: inode 3 is kept, its version 9 is newer than 4"),
            "{:?}",
            r.changes
        );
    }

    #[test]
    fn duplicate_directories_are_merged_and_their_duplicates_resolved() {
        let mut v = file(0, 0, 20, "__version__", "");
        v.data = None;
        let rows = [
            v,
            dir(2, 0, 2, "nodes"),
            dir(3, 2, 3, "pve1"),
            dir(4, 2, 10, "pve1"),
            file(5, 3, 5, "a", "only in the old"),
            file(6, 3, 6, "b", "old b"),
            file(7, 4, 12, "b", "new b"),
        ];
        let r = repaired(&rows);
        let names: Vec<(u64, u64)> = r.rows.iter().map(|r| (r.inode, r.parent)).collect();
        assert_eq!(names, [(0, 0), (2, 0), (4, 2), (5, 4), (7, 4)]);
        assert_eq!(r.set_aside.len(), 1);
        assert_eq!(r.set_aside[0].row.inode, 6);
        assert!(
            r.changes[0].contains("directory /nodes/pve1 (inode 3) removed, inode 4 is kept"),
            "{:?}",
            r.changes
        );
        assert!(r.changes[0].contains("its 2 entries moved into it"));
    }

    #[test]
    fn orphans_loops_and_bad_entries_are_set_aside_with_what_is_below() {
        let mut v = file(0, 0, 30, "__version__", "");
        v.data = None;
        let rows = [
            v,
            dir(2, 0, 2, "nodes"),
            dir(3, 99, 3, "lost"),
            file(4, 3, 4, "inside", "x"),
            file(5, 2, 5, "f", "not a dir"),
            file(6, 5, 6, "below-a-file", "y"),
            dir(7, 8, 7, "loop-a"),
            dir(8, 7, 8, "loop-b"),
            file(9, 2, 9, "", "empty name"),
            row(10, 2, 10, 3, "weird", Some("type 3")),
            row(11, 2, 11, DT_DIR, "dirdata", Some("zzz")),
        ];
        let r = repaired(&rows);
        let kept: Vec<u64> = r.rows.iter().map(|r| r.inode).collect();
        assert_eq!(kept, [0, 2, 5, 11]);
        let aside: BTreeSet<u64> = r.set_aside.iter().map(|s| s.row.inode).collect();
        assert_eq!(aside, BTreeSet::from([3, 4, 6, 7, 8, 9, 10, 11]));
        let all = r.changes.join("\n");
        assert!(all.contains("/lost (inode 3) with the 1 entries below it set aside: an orphan, its parent directory (inode 99) does not exist"), "{all}");
        assert!(
            all.contains("(inode 6) set aside: its parent /nodes/f (inode 5) is not a directory"),
            "{all}"
        );
        assert!(all.contains("never reaches the root"), "{all}");
        assert!(all.contains("empty name"), "{all}");
        assert!(all.contains("type 3 is neither"), "{all}");
        assert!(
            all.contains("directory /nodes/dirdata (inode 11) had 3 bytes of data"),
            "{all}"
        );
    }

    #[test]
    fn a_vmid_configured_twice_keeps_the_newer_configuration() {
        let mut v = file(0, 0, 20, "__version__", "");
        v.data = None;
        let rows = [
            v,
            dir(2, 0, 2, "nodes"),
            dir(3, 2, 3, "a"),
            dir(4, 3, 4, "qemu-server"),
            file(5, 4, 15, "100.conf", "newer"),
            dir(6, 2, 6, "b"),
            dir(7, 6, 7, "lxc"),
            file(8, 7, 8, "100.conf", "older"),
        ];
        let r = repaired(&rows);
        assert_eq!(r.set_aside.len(), 1);
        assert_eq!(r.set_aside[0].path, "nodes/b/lxc/100.conf");
        assert!(r.changes[0].contains("VMID 100 is configured more than once; /nodes/a/qemu-server/100.conf (version 15) is kept"), "{:?}", r.changes);
    }

    #[test]
    fn a_version_below_an_entry_and_a_missing_version_row() {
        let mut v = file(0, 0, 3, "__version__", "");
        v.data = None;
        let rows = [v, dir(2, 0, 2, "nodes"), file(9, 2, 7, "x", "1")];
        let r = repair(&rows);
        assert_eq!(r.rows[0].version, 9);
        assert!(
            r.changes[0].contains("the database version 3 was lower than an entry's: raised to 9")
        );
        assert!(dbcheck::check(&r.rows).repairs.is_empty());

        let r = repaired(&rows[1..]);
        assert_eq!((r.rows[0].inode, r.rows[0].version), (0, 9));
        assert_eq!(r.rows[0].name, VERSION_ROW);
        assert!(r.changes[0].contains("was missing: added"));
    }
}
