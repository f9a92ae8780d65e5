//! Arbitrary changes against the tree's invariants, for the libFuzzer
//! target `memdb_ops` and the property test that CI runs.
//!
//! The input is read as a sequence of changes: each is either a dcdb
//! message from a peer (encoded and decoded through `wire`, then delivered
//! as the dcdb machine delivers it) or a local request (as the mount hands
//! it over: only paths the mount lets a user name). Paths are built from a
//! small dictionary that holds the names that matter (`.`, `..`, empty
//! components, fixed root names, lock and guest paths). After every change
//! its rows are persisted, and the rows must load (the loader and every
//! refusal rule of `--check-db`), load into what memory holds, and memory
//! must equal disk.

use std::collections::BTreeMap;

use pmxcfs_wire::dcdb::{FuseMessage, Subtype};
use pmxcfs_wire::Codec;

use super::dbcheck;
use super::dcdb::Dcdb;
use super::dfsm::{App, Env, Member};
use super::memdb::{Memdb, Row};

const PEER: Member = Member {
    nodeid: 2,
    pid: 200,
};

const NAMES: [&str; 20] = [
    "a",
    "b",
    "priv",
    "lock",
    "nodes",
    "n1",
    "qemu-server",
    "lxc",
    "100.conf",
    "101.conf",
    ".",
    "..",
    "",
    ".members",
    "local",
    "corosync.conf",
    "x.cfg",
    "openvz",
    "200.conf",
    "c",
];

/// A reader of the fuzzer's bytes that runs out into zeros.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn path(&mut self) -> Vec<u8> {
        // Mostly short paths over a few names, so that changes meet each
        // other (a rename into what an earlier mkdir made); now and then
        // any name of the dictionary.
        let depth = 1 + self.byte() % 3;
        let parts: Vec<&str> = (0..depth)
            .map(|_| {
                let b = self.byte() as usize;
                if b & 0x80 == 0 {
                    NAMES[b % 3]
                } else {
                    NAMES[b % NAMES.len()]
                }
            })
            .collect();
        let mut p = parts.join("/");
        if self.byte() % 8 == 0 {
            p.insert(0, '/');
        }
        p.into_bytes()
    }
}

/// Apply the changes `data` describes, checking the invariants after each.
/// Panics when one breaks (that is the finding).
pub fn memdb_ops(data: &[u8]) {
    let (memdb, first) = Memdb::new_empty(1000);
    let mut rows: BTreeMap<u64, Row> = BTreeMap::new();
    first.apply_to(&mut rows);
    let mut dcdb = Dcdb::new(memdb);
    dcdb.quorate = true;
    let mut input = Bytes(data);
    let mut step = 0u32;
    while !input.0.is_empty() && step < 256 {
        step += 1;
        let time = 1000 + step;
        let kind = input.byte();
        let path = input.path();
        let message = match kind % 8 {
            0 => (Subtype::Mkdir, FuseMessage::default()),
            1 => (Subtype::Create, FuseMessage::default()),
            2 => {
                let len = input.byte() as usize;
                let fill = input.byte();
                let offset = u32::from(input.byte()) * u32::from(input.byte());
                (
                    Subtype::Write,
                    FuseMessage {
                        offset,
                        data: vec![fill; len],
                        ..FuseMessage::default()
                    },
                )
            }
            3 => (
                Subtype::Write,
                FuseMessage {
                    offset: u32::from(input.byte()),
                    flags: 1,
                    ..FuseMessage::default()
                },
            ),
            4 => (Subtype::Delete, FuseMessage::default()),
            5 | 6 => {
                let to = input.path();
                (
                    Subtype::Rename,
                    FuseMessage {
                        to: Some(to),
                        ..FuseMessage::default()
                    },
                )
            }
            _ => (
                Subtype::Mtime,
                FuseMessage {
                    offset: u32::from(input.byte()) * 7,
                    ..FuseMessage::default()
                },
            ),
        };
        let (subtype, message) = message;
        let message = FuseMessage {
            path: Some(path.clone()),
            ..message
        };
        let local = kind & 0x80 != 0;
        if local {
            // What the mount hands over: a path it lets a user name.
            let to_ok = message
                .to
                .as_deref()
                .is_none_or(super::fs::peer_path_allowed);
            if !super::fs::peer_path_allowed(&path) || !to_ok {
                continue;
            }
        }
        // Through the wire's encoder and decoder, as a message travels.
        let payload = message.to_bytes();
        let from = if local {
            Member {
                nodeid: 1,
                pid: 100,
            }
        } else {
            PEER
        };
        let mut env = Env::detached(time);
        let _ = dcdb.deliver(&mut env, from, subtype.into(), time, &payload);
        for change in dcdb.memdb.take_changes() {
            change.apply_to(&mut rows);
        }
        let on_disk: Vec<Row> = rows.values().cloned().collect();
        let report = dbcheck::check(&on_disk);
        assert!(
            report.starts(),
            "after {subtype:?} of {:?} the database is refused: {:?}",
            String::from_utf8_lossy(&path),
            report.refusals
        );
        let (reloaded, _) = Memdb::from_rows(on_disk, time).unwrap_or_else(|e| {
            panic!(
                "after {subtype:?} of {:?} the rows do not load: {e}",
                String::from_utf8_lossy(&path)
            )
        });
        // Memory's rows are disk's rows...
        assert!(
            dcdb.memdb.rows() == rows.values().cloned().collect::<Vec<_>>(),
            "memory and disk differ after {subtype:?} of {:?}",
            String::from_utf8_lossy(&path)
        );
        // ... and what loads from them is what memory holds, but for C's
        // size without data (an empty file truncated to a length keeps no
        // bytes; no row can say so, and C reloads it as empty too: kept
        // for the digests C peers compute, see docs/decisions.md).
        let sized_without_data = dcdb
            .memdb
            .sorted_entries()
            .iter()
            .any(|e| !e.is_dir() && e.size > 0 && e.data().is_empty());
        if !sized_without_data {
            assert_eq!(
                reloaded.index().to_bytes(),
                dcdb.memdb.index().to_bytes(),
                "the database loads into another tree after {subtype:?} of {:?}",
                String::from_utf8_lossy(&path)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// The property CI checks; the libFuzzer target runs the same.
        #[test]
        fn arbitrary_changes_keep_the_database_loadable_and_equal_to_memory(
            data in proptest::collection::vec(any::<u8>(), 0..600)
        ) {
            super::memdb_ops(&data);
        }
    }

    #[test]
    fn found_by_the_property_test() {
        super::memdb_ops(&[
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 67, 0, 0, 0, 0, 60, 110, 0, 0, 0, 0, 56, 69, 79, 0, 0, 0, 0, 0, 15, 0, 0, 0,
            0, 0, 109, 8, 0, 0, 0, 0, 47, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 90, 79, 0, 0, 0,
            0, 0, 0, 0, 155, 0, 0, 0, 0, 0, 55, 68, 0, 0, 0, 1, 77, 0, 0, 0, 112, 14, 0, 0, 12, 0,
            128, 0, 114, 15, 0, 0, 0, 0, 0, 0, 71, 0, 0, 0, 0, 23, 96, 0, 0, 0, 44, 136, 0, 0, 0,
            29, 5, 0, 0, 0, 0, 108, 0, 0, 128, 66, 0, 0, 253, 3, 9, 0, 163, 190, 4, 1,
        ]);
    }

    #[test]
    fn the_known_hostile_changes() {
        // mkdir a; rename a -> a/b (peer); rename to "." and "..".
        super::memdb_ops(&[0, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0, 5, 0, 0, 0, 1, 10, 0]);
    }
}
