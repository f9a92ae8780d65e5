//! Layer 4: totemsrp messages, in the sender's byte order (knet-wire.md §6).

use super::fields::Fields;
pub use super::fields::RingId;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mcast {
    pub encapsulated: u8,
    /// The originator (totem header nodeid).
    pub nodeid: u32,
    pub seq: u32,
    pub ring: RingId,
    /// The totempg payload, or for `encapsulated == 1` a whole old-ring mcast.
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitMember {
    pub nodeid: u32,
    pub old_ring: RingId,
    pub aru: u32,
    pub high_delivered: u32,
    pub received_flg: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitToken {
    pub token_seq: u32,
    pub ring: RingId,
    pub memb_index: u32,
    pub members: Vec<CommitMember>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TotemMessage {
    OrfToken {
        ring: RingId,
        seq: u32,
        aru: u32,
        rtr: Vec<(RingId, u32)>,
    },
    Mcast(Mcast),
    MergeDetect {
        from: u32,
        ring: RingId,
    },
    Join {
        nodeid: u32,
        from: u32,
        proc_list: Vec<u32>,
        failed_list: Vec<u32>,
        ring_seq: u64,
    },
    Commit(CommitToken),
    TokenHoldCancel {
        ring: RingId,
    },
    Unknown {
        kind: u8,
    },
}

/// Parses one totem message. `None`: not corosync 3 totem, or truncated.
pub fn parse(b: &[u8]) -> Option<TotemMessage> {
    let big = match b.get(0..2)? {
        [0x70, 0xc0] => false,
        [0xc0, 0x70] => true,
        _ => return None,
    };
    if *b.get(2)? != 3 || b.len() < 13 {
        return None;
    }
    let r = Fields {
        bytes: b,
        big_endian: big,
    };
    let kind = b[3];
    let nodeid = r.u32(5)?;
    Some(match kind {
        0 => {
            let n = r.u32(53)?;
            let mut rtr = Vec::new();
            if (n as usize).checked_mul(16)? > b.len().saturating_sub(57) {
                return None;
            }
            for k in 0..n as usize {
                rtr.push((r.ring(57 + 16 * k)?, r.u32(57 + 16 * k + 12)?));
            }
            TotemMessage::OrfToken {
                ring: r.ring(29)?,
                seq: r.u32(13)?,
                aru: r.u32(21)?,
                rtr,
            }
        }
        1 => TotemMessage::Mcast(Mcast {
            encapsulated: b[4],
            nodeid,
            seq: r.u32(17)?,
            ring: r.ring(25)?,
            payload: b.get(45..)?.to_vec(),
        }),
        2 => TotemMessage::MergeDetect {
            from: r.u32(13)?,
            ring: r.ring(17)?,
        },
        3 => {
            let p = r.u32(17)?;
            let f = r.u32(21)?;
            let proc_list = r.list(33, p)?;
            let failed_list = r.list(33 + 4 * p as usize, f)?;
            TotemMessage::Join {
                nodeid,
                from: r.u32(13)?,
                proc_list,
                failed_list,
                ring_seq: r.u64(25)?,
            }
        }
        4 => {
            let n = r.u32(37)?;
            let ids = r.list(41, n)?;
            let base = 41 + 4 * n as usize;
            if (n as usize).checked_mul(24)? > b.len().saturating_sub(base) {
                return None;
            }
            let mut members = Vec::new();
            for (k, id) in ids.into_iter().enumerate() {
                let o = base + 24 * k;
                members.push(CommitMember {
                    nodeid: id,
                    old_ring: r.ring(o)?,
                    aru: r.u32(o + 12)?,
                    high_delivered: r.u32(o + 16)?,
                    received_flg: r.u32(o + 20)?,
                });
            }
            TotemMessage::Commit(CommitToken {
                token_seq: r.u32(13)?,
                ring: r.ring(17)?,
                memb_index: r.u32(33)?,
                members,
            })
        }
        5 => TotemMessage::TokenHoldCancel { ring: r.ring(13)? },
        k => TotemMessage::Unknown { kind: k },
    })
}

/// Whether a totem message is in big-endian order (for the layers below,
/// which use the same order).
pub fn is_big_endian(b: &[u8]) -> bool {
    b.get(0..2) == Some(&[0xc0, 0x70])
}
