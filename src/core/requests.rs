//! A local request and the dcdb or kvstore message it travels in, both
//! ways, in one place: the node sends a request as its message
//! ([`dcdb_message`], and the IPC calls through the kvstore), and replay
//! takes a message C sent back to the request that made it
//! ([`request_of`]).

use pmxcfs_wire::clog::unsanitize;
use pmxcfs_wire::dcdb::{FuseMessage, Subtype};
use pmxcfs_wire::dfsm::{Framing, MessageType};
use pmxcfs_wire::ipc::{name_field, Request as IpcRequest, RequestBody};
use pmxcfs_wire::Codec;

use super::io::{Group, Request};
use super::ipc::Client;

/// The dcdb message of a FUSE change (the UNLOCK_REQUEST that a utime(0)
/// of a lock directory sends first is the node's own decision); `None`
/// for a request that is not a FUSE change.
pub fn dcdb_message(request: Request) -> Option<(Subtype, FuseMessage)> {
    let path_msg = |path: Vec<u8>| FuseMessage {
        path: Some(path),
        ..FuseMessage::default()
    };
    Some(match request {
        Request::Mkdir { path } => (Subtype::Mkdir, path_msg(path)),
        Request::Create { path } => (Subtype::Create, path_msg(path)),
        Request::Write { path, offset, data } => (
            Subtype::Write,
            FuseMessage {
                offset,
                data,
                ..path_msg(path)
            },
        ),
        Request::Truncate { path, size } => (
            Subtype::Write,
            FuseMessage {
                offset: size,
                flags: 1,
                ..path_msg(path)
            },
        ),
        Request::Delete { path } => (Subtype::Delete, path_msg(path)),
        Request::Rename { from, to } => (
            Subtype::Rename,
            FuseMessage {
                to: Some(to),
                ..path_msg(from)
            },
        ),
        Request::SetMtime { path, mtime } => (
            Subtype::Mtime,
            FuseMessage {
                offset: mtime,
                ..path_msg(path)
            },
        ),
        Request::WriteDebug { .. } | Request::Ipc { .. } => return None,
    })
}

/// The local request that made a node send `msg`: the FUSE operation of a
/// dcdb message, the IPC call of a kvstore message. `None` for a message
/// only the protocol sends.
pub fn request_of(group: Group, msg: &[u8]) -> Option<Request> {
    let (payload, framing) = Framing::parse(msg).ok()?;
    if framing.header.msg_type != MessageType::Normal {
        return None;
    }
    match group {
        Group::Dcdb => {
            let subtype = Subtype::from(framing.header.subtype);
            if subtype == Subtype::UnlockRequest {
                // utime(0) on a lock directory sends UNLOCK_REQUEST, then
                // the MTIME; the core makes both from the request.
                let m = pmxcfs_wire::dcdb::UnlockMessage::decode(payload).ok()?;
                return Some(Request::SetMtime {
                    path: m.path,
                    mtime: 0,
                });
            }
            let m = FuseMessage::decode(payload).ok()?;
            let path = pmxcfs_wire::codec::c_str(m.path.as_deref()?).to_vec();
            Some(match subtype {
                Subtype::Write if m.flags != 0 => Request::Truncate {
                    path,
                    size: m.offset,
                },
                Subtype::Write => Request::Write {
                    path,
                    offset: m.offset,
                    data: m.data,
                },
                Subtype::Create => Request::Create { path },
                Subtype::Mkdir => Request::Mkdir { path },
                Subtype::Delete => Request::Delete { path },
                Subtype::Rename => Request::Rename {
                    from: path,
                    to: pmxcfs_wire::codec::c_str(m.to.as_deref()?).to_vec(),
                },
                Subtype::Mtime => Request::SetMtime {
                    path,
                    mtime: m.offset,
                },
                _ => return None,
            })
        }
        Group::Kvstore => {
            let decoded = pmxcfs_wire::kvstore::Message::decode(msg).ok()?;
            let (body, pid) = match decoded.payload {
                pmxcfs_wire::kvstore::Payload::Update(u) => (
                    RequestBody::SetStatus {
                        name: name_field(u.key()),
                        value: u.value.clone(),
                    },
                    0,
                ),
                pmxcfs_wire::kvstore::Payload::Log(e) => {
                    let z = |b: &[u8]| [pmxcfs_wire::codec::c_str(b), b"\0"].concat();
                    (
                        RequestBody::LogClusterMsg {
                            priority: e.priority,
                            ident: z(&e.ident),
                            tag: z(&e.tag),
                            msg: [unsanitize(pmxcfs_wire::codec::c_str(&e.msg)), vec![0]].concat(),
                        },
                        e.pid,
                    )
                }
                _ => return None,
            };
            Some(Request::Ipc {
                client: Client {
                    readonly: false,
                    pid,
                },
                bytes: IpcRequest::new(body).to_bytes(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fuse_change_comes_back_from_its_message() {
        let changes = [
            Request::Mkdir {
                path: b"d".to_vec(),
            },
            Request::Create {
                path: b"d/f".to_vec(),
            },
            Request::Write {
                path: b"d/f".to_vec(),
                offset: 3,
                data: b"xyz".to_vec(),
            },
            Request::Truncate {
                path: b"d/f".to_vec(),
                size: 1,
            },
            Request::Delete {
                path: b"d/f".to_vec(),
            },
            Request::Rename {
                from: b"a".to_vec(),
                to: b"b".to_vec(),
            },
            Request::SetMtime {
                path: b"a".to_vec(),
                mtime: 77,
            },
        ];
        for request in changes {
            let (subtype, message) = dcdb_message(request.clone()).unwrap();
            let mut bytes = Vec::new();
            Framing::normal(subtype.into(), 1, 1000, 1).encode(&mut bytes);
            bytes.extend_from_slice(&message.to_bytes());
            assert_eq!(request_of(Group::Dcdb, &bytes), Some(request));
        }
    }
}
