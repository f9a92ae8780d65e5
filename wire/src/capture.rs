//! The CPG event record of the capture format, version 1
//! (`captures/FORMAT.md`): one event a node's pmxcfs saw (DELIVER, CONFCHG,
//! QUORUM) or caused (MCAST). Pure bytes; the pcap container around the
//! records is written by [`pcap_file_header`] and [`pcap_record`] and read
//! by `pmxcfs-compat`.

use crate::codec::{
    bytes_field, fail, i32_field, len_u32, rest, u16_field, u32_field, u64_field, u8_field, Codec,
    ErrorKind, PResult, Put,
};

pub const FORMAT_VERSION: u8 = 1;
pub const SNAPLEN: u32 = 16 * 1024 * 1024;
/// cs_error_t values a recorder sees from `cpg_mcast_joined`.
pub const CS_OK: i32 = 1;
pub const CS_ERR_TRY_AGAIN: i32 = 6;
/// cpg_guarantee_t CPG_TYPE_AGREED.
pub const CPG_TYPE_AGREED: u32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    Deliver,
    Confchg,
    Mcast,
    Quorum,
    Unknown(u8),
}

impl From<u8> for EventKind {
    fn from(v: u8) -> Self {
        match v {
            1 => EventKind::Deliver,
            2 => EventKind::Confchg,
            3 => EventKind::Mcast,
            4 => EventKind::Quorum,
            n => EventKind::Unknown(n),
        }
    }
}

impl From<EventKind> for u8 {
    fn from(k: EventKind) -> u8 {
        match k {
            EventKind::Deliver => 1,
            EventKind::Confchg => 2,
            EventKind::Mcast => 3,
            EventKind::Quorum => 4,
            EventKind::Unknown(n) => n,
        }
    }
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Deliver => "DELIVER",
            EventKind::Confchg => "CONFCHG",
            EventKind::Mcast => "MCAST",
            EventKind::Quorum => "QUORUM",
            EventKind::Unknown(_) => "UNKNOWN",
        }
    }
}

/// A CPG member address as a confchg reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CpgAddress {
    pub nodeid: u32,
    pub pid: u32,
    /// CPG_REASON_*: 1 join, 2 leave, 3 nodedown, 4 nodeup, 5 procdown.
    pub reason: u32,
}

impl CpgAddress {
    fn parse(i: &[u8]) -> PResult<'_, CpgAddress> {
        let (i, nodeid) = u32_field("nodeid")(i)?;
        let (i, pid) = u32_field("pid")(i)?;
        let (i, reason) = u32_field("reason")(i)?;
        Ok((
            i,
            CpgAddress {
                nodeid,
                pid,
                reason,
            },
        ))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.nodeid);
        out.put_u32(self.pid);
        out.put_u32(self.reason);
    }

    pub fn reason_name(&self) -> &'static str {
        match self.reason {
            1 => "join",
            2 => "leave",
            3 => "nodedown",
            4 => "nodeup",
            5 => "procdown",
            _ => "unknown",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventBody {
    Deliver {
        sender_nodeid: u32,
        sender_pid: u32,
        msg: Vec<u8>,
    },
    Confchg {
        members: Vec<CpgAddress>,
        left: Vec<CpgAddress>,
        joined: Vec<CpgAddress>,
    },
    Mcast {
        guarantee: u32,
        /// cs_error_t: CS_OK = 1, CS_ERR_TRY_AGAIN = 6.
        result: i32,
        msg: Vec<u8>,
    },
    Quorum {
        quorate: u32,
        ring_seq: u64,
        nodes: Vec<u32>,
    },
    /// A kind this version does not know: the bytes after the group.
    Unknown { data: Vec<u8> },
}

/// One event record (the data of one pcap record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub version: u8,
    pub kind: EventKind,
    pub local_nodeid: u32,
    pub local_pid: u32,
    /// The group name bytes exactly as corosync has them (NUL included).
    pub group: Vec<u8>,
    pub body: EventBody,
}

impl Event {
    pub fn new(
        kind: EventKind,
        local_nodeid: u32,
        local_pid: u32,
        group: &[u8],
        body: EventBody,
    ) -> Event {
        Event {
            version: FORMAT_VERSION,
            kind,
            local_nodeid,
            local_pid,
            group: group.to_vec(),
            body,
        }
    }

    /// The group name for display: without the trailing NUL.
    pub fn group_name(&self) -> String {
        String::from_utf8_lossy(crate::codec::c_str(&self.group)).into_owned()
    }

    /// The message bytes of a DELIVER or MCAST.
    pub fn message(&self) -> Option<&[u8]> {
        match &self.body {
            EventBody::Deliver { msg, .. } | EventBody::Mcast { msg, .. } => Some(msg),
            _ => None,
        }
    }
}

fn addresses<'a>(i: &'a [u8], n: u32, field: &'static str) -> PResult<'a, Vec<CpgAddress>> {
    // Each address is 12 bytes; refuse counts the record cannot hold before
    // allocating for them.
    if (n as u64) * 12 > i.len() as u64 {
        return Err(fail(
            i,
            field,
            ErrorKind::Truncated {
                needed: (n as usize).saturating_mul(12),
                available: i.len(),
            },
        ));
    }
    let mut out = Vec::with_capacity(n as usize);
    let mut i = i;
    for _ in 0..n {
        let (r, a) = CpgAddress::parse(i)?;
        out.push(a);
        i = r;
    }
    Ok((i, out))
}

impl Codec for Event {
    const NAME: &'static str = "capture event";

    fn parse(i: &[u8]) -> PResult<'_, Self> {
        let (i, version) = u8_field("version")(i)?;
        let (i, kind) = u8_field("kind")(i)?;
        let (i, group_len) = u16_field("group_len")(i)?;
        let (i, local_nodeid) = u32_field("local_nodeid")(i)?;
        let (i, local_pid) = u32_field("local_pid")(i)?;
        let (i, group) = bytes_field("group", group_len as usize)(i)?;
        let kind = EventKind::from(kind);
        let (i, body) = match kind {
            EventKind::Deliver => {
                let (i, sender_nodeid) = u32_field("sender_nodeid")(i)?;
                let (i, sender_pid) = u32_field("sender_pid")(i)?;
                let (i, msg_len) = u32_field("msg_len")(i)?;
                let (i, msg) = bytes_field("msg", msg_len as usize)(i)?;
                (
                    i,
                    EventBody::Deliver {
                        sender_nodeid,
                        sender_pid,
                        msg: msg.to_vec(),
                    },
                )
            }
            EventKind::Confchg => {
                let (i, n_members) = u32_field("n_members")(i)?;
                let (i, n_left) = u32_field("n_left")(i)?;
                let (i, n_joined) = u32_field("n_joined")(i)?;
                let (i, members) = addresses(i, n_members, "members")?;
                let (i, left) = addresses(i, n_left, "left")?;
                let (i, joined) = addresses(i, n_joined, "joined")?;
                (
                    i,
                    EventBody::Confchg {
                        members,
                        left,
                        joined,
                    },
                )
            }
            EventKind::Mcast => {
                let (i, guarantee) = u32_field("guarantee")(i)?;
                let (i, result) = i32_field("result")(i)?;
                let (i, msg_len) = u32_field("msg_len")(i)?;
                let (i, msg) = bytes_field("msg", msg_len as usize)(i)?;
                (
                    i,
                    EventBody::Mcast {
                        guarantee,
                        result,
                        msg: msg.to_vec(),
                    },
                )
            }
            EventKind::Quorum => {
                let (i, quorate) = u32_field("quorate")(i)?;
                let (i, ring_seq) = u64_field("ring_seq")(i)?;
                let (i, n_nodes) = u32_field("n_nodes")(i)?;
                if (n_nodes as u64) * 4 > i.len() as u64 {
                    return Err(fail(
                        i,
                        "nodes",
                        ErrorKind::Truncated {
                            needed: (n_nodes as usize).saturating_mul(4),
                            available: i.len(),
                        },
                    ));
                }
                let mut nodes = Vec::with_capacity(n_nodes as usize);
                let mut i = i;
                for _ in 0..n_nodes {
                    let (r, n) = u32_field("nodeid")(i)?;
                    nodes.push(n);
                    i = r;
                }
                (
                    i,
                    EventBody::Quorum {
                        quorate,
                        ring_seq,
                        nodes,
                    },
                )
            }
            EventKind::Unknown(_) => {
                let (i, data) = rest(i)?;
                (
                    i,
                    EventBody::Unknown {
                        data: data.to_vec(),
                    },
                )
            }
        };
        Ok((
            i,
            Event {
                version,
                kind,
                local_nodeid,
                local_pid,
                group: group.to_vec(),
                body,
            },
        ))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.put_u8(self.version);
        out.put_u8(self.kind.into());
        out.put_u16(self.group.len().min(u16::MAX as usize) as u16);
        out.put_u32(self.local_nodeid);
        out.put_u32(self.local_pid);
        out.put_bytes(&self.group);
        match &self.body {
            EventBody::Deliver {
                sender_nodeid,
                sender_pid,
                msg,
            } => {
                out.put_u32(*sender_nodeid);
                out.put_u32(*sender_pid);
                out.put_u32(len_u32(msg.len()));
                out.put_bytes(msg);
            }
            EventBody::Confchg {
                members,
                left,
                joined,
            } => {
                out.put_u32(len_u32(members.len()));
                out.put_u32(len_u32(left.len()));
                out.put_u32(len_u32(joined.len()));
                for a in members.iter().chain(left).chain(joined) {
                    a.encode(out);
                }
            }
            EventBody::Mcast {
                guarantee,
                result,
                msg,
            } => {
                out.put_u32(*guarantee);
                out.put_i32(*result);
                out.put_u32(len_u32(msg.len()));
                out.put_bytes(msg);
            }
            EventBody::Quorum {
                quorate,
                ring_seq,
                nodes,
            } => {
                out.put_u32(*quorate);
                out.put_u64(*ring_seq);
                out.put_u32(len_u32(nodes.len()));
                for n in nodes {
                    out.put_u32(*n);
                }
            }
            EventBody::Unknown { data } => out.put_bytes(data),
        }
    }
}

/// The classic pcap header of a capture: little-endian, microseconds,
/// version 2.4, snaplen 16 MiB, link type USER0 (147).
pub fn pcap_file_header() -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    out.put_u32(0xa1b2_c3d4);
    out.put_u16(2);
    out.put_u16(4);
    out.put_i32(0);
    out.put_u32(0);
    out.put_u32(SNAPLEN);
    out.put_u32(147);
    out
}

/// One pcap record holding `data`, observed at `ts_sec`.`ts_usec`.
pub fn pcap_record(ts_sec: u32, ts_usec: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + data.len());
    out.put_u32(ts_sec);
    out.put_u32(ts_usec);
    out.put_u32(len_u32(data.len()));
    out.put_u32(len_u32(data.len()));
    out.put_bytes(data);
    out
}
