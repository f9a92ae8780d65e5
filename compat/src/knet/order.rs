//! Layer 5: the agreed order. Totem mcasts deduplicated per (ring, seq),
//! recovery copies unwrapped, rings chained through commit tokens, and the
//! survivor-delivery rule (knet-wire.md §6.6–6.7, §10).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::crypto::Opener;
use super::link::{self, Defragmenter, KnetPacket};
use super::packets::Datagram;
use super::totem::{self, CommitToken, Mcast, RingId, TotemMessage};

/// One mcast as the ring delivers it.
#[derive(Clone, Debug)]
pub struct OrderedMcast {
    pub time: f64,
    pub mcast: Mcast,
    pub big_endian: bool,
    /// False when no survivor of the ring can have delivered it.
    pub delivered: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Ring {
    pub id: Option<RingId>,
    pub first_seen: f64,
    pub mcasts: BTreeMap<u32, OrderedMcast>,
    /// The commit token copy with the most entries (highest token_seq).
    pub commit: Option<CommitToken>,
    pub tokens: u64,
    pub retransmit_requests: u64,
    /// Outer seqs of this ring that carried recovery copies.
    pub recovery_seqs: BTreeSet<u32>,
    /// Nodes seen originating mcasts in this ring.
    pub senders: BTreeSet<u32>,
}

impl Ring {
    /// Members: from the commit token, else the senders seen.
    pub fn members(&self) -> Vec<u32> {
        match &self.commit {
            Some(c) => c.members.iter().map(|m| m.nodeid).collect(),
            None => self.senders.iter().copied().collect(),
        }
    }

    /// Seqs in 1..=highest that the capture does not hold.
    pub fn missing(&self) -> Vec<u32> {
        let high = self.mcasts.keys().next_back().copied().unwrap_or(0);
        (1..=high)
            .filter(|s| !self.mcasts.contains_key(s) && !self.recovery_seqs.contains(s))
            .collect()
    }
}

/// Everything the capture said about totem.
#[derive(Default)]
pub struct Totem {
    /// Rings in the order members deliver them.
    pub rings: Vec<Ring>,
    pub stats: Stats,
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub datagrams: u64,
    pub authenticated: u64,
    pub failed_auth: u64,
    pub knet_data: u64,
    pub knet_link: u64,
    pub knet_unknown: u64,
    pub fragments_unfinished: u64,
    pub reassembled: u64,
    /// Reassembled knet packets that were compressed.
    pub compressed: u64,
    pub decompress_errors: Vec<String>,
    pub not_totem: u64,
    pub mcast_copies: u64,
    pub duplicate_mcasts: u64,
    pub recovery_copies: u64,
    pub not_delivered: u64,
    pub crypto: Vec<(String, u64)>,
}

/// Runs layers 2–5 over the datagrams of a capture (already in time order).
pub fn order(datagrams: &[Datagram], keys: Vec<Vec<u8>>) -> Totem {
    let mut opener = Opener::new(keys);
    let mut defrag = Defragmenter::default();
    let mut stats = Stats::default();
    let mut rings: HashMap<RingId, Ring> = HashMap::new();
    // The delivery order of rings: by first appearance, with a ring seen
    // only through recovery copies placed before the ring carrying them.
    let mut ring_order: Vec<RingId> = Vec::new();
    // Old-ring seqs that some survivor re-sent in recovery.
    let mut recovered: HashMap<RingId, BTreeSet<u32>> = HashMap::new();
    let note_ring = |rings: &mut HashMap<RingId, Ring>,
                     order: &mut Vec<RingId>,
                     id: RingId,
                     t: f64,
                     before: Option<RingId>| {
        if !rings.contains_key(&id) {
            rings.insert(
                id,
                Ring {
                    id: Some(id),
                    first_seen: t,
                    ..Ring::default()
                },
            );
            match before.and_then(|b| order.iter().position(|r| *r == b)) {
                Some(p) => order.insert(p, id),
                None => order.push(id),
            }
        }
    };
    for d in datagrams {
        stats.datagrams += 1;
        let Some(plain) = opener.open(&d.payload) else {
            stats.failed_auth += 1;
            continue;
        };
        stats.authenticated += 1;
        let (header, data) = match link::parse(&plain) {
            Some(KnetPacket::Data(h, data)) => (h, data),
            Some(KnetPacket::Link { kind, node, seq }) => {
                stats.knet_link += 1;
                if kind == link::TYPE_PING && seq == Some(0) {
                    defrag.forget_node(node);
                }
                continue;
            }
            _ => {
                stats.knet_unknown += 1;
                continue;
            }
        };
        stats.knet_data += 1;
        let key = (
            format!("{:?}", d.src),
            format!("{:?}", d.dst),
            header.node,
            header.seq,
        );
        let Some(whole) = defrag.add(key, &header, data) else {
            continue;
        };
        if header.compress != 0 {
            stats.compressed += 1;
        }
        let packet = match link::decompress(header.compress, &whole) {
            Ok(p) => p,
            Err(e) => {
                if stats.decompress_errors.len() < 10 {
                    stats.decompress_errors.push(e);
                }
                continue;
            }
        };
        let big = totem::is_big_endian(&packet);
        match totem::parse(&packet) {
            None => stats.not_totem += 1,
            Some(TotemMessage::Mcast(m)) => {
                stats.mcast_copies += 1;
                note_ring(&mut rings, &mut ring_order, m.ring, d.time, None);
                if m.encapsulated == 1 {
                    let outer = m.ring;
                    rings.get_mut(&outer).unwrap().recovery_seqs.insert(m.seq);
                    let inner_big = totem::is_big_endian(&m.payload);
                    if let Some(TotemMessage::Mcast(inner)) = totem::parse(&m.payload) {
                        stats.recovery_copies += 1;
                        note_ring(&mut rings, &mut ring_order, inner.ring, d.time, Some(outer));
                        recovered.entry(inner.ring).or_default().insert(inner.seq);
                        let ring = rings.get_mut(&inner.ring).unwrap();
                        ring.senders.insert(inner.nodeid);
                        ring.mcasts.entry(inner.seq).or_insert(OrderedMcast {
                            time: d.time,
                            mcast: inner,
                            big_endian: inner_big,
                            delivered: true,
                        });
                    }
                    continue;
                }
                let ring = rings.get_mut(&m.ring).unwrap();
                ring.senders.insert(m.nodeid);
                if ring.mcasts.contains_key(&m.seq) {
                    stats.duplicate_mcasts += 1;
                } else {
                    ring.mcasts.insert(
                        m.seq,
                        OrderedMcast {
                            time: d.time,
                            mcast: m,
                            big_endian: big,
                            delivered: true,
                        },
                    );
                }
            }
            Some(TotemMessage::OrfToken { ring, rtr, .. }) => {
                note_ring(&mut rings, &mut ring_order, ring, d.time, None);
                let r = rings.get_mut(&ring).unwrap();
                r.tokens += 1;
                r.retransmit_requests += rtr.len() as u64;
            }
            Some(TotemMessage::Commit(c)) => {
                note_ring(&mut rings, &mut ring_order, c.ring, d.time, None);
                let r = rings.get_mut(&c.ring).unwrap();
                // Keep the copy where every member filled in its entry.
                let better = match &r.commit {
                    None => true,
                    Some(old) => c.token_seq > old.token_seq,
                };
                if better {
                    r.commit = Some(c);
                }
            }
            Some(_) => {}
        }
    }
    stats.fragments_unfinished = defrag.unfinished() as u64;
    stats.reassembled = defrag.reassembled;
    stats.crypto = opener.used.clone();

    // Survivor-delivery rule: above the highest aru any survivor reported
    // in the next commit token, only seqs re-sent in recovery were held.
    let mut survivors_aru: HashMap<RingId, u32> = HashMap::new();
    for r in rings.values() {
        if let Some(c) = &r.commit {
            for m in &c.members {
                let e = survivors_aru.entry(m.old_ring).or_insert(0);
                *e = (*e).max(m.aru);
            }
        }
    }
    let mut out = Vec::new();
    for id in ring_order {
        let mut ring = rings.remove(&id).unwrap();
        if let Some(&aru) = survivors_aru.get(&id) {
            // Only judge rings that some later commit token closed.
            let held_by_recovery: BTreeSet<u32> = recovered.get(&id).cloned().unwrap_or_default();
            for (seq, m) in ring.mcasts.iter_mut() {
                if *seq > aru && !held_by_recovery.contains(seq) {
                    m.delivered = false;
                    stats.not_delivered += 1;
                }
            }
        }
        out.push(ring);
    }
    Totem { rings: out, stats }
}
