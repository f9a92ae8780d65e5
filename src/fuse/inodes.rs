//! The kernel's inode numbers of the mount, assigned per path like
//! libfuse's high-level API does for the C daemon: a number stands for
//! (parent number, name), and every request is resolved to a path and
//! looked up in memdb again. So a name whose file was replaced (a rename
//! from another node) still reaches the new file, and `st_ino` is this
//! number, not the memdb inode (as observed with C).

use std::collections::HashMap;

pub const ROOT_ID: u64 = 1;

struct InodeRef {
    parent: u64,
    name: Vec<u8>,
    lookups: u64,
    /// Unlinked or replaced: no path any more.
    detached: bool,
}

pub struct InodeTable {
    by_id: HashMap<u64, InodeRef>,
    by_name: HashMap<(u64, Vec<u8>), u64>,
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
                name: Vec::new(),
                lookups: 1,
                detached: false,
            },
        );
        InodeTable {
            by_id,
            by_name: HashMap::new(),
            next: ROOT_ID + 1,
        }
    }

    /// The number of `name` in `parent`, counting one kernel lookup.
    pub fn lookup(&mut self, parent: u64, name: &[u8]) -> u64 {
        if let Some(&id) = self.by_name.get(&(parent, name.to_vec())) {
            if let Some(n) = self.by_id.get_mut(&id) {
                n.lookups += 1;
            }
            return id;
        }
        let id = self.next;
        self.next += 1;
        self.by_id.insert(
            id,
            InodeRef {
                parent,
                name: name.to_vec(),
                lookups: 1,
                detached: false,
            },
        );
        self.by_name.insert((parent, name.to_vec()), id);
        id
    }

    /// The number of `name` in `parent` if the kernel knows it (readdir).
    pub fn peek(&self, parent: u64, name: &[u8]) -> Option<u64> {
        self.by_name.get(&(parent, name.to_vec())).copied()
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
                self.by_name.remove(&(gone.parent, gone.name));
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

    /// `name` in `parent` is gone (unlink, rmdir, replaced by a rename).
    pub fn detach(&mut self, parent: u64, name: &[u8]) {
        if let Some(id) = self.by_name.remove(&(parent, name.to_vec())) {
            if let Some(n) = self.by_id.get_mut(&id) {
                n.detached = true;
            }
        }
    }

    /// A successful rename: the inode moves, one at the target is gone.
    pub fn rename(&mut self, parent: u64, name: &[u8], newparent: u64, newname: &[u8]) {
        self.detach(newparent, newname);
        if let Some(id) = self.by_name.remove(&(parent, name.to_vec())) {
            if let Some(n) = self.by_id.get_mut(&id) {
                n.parent = newparent;
                n.name = newname.to_vec();
            }
            self.by_name.insert((newparent, newname.to_vec()), id);
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
}
