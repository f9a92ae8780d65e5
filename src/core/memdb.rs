//! memdb: the in-memory tree behind /etc/pve (spec §2.5, §4), as pure state.
//!
//! Every operation takes the writer (a nodeid; 0 in local mode) and the
//! mtime it must stamp, and checks in exactly the order of C, returning the
//! same errno. A successful operation bumps the global version, and records
//! the rows to persist in `pending`, which the database edge drains and
//! writes in one transaction (the C `bdb_backend_write`). The core never
//! touches SQLite itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use pmxcfs_wire::dcdb::{EntryType, MemdbIndex, TreeEntry, DT_DIR, DT_REG, MAX_FILE_SIZE};
use pmxcfs_wire::digest;
use pmxcfs_wire::Codec;

use super::locks::LockTable;
use super::paths::{self, VmConfigPath};
use super::status::ChangeCounters;
use super::vmlist::VmList;

use super::errno::{
    Errno, EACCES, EEXIST, EFBIG, EINVAL, EIO, ENOENT, ENOTDIR, ENOTEMPTY, EOVERFLOW,
};

/// `MEMDB_MAX_FSSIZE` and `MEMDB_MAX_INODES` (reported by statfs only).
pub const BLOCK_SIZE: u64 = 4096;
pub const MAX_FS_BLOCKS: u64 = 128 * 1024 * 1024 / BLOCK_SIZE;
pub const MAX_INODES: u64 = 262_144;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Dir { children: BTreeMap<Arc<[u8]>, u64> },
    File,
}

/// One tree entry. The root (inode 0) carries the global version, writer
/// and mtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub inode: u64,
    pub parent: u64,
    pub version: u64,
    pub writer: u32,
    pub mtime: u32,
    /// Data length; can exceed `data`'s length only in C's empty-file
    /// truncate quirk (spec §2.5.1).
    pub size: u32,
    /// Shared with the parent directory's index of its children.
    pub name: Arc<[u8]>,
    /// `None` is SQL NULL (directories, empty files); `Some(vec![])` is the
    /// zero-length blob C stores for renamed entries.
    pub data: Option<Vec<u8>>,
    pub content: Content,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        matches!(self.content, Content::Dir { .. })
    }

    pub fn data(&self) -> &[u8] {
        self.data.as_deref().unwrap_or(&[])
    }

    pub fn entry_type(&self) -> EntryType {
        if self.is_dir() {
            EntryType::Dir
        } else {
            EntryType::Reg
        }
    }

    /// The entry as the digests and UPDATE messages see it.
    pub fn to_tree_entry(&self) -> TreeEntry {
        TreeEntry {
            parent: self.parent,
            inode: self.inode,
            version: self.version,
            writer: self.writer,
            mtime: self.mtime,
            size: self.size,
            entry_type: self.entry_type(),
            name: self.name.to_vec(),
            data: self.data().to_vec(),
        }
    }

    fn children(&self) -> Option<&BTreeMap<Arc<[u8]>, u64>> {
        match &self.content {
            Content::Dir { children } => Some(children),
            Content::File => None,
        }
    }
}

/// A row of the `tree` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub inode: u64,
    pub parent: u64,
    pub version: u64,
    pub writer: u32,
    pub mtime: u32,
    pub entry_type: u8,
    pub name: Vec<u8>,
    pub data: Option<Vec<u8>>,
}

/// One transaction for the database edge: delete these inodes, then
/// replace these rows. A local operation (C `bdb_backend_write`) deletes at
/// most one inode and writes at most one entry plus the `__version__` row;
/// a sync commit (C `bdb_backend_commit_update`) writes many.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DbChange {
    pub delete_inodes: Vec<u64>,
    pub write_rows: Vec<Row>,
}

impl DbChange {
    /// Apply to rows held in memory as SQLite would (for drivers that model
    /// the database without one: the simulator, capture replay).
    pub fn apply_to(self, rows: &mut std::collections::BTreeMap<u64, Row>) {
        for i in self.delete_inodes {
            rows.remove(&i);
        }
        for r in self.write_rows {
            rows.insert(r.inode, r);
        }
    }
}

/// The `__version__` row as a local operation writes it (type DT_REG).
fn version_row(version: u64, writer: u32, mtime: u32) -> Row {
    Row {
        inode: 0,
        parent: 0,
        version,
        writer,
        mtime,
        entry_type: DT_REG,
        name: b"__version__".to_vec(),
        data: None,
    }
}

/// Why a set of rows is not a loadable tree (spec §4.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    EmptyName {
        inode: u64,
    },
    DirectoryWithData {
        inode: u64,
    },
    BadType {
        inode: u64,
        entry_type: u8,
    },
    BadVersionRow {
        name: Vec<u8>,
    },
    ParentNotDirectory {
        inode: u64,
        parent: u64,
    },
    DuplicateName {
        inode: u64,
        parent: u64,
        name: Vec<u8>,
    },
    DuplicateInode {
        inode: u64,
    },
    MissingParent {
        parent: u64,
    },
    DuplicateVmid {
        vmid: u32,
    },
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match self {
            LoadError::EmptyName { inode } => write!(f, "row inode {inode}: empty name"),
            LoadError::DirectoryWithData { inode } => {
                write!(f, "row inode {inode}: directory with data")
            }
            LoadError::BadType { inode, entry_type } => {
                write!(
                    f,
                    "row inode {inode}: unknown type {entry_type} (expected 4 or 8)"
                )
            }
            LoadError::BadVersionRow { name } => {
                write!(
                    f,
                    "row inode 0: name '{}' (expected '__version__')",
                    s(name)
                )
            }
            LoadError::ParentNotDirectory { inode, parent } => {
                write!(f, "row inode {inode}: parent {parent} is not a directory")
            }
            LoadError::DuplicateName {
                inode,
                parent,
                name,
            } => write!(
                f,
                "found entry with duplicate name '{}' in directory inode {parent} (inode {inode})",
                s(name)
            ),
            LoadError::DuplicateInode { inode } => write!(f, "row inode {inode}: duplicate inode"),
            LoadError::MissingParent { parent } => {
                write!(f, "parent directory inode {parent} does not exist")
            }
            LoadError::DuplicateVmid { vmid } => {
                write!(f, "VMID {vmid} is configured more than once")
            }
        }
    }
}

/// The replicated tree plus the local state derived from it.
#[derive(Clone, Debug)]
pub struct Memdb {
    entries: HashMap<u64, Entry>,
    /// Sticky after a failed persist: every mutation then fails with EIO.
    error: bool,
    pub vmlist: VmList,
    pub locks: LockTable,
    pub changes: ChangeCounters,
    pending: Vec<DbChange>,
}

fn root_entry(version: u64, writer: u32, mtime: u32) -> Entry {
    Entry {
        inode: 0,
        parent: 0,
        version,
        writer,
        mtime,
        size: 0,
        name: Arc::from(&b""[..]),
        data: None,
        content: Content::Dir {
            children: BTreeMap::new(),
        },
    }
}

impl Memdb {
    /// A tree from the rows of a database, checked as C's loader checks it.
    /// `now` stamps a fresh database (root version still 0) and the lock
    /// table. Returns the tree and, for a fresh database, the change that
    /// writes its first `__version__` row.
    pub fn from_rows(rows: Vec<Row>, now: u32) -> Result<(Memdb, Option<DbChange>), LoadError> {
        let entries = build_entries(rows)?;
        let mut memdb = Memdb {
            entries,
            error: false,
            vmlist: VmList::default(),
            locks: LockTable::default(),
            changes: ChangeCounters::default(),
            pending: Vec::new(),
        };
        let mut first_version = None;
        if memdb.root().version == 0 {
            let root = memdb.entries.get_mut(&0).expect("root exists");
            root.version = 1;
            root.writer = 0;
            root.mtime = now;
            first_version = Some(memdb.root_change(None, None));
        }
        memdb.after_reload(now)?;
        Ok((memdb, first_version))
    }

    /// The rows of the tree as the database holds them (the `__version__`
    /// row as a local operation writes it).
    pub fn rows(&self) -> Vec<Row> {
        let root = self.root();
        let mut rows = vec![version_row(root.version, root.writer, root.mtime)];
        rows.extend(
            self.sorted_entries()
                .into_iter()
                .skip(1)
                .filter_map(|e| self.row_of(e.inode)),
        );
        rows
    }

    /// C's sync commit (spec §2.10): delete what the leader does not have,
    /// replace the received entries, reload, and require the result to be
    /// byte-identical to the leader's index. On any failure the tree is
    /// kept, the error flag is set (every later change is EIO, as in C) and
    /// `Err` is returned.
    pub fn commit_sync(
        &mut self,
        leader: &MemdbIndex,
        updates: Vec<TreeEntry>,
        now: u32,
    ) -> Result<(), String> {
        let result = self.try_commit_sync(leader, updates, now);
        if result.is_err() {
            self.error = true;
        }
        result
    }

    fn try_commit_sync(
        &mut self,
        leader: &MemdbIndex,
        updates: Vec<TreeEntry>,
        now: u32,
    ) -> Result<(), String> {
        // A sync may bring the whole tree: the updates are moved into the
        // rows to write, and only the entries kept from our tree are
        // copied, so that the data is held twice at most (the rows the
        // database edge writes, the new tree), besides our old tree kept
        // for the index check.
        let leader_inodes: std::collections::HashSet<u64> =
            leader.entries.iter().map(|e| e.inode).collect();
        let delete_inodes: Vec<u64> = self
            .sorted_entries()
            .iter()
            .map(|e| e.inode)
            .filter(|i| *i != 0 && !leader_inodes.contains(i))
            .collect();
        let write_rows: Vec<Row> = updates
            .into_iter()
            .map(|u| Row {
                inode: u.inode,
                parent: u.parent,
                version: u.version,
                writer: u.writer,
                mtime: u.mtime,
                entry_type: u8::from(u.entry_type),
                data: (u.entry_type == EntryType::Reg && u.size > 0).then_some(u.data),
                name: if u.inode == 0 {
                    b"__version__".to_vec()
                } else {
                    u.name
                },
            })
            .collect();
        let replaced: std::collections::HashSet<u64> = write_rows.iter().map(|r| r.inode).collect();
        let deleted: std::collections::HashSet<u64> = delete_inodes.iter().copied().collect();
        let mut rows: HashMap<u64, Row> = HashMap::with_capacity(self.entries.len());
        if !replaced.contains(&0) {
            let root = self.root();
            rows.insert(0, version_row(root.version, root.writer, root.mtime));
        }
        for inode in self.entries.keys() {
            if *inode != 0 && !replaced.contains(inode) && !deleted.contains(inode) {
                if let Some(r) = self.row_of(*inode) {
                    rows.insert(*inode, r);
                }
            }
        }
        for r in &write_rows {
            rows.insert(r.inode, r.clone());
        }
        let entries = build_entries(rows.into_values().collect())
            .map_err(|e| format!("new tree does not load: {e}"))?;
        // A tree whose version is below one of its entries' would number
        // the next new entry like an existing one (C never makes one; a
        // broken or hostile leader can send one).
        let version = entries[&0].version;
        if let Some(e) = entries
            .values()
            .find(|e| e.inode != 0 && (e.inode > version || e.version > version))
        {
            return Err(format!(
                "new tree does not load: entry {} is newer than the tree's version {version}",
                e.inode
            ));
        }
        let old_entries = std::mem::replace(&mut self.entries, entries);
        if self.index().to_bytes() != leader.to_bytes() {
            self.entries = old_entries;
            return Err("new index does not match master index".into());
        }
        self.pending.push(DbChange {
            delete_inodes,
            write_rows,
        });
        self.after_reload(now).map_err(|e| e.to_string())
    }
}

/// The tree of a set of rows, checked as C's loader checks it (spec §4.4).
fn build_entries(rows: Vec<Row>) -> Result<HashMap<u64, Entry>, LoadError> {
    {
        let mut entries: HashMap<u64, Entry> = HashMap::with_capacity(rows.len() + 1);
        entries.insert(0, root_entry(0, 0, 0));
        let mut children: Vec<(u64, u64, Arc<[u8]>)> = Vec::with_capacity(rows.len());
        for row in rows {
            if row.name.is_empty() {
                return Err(LoadError::EmptyName { inode: row.inode });
            }
            let content = match row.entry_type {
                DT_REG => Content::File,
                DT_DIR => {
                    if row.data.as_ref().is_some_and(|d| !d.is_empty()) {
                        return Err(LoadError::DirectoryWithData { inode: row.inode });
                    }
                    Content::Dir {
                        children: BTreeMap::new(),
                    }
                }
                t => {
                    return Err(LoadError::BadType {
                        inode: row.inode,
                        entry_type: t,
                    })
                }
            };
            if row.inode == 0 {
                if row.name != b"__version__" {
                    return Err(LoadError::BadVersionRow { name: row.name });
                }
                let root = entries.get_mut(&0).expect("root exists");
                root.version = row.version;
                root.writer = row.writer;
                root.mtime = row.mtime;
                continue;
            }
            let size = row.data.as_ref().map_or(0, |d| d.len() as u32);
            let name: Arc<[u8]> = row.name.into();
            children.push((row.inode, row.parent, name.clone()));
            let entry = Entry {
                inode: row.inode,
                parent: row.parent,
                version: row.version,
                writer: row.writer,
                mtime: row.mtime,
                size,
                name,
                data: row.data,
                content,
            };
            if entries.insert(row.inode, entry).is_some() {
                return Err(LoadError::DuplicateInode { inode: row.inode });
            }
        }
        for (inode, parent, name) in children {
            let Some(p) = entries.get_mut(&parent) else {
                return Err(LoadError::MissingParent { parent });
            };
            match &mut p.content {
                Content::Dir { children } => {
                    if children.insert(name.clone(), inode).is_some() {
                        return Err(LoadError::DuplicateName {
                            inode,
                            parent,
                            name: name.to_vec(),
                        });
                    }
                }
                Content::File => return Err(LoadError::ParentNotDirectory { inode, parent }),
            }
        }
        check_connected(&entries)?;
        Ok(entries)
    }
}

/// Every entry must reach the root (a parent loop would not).
fn check_connected(entries: &HashMap<u64, Entry>) -> Result<(), LoadError> {
    let mut reached = 0usize;
    let mut stack = vec![0u64];
    while let Some(i) = stack.pop() {
        reached += 1;
        if let Some(c) = entries[&i].children() {
            stack.extend(c.values().copied());
        }
        if reached > entries.len() {
            break;
        }
    }
    if reached != entries.len() {
        let orphan = entries
            .values()
            .find(|e| e.inode != 0)
            .map_or(0, |e| e.parent);
        return Err(LoadError::MissingParent { parent: orphan });
    }
    Ok(())
}

impl Memdb {
    /// What C does after opening or replacing the tree: all change counters
    /// bumped, the vmlist and lock table rebuilt.
    fn after_reload(&mut self, now: u32) -> Result<(), LoadError> {
        self.changes.record_reload();
        self.vmlist
            .rebuild(self.vm_configs())
            .map_err(|vmid| LoadError::DuplicateVmid { vmid })?;
        let locks: Vec<(Vec<u8>, [u8; 32])> = self.lock_dirs();
        self.locks.rebuild(locks, now);
        Ok(())
    }

    /// Raise the global version to the highest version or inode of any
    /// entry when a database has it lower. C never writes such a database,
    /// but would give a new entry the number of an existing one; the
    /// version row is queued for persisting. Returns (old, new).
    pub fn repair_version(&mut self) -> Option<(u64, u64)> {
        let max = self
            .entries
            .values()
            .filter(|e| e.inode != 0)
            .map(|e| e.version.max(e.inode))
            .max()?;
        let old = self.root().version;
        if old >= max {
            return None;
        }
        self.entries.get_mut(&0).expect("root exists").version = max;
        self.pending.push(self.root_change(None, None));
        Some((old, max))
    }

    /// The rows of a fresh database (only its `__version__` row).
    pub fn new_empty(now: u32) -> (Memdb, DbChange) {
        let (m, change) = Memdb::from_rows(Vec::new(), now).expect("an empty tree loads");
        (m, change.expect("a fresh tree writes its version row"))
    }

    pub fn root(&self) -> &Entry {
        &self.entries[&0]
    }

    pub fn version(&self) -> u64 {
        self.root().version
    }

    pub fn has_error(&self) -> bool {
        self.error
    }

    /// The persist of a change failed: from now on every mutation is EIO,
    /// as in C (only a restart recovers).
    pub fn set_error(&mut self) {
        self.error = true;
    }

    /// The changes made since the last call, in order.
    pub fn take_changes(&mut self) -> Vec<DbChange> {
        std::mem::take(&mut self.pending)
    }

    pub fn entry(&self, inode: u64) -> Option<&Entry> {
        self.entries.get(&inode)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Entry by path (components split on '/', empty ones skipped).
    pub fn lookup(&self, path: &[u8]) -> Option<&Entry> {
        let mut cur = self.entries.get(&0)?;
        for c in paths::components(path) {
            let child = *cur.children()?.get(c)?;
            cur = self.entries.get(&child)?;
        }
        Some(cur)
    }

    pub fn child(&self, dir: u64, name: &[u8]) -> Option<&Entry> {
        let inode = *self.entries.get(&dir)?.children()?.get(name)?;
        self.entries.get(&inode)
    }

    pub fn children(&self, dir: u64) -> Vec<&Entry> {
        match self.entries.get(&dir).and_then(|e| e.children()) {
            Some(c) => c.values().filter_map(|i| self.entries.get(i)).collect(),
            None => Vec::new(),
        }
    }

    /// The path of an entry (no leading slash; "" for the root).
    pub fn path_of(&self, inode: u64) -> Option<Vec<u8>> {
        let mut parts = Vec::new();
        let mut cur = self.entries.get(&inode)?;
        let mut guard = 0;
        while cur.inode != 0 {
            parts.push(cur.name.clone());
            cur = self.entries.get(&cur.parent)?;
            guard += 1;
            if guard > self.entries.len() {
                return None;
            }
        }
        parts.reverse();
        Some(parts.join(&b'/'))
    }

    /// All entries sorted by inode (root first), as the index and the tree
    /// checksum need them.
    pub fn sorted_entries(&self) -> Vec<&Entry> {
        let mut v: Vec<&Entry> = self.entries.values().collect();
        v.sort_unstable_by_key(|e| e.inode);
        v
    }

    /// The memdb index, the dcdb STATE (spec §2.7.1).
    pub fn index(&self) -> MemdbIndex {
        let entries: Vec<TreeEntry> = self
            .sorted_entries()
            .iter()
            .map(|e| e.to_tree_entry())
            .collect();
        digest::memdb_index(&entries)
    }

    /// The full-tree checksum sent in VERIFY.
    pub fn checksum(&self) -> [u8; 32] {
        let entries: Vec<TreeEntry> = self
            .sorted_entries()
            .iter()
            .map(|e| e.to_tree_entry())
            .collect();
        digest::tree_checksum(&entries)
    }

    /// (total data bytes, entries) for statfs.
    pub fn usage(&self) -> (u64, u64) {
        let bytes = self.entries.values().map(|e| e.size as u64).sum();
        (bytes, self.entries.len() as u64)
    }

    fn vm_configs(&self) -> Vec<VmConfigPath> {
        let Some(nodes) = self.lookup(b"nodes") else {
            return Vec::new();
        };
        if !nodes.is_dir() {
            return Vec::new();
        }
        let mut out = Vec::new();
        // C walks each node's guest directories in this order (the
        // vmlist numbers guests as it finds them, and PVE::Cluster takes
        // the numbers as cache keys); nodes and files are taken by name,
        // where C takes its hash tables' order (not reproduced: it depends
        // on the tables' history, not only on the tree).
        const TYPE_DIRS: [&[u8]; 3] = [b"qemu-server", b"openvz", b"lxc"];
        for node in self.children(nodes.inode) {
            let typedirs = TYPE_DIRS
                .iter()
                .filter_map(|name| self.child(node.inode, name))
                .collect::<Vec<_>>();
            for typedir in typedirs {
                for file in self.children(typedir.inode) {
                    if file.is_dir() {
                        continue;
                    }
                    let path = [
                        &b"nodes/"[..],
                        &node.name,
                        b"/",
                        &typedir.name,
                        b"/",
                        &file.name,
                    ]
                    .concat();
                    if let Some(vm) = paths::vm_config(&path) {
                        out.push(vm);
                    }
                }
            }
        }
        out
    }

    /// Whether the tree has a `nodes` directory (C rebuilds the vmlist only
    /// then; see `VmList::rebuild`).
    pub fn has_nodes_dir(&self) -> bool {
        self.lookup(b"nodes").is_some_and(Entry::is_dir)
    }

    fn lock_dirs(&self) -> Vec<(Vec<u8>, [u8; 32])> {
        let Some(lockdir) = self.lookup(paths::LOCK_DIR) else {
            return Vec::new();
        };
        self.children(lockdir.inode)
            .into_iter()
            .filter(|e| e.is_dir())
            .map(|e| {
                let path = [paths::LOCK_DIR, b"/", &e.name].concat();
                (path, digest::entry_checksum(&e.to_tree_entry()))
            })
            .collect()
    }

    /// The entry checksum of a lock directory, if `path` is one.
    pub fn lock_checksum(&self, path: &[u8]) -> Option<[u8; 32]> {
        if !paths::is_lock_path(path) {
            return None;
        }
        let e = self.lookup(path)?;
        e.is_dir()
            .then(|| digest::entry_checksum(&e.to_tree_entry()))
    }

    fn row_of(&self, inode: u64) -> Option<Row> {
        let e = self.entries.get(&inode)?;
        Some(Row {
            inode: e.inode,
            parent: e.parent,
            version: e.version,
            writer: e.writer,
            mtime: e.mtime,
            entry_type: if e.is_dir() { DT_DIR } else { DT_REG },
            name: e.name.to_vec(),
            data: e.data.clone(),
        })
    }

    fn root_change(&self, delete_inode: Option<u64>, write: Option<u64>) -> DbChange {
        let root = self.root();
        let mut write_rows: Vec<Row> = write.and_then(|i| self.row_of(i)).into_iter().collect();
        write_rows.push(version_row(root.version, root.writer, root.mtime));
        DbChange {
            delete_inodes: delete_inode.into_iter().collect(),
            write_rows,
        }
    }

    /// The global version rule: bump, stamp, return the new version.
    fn bump(&mut self, writer: u32, mtime: u32) -> u64 {
        let root = self.entries.get_mut(&0).expect("root exists");
        root.version += 1;
        root.writer = writer;
        root.mtime = mtime;
        root.version
    }

    /// Whether the tree takes a change: not after a failed commit (EIO),
    /// and not when its version cannot go up any more (EOVERFLOW; the next
    /// new entry would be numbered 0, the root's inode).
    fn check_error(&self) -> Result<(), Errno> {
        if self.error {
            Err(EIO)
        } else if self.root().version == u64::MAX {
            Err(EOVERFLOW)
        } else {
            Ok(())
        }
    }

    /// Whether `inode` is `ancestor` or lies below it.
    fn is_within(&self, mut inode: u64, ancestor: u64) -> bool {
        // Bounded by the tree's size: a loop cannot hold it.
        for _ in 0..=self.entries.len() {
            if inode == ancestor {
                return true;
            }
            if inode == 0 {
                return false;
            }
            match self.entries.get(&inode) {
                Some(e) => inode = e.parent,
                None => return false,
            }
        }
        false
    }

    /// The parent directory of `path` and its basename, with C's checks:
    /// missing → ENOENT, not a directory → ENOTDIR, bad basename → EACCES.
    fn parent_and_name<'p>(&self, path: &'p [u8]) -> Result<(u64, &'p [u8]), Errno> {
        let dir = paths::dirname(path);
        let name = paths::basename(path);
        let parent = self.lookup(dir).ok_or(ENOENT)?;
        if !parent.is_dir() {
            return Err(ENOTDIR);
        }
        if paths::is_bad_basename(name) {
            return Err(EACCES);
        }
        Ok((parent.inode, name))
    }

    /// EEXIST when `path` is a VM config whose VMID the vmlist holds on
    /// another node or with another type.
    fn check_vmid(&self, path: &[u8], moving_from: Option<&VmConfigPath>) -> Result<(), Errno> {
        if let Some(vm) = paths::vm_config(path) {
            if moving_from.is_some_and(|from| from.vmid == vm.vmid) {
                return Ok(());
            }
            if let Some(existing) = self.vmlist.get(vm.vmid) {
                if *existing.node != *vm.node || existing.vmtype != vm.vmtype {
                    return Err(EEXIST);
                }
            }
        }
        Ok(())
    }

    fn insert_entry(&mut self, entry: Entry) {
        let (inode, parent, name) = (entry.inode, entry.parent, entry.name.clone());
        self.entries.insert(inode, entry);
        if let Some(Content::Dir { children }) =
            self.entries.get_mut(&parent).map(|p| &mut p.content)
        {
            children.insert(name, inode);
        }
    }

    fn unlink_entry(&mut self, inode: u64) -> Option<Entry> {
        let entry = self.entries.remove(&inode)?;
        if let Some(Content::Dir { children }) =
            self.entries.get_mut(&entry.parent).map(|p| &mut p.content)
        {
            children.remove(&entry.name);
        }
        Some(entry)
    }

    /// MKDIR.
    pub fn mkdir(&mut self, path: &[u8], writer: u32, mtime: u32, now: u32) -> Result<(), Errno> {
        self.check_error()?;
        let (parent, name) = self.parent_and_name(path)?;
        if self.child(parent, name).is_some() {
            return Err(EEXIST);
        }
        let version = self.bump(writer, mtime);
        let name = Arc::from(name);
        self.insert_entry(Entry {
            inode: version,
            parent,
            version,
            writer,
            mtime,
            size: 0,
            name,
            data: None,
            content: Content::Dir {
                children: BTreeMap::new(),
            },
        });
        self.pending.push(self.root_change(None, Some(version)));
        if paths::dirname(path) == paths::LOCK_DIR {
            self.register_lock(path, now);
        }
        Ok(())
    }

    fn register_lock(&mut self, path: &[u8], now: u32) {
        if let Some(csum) = self
            .lookup(path)
            .map(|e| digest::entry_checksum(&e.to_tree_entry()))
        {
            self.locks.register(path, csum, now);
        }
    }

    /// CREATE: a new, empty regular file.
    pub fn create(&mut self, path: &[u8], writer: u32, mtime: u32) -> Result<(), Errno> {
        self.pwrite(path, writer, mtime, &[], 0, false, true)
            .map(|_| ())
    }

    /// WRITE (and truncate, with `truncate` set and no data): returns the
    /// number of bytes written.
    pub fn write(
        &mut self,
        path: &[u8],
        writer: u32,
        mtime: u32,
        data: &[u8],
        offset: u32,
        truncate: bool,
    ) -> Result<u32, Errno> {
        self.pwrite(path, writer, mtime, data, offset, truncate, false)
    }

    #[allow(clippy::too_many_arguments)]
    fn pwrite(
        &mut self,
        path: &[u8],
        writer: u32,
        mtime: u32,
        data: &[u8],
        offset: u32,
        truncate: bool,
        create: bool,
    ) -> Result<u32, Errno> {
        self.check_error()?;
        let count = data.len() as u64;
        if offset as u64 + count > MAX_FILE_SIZE as u64 {
            return Err(EFBIG);
        }
        let (parent, name) = self.parent_and_name(path)?;
        self.check_vmid(path, None)?;
        let existing = self.child(parent, name).map(|e| (e.inode, e.is_dir()));
        let inode = match (existing, create) {
            (Some((_, true)), _) => return Err(ENOTDIR),
            (Some(_), true) => return Err(EEXIST),
            (None, false) => return Err(ENOENT),
            (None, true) => {
                let version = self.bump(writer, mtime);
                self.insert_entry(Entry {
                    inode: version,
                    parent,
                    version,
                    writer,
                    mtime,
                    size: 0,
                    name: Arc::from(name),
                    data: None,
                    content: Content::File,
                });
                version
            }
            (Some((inode, false)), false) => {
                let version = self.bump(writer, mtime);
                let e = self.entries.get_mut(&inode).expect("entry exists");
                apply_write(e, data, offset, truncate);
                e.version = version;
                e.writer = writer;
                e.mtime = mtime;
                inode
            }
        };
        self.pending.push(self.root_change(None, Some(inode)));
        self.changes.record(path);
        if let Some(vm) = paths::vm_config(path) {
            self.vmlist.register(vm.vmid, vm.node, vm.vmtype);
        }
        Ok(data.len() as u32)
    }

    /// MTIME: set the mtime of an entry; on a lock directory only forward
    /// and only by the lock's writer (spec §2.5.1).
    pub fn set_mtime(
        &mut self,
        path: &[u8],
        writer: u32,
        mtime: u32,
        now: u32,
    ) -> Result<(), Errno> {
        self.check_error()?;
        let (parent, name) = self.parent_and_name(path)?;
        let e = self.child(parent, name).ok_or(ENOENT)?;
        let inode = e.inode;
        let is_lock = paths::dirname(path) == paths::LOCK_DIR && e.is_dir();
        if is_lock && (mtime < e.mtime || writer != e.writer) {
            return Err(EACCES);
        }
        let version = self.bump(writer, mtime);
        let e = self.entries.get_mut(&inode).expect("entry exists");
        e.version = version;
        e.writer = writer;
        e.mtime = mtime;
        self.pending.push(self.root_change(None, Some(inode)));
        if is_lock {
            self.register_lock(path, now);
        }
        self.changes.record(path);
        Ok(())
    }

    /// DELETE (unlink and rmdir alike: C makes no type check).
    pub fn delete(&mut self, path: &[u8], writer: u32, mtime: u32) -> Result<(), Errno> {
        self.check_error()?;
        let e = self.lookup(path).ok_or(ENOENT)?;
        if e.inode == 0 {
            return Err(EACCES);
        }
        if e.children().is_some_and(|c| !c.is_empty()) {
            return Err(ENOTEMPTY);
        }
        let (inode, was_dir) = (e.inode, e.is_dir());
        self.changes.record(path);
        self.unlink_entry(inode);
        if was_dir {
            self.locks.remove(path);
        }
        self.bump(writer, mtime);
        self.pending.push(self.root_change(Some(inode), None));
        if let Some(vm) = paths::vm_config(path) {
            self.vmlist.delete(vm.vmid);
        }
        Ok(())
    }

    /// RENAME. The moved entry keeps its inode; an existing target is
    /// replaced.
    ///
    /// C quirk not replicated (spec §9.4, observed-behaviour "Upstream
    /// quirks" 1): when the source is a non-empty directory, C has already
    /// dropped an existing target from memory (not from SQLite) before it
    /// fails with ENOTEMPTY. Here the failed rename changes nothing. C's
    /// own tree comes back on its restart; the hourly verify resyncs it.
    pub fn rename(&mut self, from: &[u8], to: &[u8], writer: u32, mtime: u32) -> Result<(), Errno> {
        self.check_error()?;
        let src = self.lookup(from).ok_or(ENOENT)?;
        if src.inode == 0 {
            return Err(EACCES);
        }
        let (src_inode, src_is_dir) = (src.inode, src.is_dir());
        let src_non_empty = src.children().is_some_and(|c| !c.is_empty());
        let from_vm = paths::vm_config(from);
        if !src_is_dir {
            self.check_vmid(to, from_vm.as_ref())?;
        }
        if src_is_dir && paths::is_lock_path(from) {
            return Err(EACCES);
        }
        // The target is found the way a new entry's place is (its parent
        // directory, then the name in it), so that however a peer spells
        // it ("./b", "a//b") an existing entry of that name is the one
        // replaced; its name is checked as a new entry's (no ".", "..",
        // empty: the kernel never sends one, a peer may).
        let (target_dir, target_name) = match self.parent_and_name(to) {
            Ok((dir, name)) => (dir, name.to_vec()),
            // C's order: an existing non-empty target directory first.
            Err(e) => {
                if self
                    .lookup(to)
                    .is_some_and(|t| t.children().is_some_and(|c| !c.is_empty()))
                {
                    return Err(ENOTEMPTY);
                }
                return Err(e);
            }
        };
        let target = self
            .child(target_dir, &target_name)
            .map(|t| (t.inode, t.children().is_some_and(|c| !c.is_empty())));
        if let Some((_, true)) = target {
            return Err(ENOTEMPTY);
        }
        // A directory cannot move below itself: it would become its own
        // ancestor, cut off from the root, and config.db would no longer
        // load (EINVAL, as rename(2)).
        if src_is_dir && self.is_within(target_dir, src_inode) {
            return Err(EINVAL);
        }
        self.changes.record(from);
        self.changes.record(to);
        if src_non_empty {
            return Err(ENOTEMPTY);
        }
        let replaced = target.map(|(inode, _)| inode).filter(|&i| i != src_inode);
        if let Some(t) = replaced {
            self.unlink_entry(t);
        }
        let version = self.bump(writer, mtime);
        let mut entry = self.unlink_entry(src_inode).expect("source exists");
        entry.parent = target_dir;
        entry.name = Arc::from(target_name);
        entry.version = version;
        entry.writer = writer;
        entry.mtime = mtime;
        // C writes the moved row with a zero-length blob where it had none
        // (observed-behaviour §3 quirk 2); kept for identical databases.
        entry.data = Some(entry.data.take().unwrap_or_default());
        self.insert_entry(entry);
        self.pending
            .push(self.root_change(replaced, Some(src_inode)));
        if let Some(vm) = from_vm {
            self.vmlist.delete(vm.vmid);
        }
        if let Some(vm) = paths::vm_config(to) {
            self.vmlist.register(vm.vmid, vm.node, vm.vmtype);
        }
        Ok(())
    }

    /// Local-mode `utime(path, 0)` on a lock directory (spec §2.12): delete
    /// it if it expired, otherwise apply the mtime (which fails with EACCES).
    pub fn unlock_or_touch(&mut self, path: &[u8], writer: u32, now: u32) -> Result<(), Errno> {
        if let Some(csum) = self.lock_checksum(path) {
            if self.locks.expired(path, &csum, now) {
                return self.delete(path, writer, now);
            }
        }
        self.set_mtime(path, writer, 0, now)
    }
}

/// The data rules of C's pwrite (spec §2.5.1).
fn apply_write(e: &mut Entry, data: &[u8], offset: u32, truncate: bool) {
    let offset = offset as usize;
    let newsize = offset + data.len();
    let has_data = e.data.as_ref().is_some_and(|d| !d.is_empty());
    if has_data {
        let old = e.data.take().unwrap_or_default();
        let oldsize = e.size as usize;
        let mut buf = old;
        // The tree holds every file for as long as it lives: buffers are
        // kept at their length (no doubling slack from a file written in
        // pieces, no old capacity after a shorter overwrite).
        if newsize > oldsize {
            buf.reserve_exact(newsize.saturating_sub(buf.len()));
            buf.resize(newsize, 0);
            buf[offset..newsize].copy_from_slice(data);
            e.size = newsize as u32;
        } else {
            buf.resize(oldsize, 0);
            buf[offset..newsize].copy_from_slice(data);
            if truncate {
                buf.truncate(newsize);
                buf.shrink_to_fit();
                e.size = newsize as u32;
            }
        }
        e.data = if buf.is_empty() { None } else { Some(buf) };
    } else if !data.is_empty() {
        let mut buf = vec![0u8; newsize];
        buf[offset..].copy_from_slice(data);
        e.data = Some(buf);
        e.size = newsize as u32;
    } else {
        // C keeps a NULL buffer but takes the size: truncating an empty file
        // to N > 0 gives size N without data. Replicated so that the index
        // digest (which hashes the size) matches C peers.
        e.data = None;
        e.size = newsize as u32;
    }
}

#[cfg(test)]
#[path = "memdb_tests.rs"]
mod tests;
