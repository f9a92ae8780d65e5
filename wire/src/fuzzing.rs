//! One entry point per decoder for fuzzers (the cargo-fuzz targets in
//! `fuzz/` and the bounded mutation run in CI call these).
//!
//! Each target decodes arbitrary bytes and, when the decoder accepts them,
//! asserts the codec's contract: re-encoding yields exactly the input. A
//! panic, in the decoder or from that assertion, is a finding.

use crate::codec::{decode_frame, Codec, PResult};
use crate::{clog, dcdb, dfsm, ipc, kvstore};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    DfsmMessage,
    DcdbMessage,
    KvstoreMessage,
    FuseMessage,
    UnlockMessage,
    MemdbIndex,
    TreeEntry,
    KvUpdate,
    ClogEntry,
    ClogBuffer,
    IpcRequest,
    IpcResponse,
}

pub const TARGETS: &[Target] = &[
    Target::DfsmMessage,
    Target::DcdbMessage,
    Target::KvstoreMessage,
    Target::FuseMessage,
    Target::UnlockMessage,
    Target::MemdbIndex,
    Target::TreeEntry,
    Target::KvUpdate,
    Target::ClogEntry,
    Target::ClogBuffer,
    Target::IpcRequest,
    Target::IpcResponse,
];

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::DfsmMessage => "dfsm_message",
            Target::DcdbMessage => "dcdb_message",
            Target::KvstoreMessage => "kvstore_message",
            Target::FuseMessage => "fuse_message",
            Target::UnlockMessage => "unlock_message",
            Target::MemdbIndex => "memdb_index",
            Target::TreeEntry => "tree_entry",
            Target::KvUpdate => "kv_update",
            Target::ClogEntry => "clog_entry",
            Target::ClogBuffer => "clog_buffer",
            Target::IpcRequest => "ipc_request",
            Target::IpcResponse => "ipc_response",
        }
    }

    pub fn from_name(name: &str) -> Option<Target> {
        TARGETS.iter().copied().find(|t| t.name() == name)
    }
}

fn part<T>(
    data: &[u8],
    parse: impl for<'a> FnOnce(&'a [u8]) -> PResult<'a, T>,
    encode: impl FnOnce(&T, &mut Vec<u8>),
) {
    if let Ok(value) = decode_frame("fuzz", data, parse) {
        let mut out = Vec::new();
        encode(&value, &mut out);
        assert_eq!(
            out, data,
            "decoded input does not re-encode to the same bytes"
        );
    }
}

fn whole<T: Codec>(data: &[u8]) {
    if let Ok(value) = T::decode(data) {
        assert_eq!(
            value.to_bytes(),
            data,
            "decoded input does not re-encode to the same bytes"
        );
    }
}

/// Run one decoder over `data`.
pub fn run(target: Target, data: &[u8]) {
    match target {
        Target::DfsmMessage => whole::<dfsm::RawMessage>(data),
        Target::DcdbMessage => whole::<dcdb::Message>(data),
        Target::KvstoreMessage => whole::<kvstore::Message>(data),
        Target::FuseMessage => part(data, dcdb::FuseMessage::parse, |m, o| m.encode(o)),
        Target::UnlockMessage => part(data, dcdb::UnlockMessage::parse, |m, o| m.encode(o)),
        Target::MemdbIndex => part(data, dcdb::MemdbIndex::parse, |m, o| m.encode(o)),
        Target::TreeEntry => part(data, dcdb::TreeEntry::parse, |m, o| m.encode(o)),
        Target::KvUpdate => part(data, kvstore::KvUpdate::parse, |m, o| m.encode(o)),
        Target::ClogEntry => part(data, clog::ClogEntry::parse, |m, o| m.encode(o)),
        Target::ClogBuffer => {
            if let Ok(buffer) = clog::ClogBuffer::decode(data) {
                assert_eq!(buffer.as_bytes(), data);
                let entries = buffer.entries().expect("a decoded ring walks");
                let mut copy = clog::ClogBuffer::new(buffer.size() as usize);
                for e in entries.iter().rev() {
                    copy.push(&e.entry);
                }
            }
        }
        Target::IpcRequest => {
            if let Ok(request) = ipc::Request::decode(data) {
                assert_eq!(request.to_bytes(), data, "request does not re-encode");
                if let ipc::RequestBody::GetGuestConfigProperties {
                    num_props, names, ..
                } = &request.body
                {
                    let _ = ipc::RequestBody::property_names(*num_props, names);
                }
            }
        }
        Target::IpcResponse => {
            if let Ok(response) = ipc::Response::decode(data) {
                assert_eq!(response.to_bytes(), data, "response does not re-encode");
            }
        }
    }
}

/// Run every decoder over `data`.
pub fn run_all(data: &[u8]) {
    for &t in TARGETS {
        run(t, data);
    }
}
