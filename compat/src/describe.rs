//! Decoding a captured message according to its CPG group, and describing
//! events for people (one line) and programs (JSON).

use serde_json::{json, Map, Value};

pub use pmxcfs::core::node::Group as NodeGroup;
use pmxcfs_wire::clog::ClogEntry;
use pmxcfs_wire::dfsm::{Framing, RawMessage, Sequence};
use pmxcfs_wire::{dcdb, kvstore, Codec, WireError};

use crate::capture::{CpgAddress, Event, EventBody, CS_ERR_TRY_AGAIN, CS_OK};

/// The group of a captured event: one of the node's two (the core's own
/// `Group`), or `None` for a group pmxcfs does not use (only the dfsm
/// framing of its messages is decoded).
pub type Group = Option<NodeGroup>;

/// The group of an event by the exact name bytes, NUL included, as
/// corosync compares them.
pub fn group_of(name: &[u8]) -> Group {
    if name == dcdb::GROUP_NAME {
        Some(NodeGroup::Dcdb)
    } else if name == kvstore::GROUP_NAME {
        Some(NodeGroup::Kvstore)
    } else {
        None
    }
}

/// A message decoded as far as its group allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    Dcdb(dcdb::Message),
    Kvstore(kvstore::Message),
    Dfsm(RawMessage),
}

impl Decoded {
    pub fn decode(group: Group, bytes: &[u8]) -> Result<Decoded, WireError> {
        Ok(match group {
            Some(NodeGroup::Dcdb) => Decoded::Dcdb(dcdb::Message::decode(bytes)?),
            Some(NodeGroup::Kvstore) => Decoded::Kvstore(kvstore::Message::decode(bytes)?),
            None => Decoded::Dfsm(RawMessage::decode(bytes)?),
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Decoded::Dcdb(m) => m.to_bytes(),
            Decoded::Kvstore(m) => m.to_bytes(),
            Decoded::Dfsm(m) => m.to_bytes(),
        }
    }

    pub fn framing(&self) -> &Framing {
        match self {
            Decoded::Dcdb(m) => &m.framing,
            Decoded::Kvstore(m) => &m.framing,
            Decoded::Dfsm(m) => &m.framing,
        }
    }

    /// `NORMAL/WRITE`, `STATE`, ...
    pub fn kind_name(&self) -> String {
        match self {
            Decoded::Dcdb(m) => m.kind_name(),
            Decoded::Kvstore(m) => m.kind_name(),
            Decoded::Dfsm(m) => match m.framing.sequence {
                Sequence::Count(_) => format!("NORMAL/{}", m.framing.header.subtype),
                Sequence::Epoch(_) => m.framing.header.msg_type.name().to_string(),
            },
        }
    }

    /// The payload's fields, by name.
    fn fields(&self) -> Map<String, Value> {
        let mut f = Map::new();
        match self {
            Decoded::Dcdb(m) => dcdb_fields(&m.payload, &mut f),
            Decoded::Kvstore(m) => kvstore_fields(&m.payload, &mut f),
            Decoded::Dfsm(m) => {
                f.insert("payload_len".into(), json!(m.payload.len()));
            }
        }
        f
    }

    pub fn to_json(&self) -> Value {
        let framing = self.framing();
        let mut v = Map::new();
        v.insert("type".into(), json!(self.kind_name()));
        v.insert(
            "protocol_version".into(),
            json!(framing.header.protocol_version),
        );
        v.insert("time".into(), json!(framing.header.time));
        match framing.sequence {
            Sequence::Count(c) => {
                v.insert("count".into(), json!(c));
            }
            Sequence::Epoch(e) => {
                v.insert(
                    "epoch".into(),
                    json!({"epoch": e.epoch, "time": e.time, "nodeid": e.nodeid, "pid": e.pid}),
                );
            }
        }
        v.extend(self.fields());
        Value::Object(v)
    }

    pub fn summary(&self) -> String {
        let framing = self.framing();
        let mut s = format!(
            "{} v{} t={}",
            self.kind_name(),
            framing.header.protocol_version,
            framing.header.time
        );
        match framing.sequence {
            Sequence::Count(c) => s.push_str(&format!(" count={c}")),
            Sequence::Epoch(e) => s.push_str(&format!(
                " epoch={}/{}/{}/{}",
                e.epoch, e.time, e.nodeid, e.pid
            )),
        }
        for (k, v) in self.fields() {
            match v {
                Value::String(text) => s.push_str(&format!(" {k}={text:?}")),
                other => s.push_str(&format!(" {k}={other}")),
            }
        }
        s
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A readable prefix of binary data.
fn preview(bytes: &[u8]) -> String {
    const MAX: usize = 48;
    let mut s = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]).into_owned();
    if bytes.len() > MAX {
        s.push('…');
    }
    s
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn dcdb_fields(p: &dcdb::Payload, f: &mut Map<String, Value>) {
    match p {
        dcdb::Payload::Fuse(m) => {
            if let Some(path) = &m.path {
                f.insert("path".into(), json!(lossy(path)));
            }
            if let Some(to) = &m.to {
                f.insert("to".into(), json!(lossy(to)));
            }
            f.insert("offset".into(), json!(m.offset));
            f.insert("flags".into(), json!(m.flags));
            f.insert("size".into(), json!(m.data.len()));
            if !m.data.is_empty() {
                f.insert("data".into(), json!(preview(&m.data)));
            }
        }
        dcdb::Payload::Unlock(m) => {
            f.insert("path".into(), json!(lossy(&m.path)));
            f.insert("csum".into(), json!(hex(&m.csum)));
        }
        dcdb::Payload::Index(i) => {
            f.insert("version".into(), json!(i.version));
            f.insert("last_inode".into(), json!(i.last_inode));
            f.insert("writer".into(), json!(i.writer));
            f.insert("mtime".into(), json!(i.mtime));
            f.insert("entries".into(), json!(i.entries.len()));
            if !i.is_consistent() {
                f.insert("size_field".into(), json!(i.size));
                f.insert("remainder".into(), json!(i.remainder.len()));
            }
        }
        dcdb::Payload::Update(e) => {
            f.insert("inode".into(), json!(e.inode));
            f.insert("parent".into(), json!(e.parent));
            f.insert("version".into(), json!(e.version));
            f.insert("writer".into(), json!(e.writer));
            f.insert("mtime".into(), json!(e.mtime));
            f.insert(
                "entry_type".into(),
                json!(if e.is_dir() { "dir" } else { "reg" }),
            );
            f.insert("name".into(), json!(lossy(&e.name)));
            f.insert("size".into(), json!(e.size));
        }
        dcdb::Payload::VerifyRequest(id) => {
            f.insert("id".into(), json!(id));
        }
        dcdb::Payload::Verify(v) => {
            f.insert("id".into(), json!(v.id));
            f.insert("csum".into(), json!(hex(&v.csum)));
        }
        dcdb::Payload::Empty(b) | dcdb::Payload::Unknown(b) => {
            if !b.is_empty() {
                f.insert("payload_len".into(), json!(b.len()));
            }
        }
    }
}

fn log_fields(e: &ClogEntry, f: &mut Map<String, Value>) {
    f.insert("uid".into(), json!(e.uid));
    f.insert("log_time".into(), json!(e.time));
    f.insert("pri".into(), json!(e.priority));
    f.insert("node".into(), json!(e.node_str()));
    f.insert("ident".into(), json!(e.ident_str()));
    f.insert("tag".into(), json!(e.tag_str()));
    f.insert("pid".into(), json!(e.pid));
    f.insert("msg".into(), json!(e.msg_str()));
}

fn kvstore_fields(p: &kvstore::Payload, f: &mut Map<String, Value>) {
    match p {
        kvstore::Payload::Update(u) => {
            f.insert("key".into(), json!(u.key_lossy()));
            f.insert("value_len".into(), json!(u.value.len()));
            if !u.value.is_empty() {
                let value = pmxcfs_wire::codec::c_str(&u.value);
                f.insert("value".into(), json!(preview(value)));
            }
        }
        kvstore::Payload::Log(e) => log_fields(e, f),
        kvstore::Payload::State(b) => {
            f.insert("size".into(), json!(b.size()));
            f.insert("cpos".into(), json!(b.cpos()));
            // The decoder has already walked this ring successfully.
            let n = b.entries().map(|e| e.len()).unwrap_or(0);
            f.insert("entries".into(), json!(n));
        }
        kvstore::Payload::Empty(b) | kvstore::Payload::Unknown(b) => {
            if !b.is_empty() {
                f.insert("payload_len".into(), json!(b.len()));
            }
        }
    }
}

fn addresses_json(list: &[CpgAddress]) -> Value {
    Value::Array(
        list.iter()
            .map(|a| json!({"nodeid": a.nodeid, "pid": a.pid, "reason": a.reason_name()}))
            .collect(),
    )
}

fn addresses_text(list: &[CpgAddress], with_reason: bool) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|a| {
            if with_reason {
                format!("{}/{}:{}", a.nodeid, a.pid, a.reason_name())
            } else {
                format!("{}/{}", a.nodeid, a.pid)
            }
        })
        .collect();
    format!("[{}]", items.join(","))
}

fn cs_result(result: i32) -> String {
    match result {
        CS_OK => "CS_OK".into(),
        CS_ERR_TRY_AGAIN => "CS_ERR_TRY_AGAIN".into(),
        n => format!("cs_error({n})"),
    }
}

/// The part of an event's description that does not depend on its message.
pub fn event_summary(event: &Event) -> String {
    let head = format!(
        "{} {}/{} {}",
        event.kind.name(),
        event.local_nodeid,
        event.local_pid,
        if event.group.is_empty() {
            "-".to_string()
        } else {
            event.group_name()
        }
    );
    match &event.body {
        EventBody::Deliver {
            sender_nodeid,
            sender_pid,
            ..
        } => format!("{head} from {sender_nodeid}/{sender_pid}"),
        EventBody::Mcast {
            guarantee, result, ..
        } => {
            format!("{head} guarantee={guarantee} result={}", cs_result(*result))
        }
        EventBody::Confchg {
            members,
            left,
            joined,
        } => format!(
            "{head} members={} left={} joined={}",
            addresses_text(members, false),
            addresses_text(left, true),
            addresses_text(joined, true)
        ),
        EventBody::Quorum {
            quorate,
            ring_seq,
            nodes,
        } => format!("{head} quorate={quorate} ring_seq={ring_seq} nodes={nodes:?}"),
        EventBody::Unknown { data } => {
            format!("{head} kind={} bytes={}", u8::from(event.kind), data.len())
        }
    }
}

pub fn event_json(event: &Event) -> Map<String, Value> {
    let mut v = Map::new();
    v.insert("kind".into(), json!(event.kind.name()));
    v.insert("local_nodeid".into(), json!(event.local_nodeid));
    v.insert("local_pid".into(), json!(event.local_pid));
    v.insert("group".into(), json!(event.group_name()));
    match &event.body {
        EventBody::Deliver {
            sender_nodeid,
            sender_pid,
            msg,
        } => {
            v.insert("sender_nodeid".into(), json!(sender_nodeid));
            v.insert("sender_pid".into(), json!(sender_pid));
            v.insert("msg_len".into(), json!(msg.len()));
        }
        EventBody::Mcast {
            guarantee,
            result,
            msg,
        } => {
            v.insert("guarantee".into(), json!(guarantee));
            v.insert("result".into(), json!(cs_result(*result)));
            v.insert("msg_len".into(), json!(msg.len()));
        }
        EventBody::Confchg {
            members,
            left,
            joined,
        } => {
            v.insert("members".into(), addresses_json(members));
            v.insert("left".into(), addresses_json(left));
            v.insert("joined".into(), addresses_json(joined));
        }
        EventBody::Quorum {
            quorate,
            ring_seq,
            nodes,
        } => {
            v.insert("quorate".into(), json!(quorate));
            v.insert("ring_seq".into(), json!(ring_seq));
            v.insert("nodes".into(), json!(nodes));
        }
        EventBody::Unknown { data } => {
            v.insert("kind_value".into(), json!(u8::from(event.kind)));
            v.insert("data_len".into(), json!(data.len()));
        }
    }
    v
}
