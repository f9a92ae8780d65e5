//! Telling the kernel what changed behind its back: a change from another
//! node, a lock that expired, a sync, a change of quorum (every mode). The
//! kernel keeps names and attributes for [`super::TTL`] and is told here
//! when they go stale, instead of asking again every second as with C's
//! libfuse defaults.
//!
//! A thread of its own does it: the kernel may wait, before it takes a
//! notification, for a request of the same directory or file to be
//! answered (it holds the directory's lock or the file's pages meanwhile),
//! and that answer may come from the thread that applied the change. So
//! whoever learns of a change only queues it, and nothing ever waits for
//! this thread.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;

use fuser::{INodeNo, Notifier};

use super::FsState;
use crate::core::node::TreeChange;

/// Start the notifier of a mount; the sender takes its changes.
pub fn start(fs: Arc<FsState>, notifier: Notifier) -> std::io::Result<Sender<TreeChange>> {
    let (tx, rx) = mpsc::channel::<TreeChange>();
    std::thread::Builder::new()
        .name("fuse-notify".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                // What queued up meanwhile goes in one pass (a sync's
                // "everything" covers the rest).
                let change = merge(std::iter::once(first).chain(rx.try_iter()));
                // The table's lock is not held while the kernel is told:
                // the kernel may answer with forgets, which need it.
                let stale = fs.table().stale(&change);
                let still_dirs: Vec<bool> = {
                    let shared = fs.host.lock();
                    let memdb = shared.node.memdb();
                    stale
                        .entries
                        .iter()
                        .map(|e| {
                            e.dir_path
                                .as_deref()
                                .and_then(|p| memdb.lookup(p))
                                .is_some_and(|entry| entry.is_dir())
                        })
                        .collect()
                };
                let mut told = 0;
                for (e, still_dir) in stale.entries.iter().zip(still_dirs) {
                    if still_dir {
                        continue;
                    }
                    // ENOENT: the kernel holds no such name; nothing to do.
                    let _ = notifier.inval_entry(INodeNo(e.parent), OsStr::from_bytes(&e.name));
                    told += 1;
                }
                for &id in &stale.inodes {
                    // Attributes and any cached pages of the file.
                    let _ = notifier.inval_inode(INodeNo(id), 0, 0);
                }
                crate::stats::kernel_invalidations(told + stale.inodes.len());
            }
        })?;
    Ok(tx)
}

/// One change for several: every path, or everything if one says so.
fn merge(changes: impl Iterator<Item = TreeChange>) -> TreeChange {
    let mut paths = Vec::new();
    for change in changes {
        match change {
            TreeChange::All => return TreeChange::All,
            TreeChange::Paths(p) => paths.extend(p),
        }
    }
    TreeChange::Paths(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_queued_together_are_told_together() {
        let p = |s: &str| TreeChange::Paths(vec![s.as_bytes().to_vec()]);
        assert_eq!(
            merge([p("a"), p("b")].into_iter()),
            TreeChange::Paths(vec![b"a".to_vec(), b"b".to_vec()])
        );
        assert_eq!(
            merge([p("a"), TreeChange::All, p("b")].into_iter()),
            TreeChange::All
        );
    }
}
