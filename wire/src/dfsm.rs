//! The dfsm framing shared by both CPG groups (spec §1.2–1.4): a 16-byte base
//! header, extended to 24 bytes by the sender's message counter for NORMAL
//! messages, or to 32 bytes by the sync epoch for state messages.

use crate::codec::{expect_min_len, rest, u16_field, u32_field, u64_field, Codec, PResult, Put};

pub const BASE_HEADER_LEN: usize = 16;
pub const NORMAL_HEADER_LEN: usize = 24;
pub const STATE_HEADER_LEN: usize = 32;

/// dfsm message types (spec §1.3). Values above 6 are kept: C treats them as
/// state messages (32-byte header) and leaves the group on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageType {
    Normal,
    SyncStart,
    State,
    Update,
    UpdateComplete,
    VerifyRequest,
    Verify,
    Unknown(u16),
}

impl From<u16> for MessageType {
    fn from(v: u16) -> Self {
        match v {
            0 => MessageType::Normal,
            1 => MessageType::SyncStart,
            2 => MessageType::State,
            3 => MessageType::Update,
            4 => MessageType::UpdateComplete,
            5 => MessageType::VerifyRequest,
            6 => MessageType::Verify,
            n => MessageType::Unknown(n),
        }
    }
}

impl From<MessageType> for u16 {
    fn from(t: MessageType) -> u16 {
        match t {
            MessageType::Normal => 0,
            MessageType::SyncStart => 1,
            MessageType::State => 2,
            MessageType::Update => 3,
            MessageType::UpdateComplete => 4,
            MessageType::VerifyRequest => 5,
            MessageType::Verify => 6,
            MessageType::Unknown(n) => n,
        }
    }
}

impl MessageType {
    pub fn name(self) -> &'static str {
        match self {
            MessageType::Normal => "NORMAL",
            MessageType::SyncStart => "SYNC_START",
            MessageType::State => "STATE",
            MessageType::Update => "UPDATE",
            MessageType::UpdateComplete => "UPDATE_COMPLETE",
            MessageType::VerifyRequest => "VERIFY_REQUEST",
            MessageType::Verify => "VERIFY",
            MessageType::Unknown(_) => "UNKNOWN",
        }
    }
}

/// The sync epoch (spec §1.4): only state messages whose epoch equals the
/// receiver's current one are processed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Epoch {
    pub epoch: u32,
    pub time: u32,
    pub nodeid: u32,
    pub pid: u32,
}

impl Epoch {
    pub const LEN: usize = 16;

    pub fn parse(i: &[u8]) -> PResult<'_, Epoch> {
        let (i, epoch) = u32_field("epoch.epoch")(i)?;
        let (i, time) = u32_field("epoch.time")(i)?;
        let (i, nodeid) = u32_field("epoch.nodeid")(i)?;
        let (i, pid) = u32_field("epoch.pid")(i)?;
        Ok((
            i,
            Epoch {
                epoch,
                time,
                nodeid,
                pid,
            },
        ))
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.epoch);
        out.put_u32(self.time);
        out.put_u32(self.nodeid);
        out.put_u32(self.pid);
    }

    pub fn to_bytes(&self) -> [u8; 16] {
        let mut out = Vec::with_capacity(16);
        self.encode(&mut out);
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&out);
        bytes
    }
}

/// The 16-byte base header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub msg_type: MessageType,
    /// The application message type for NORMAL messages; 0 (and never
    /// checked) for state messages.
    pub subtype: u16,
    /// dcdb 1, kvstore 0.
    pub protocol_version: u32,
    /// The sender's `time(NULL)` when it built the message.
    pub time: u32,
    /// Always 0 from C senders; not checked, kept as received.
    pub reserved: u32,
}

impl Header {
    pub fn parse(i: &[u8]) -> PResult<'_, Header> {
        expect_min_len(i, "dfsm header", BASE_HEADER_LEN)?;
        let (i, msg_type) = u16_field("type")(i)?;
        let (i, subtype) = u16_field("subtype")(i)?;
        let (i, protocol_version) = u32_field("protocol_version")(i)?;
        let (i, time) = u32_field("time")(i)?;
        let (i, reserved) = u32_field("reserved")(i)?;
        Ok((
            i,
            Header {
                msg_type: msg_type.into(),
                subtype,
                protocol_version,
                time,
                reserved,
            },
        ))
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u16(self.msg_type.into());
        out.put_u16(self.subtype);
        out.put_u32(self.protocol_version);
        out.put_u32(self.time);
        out.put_u32(self.reserved);
    }
}

/// What extends the base header: the sender's counter (NORMAL) or the sync
/// epoch (every other type, known or not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sequence {
    Count(u64),
    Epoch(Epoch),
}

/// A dfsm header with its extension: the first 24 or 32 bytes of every
/// message of both groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    pub header: Header,
    pub sequence: Sequence,
}

impl Framing {
    /// Parses the header and its extension, with the length checks the
    /// receiving C node makes (≥16, then ≥24 for NORMAL, ≥32 otherwise).
    pub fn parse(i: &[u8]) -> PResult<'_, Framing> {
        let whole = i;
        let (i, header) = Header::parse(i)?;
        let (i, sequence) = if header.msg_type == MessageType::Normal {
            expect_min_len(whole, "normal header", NORMAL_HEADER_LEN)?;
            let (i, count) = u64_field("count")(i)?;
            (i, Sequence::Count(count))
        } else {
            expect_min_len(whole, "state header", STATE_HEADER_LEN)?;
            let (i, epoch) = Epoch::parse(i)?;
            (i, Sequence::Epoch(epoch))
        };
        Ok((i, Framing { header, sequence }))
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        self.header.encode(out);
        match self.sequence {
            Sequence::Count(count) => out.put_u64(count),
            Sequence::Epoch(epoch) => epoch.encode(out),
        }
    }

    pub fn normal(subtype: u16, protocol_version: u32, time: u32, count: u64) -> Framing {
        Framing {
            header: Header {
                msg_type: MessageType::Normal,
                subtype,
                protocol_version,
                time,
                reserved: 0,
            },
            sequence: Sequence::Count(count),
        }
    }

    pub fn state(msg_type: MessageType, protocol_version: u32, time: u32, epoch: Epoch) -> Framing {
        Framing {
            header: Header {
                msg_type,
                subtype: 0,
                protocol_version,
                time,
                reserved: 0,
            },
            sequence: Sequence::Epoch(epoch),
        }
    }

    pub fn count(&self) -> Option<u64> {
        match self.sequence {
            Sequence::Count(c) => Some(c),
            Sequence::Epoch(_) => None,
        }
    }

    pub fn epoch(&self) -> Option<Epoch> {
        match self.sequence {
            Sequence::Epoch(e) => Some(e),
            Sequence::Count(_) => None,
        }
    }
}

/// A dfsm message whose payload is left as bytes: what the dfsm layer itself
/// sees before handing the payload to dcdb or kvstore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawMessage {
    pub framing: Framing,
    pub payload: Vec<u8>,
}

impl Codec for RawMessage {
    const NAME: &'static str = "dfsm message";

    fn parse(i: &[u8]) -> PResult<'_, Self> {
        let (i, framing) = Framing::parse(i)?;
        let (i, payload) = rest(i)?;
        Ok((
            i,
            RawMessage {
                framing,
                payload: payload.to_vec(),
            },
        ))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        self.framing.encode(out);
        out.put_bytes(&self.payload);
    }
}
