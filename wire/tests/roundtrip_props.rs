//! Property tests: for generated messages of every type, encode → decode →
//! encode is the identity, and decoding gives back the same value.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use pmxcfs_wire::clog::{ClogBuffer, ClogEntry};
use pmxcfs_wire::dcdb::{
    self, EntryType, FuseMessage, IndexEntry, MemdbIndex, TreeEntry, UnlockMessage,
};
use pmxcfs_wire::dfsm::{Epoch, Framing, MessageType, RawMessage};
use pmxcfs_wire::ipc::{Request, RequestBody, Response};
use pmxcfs_wire::kvstore::{self, KvUpdate};
use pmxcfs_wire::Codec;

fn epoch() -> impl Strategy<Value = Epoch> {
    (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
        |(epoch, time, nodeid, pid)| Epoch {
            epoch,
            time,
            nodeid,
            pid,
        },
    )
}

fn state_framing(t: MessageType) -> impl Strategy<Value = Framing> {
    (any::<u32>(), any::<u32>(), epoch(), any::<u32>()).prop_map(move |(v, time, e, reserved)| {
        let mut f = Framing::state(t, v, time, e);
        f.header.reserved = reserved;
        f
    })
}

fn normal_framing(subtype: u16) -> impl Strategy<Value = Framing> {
    (any::<u32>(), any::<u32>(), any::<u64>())
        .prop_map(move |(v, time, count)| Framing::normal(subtype, v, time, count))
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

fn fuse_message() -> impl Strategy<Value = FuseMessage> {
    (
        any::<u32>(),
        any::<u32>(),
        option::of(bytes(64)),
        option::of(bytes(64)),
        bytes(300),
    )
        .prop_map(|(offset, flags, path, to, data)| FuseMessage {
            offset,
            flags,
            path,
            to,
            data,
        })
}

fn tree_entry() -> impl Strategy<Value = TreeEntry> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
        bytes(40),
        bytes(300),
    )
        .prop_map(
            |(parent, inode, version, writer, mtime, is_dir, name, data)| {
                let data = if is_dir { Vec::new() } else { data };
                TreeEntry {
                    parent,
                    inode,
                    version,
                    writer,
                    mtime,
                    size: data.len() as u32,
                    entry_type: if is_dir {
                        EntryType::Dir
                    } else {
                        EntryType::Reg
                    },
                    name,
                    data,
                }
            },
        )
}

fn memdb_index() -> impl Strategy<Value = MemdbIndex> {
    (
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        vec((any::<u64>(), any::<[u8; 32]>()), 0..20),
        any::<Option<u32>>(),
        bytes(39),
    )
        .prop_map(|(version, writer, mtime, entries, odd_size, remainder)| {
            let entries = entries
                .into_iter()
                .map(|(inode, digest)| IndexEntry { inode, digest })
                .collect();
            let mut index = MemdbIndex::new(version, writer, mtime, entries);
            // Sometimes inconsistent, as C accepts.
            if let Some(size) = odd_size {
                index.size = size;
                index.bytes += remainder.len() as u32;
                index.remainder = remainder;
            }
            index
        })
}

fn dcdb_message() -> impl Strategy<Value = dcdb::Message> {
    prop_oneof![
        (1u16..=6, fuse_message()).prop_flat_map(|(s, m)| normal_framing(s).prop_map(move |f| {
            dcdb::Message {
                framing: f,
                payload: dcdb::Payload::Fuse(m.clone()),
            }
        })),
        (7u16..=8, any::<[u8; 32]>(), bytes(64)).prop_flat_map(|(s, csum, path)| normal_framing(s)
            .prop_map(move |f| dcdb::Message {
                framing: f,
                payload: dcdb::Payload::Unlock(UnlockMessage {
                    csum,
                    path: path.clone()
                })
            })),
        (9u16.., bytes(64)).prop_flat_map(|(s, b)| normal_framing(s).prop_map(move |f| {
            dcdb::Message {
                framing: f,
                payload: dcdb::Payload::Unknown(b.clone()),
            }
        })),
        (state_framing(MessageType::State), memdb_index()).prop_map(|(f, i)| dcdb::Message {
            framing: f,
            payload: dcdb::Payload::Index(i)
        }),
        (state_framing(MessageType::Update), tree_entry()).prop_map(|(f, e)| dcdb::Message {
            framing: f,
            payload: dcdb::Payload::Update(e)
        }),
        (state_framing(MessageType::VerifyRequest), any::<u64>()).prop_map(|(f, id)| {
            dcdb::Message {
                framing: f,
                payload: dcdb::Payload::VerifyRequest(id),
            }
        }),
        (
            state_framing(MessageType::Verify),
            any::<u64>(),
            any::<[u8; 32]>()
        )
            .prop_map(|(f, id, csum)| {
                dcdb::Message {
                    framing: f,
                    payload: dcdb::Payload::Verify(dcdb::Verify { id, csum }),
                }
            }),
        (state_framing(MessageType::SyncStart), bytes(8)).prop_map(|(f, b)| dcdb::Message {
            framing: f,
            payload: dcdb::Payload::Empty(b)
        }),
        (state_framing(MessageType::UpdateComplete), bytes(8)).prop_map(|(f, b)| dcdb::Message {
            framing: f,
            payload: dcdb::Payload::Empty(b)
        }),
        (7u16.., bytes(64)).prop_flat_map(|(t, b)| state_framing(MessageType::from(t)).prop_map(
            move |f| {
                dcdb::Message {
                    framing: f,
                    payload: dcdb::Payload::Unknown(b.clone()),
                }
            }
        )),
    ]
}

/// A string field as a C sender fills it: bytes without NUL, then the NUL.
fn c_field(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(1u8.., 0..max).prop_map(|mut v| {
        v.push(0);
        v
    })
}

fn clog_entry() -> impl Strategy<Value = ClogEntry> {
    (
        (
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            0u8..8,
        ),
        (
            c_field(20),
            c_field(20),
            c_field(20),
            c_field(200),
            any::<[u8; 4]>(),
        ),
    )
        .prop_map(
            |((uid, time, nd, id, pid, priority), (node, ident, tag, msg, tail))| ClogEntry {
                prev: 0,
                next: 0,
                uid,
                time,
                node_digest: nd,
                ident_digest: id,
                pid,
                priority,
                node,
                ident,
                tag,
                msg,
                tail,
            },
        )
}

fn kv_update() -> impl Strategy<Value = KvUpdate> {
    (any::<[u8; 32]>(), 0usize..256, bytes(300)).prop_map(|(fill, nul_at, value)| {
        let mut key_field = [0u8; 256];
        for (i, b) in key_field.iter_mut().enumerate() {
            *b = fill[i % 32];
        }
        key_field[nul_at] = 0;
        KvUpdate { key_field, value }
    })
}

fn clog_buffer() -> impl Strategy<Value = ClogBuffer> {
    (512usize..8192, vec(clog_entry(), 0..40)).prop_map(|(size, entries)| {
        let mut ring = ClogBuffer::new(size);
        for e in &entries {
            ring.push(e);
        }
        ring
    })
}

fn kvstore_message() -> impl Strategy<Value = kvstore::Message> {
    prop_oneof![
        (normal_framing(1), kv_update()).prop_map(|(f, u)| kvstore::Message {
            framing: f,
            payload: kvstore::Payload::Update(u)
        }),
        (normal_framing(3), clog_entry()).prop_map(|(f, e)| kvstore::Message {
            framing: f,
            payload: kvstore::Payload::Log(e)
        }),
        (state_framing(MessageType::State), clog_buffer()).prop_map(|(f, b)| kvstore::Message {
            framing: f,
            payload: kvstore::Payload::State(b)
        }),
        (state_framing(MessageType::SyncStart), bytes(8)).prop_map(|(f, b)| kvstore::Message {
            framing: f,
            payload: kvstore::Payload::Empty(b)
        }),
        (normal_framing(2), bytes(64)).prop_map(|(f, b)| kvstore::Message {
            framing: f,
            payload: kvstore::Payload::Unknown(b)
        }),
    ]
}

fn ipc_body() -> impl Strategy<Value = RequestBody> {
    let name = || any::<[u8; 32]>().prop_map(|b| pmxcfs_wire::ipc::name_field(&b));
    prop_oneof![
        Just(RequestBody::GetFsVersion),
        Just(RequestBody::GetClusterInfo),
        Just(RequestBody::GetGuestList),
        Just(RequestBody::GetRrdDump),
        (name(), bytes(100)).prop_map(|(name, value)| RequestBody::SetStatus { name, value }),
        (name(), name(), bytes(10)).prop_map(|(name, nodename, trailing)| RequestBody::GetStatus {
            name,
            nodename,
            trailing
        }),
        vec(any::<u8>(), 1..100).prop_map(|path| RequestBody::GetConfig { path }),
        (0u8..8, c_field(30), c_field(30), vec(any::<u8>(), 1..100)).prop_map(
            |(priority, ident, tag, msg)| RequestBody::LogClusterMsg {
                priority,
                ident,
                tag,
                msg
            }
        ),
        (any::<u32>(), any::<[u32; 3]>(), vec(any::<u8>(), 1..40)).prop_map(
            |(max_entries, reserved, user)| RequestBody::GetClusterLog {
                max_entries,
                reserved,
                user
            }
        ),
        (any::<u32>(), bytes(40))
            .prop_map(|(vmid, property)| RequestBody::GetGuestConfigProperty { vmid, property }),
        vec(
            any::<u8>().prop_filter("no NUL or LF", |b| *b != 0 && *b != b'\n'),
            1..60
        )
        .prop_map(|token| RequestBody::VerifyToken { token }),
        (any::<u32>(), any::<u8>(), bytes(60)).prop_map(|(vmid, num_props, names)| {
            RequestBody::GetGuestConfigProperties {
                vmid,
                num_props,
                names,
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn dcdb_messages_round_trip(m in dcdb_message()) {
        let bytes = m.to_bytes();
        let back = dcdb::Message::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(back.to_bytes(), bytes.clone());
        // The dfsm layer alone also round-trips every message.
        prop_assert_eq!(RawMessage::decode(&bytes).unwrap().to_bytes(), bytes);
    }

    #[test]
    fn kvstore_messages_round_trip(m in kvstore_message()) {
        let bytes = m.to_bytes();
        let back = kvstore::Message::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(back.to_bytes(), bytes);
    }

    #[test]
    fn ipc_requests_round_trip(body in ipc_body(), pad in any::<[[u8; 4]; 2]>()) {
        let mut request = Request::new(body);
        request.header.padding = pad;
        let bytes = request.to_bytes();
        let back = Request::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &request);
        prop_assert_eq!(back.to_bytes(), bytes);
    }

    #[test]
    fn ipc_responses_round_trip(id in any::<i32>(), payload in bytes(200), errno in 0i32..200) {
        let response = if errno == 0 { Response::ok(id, payload) } else { Response::error(id, errno) };
        let bytes = response.to_bytes();
        prop_assert_eq!(Response::decode(&bytes).unwrap(), response);
    }

    /// The ring keeps the newest entries, linked newest to oldest, and a
    /// decoded ring walks to the same entries.
    #[test]
    fn clog_rings_walk_back_what_was_pushed(ring in clog_buffer()) {
        let entries = ring.entries().unwrap();
        let back = ClogBuffer::decode(ring.as_bytes()).unwrap();
        prop_assert_eq!(back.entries().unwrap(), entries);
    }

    /// Arbitrary bytes never panic a decoder, and whatever is accepted
    /// re-encodes to the same bytes.
    #[test]
    fn arbitrary_bytes_never_panic(data in bytes(600)) {
        pmxcfs_wire::fuzzing::run_all(&data);
    }
}
