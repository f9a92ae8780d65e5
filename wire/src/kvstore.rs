//! kvstore, the status store on CPG group `pve_kvstore_v1` (spec §3): key
//! updates, cluster-log entries, and the cluster-log ring as STATE.

use crate::clog::{ClogBuffer, ClogEntry};
use crate::codec::{array_field, fail, rest, Codec, ErrorKind, PResult, Put};
use crate::dfsm::{Framing, MessageType, Sequence};

/// The CPG group name as C joins it: the trailing NUL is part of the name.
pub const GROUP_NAME: &[u8] = b"pve_kvstore_v1\0";
pub const PROTOCOL_VERSION: u32 = 0;
/// The fixed key field of an UPDATE.
pub const KEY_FIELD_LEN: usize = 256;
/// Largest value a local SET_STATUS may store.
pub const MAX_STATUS_SIZE: usize = 32768;

/// NORMAL message subtypes (spec §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subtype {
    Update,
    /// Defined by C but never sent or handled.
    UpdateComplete,
    Log,
    Unknown(u16),
}

impl From<u16> for Subtype {
    fn from(v: u16) -> Self {
        match v {
            1 => Subtype::Update,
            2 => Subtype::UpdateComplete,
            3 => Subtype::Log,
            n => Subtype::Unknown(n),
        }
    }
}

impl From<Subtype> for u16 {
    fn from(s: Subtype) -> u16 {
        match s {
            Subtype::Update => 1,
            Subtype::UpdateComplete => 2,
            Subtype::Log => 3,
            Subtype::Unknown(n) => n,
        }
    }
}

impl Subtype {
    pub fn name(self) -> &'static str {
        match self {
            Subtype::Update => "UPDATE",
            Subtype::UpdateComplete => "UPDATE_COMPLETE",
            Subtype::Log => "LOG",
            Subtype::Unknown(_) => "UNKNOWN",
        }
    }
}

/// An UPDATE: a 256-byte key field and the value.
///
/// C copies the key into an uninitialised stack buffer, so the bytes after
/// the key's NUL are whatever was there; they are kept for a byte-exact
/// round trip. [`KvUpdate::new`] zero-fills them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvUpdate {
    pub key_field: [u8; KEY_FIELD_LEN],
    /// Empty means "delete this key".
    pub value: Vec<u8>,
}

impl KvUpdate {
    /// Keys longer than 255 bytes are cut, as C's `g_strlcpy` does.
    pub fn new(key: &[u8], value: &[u8]) -> KvUpdate {
        let mut key_field = [0u8; KEY_FIELD_LEN];
        let key = crate::codec::c_str(key);
        let n = key.len().min(KEY_FIELD_LEN - 1);
        key_field[..n].copy_from_slice(&key[..n]);
        KvUpdate {
            key_field,
            value: value.to_vec(),
        }
    }

    /// The key: the bytes before the first NUL of the key field.
    pub fn key(&self) -> &[u8] {
        crate::codec::c_str(&self.key_field)
    }

    pub fn key_lossy(&self) -> String {
        String::from_utf8_lossy(self.key()).into_owned()
    }
}

impl Codec for KvUpdate {
    const NAME: &'static str = "kvstore update";

    fn parse(i: &[u8]) -> PResult<'_, Self> {
        let (i, key_field) = array_field::<KEY_FIELD_LEN>("key")(i)?;
        if !key_field.contains(&0) {
            return Err(fail(i, "key", ErrorKind::MissingNul));
        }
        let (i, value) = rest(i)?;
        Ok((
            i,
            KvUpdate {
                key_field,
                value: value.to_vec(),
            },
        ))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.put_bytes(&self.key_field);
        out.put_bytes(&self.value);
    }
}

/// The payload of a kvstore message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    Update(KvUpdate),
    Log(ClogEntry),
    /// STATE: the whole cluster-log ring.
    State(ClogBuffer),
    /// SYNC_START carries nothing; kept as sent.
    Empty(Vec<u8>),
    /// Anything else (UPDATE_COMPLETE, unknown subtypes, the dcdb-only dfsm
    /// types, unknown types): untouched bytes.
    Unknown(Vec<u8>),
}

/// A whole message of the kvstore group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub framing: Framing,
    pub payload: Payload,
}

impl Message {
    pub fn subtype(&self) -> Option<Subtype> {
        match self.framing.sequence {
            Sequence::Count(_) => Some(self.framing.header.subtype.into()),
            Sequence::Epoch(_) => None,
        }
    }

    pub fn kind_name(&self) -> String {
        match self.subtype() {
            Some(Subtype::Unknown(n)) => format!("NORMAL/UNKNOWN({n})"),
            Some(s) => format!("NORMAL/{}", s.name()),
            None => match self.framing.header.msg_type {
                MessageType::Unknown(n) => format!("UNKNOWN({n})"),
                t => t.name().to_string(),
            },
        }
    }
}

impl Codec for Message {
    const NAME: &'static str = "kvstore message";

    fn parse(i: &[u8]) -> PResult<'_, Self> {
        let (i, framing) = Framing::parse(i)?;
        let (i, payload) = match (
            framing.header.msg_type,
            Subtype::from(framing.header.subtype),
        ) {
            (MessageType::Normal, Subtype::Update) => {
                let (i, m) = KvUpdate::parse(i)?;
                (i, Payload::Update(m))
            }
            (MessageType::Normal, Subtype::Log) => {
                let (i, m) = ClogEntry::parse(i)?;
                (i, Payload::Log(m))
            }
            (MessageType::State, _) => {
                let (i, m) = ClogBuffer::parse(i)?;
                (i, Payload::State(m))
            }
            (MessageType::SyncStart, _) => {
                let (i, r) = rest(i)?;
                (i, Payload::Empty(r.to_vec()))
            }
            _ => {
                let (i, r) = rest(i)?;
                (i, Payload::Unknown(r.to_vec()))
            }
        };
        Ok((i, Message { framing, payload }))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        self.framing.encode(out);
        match &self.payload {
            Payload::Update(m) => m.encode(out),
            Payload::Log(m) => m.encode(out),
            Payload::State(m) => out.put_bytes(m.as_bytes()),
            Payload::Empty(b) | Payload::Unknown(b) => out.put_bytes(b),
        }
    }
}
