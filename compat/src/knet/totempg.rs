//! Layer 6: totempg packing/fragmentation inside mcasts, the group header,
//! and the service messages corosync multicasts (knet-wire.md §7, §8).

use std::collections::HashMap;

use super::fields::Fields;
use super::totem::RingId;

/// Splits one mcast payload into (fragmented, continuation, pieces).
pub fn split(payload: &[u8], big: bool) -> Option<(u8, u8, Vec<&[u8]>)> {
    let f = Fields {
        bytes: payload,
        big_endian: big,
    };
    let fragmented = *payload.get(4)?;
    let continuation = *payload.get(5)?;
    let n = f.u16(6)? as usize;
    let mut pos = 8 + 2 * n;
    if pos > payload.len() {
        return None;
    }
    let mut pieces = Vec::with_capacity(n);
    for k in 0..n {
        let len = f.u16(8 + 2 * k)? as usize;
        pieces.push(payload.get(pos..pos + len)?);
        pos += len;
    }
    // corosync insists that the lengths add up exactly.
    if pos != payload.len() {
        return None;
    }
    Some((fragmented, continuation, pieces))
}

/// Reassembles totempg messages of one ring, fed in seq order.
#[derive(Default)]
pub struct Assembler {
    partial: HashMap<(u32, u8), Vec<u8>>,
    /// Pieces whose head was not captured.
    pub orphans: u64,
}

impl Assembler {
    /// Feeds one mcast from `sender`; returns the complete messages.
    pub fn feed(&mut self, sender: u32, payload: &[u8], big: bool) -> Option<Vec<Vec<u8>>> {
        let (fragmented, continuation, pieces) = split(payload, big)?;
        let mut out = Vec::new();
        let count = pieces.len();
        for (k, piece) in pieces.into_iter().enumerate() {
            let mut msg = if k == 0 && continuation != 0 {
                match self.partial.remove(&(sender, continuation)) {
                    Some(mut head) => {
                        head.extend_from_slice(piece);
                        Some(head)
                    }
                    None => {
                        self.orphans += 1;
                        None
                    }
                }
            } else {
                Some(piece.to_vec())
            };
            if k + 1 == count && fragmented != 0 {
                if let Some(m) = msg.take() {
                    self.partial.insert((sender, fragmented), m);
                }
            }
            if let Some(m) = msg {
                out.push(m);
            }
        }
        Some(out)
    }

    pub fn unfinished(&self) -> usize {
        self.partial.len()
    }
}

/// A CPG group name: only `length` bytes of `value` count.
fn cpg_name(s: &Fields, off: usize) -> Option<Vec<u8>> {
    let len = s.u32(off)? as usize;
    if len > 128 {
        return None;
    }
    Some(s.bytes.get(off + 8..off + 8 + len)?.to_vec())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceMessage {
    CpgProcJoin {
        group: Vec<u8>,
        pid: u32,
        reason: u32,
    },
    CpgProcLeave {
        group: Vec<u8>,
        pid: u32,
        reason: u32,
    },
    CpgJoinList {
        entries: Vec<(u32, Vec<u8>)>,
    },
    CpgMcast {
        group: Vec<u8>,
        pid: u32,
        nodeid: u32,
        msg: Vec<u8>,
    },
    CpgDownList,
    CpgPartialMcast {
        group: Vec<u8>,
        pid: u32,
        nodeid: u32,
        kind: u32,
        total: u32,
        fragment: Vec<u8>,
    },
    SyncBarrier {
        ring: RingId,
    },
    SyncServiceBuild {
        ring: RingId,
    },
    /// Another service or function (cmap, votequorum, ...): not needed here.
    Other {
        group: Vec<u8>,
        id: u32,
    },
}

/// Decodes one complete totempg message: group header, then service message.
pub fn decode(m: &[u8], big: bool) -> Option<ServiceMessage> {
    let header = Fields {
        bytes: m,
        big_endian: big,
    };
    let groups = header.u16(0)? as usize;
    let mut pos = 2 + 2 * groups;
    let mut first_group = Vec::new();
    for g in 0..groups {
        let len = header.u16(2 + 2 * g)? as usize;
        if g == 0 {
            first_group = m.get(pos..pos + len)?.to_vec();
        }
        pos += len;
    }
    let s = Fields {
        bytes: m.get(pos..)?,
        big_endian: big,
    };
    let rd = |o: usize| s.u32(o);
    let id = rd(0)?;
    if first_group == b"sync" {
        // The ring id follows the 16-byte header, packed: rep, then seq.
        let ring = s.ring(16)?;
        return Some(match id {
            0 => ServiceMessage::SyncBarrier { ring },
            1 => ServiceMessage::SyncServiceBuild { ring },
            _ => ServiceMessage::Other {
                group: first_group,
                id,
            },
        });
    }
    if first_group != b"a" || id >> 16 != 2 {
        return Some(ServiceMessage::Other {
            group: first_group,
            id,
        });
    }
    Some(match id & 0xffff {
        0 => ServiceMessage::CpgProcJoin {
            group: cpg_name(&s, 16)?,
            pid: rd(152)?,
            reason: rd(160)?,
        },
        1 => ServiceMessage::CpgProcLeave {
            group: cpg_name(&s, 16)?,
            pid: rd(152)?,
            reason: rd(160)?,
        },
        2 => {
            let size = (rd(8)? as usize).min(s.bytes.len());
            let mut entries = Vec::new();
            let mut o = 24;
            while o + 144 <= size {
                entries.push((rd(o)?, cpg_name(&s, o + 8)?));
                o += 144;
            }
            ServiceMessage::CpgJoinList { entries }
        }
        3 => {
            let len = rd(152)? as usize;
            ServiceMessage::CpgMcast {
                group: cpg_name(&s, 16)?,
                pid: rd(160)?,
                nodeid: rd(168)?,
                msg: s.bytes.get(184..184 + len)?.to_vec(),
            }
        }
        5 => ServiceMessage::CpgDownList,
        6 => {
            let len = rd(160)? as usize;
            ServiceMessage::CpgPartialMcast {
                group: cpg_name(&s, 16)?,
                total: rd(152)?,
                pid: rd(168)?,
                kind: rd(176)?,
                nodeid: rd(184)?,
                fragment: s.bytes.get(200..200 + len)?.to_vec(),
            }
        }
        f => ServiceMessage::Other {
            group: first_group,
            id: (2 << 16) | f,
        },
    })
}
