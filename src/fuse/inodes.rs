//! The kernel's inode numbers of the mount, assigned per path like
//! libfuse's high-level API does for the C daemon: a number stands for
//! (parent number, name), and every request is resolved to a path and
//! looked up in memdb again. So a name whose file was replaced (a rename
//! from another node) still reaches the new file, and `st_ino` is this
//! number, not the memdb inode (as observed with C).

use std::collections::HashMap;
use std::sync::Arc;

use crate::core::node::TreeChange;

pub const ROOT_ID: u64 = 1;

struct InodeRef {
    parent: u64,
    /// Shared with the parent's index: one allocation per name.
    name: Arc<[u8]>,
    lookups: u64,
    /// Unlinked or replaced: no path any more.
    detached: bool,
    /// The kernel holds it as a directory.
    dir: bool,
}

/// What the kernel may hold stale after a change behind its back: names
/// (a directory's number and the name in it) and numbers (attributes).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stale {
    pub entries: Vec<StaleName>,
    pub inodes: Vec<u64>,
}

/// A name in a directory the kernel may hold stale.
#[derive(Debug, PartialEq, Eq)]
pub struct StaleName {
    pub parent: u64,
    pub name: Arc<[u8]>,
    /// The kernel holds it as a directory, at this path: if that is still
    /// a directory, its name need not go (dropping a directory's name
    /// drops every name cached below it, all looked up again after a
    /// sync or a change of quorum); its attributes do.
    pub dir_path: Option<Vec<u8>>,
}

/// Every number the kernel holds, and per directory number its named
/// children, looked up by a borrowed name (no allocation per request).
pub struct InodeTable {
    by_id: HashMap<u64, InodeRef>,
    by_name: HashMap<u64, HashMap<Arc<[u8]>, u64>>,
    next: u64,
}

impl Default for InodeTable {
    fn default() -> Self {
        InodeTable::new()
    }
}

impl InodeTable {
    pub fn new() -> InodeTable {
        let mut by_id = HashMap::new();
        by_id.insert(
            ROOT_ID,
            InodeRef {
                parent: 0,
                name: Arc::from(&b""[..]),
                lookups: 1,
                detached: false,
                dir: true,
            },
        );
        InodeTable {
            by_id,
            by_name: HashMap::new(),
            next: ROOT_ID + 1,
        }
    }

    fn unlink_name(&mut self, parent: u64, name: &[u8]) -> Option<u64> {
        let names = self.by_name.get_mut(&parent)?;
        let id = names.remove(name);
        if names.is_empty() {
            self.by_name.remove(&parent);
        }
        id
    }

    /// The number of `name` in `parent`, counting one kernel lookup.
    pub fn lookup(&mut self, parent: u64, name: &[u8]) -> u64 {
        if let Some(&id) = self.by_name.get(&parent).and_then(|m| m.get(name)) {
            if let Some(n) = self.by_id.get_mut(&id) {
                n.lookups += 1;
            }
            return id;
        }
        let id = self.next;
        self.next += 1;
        let name: Arc<[u8]> = Arc::from(name);
        self.by_id.insert(
            id,
            InodeRef {
                parent,
                name: name.clone(),
                lookups: 1,
                detached: false,
                dir: false,
            },
        );
        self.by_name.entry(parent).or_default().insert(name, id);
        id
    }

    /// What the kernel was told the number is (with its attributes).
    pub fn set_dir(&mut self, id: u64, dir: bool) {
        if let Some(n) = self.by_id.get_mut(&id) {
            n.dir = dir;
        }
    }

    /// The number of `name` in `parent` if the kernel knows it (readdir).
    pub fn peek(&self, parent: u64, name: &[u8]) -> Option<u64> {
        self.by_name.get(&parent)?.get(name).copied()
    }

    pub fn forget(&mut self, id: u64, n: u64) {
        if id == ROOT_ID {
            return;
        }
        let Some(inode) = self.by_id.get_mut(&id) else {
            return;
        };
        inode.lookups = inode.lookups.saturating_sub(n);
        if inode.lookups == 0 {
            let gone = self.by_id.remove(&id).expect("present");
            if !gone.detached {
                self.unlink_name(gone.parent, &gone.name);
            }
        }
    }

    /// The path of an inode number relative to the mount ("" for the root).
    pub fn path(&self, id: u64) -> Option<Vec<u8>> {
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut cur = id;
        while cur != ROOT_ID {
            let n = self.by_id.get(&cur)?;
            if n.detached || parts.len() > self.by_id.len() {
                return None;
            }
            parts.push(&n.name);
            cur = n.parent;
        }
        parts.reverse();
        Some(parts.join(&b'/'))
    }

    /// What the kernel knows of a change: for each path its name in its
    /// directory, its number and the directory's (whose attributes follow
    /// its entries); for [`TreeChange::All`] every name and number.
    /// Paths below a directory the kernel does not know are in no cache.
    pub fn stale(&self, change: &TreeChange) -> Stale {
        let mut stale = Stale::default();
        match change {
            TreeChange::All => {
                for (&id, inode) in &self.by_id {
                    if id != ROOT_ID && !inode.detached {
                        stale.entries.push(StaleName {
                            parent: inode.parent,
                            name: inode.name.clone(),
                            dir_path: self.dir_path(id),
                        });
                    }
                    stale.inodes.push(id);
                }
            }
            TreeChange::Paths(paths) => {
                for path in paths {
                    let mut parts = path.split(|&b| b == b'/').filter(|p| !p.is_empty());
                    let Some(last) = parts.next_back() else {
                        continue;
                    };
                    let parent = parts.try_fold(ROOT_ID, |dir, part| self.peek(dir, part));
                    let Some(parent) = parent else {
                        continue;
                    };
                    stale.inodes.push(parent);
                    let known = self
                        .by_name
                        .get(&parent)
                        .and_then(|names| names.get_key_value(last));
                    match known {
                        Some((name, &id)) => {
                            stale.entries.push(StaleName {
                                parent,
                                name: name.clone(),
                                dir_path: self.dir_path(id),
                            });
                            stale.inodes.push(id);
                        }
                        None => stale.entries.push(StaleName {
                            parent,
                            name: Arc::from(last),
                            dir_path: None,
                        }),
                    }
                }
            }
        }
        stale.inodes.sort_unstable();
        stale.inodes.dedup();
        stale
    }

    /// The path of a number the kernel holds as a directory.
    fn dir_path(&self, id: u64) -> Option<Vec<u8>> {
        self.by_id.get(&id).filter(|n| n.dir)?;
        self.path(id)
    }

    /// `name` in `parent` is gone (unlink, rmdir, replaced by a rename).
    pub fn detach(&mut self, parent: u64, name: &[u8]) {
        if let Some(id) = self.unlink_name(parent, name) {
            if let Some(n) = self.by_id.get_mut(&id) {
                n.detached = true;
            }
        }
    }

    /// A successful rename: the inode moves, one at the target is gone.
    pub fn rename(&mut self, parent: u64, name: &[u8], newparent: u64, newname: &[u8]) {
        self.detach(newparent, newname);
        if let Some(id) = self.unlink_name(parent, name) {
            let newname: Arc<[u8]> = Arc::from(newname);
            if let Some(n) = self.by_id.get_mut(&id) {
                n.parent = newparent;
                n.name = newname.clone();
            }
            self.by_name
                .entry(newparent)
                .or_default()
                .insert(newname, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_renames_and_forgets() {
        let mut t = InodeTable::new();
        let a = t.lookup(ROOT_ID, b"a");
        let b = t.lookup(a, b"b");
        assert_eq!(t.path(b).unwrap(), b"a/b");
        assert_eq!(t.lookup(ROOT_ID, b"a"), a);
        let c = t.lookup(ROOT_ID, b"c");
        t.rename(ROOT_ID, b"a", ROOT_ID, b"c");
        assert_eq!(t.path(b).unwrap(), b"c/b");
        assert!(t.path(c).is_none());
        t.forget(b, 1);
        assert!(t.path(b).is_none());
        t.forget(a, 1);
        assert_eq!(t.path(a).unwrap(), b"c");
        t.forget(a, 1);
        assert!(t.peek(ROOT_ID, b"c").is_none());
    }

    #[test]
    fn a_change_behind_the_kernels_back_names_what_it_knows_of_it() {
        let mut t = InodeTable::new();
        let nodes = t.lookup(ROOT_ID, b"nodes");
        let n1 = t.lookup(nodes, b"n1");
        let conf = t.lookup(n1, b"100.conf");
        t.set_dir(nodes, true);
        t.set_dir(n1, true);
        let names = |s: &Stale| -> Vec<(u64, Vec<u8>)> {
            s.entries
                .iter()
                .map(|e| (e.parent, e.name.to_vec()))
                .collect()
        };
        // A known file: its name, its number and its directory's.
        let s = t.stale(&TreeChange::Paths(vec![b"nodes/n1/100.conf".to_vec()]));
        assert_eq!(names(&s), [(n1, b"100.conf".to_vec())]);
        assert_eq!(s.inodes, [n1, conf]);
        // A name the kernel never looked up: the name (it may hold it as
        // absent) and the directory.
        let s = t.stale(&TreeChange::Paths(vec![b"nodes/n1/101.conf".to_vec()]));
        assert_eq!(names(&s), [(n1, b"101.conf".to_vec())]);
        assert_eq!(s.inodes, [n1]);
        // Below a directory the kernel does not know: nothing is cached.
        let s = t.stale(&TreeChange::Paths(vec![b"nodes/n2/100.conf".to_vec()]));
        assert_eq!(s, Stale::default());
        // A rename names both ends.
        let s = t.stale(&TreeChange::Paths(vec![
            b"nodes/n1/100.conf".to_vec(),
            b"nodes/n1/100.conf.tmp".to_vec(),
        ]));
        assert_eq!(s.entries.len(), 2);
        // A directory's name comes with its path (kept if still one).
        let s = t.stale(&TreeChange::Paths(vec![b"nodes/n1".to_vec()]));
        assert_eq!(s.entries[0].dir_path.as_deref(), Some(&b"nodes/n1"[..]));
        // Everything: every name but the root's, every number.
        t.detach(n1, b"100.conf");
        let s = t.stale(&TreeChange::All);
        let mut all = names(&s);
        all.sort();
        assert_eq!(all, [(ROOT_ID, b"nodes".to_vec()), (nodes, b"n1".to_vec())]);
        assert!(s.entries.iter().all(|e| e.dir_path.is_some()));
        assert_eq!(s.inodes, [ROOT_ID, nodes, n1, conf]);
    }

    #[test]
    fn a_detached_number_never_takes_its_old_name_with_it() {
        let mut t = InodeTable::new();
        let old = t.lookup(ROOT_ID, b"x");
        t.detach(ROOT_ID, b"x");
        let new = t.lookup(ROOT_ID, b"x");
        assert_ne!(old, new);
        t.forget(old, 1);
        assert_eq!(t.peek(ROOT_ID, b"x"), Some(new));
        assert_eq!(t.path(new).unwrap(), b"x");
        // A rename onto a known name detaches that one.
        let y = t.lookup(ROOT_ID, b"y");
        t.rename(ROOT_ID, b"x", ROOT_ID, b"y");
        assert!(t.path(y).is_none());
        assert_eq!(t.peek(ROOT_ID, b"y"), Some(new));
        assert_eq!(t.peek(ROOT_ID, b"x"), None);
        t.forget(y, 1);
        t.forget(new, 2);
        assert_eq!(t.peek(ROOT_ID, b"y"), None);
        assert!(t.by_name.is_empty(), "no empty directory maps left behind");
    }
}
