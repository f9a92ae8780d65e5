//! The SHA-256 digests of memdb (spec §2.7.2, §2.7.3).
//!
//! All three hash the same field sequence (integers little-endian, no
//! padding, the name without its NUL, data only for regular files with
//! size > 0); the entry and tree checksums put the inode in front.

use sha2::{Digest, Sha256};

use crate::dcdb::{EntryType, IndexEntry, MemdbIndex, TreeEntry};

fn hash_fields(h: &mut Sha256, e: &TreeEntry) {
    h.update(e.version.to_le_bytes());
    h.update(e.writer.to_le_bytes());
    h.update(e.mtime.to_le_bytes());
    h.update(e.size.to_le_bytes());
    h.update([u8::from(e.entry_type)]);
    h.update(e.parent.to_le_bytes());
    h.update(&e.name);
    // C hashes `size` bytes of data; a size without data (the empty-file
    // truncate quirk) hashes nothing, as GLib skips a NULL buffer.
    if e.entry_type == EntryType::Reg && e.size > 0 {
        let n = (e.size as usize).min(e.data.len());
        h.update(&e.data[..n]);
    }
}

/// The per-entry digest of the memdb index (inode not included).
pub fn index_digest(e: &TreeEntry) -> [u8; 32] {
    let mut h = Sha256::new();
    hash_fields(&mut h, e);
    h.finalize().into()
}

/// The entry checksum (`memdb_tree_entry_csum`), used by the lock protocol.
pub fn entry_checksum(e: &TreeEntry) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(e.inode.to_le_bytes());
    hash_fields(&mut h, e);
    h.finalize().into()
}

/// The full-tree checksum sent in VERIFY: one running SHA-256 over all
/// entries, which the caller must give in ascending inode order (root first).
pub fn tree_checksum<'a>(entries: impl IntoIterator<Item = &'a TreeEntry>) -> [u8; 32] {
    let mut h = Sha256::new();
    for e in entries {
        h.update(e.inode.to_le_bytes());
        hash_fields(&mut h, e);
    }
    h.finalize().into()
}

/// The memdb index of a tree. `entries` must be in ascending inode order and
/// include the root (inode 0) carrying the global version, writer and mtime.
pub fn memdb_index<'a>(entries: impl IntoIterator<Item = &'a TreeEntry>) -> MemdbIndex {
    let mut root = None;
    let index_entries: Vec<IndexEntry> = entries
        .into_iter()
        .map(|e| {
            if e.inode == 0 {
                root = Some((e.version, e.writer, e.mtime));
            }
            IndexEntry {
                inode: e.inode,
                digest: index_digest(e),
            }
        })
        .collect();
    let (version, writer, mtime) = root.unwrap_or((0, 0, 0));
    MemdbIndex::new(version, writer, mtime, index_entries)
}

/// The root entry as memdb has it in memory: the global version, writer and
/// mtime, an empty name, a directory.
pub fn root_entry(version: u64, writer: u32, mtime: u32) -> TreeEntry {
    TreeEntry {
        parent: 0,
        inode: 0,
        version,
        writer,
        mtime,
        size: 0,
        entry_type: EntryType::Dir,
        name: Vec::new(),
        data: Vec::new(),
    }
}
