//! Malformed input: each check a receiving C node makes is reported as a
//! typed error naming the field and its offset, never as a panic.

use pmxcfs_wire::clog::{ClogBuffer, ClogEntry, LogRecord};
use pmxcfs_wire::dcdb::{
    self, FuseMessage, MemdbIndex, Payload, Subtype, TreeEntry, UnlockMessage,
};
use pmxcfs_wire::dfsm::{Epoch, Framing, MessageType};
use pmxcfs_wire::digest::root_entry;
use pmxcfs_wire::kvstore::{self, KvUpdate};
use pmxcfs_wire::{Codec, ErrorKind, WireError};

fn write_message(path: &str, data: &[u8]) -> Vec<u8> {
    dcdb::Message {
        framing: Framing::normal(Subtype::Write.into(), 1, 100, 1),
        payload: Payload::Fuse(FuseMessage {
            data: data.to_vec(),
            ..FuseMessage::new(path)
        }),
    }
    .to_bytes()
}

fn dcdb_err(bytes: &[u8]) -> WireError {
    dcdb::Message::decode(bytes).unwrap_err()
}

#[test]
fn fuse_message_length_must_match_exactly() {
    let mut bytes = write_message("a/b", b"xyz");
    bytes.push(0);
    let e = dcdb_err(&bytes);
    assert_eq!(e.field, "size + pathlen + tolen");
    assert_eq!(e.offset, 24);
    assert_eq!(
        e.kind,
        ErrorKind::LengthMismatch {
            expected: 20 + 3 + 4,
            actual: 28
        }
    );
    let e = dcdb_err(&bytes[..bytes.len() - 2]);
    assert!(matches!(e.kind, ErrorKind::LengthMismatch { .. }));
}

#[test]
fn fuse_message_path_must_end_in_nul() {
    let mut bytes = write_message("a/b", b"");
    // The path's NUL is the last byte here.
    let last = bytes.len() - 1;
    bytes[last] = b'x';
    let e = dcdb_err(&bytes);
    assert_eq!(e.field, "path");
    assert_eq!(e.offset, 44);
    assert_eq!(e.kind, ErrorKind::MissingNul);
}

#[test]
fn fuse_message_shorter_than_20() {
    let bytes = write_message("a", b"");
    let e = dcdb_err(&bytes[..24 + 10]);
    assert_eq!(e.field, "fuse message");
    assert_eq!(e.offset, 24);
    assert_eq!(
        e.kind,
        ErrorKind::TooShort {
            minimum: 20,
            actual: 10
        }
    );
}

#[test]
fn fuse_message_zero_pathlen_is_a_null_path() {
    let m = dcdb::Message {
        framing: Framing::normal(Subtype::Mkdir.into(), 1, 100, 1),
        payload: Payload::Fuse(FuseMessage::default()),
    };
    let bytes = m.to_bytes();
    assert_eq!(bytes.len(), 44);
    let back = dcdb::Message::decode(&bytes).unwrap();
    match back.payload {
        Payload::Fuse(f) => assert!(f.path.is_none()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn huge_lengths_do_not_overflow() {
    let mut bytes = write_message("a", b"");
    // size = u32::MAX, pathlen = u32::MAX
    bytes[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    bytes[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = dcdb_err(&bytes);
    assert!(matches!(e.kind, ErrorKind::LengthMismatch { .. }));
}

#[test]
fn unlock_message_checks() {
    let framing = Framing::normal(Subtype::UnlockRequest.into(), 1, 5, 2);
    let m = dcdb::Message {
        framing,
        payload: Payload::Unlock(UnlockMessage {
            csum: [7; 32],
            path: b"priv/lock/foo".to_vec(),
        }),
    };
    let bytes = m.to_bytes();
    assert_eq!(bytes.len(), 24 + 32 + 14);
    assert_eq!(dcdb::Message::decode(&bytes).unwrap(), m);
    let e = dcdb_err(&bytes[..bytes.len() - 1]);
    assert_eq!(e.field, "path");
    assert_eq!(e.kind, ErrorKind::MissingNul);
    let e = dcdb_err(&bytes[..24 + 32]);
    assert_eq!(
        e.kind,
        ErrorKind::TooShort {
            minimum: 33,
            actual: 32
        }
    );
}

fn state_framing(t: MessageType) -> Framing {
    Framing::state(
        t,
        1,
        10,
        Epoch {
            epoch: 1,
            time: 2,
            nodeid: 3,
            pid: 4,
        },
    )
}

#[test]
fn index_bytes_field_must_equal_length() {
    let index = MemdbIndex::new(3, 0, 9, vec![]);
    let m = dcdb::Message {
        framing: state_framing(MessageType::State),
        payload: Payload::Index(index),
    };
    let mut bytes = m.to_bytes();
    bytes.extend_from_slice(&[0; 40]);
    let e = dcdb_err(&bytes);
    assert_eq!(e.field, "bytes");
    assert_eq!(e.offset, 32 + 28);
    assert_eq!(
        e.kind,
        ErrorKind::LengthMismatch {
            expected: 32,
            actual: 72
        }
    );
    let e = dcdb_err(&bytes[..32 + 31]);
    assert_eq!(
        e.kind,
        ErrorKind::TooShort {
            minimum: 32,
            actual: 31
        }
    );
}

/// C does not check `bytes == 32 + 40·size`; such an index is accepted, kept
/// as sent and flagged.
#[test]
fn inconsistent_index_is_kept_as_sent() {
    let mut index = MemdbIndex::new(3, 0, 9, vec![]);
    index.size = 5;
    index.remainder = vec![1, 2, 3];
    index.bytes = 35;
    let m = dcdb::Message {
        framing: state_framing(MessageType::State),
        payload: Payload::Index(index.clone()),
    };
    let bytes = m.to_bytes();
    let back = dcdb::Message::decode(&bytes).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.to_bytes(), bytes);
    assert!(!index.is_consistent());
}

#[test]
fn update_checks() {
    let entry = TreeEntry {
        name: b"x".to_vec(),
        inode: 5,
        ..root_entry(5, 1, 1)
    };
    let m = dcdb::Message {
        framing: state_framing(MessageType::Update),
        payload: Payload::Update(entry),
    };
    let bytes = m.to_bytes();
    assert_eq!(dcdb::Message::decode(&bytes).unwrap(), m);

    let mut bad_type = bytes.clone();
    bad_type[32 + 40] = 5;
    let e = dcdb_err(&bad_type);
    assert_eq!(e.field, "type");
    assert_eq!(e.offset, 72);
    assert_eq!(e.kind, ErrorKind::InvalidValue { value: 5 });

    // A directory claiming a size has no data behind it: the length check
    // fails, as in C.
    let mut dir_with_size = bytes.clone();
    dir_with_size[32 + 32..32 + 36].copy_from_slice(&3u32.to_le_bytes());
    let e = dcdb_err(&dir_with_size);
    assert_eq!(e.field, "size + namelen");

    let e = dcdb_err(&bytes[..32 + 40]);
    assert_eq!(
        e.kind,
        ErrorKind::TooShort {
            minimum: 41,
            actual: 40
        }
    );

    let mut no_nul = bytes.clone();
    let last = no_nul.len() - 1;
    no_nul[last] = b'y';
    assert_eq!(dcdb_err(&no_nul).kind, ErrorKind::MissingNul);
}

#[test]
fn verify_payload_lengths_are_exact() {
    let m = dcdb::Message {
        framing: state_framing(MessageType::VerifyRequest),
        payload: Payload::VerifyRequest(9),
    };
    let mut bytes = m.to_bytes();
    assert_eq!(bytes.len(), 40);
    bytes.push(0);
    assert_eq!(
        dcdb_err(&bytes).kind,
        ErrorKind::LengthMismatch {
            expected: 8,
            actual: 9
        }
    );

    let m = dcdb::Message {
        framing: state_framing(MessageType::Verify),
        payload: Payload::Verify(dcdb::Verify {
            id: 9,
            csum: [1; 32],
        }),
    };
    let bytes = m.to_bytes();
    assert_eq!(bytes.len(), 72);
    assert_eq!(
        dcdb_err(&bytes[..71]).kind,
        ErrorKind::LengthMismatch {
            expected: 40,
            actual: 39
        }
    );
}

#[test]
fn unknown_subtypes_and_types_are_kept() {
    let m = dcdb::Message {
        framing: Framing::normal(42, 1, 1, 1),
        payload: Payload::Unknown(vec![1, 2, 3]),
    };
    let bytes = m.to_bytes();
    let back = dcdb::Message::decode(&bytes).unwrap();
    assert_eq!(back.subtype(), Some(Subtype::Unknown(42)));
    assert_eq!(back.to_bytes(), bytes);
    assert_eq!(back.kind_name(), "NORMAL/UNKNOWN(42)");

    let m = dcdb::Message {
        framing: state_framing(MessageType::Unknown(77)),
        payload: Payload::Unknown(vec![9; 5]),
    };
    let bytes = m.to_bytes();
    assert_eq!(dcdb::Message::decode(&bytes).unwrap(), m);
}

#[test]
fn kvstore_update_key_must_hold_a_nul() {
    let m = kvstore::Message {
        framing: Framing::normal(1, 0, 1, 1),
        payload: kvstore::Payload::Update(KvUpdate::new(b"nodeip", b"10.0.0.1\0")),
    };
    let bytes = m.to_bytes();
    assert_eq!(bytes.len(), 24 + 256 + 9);
    assert_eq!(kvstore::Message::decode(&bytes).unwrap(), m);
    let mut no_nul = bytes.clone();
    for b in &mut no_nul[24..280] {
        *b = b'k';
    }
    let e = kvstore::Message::decode(&no_nul).unwrap_err();
    assert_eq!(e.field, "key");
    assert_eq!(e.kind, ErrorKind::MissingNul);
    let e = kvstore::Message::decode(&bytes[..24 + 255]).unwrap_err();
    assert!(matches!(
        e.kind,
        ErrorKind::Truncated {
            needed: 256,
            available: 255
        }
    ));
}

/// Garbage after the key's NUL (C's uninitialised stack) survives.
#[test]
fn kvstore_key_garbage_round_trips() {
    let mut update = KvUpdate::new(b"tasklist", b"");
    update.key_field[100] = 0xaa;
    update.key_field[255] = 0x55;
    let m = kvstore::Message {
        framing: Framing::normal(1, 0, 1, 1),
        payload: kvstore::Payload::Update(update),
    };
    let bytes = m.to_bytes();
    let back = kvstore::Message::decode(&bytes).unwrap();
    assert_eq!(back.to_bytes(), bytes);
    match back.payload {
        kvstore::Payload::Update(u) => assert_eq!(u.key(), b"tasklist"),
        other => panic!("{other:?}"),
    }
}

fn log_entry() -> ClogEntry {
    ClogEntry::pack(
        &LogRecord {
            node: b"node1",
            ident: b"root@pam",
            tag: b"tag",
            pid: 7,
            time: 1000,
            priority: 6,
            msg: b"hello",
        },
        3,
    )
    .unwrap()
}

#[test]
fn log_message_checks() {
    let entry = log_entry();
    let m = kvstore::Message {
        framing: Framing::normal(3, 0, 1, 1),
        payload: kvstore::Payload::Log(entry),
    };
    let bytes = m.to_bytes();
    assert_eq!(kvstore::Message::decode(&bytes).unwrap(), m);

    let e = kvstore::Message::decode(&bytes[..bytes.len() - 1]).unwrap_err();
    assert_eq!(e.field, "entry size");
    assert_eq!(e.offset, 24);

    let e = kvstore::Message::decode(&bytes[..24 + 47]).unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::TooShort {
            minimum: 48,
            actual: 47
        }
    );

    // The ident's NUL replaced: the ident field is reported.
    let mut bad = bytes.clone();
    bad[24 + 44 + 6 + 8] = b'!';
    let e = kvstore::Message::decode(&bad).unwrap_err();
    assert_eq!(e.field, "ident");
    assert_eq!(e.offset, 24 + 44 + 6);
}

#[test]
fn clog_state_size_checks() {
    let ring = ClogBuffer::new(4096);
    let m = kvstore::Message {
        framing: state_framing(MessageType::State),
        payload: kvstore::Payload::State(ring),
    };
    let bytes = m.to_bytes();
    assert_eq!(kvstore::Message::decode(&bytes).unwrap(), m);
    let e = kvstore::Message::decode(&bytes[..bytes.len() - 1]).unwrap_err();
    assert_eq!(e.field, "size");
    assert_eq!(
        e.kind,
        ErrorKind::LengthMismatch {
            expected: 4096,
            actual: 4095
        }
    );
    let e = kvstore::Message::decode(&bytes[..32 + 8]).unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::TooShort {
            minimum: 9,
            actual: 8
        }
    );
}

#[test]
fn clog_ring_walk_rejects_bad_pointers_and_cycles() {
    let mut ring = ClogBuffer::new(4096);
    assert!(ring.push(&log_entry()));
    assert!(ring.push(&log_entry()));
    let mut raw = ring.as_bytes().to_vec();

    // cpos beyond the buffer.
    let mut bad = raw.clone();
    bad[4..8].copy_from_slice(&5000u32.to_le_bytes());
    let e = ClogBuffer::decode(&bad).unwrap_err();
    assert_eq!(e.field, "entry position");

    // The second entry's prev points at itself: a cycle.
    let cpos = u32::from_le_bytes(raw[4..8].try_into().unwrap()) as usize;
    raw[cpos..cpos + 4].copy_from_slice(&(cpos as u32).to_le_bytes());
    let e = ClogBuffer::decode(&raw).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Cycle);
}

#[test]
fn clog_ring_push_and_walk() {
    let mut ring = ClogBuffer::new(1024);
    let mut uids = Vec::new();
    for uid in 1..=20 {
        let mut e = log_entry();
        e.uid = uid;
        assert!(ring.push(&e));
        uids.push(uid);
    }
    let entries = ring.entries().unwrap();
    // Newest first; the ring of 1024 bytes holds only the latest few.
    assert_eq!(entries[0].entry.uid, 20);
    let got: Vec<u32> = entries.iter().map(|e| e.entry.uid).collect();
    for w in got.windows(2) {
        assert_eq!(w[0], w[1] + 1, "{got:?}");
    }
    assert!(got.len() >= 8 && got.len() < 20, "{got:?}");
    // Entries are 8-aligned, linked by prev.
    assert!(entries.iter().all(|e| e.pos % 8 == 0));
    let back = ClogBuffer::decode(ring.as_bytes()).unwrap();
    assert_eq!(back.to_bytes(), ring.as_bytes());
}

/// Garbage after a message never panics (spot check; the fuzz run covers
/// the rest).
#[test]
fn truncations_of_real_messages_never_panic() {
    let bytes = write_message("nodes/n1/qemu-server/100.conf", b"memory: 512\n");
    for n in 0..bytes.len() {
        let _ = dcdb::Message::decode(&bytes[..n]);
        let _ = kvstore::Message::decode(&bytes[..n]);
    }
}

/// In a ring smaller than C's, a wrapping entry can overwrite the newest
/// one; it must not link to itself (found by the property test).
#[test]
fn clog_ring_wrap_over_the_newest_entry() {
    let big = vec![b'm'; 350];
    fn record(msg: &[u8]) -> LogRecord<'_> {
        LogRecord {
            node: b"n",
            ident: b"i",
            tag: b"t",
            pid: 1,
            time: 1,
            priority: 1,
            msg,
        }
    }
    let mut ring = ClogBuffer::new(512);
    assert!(ring.push(&ClogEntry::pack(&record(&big), 1).unwrap()));
    assert!(ring.push(&ClogEntry::pack(&record(&big[..100]), 2).unwrap()));
    assert_eq!(ring.cpos(), 8);
    let entries = ring.entries().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].entry.uid, 2);
}
