//! Layer 5: the agreed order. Totem mcasts deduplicated per (ring, seq),
//! recovery copies unwrapped, rings chained through commit tokens, and the
//! survivor-delivery rule (knet-wire.md §6.6–6.7, §10).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::link::{self, Unwrapped, Unwrapper};
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
    /// Nodes seen passing or receiving this ring's tokens.
    pub token_nodes: BTreeSet<u32>,
    /// Members first heard of well after the capture began: their
    /// corosync started within the capture.
    pub late_nodes: BTreeSet<u32>,
    /// Seqs below the highest one handed on that the capture never held
    /// (set when the ring ends; at most [`MAX_LOST_LISTED`]).
    pub lost: Vec<u32>,
}

/// How many lost seqs a ring lists.
pub const MAX_LOST_LISTED: usize = 1000;

impl Ring {
    /// Members: from the commit token, else the nodes seen sending its
    /// mcasts or passing its token (a ring whose start the capture missed).
    pub fn members(&self) -> Vec<u32> {
        match &self.commit {
            Some(c) => c.members.iter().map(|m| m.nodeid).collect(),
            None => self.senders.union(&self.token_nodes).copied().collect(),
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

/// How long a ring whose commit token the capture missed is watched
/// before it starts, in capture seconds: its token goes round every member
/// many times a second, which names them.
pub const MEMBERS_WINDOW: f64 = 1.0;

/// A node first heard of this long after the capture began (capture
/// seconds) was not running when it began: a running corosync sends
/// tokens or knet pings many times a second. So was one whose knet sent
/// its first ping (seq 0) within this long of being first heard of.
pub const LATE_START: f64 = 1.0;

/// How long after the first commit token that names a ring as a member's
/// old ring the ring stays open, in capture seconds: the other part of a
/// split reports its survivors, and recovery copies arrive, within it.
pub const CLOSE_DELAY: f64 = 10.0;

/// What the ordering layer hands on, ring by ring: a ring starts (its
/// members and where they came from), its mcasts follow in agreed order
/// with their delivery decided, and it ends. A ring whose members come
/// from other rings starts only after those ended.
#[derive(Clone, Debug)]
pub enum OrderEvent {
    Start(Ring),
    Mcast {
        ring: RingId,
        seq: u32,
        mcast: OrderedMcast,
    },
    /// The ring's facts as they stand at its end (tokens counted, the
    /// best commit copy).
    End(Ring),
}

#[derive(Default)]
struct OpenRing {
    /// The ring's facts (its `mcasts` stay empty: they are handed on).
    meta: Ring,
    /// Mcasts not handed on yet.
    pending: BTreeMap<u32, OrderedMcast>,
    /// The highest seq handed on.
    emitted: u32,
    /// Seqs skipped over when handing on.
    skipped: Vec<u32>,
    /// The highest `aru` of the ring's tokens: every member holds every
    /// mcast up to it, so they are delivered whatever happens next.
    safe: u32,
    started: bool,
    /// A token or an mcast of the ring was seen: its commit token has gone
    /// round, so its members and their old rings are known.
    operational: bool,
    /// When a commit token first named this ring as a member's old ring.
    succeeded_at: Option<f64>,
    /// When its first token or mcast was seen.
    operational_since: Option<f64>,
}

/// Layers 2–5 as a stream: datagrams in (in time order), ordered mcasts
/// out ([`OrderEvent`]), with memory bounded by what is not yet decided.
pub struct Orderer {
    unwrapper: Unwrapper,
    pub stats: Stats,
    rings: HashMap<RingId, OpenRing>,
    /// Rings in order of first appearance (a ring seen only through
    /// recovery copies before the ring carrying them).
    appearance: Vec<RingId>,
    closed: BTreeSet<RingId>,
    /// Old-ring seqs that some survivor re-sent in recovery.
    recovered: HashMap<RingId, BTreeSet<u32>>,
    /// The highest aru survivors reported for a ring in later commit tokens.
    survivors_aru: HashMap<RingId, u32>,
    out: Vec<OrderEvent>,
    now: f64,
    /// Which node sends from which address (knet headers name the
    /// sender), to name a token's receiver.
    node_of_address: HashMap<std::net::IpAddr, u32>,
    /// When each node was first heard of, and the capture's first datagram.
    first_heard: HashMap<u32, f64>,
    first_datagram: Option<f64>,
    /// When a node's knet sent its first ping (seq 0: it just started).
    first_ping: HashMap<u32, f64>,
}

impl Orderer {
    pub fn new(keys: Vec<Vec<u8>>) -> Orderer {
        Orderer {
            unwrapper: Unwrapper::new(keys),
            stats: Stats::default(),
            rings: HashMap::new(),
            appearance: Vec::new(),
            closed: BTreeSet::new(),
            recovered: HashMap::new(),
            survivors_aru: HashMap::new(),
            out: Vec::new(),
            now: 0.0,
            node_of_address: HashMap::new(),
            first_heard: HashMap::new(),
            first_datagram: None,
            first_ping: HashMap::new(),
        }
    }

    /// What was decided since the last call, in order.
    pub fn take_events(&mut self) -> Vec<OrderEvent> {
        std::mem::take(&mut self.out)
    }

    fn note_ring(&mut self, id: RingId, t: f64, before: Option<RingId>) {
        if self.rings.contains_key(&id) || self.closed.contains(&id) {
            return;
        }
        self.rings.insert(
            id,
            OpenRing {
                meta: Ring {
                    id: Some(id),
                    first_seen: t,
                    ..Ring::default()
                },
                ..OpenRing::default()
            },
        );
        match before.and_then(|b| self.appearance.iter().position(|r| *r == b)) {
            Some(p) => self.appearance.insert(p, id),
            None => self.appearance.push(id),
        }
    }

    /// One datagram of the capture.
    pub fn push(&mut self, d: &Datagram) {
        self.now = self.now.max(d.time);
        self.first_datagram.get_or_insert(d.time);
        self.stats.datagrams += 1;
        let (header, packet) = match self.unwrapper.unwrap(d) {
            Unwrapped::NotAuthentic => {
                self.stats.failed_auth += 1;
                return;
            }
            Unwrapped::Link { kind, node, seq } => {
                self.stats.authenticated += 1;
                self.stats.knet_link += 1;
                self.node_of_address.insert(d.src.0, node as u32);
                self.first_heard.entry(node as u32).or_insert(d.time);
                if kind == link::TYPE_PING && seq == Some(0) {
                    self.first_ping.entry(node as u32).or_insert(d.time);
                }
                return;
            }
            Unwrapped::Unknown => {
                self.stats.authenticated += 1;
                self.stats.knet_unknown += 1;
                return;
            }
            Unwrapped::Fragment(header) => {
                self.stats.authenticated += 1;
                self.stats.knet_data += 1;
                self.node_of_address.insert(d.src.0, header.node as u32);
                self.first_heard.entry(header.node as u32).or_insert(d.time);
                return;
            }
            Unwrapped::BadCompression(header, e) => {
                self.stats.authenticated += 1;
                self.stats.knet_data += 1;
                self.stats.compressed += 1;
                self.node_of_address.insert(d.src.0, header.node as u32);
                if self.stats.decompress_errors.len() < 10 {
                    self.stats.decompress_errors.push(e);
                }
                return;
            }
            Unwrapped::Whole { header, totem } => {
                self.stats.authenticated += 1;
                self.stats.knet_data += 1;
                self.node_of_address.insert(d.src.0, header.node as u32);
                self.first_heard.entry(header.node as u32).or_insert(d.time);
                if header.compress != 0 {
                    self.stats.compressed += 1;
                }
                (header, totem)
            }
        };
        let big = totem::is_big_endian(&packet);
        match totem::parse(&packet) {
            None => self.stats.not_totem += 1,
            Some(TotemMessage::Mcast(m)) => {
                self.stats.mcast_copies += 1;
                self.note_ring(m.ring, d.time, None);
                if m.encapsulated == 1 {
                    let outer = m.ring;
                    if let Some(r) = self.rings.get_mut(&outer) {
                        r.operational = true;
                        r.operational_since.get_or_insert(d.time);
                        r.meta.recovery_seqs.insert(m.seq);
                    }
                    let inner_big = totem::is_big_endian(&m.payload);
                    if let Some(TotemMessage::Mcast(inner)) = totem::parse(&m.payload) {
                        self.stats.recovery_copies += 1;
                        self.note_ring(inner.ring, d.time, Some(outer));
                        self.recovered
                            .entry(inner.ring)
                            .or_default()
                            .insert(inner.seq);
                        if let Some(ring) = self.rings.get_mut(&inner.ring) {
                            ring.meta.senders.insert(inner.nodeid);
                            if inner.seq > ring.emitted {
                                ring.pending.entry(inner.seq).or_insert(OrderedMcast {
                                    time: d.time,
                                    mcast: inner,
                                    big_endian: inner_big,
                                    delivered: true,
                                });
                            }
                        }
                    }
                } else if let Some(ring) = self.rings.get_mut(&m.ring) {
                    ring.operational = true;
                    ring.operational_since.get_or_insert(d.time);
                    ring.meta.senders.insert(m.nodeid);
                    if m.seq <= ring.emitted || ring.pending.contains_key(&m.seq) {
                        self.stats.duplicate_mcasts += 1;
                    } else {
                        ring.pending.insert(
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
            }
            Some(TotemMessage::OrfToken { ring, aru, rtr, .. }) => {
                self.note_ring(ring, d.time, None);
                let receiver = self.node_of_address.get(&d.dst.0).copied();
                if let Some(r) = self.rings.get_mut(&ring) {
                    r.operational = true;
                    r.operational_since.get_or_insert(d.time);
                    r.meta.token_nodes.insert(header.node as u32);
                    r.meta.token_nodes.extend(receiver);
                    r.meta.tokens += 1;
                    r.meta.retransmit_requests += rtr.len() as u64;
                    r.safe = r.safe.max(aru);
                }
            }
            Some(TotemMessage::Commit(c)) => {
                self.note_ring(c.ring, d.time, None);
                for m in &c.members {
                    let e = self.survivors_aru.entry(m.old_ring).or_insert(0);
                    *e = (*e).max(m.aru);
                    if let Some(old) = self.rings.get_mut(&m.old_ring) {
                        if m.old_ring != c.ring && old.succeeded_at.is_none() {
                            old.succeeded_at = Some(d.time);
                        }
                    }
                }
                // A member that comes from another ring than an earlier
                // open one it was in has left that one, and a ring ends
                // for all its members at once (the rings in between may
                // not be in the capture).
                let before: Vec<RingId> = self
                    .appearance
                    .iter()
                    .take_while(|r| **r != c.ring)
                    .copied()
                    .collect();
                for x in before {
                    let Some(open) = self.rings.get_mut(&x) else {
                        continue;
                    };
                    let moved_on = c
                        .members
                        .iter()
                        .any(|m| m.old_ring != x && open.meta.members().contains(&m.nodeid));
                    if moved_on && open.succeeded_at.is_none() {
                        open.succeeded_at = Some(d.time);
                    }
                }
                if let Some(r) = self.rings.get_mut(&c.ring) {
                    // Keep the copy where every member filled in its entry.
                    let better = match &r.meta.commit {
                        None => true,
                        Some(old) => c.token_seq > old.token_seq,
                    };
                    if better {
                        r.meta.commit = Some(c);
                    }
                }
            }
            Some(_) => {}
        }
        self.advance(false);
    }

    /// The end of the capture: every ring ends.
    pub fn finish(&mut self) {
        self.advance(true);
        self.stats.fragments_unfinished = self.unwrapper.defrag.unfinished() as u64;
        self.stats.reassembled = self.unwrapper.defrag.reassembled;
        self.stats.crypto = self.unwrapper.opener.used.clone();
    }

    /// Whether every ring a member of `id` was in before has ended: the
    /// old rings its commit token names, and any open ring seen earlier
    /// that holds one of its members (a capture taken on one node does
    /// not show the rings the others formed without it, so the commit
    /// token may name rings the capture never saw).
    fn predecessors_closed(&self, id: RingId) -> bool {
        let Some(r) = self.rings.get(&id) else {
            return true;
        };
        if let Some(c) = &r.meta.commit {
            if c.members
                .iter()
                .any(|m| m.old_ring != id && self.rings.contains_key(&m.old_ring))
            {
                return false;
            }
        }
        let members = r.meta.members();
        for other in &self.appearance {
            if *other == id {
                break;
            }
            if let Some(o) = self.rings.get(other) {
                if o.meta.members().iter().any(|m| members.contains(m)) {
                    return false;
                }
            }
        }
        true
    }

    /// Hand on what can be decided, in order of appearance.
    fn advance(&mut self, at_end: bool) {
        loop {
            let mut progress = false;
            for id in self.appearance.clone() {
                if !self.rings.contains_key(&id) || !self.predecessors_closed(id) {
                    continue;
                }
                let now = self.now;
                let ring = self.rings.get_mut(&id).expect("open ring");
                let due = at_end || ring.succeeded_at.is_some_and(|t| now - t >= CLOSE_DELAY);
                // A ring that never ran (seen only in recovery copies)
                // starts when it ends; one whose commit token the capture
                // missed, once its token has named its members.
                if !ring.operational && !due {
                    continue;
                }
                let unnamed = ring.meta.commit.is_none()
                    && ring
                        .operational_since
                        .is_none_or(|t| now - t < MEMBERS_WINDOW);
                if !ring.started && unnamed && !due {
                    continue;
                }
                if !ring.started {
                    ring.started = true;
                    let start = self.first_datagram.unwrap_or(0.0);
                    ring.meta.late_nodes = ring
                        .meta
                        .members()
                        .into_iter()
                        .filter(|m| {
                            let heard = self.first_heard.get(m).copied();
                            // Silent at first, or its knet's first ping
                            // right when it was first heard of.
                            heard.is_some_and(|t| t - start >= LATE_START)
                                || self
                                    .first_ping
                                    .get(m)
                                    .zip(heard)
                                    .is_some_and(|(p, t)| p - t <= LATE_START)
                        })
                        .collect();
                    self.out.push(OrderEvent::Start(ring.meta.clone()));
                    progress = true;
                }
                // Everything every member holds.
                let safe = ring.safe;
                while let Some(entry) = ring.pending.first_entry() {
                    if *entry.key() > safe {
                        break;
                    }
                    let (seq, mcast) = entry.remove_entry();
                    note_skipped(&mut ring.skipped, ring.emitted, seq);
                    ring.emitted = seq;
                    self.out.push(OrderEvent::Mcast {
                        ring: id,
                        seq,
                        mcast,
                    });
                    progress = true;
                }
                if due {
                    self.close(id);
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
    }

    /// A ring ends: the survivor-delivery rule decides its last mcasts
    /// (above the highest aru a survivor reported, only seqs re-sent in
    /// recovery were held), then it is gone.
    fn close(&mut self, id: RingId) {
        let mut ring = self.rings.remove(&id).expect("open ring");
        self.appearance.retain(|r| *r != id);
        self.closed.insert(id);
        // Only judge rings that some later commit token closed.
        let aru = ring.succeeded_at.and(self.survivors_aru.get(&id).copied());
        let held = self.recovered.remove(&id).unwrap_or_default();
        for (seq, mut mcast) in std::mem::take(&mut ring.pending) {
            note_skipped(&mut ring.skipped, ring.emitted, seq);
            ring.emitted = seq;
            if let Some(aru) = aru {
                if seq > aru && !held.contains(&seq) {
                    mcast.delivered = false;
                    self.stats.not_delivered += 1;
                }
            }
            self.out.push(OrderEvent::Mcast {
                ring: id,
                seq,
                mcast,
            });
        }
        self.survivors_aru.remove(&id);
        ring.meta.lost = ring
            .skipped
            .into_iter()
            .filter(|s| !ring.meta.recovery_seqs.contains(s) && !held.contains(s))
            .collect();
        self.out.push(OrderEvent::End(ring.meta));
    }
}

/// Remember the seqs between the last one handed on and the next.
fn note_skipped(skipped: &mut Vec<u32>, last: u32, next: u32) {
    let room = MAX_LOST_LISTED.saturating_sub(skipped.len()) as u32;
    skipped.extend((last.saturating_add(1)..next).take(room as usize));
}

/// Runs layers 2–5 over the datagrams of a capture (already in time
/// order), keeping every ring and its mcasts (for reports).
pub fn order(datagrams: &[Datagram], keys: Vec<Vec<u8>>) -> Totem {
    let mut collector = TotemCollector::new(keys);
    for d in datagrams {
        collector.push(d);
    }
    collector.finish()
}

/// [`order`] fed one datagram at a time (in capture time order): the rings
/// with their mcasts, without holding the datagrams.
pub struct TotemCollector {
    orderer: Orderer,
    rings: Vec<Ring>,
    index: HashMap<RingId, usize>,
}

impl TotemCollector {
    pub fn new(keys: Vec<Vec<u8>>) -> TotemCollector {
        TotemCollector {
            orderer: Orderer::new(keys),
            rings: Vec::new(),
            index: HashMap::new(),
        }
    }

    pub fn push(&mut self, d: &Datagram) {
        self.orderer.push(d);
        self.collect();
    }

    pub fn stats(&self) -> &Stats {
        &self.orderer.stats
    }

    fn collect(&mut self) {
        for e in self.orderer.take_events() {
            match e {
                OrderEvent::Start(r) => {
                    self.index
                        .insert(r.id.expect("a ring id"), self.rings.len());
                    self.rings.push(r);
                }
                OrderEvent::Mcast { ring, seq, mcast } => {
                    if let Some(&i) = self.index.get(&ring) {
                        self.rings[i].mcasts.insert(seq, mcast);
                    }
                }
                OrderEvent::End(meta) => {
                    if let Some(&i) = meta.id.and_then(|id| self.index.get(&id)) {
                        let mcasts = std::mem::take(&mut self.rings[i].mcasts);
                        self.rings[i] = Ring { mcasts, ..meta };
                    }
                }
            }
        }
    }

    pub fn finish(mut self) -> Totem {
        self.orderer.finish();
        self.collect();
        Totem {
            rings: self.rings,
            stats: self.orderer.stats,
        }
    }
}
