//! Layer 7: what each node's CPG clients were handed (knet-wire.md §9).
//!
//! Every node that is a member of a ring processes that ring's CPG messages
//! in the agreed order. Between syncs, procjoin/procleave/mcast change and
//! use the group membership; at the CPG activation of a new ring
//! (the barrier after every member's downlist) each node applies its own
//! downlist and the joinlists, exactly as corosync does for its clients.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pmxcfs_wire::capture::{CpgAddress, Event, EventBody, EventKind};

use super::order::{OrderEvent, Ring, Totem};
use super::totem::RingId;
use super::totempg::{self, Assembler, ServiceMessage};

pub const REASON_JOIN: u32 = 1;
pub const REASON_NODEDOWN: u32 = 3;
pub const REASON_NODEUP: u32 = 4;
pub const REASON_PROCDOWN: u32 = 5;

/// One callback a client was handed, with the capture time it stems from.
#[derive(Clone, Debug)]
pub struct ViewEvent {
    pub time: f64,
    pub ring: RingId,
    pub event: Event,
    /// The confchg of a process's own leave: corosync hands it over, but a
    /// pmxcfs that is shutting down no longer dispatches it.
    pub own_leave: bool,
    /// Inferred, not seen: the nodedown a cut-off node's clients were handed
    /// in a one-node ring that never reached the wire (knet-wire.md §11).
    pub synthetic: bool,
}

/// One CPG message in the agreed order (for reports).
#[derive(Clone, Debug)]
pub struct CpgMessage {
    pub time: f64,
    pub ring: RingId,
    pub seq: u32,
    pub sender: u32,
    pub delivered: bool,
    pub message: ServiceMessage,
}

type Proc = (u32, u32); // (nodeid, pid)

#[derive(Default)]
struct NodeView {
    /// The node's picture of every group's members.
    groups: BTreeMap<Vec<u8>, BTreeSet<Proc>>,
    /// The ring the node was last seen in.
    old_ring: Option<RingId>,
    /// The commit token says the node comes from a ring the capture never
    /// showed (a one-node ring: cut off, or restarted).
    from_unseen_ring: bool,
    /// This is the node's first ring in the capture, and its corosync
    /// started within the capture: its processes joined their groups in
    /// the one-node ring corosync forms first.
    started_here: bool,
    transitional: BTreeSet<u32>,
    joinlists: BTreeMap<u32, Vec<(u32, Vec<u8>)>>,
    /// Members whose CPG sync message (downlist, and joinlist when they
    /// have processes) was delivered in this ring...
    downlists: BTreeSet<u32>,
    /// ... and whose barrier followed it: when all have one, CPG activates.
    barrier_after_downlist: BTreeSet<u32>,
    synced: bool,
    members: Vec<u32>,
    partial: HashMap<(u32, u32, Vec<u8>), Vec<u8>>,
}

pub struct Views {
    pub per_node: BTreeMap<u32, Vec<ViewEvent>>,
    pub messages: Vec<CpgMessage>,
    pub totempg_orphans: u64,
    pub totempg_unfinished: u64,
}

fn confchg(
    node: u32,
    pid: u32,
    group: &[u8],
    members: &BTreeSet<Proc>,
    left: Vec<CpgAddress>,
    joined: Vec<CpgAddress>,
) -> Event {
    let members = members
        .iter()
        .map(|&(nodeid, pid)| CpgAddress {
            nodeid,
            pid,
            reason: 0,
        })
        .collect();
    Event::new(
        EventKind::Confchg,
        node,
        pid,
        group,
        EventBody::Confchg {
            members,
            left,
            joined,
        },
    )
}

impl NodeView {
    fn local(&self, node: u32, group: &[u8]) -> Vec<u32> {
        self.groups
            .get(group)
            .map(|m| m.iter().filter(|p| p.0 == node).map(|p| p.1).collect())
            .unwrap_or_default()
    }

    /// A membership change of one group, handed to the node's local members.
    fn change(
        &mut self,
        node: u32,
        group: &[u8],
        left: Vec<CpgAddress>,
        joined: Vec<CpgAddress>,
        ctx: (f64, RingId),
        out: &mut Vec<ViewEvent>,
    ) {
        let members = self.groups.entry(group.to_vec()).or_default();
        for a in &left {
            members.remove(&(a.nodeid, a.pid));
        }
        for a in &joined {
            members.insert((a.nodeid, a.pid));
        }
        let members = members.clone();
        let mut receivers: Vec<(u32, bool)> = members
            .iter()
            .filter(|p| p.0 == node)
            .map(|p| (p.1, false))
            .collect();
        // A leaving local process still receives the confchg of its leave.
        for a in &left {
            if a.nodeid == node && a.reason != REASON_NODEDOWN {
                receivers.push((a.pid, true));
            }
        }
        receivers.sort();
        for (pid, own_leave) in receivers {
            out.push(ViewEvent {
                time: ctx.0,
                ring: ctx.1,
                event: confchg(node, pid, group, &members, left.clone(), joined.clone()),
                own_leave,
                synthetic: false,
            });
        }
    }

    /// CPG activation after the sync of a new ring.
    fn activate(&mut self, node: u32, ctx: (f64, RingId), out: &mut Vec<ViewEvent>) {
        self.synced = true;
        // A node whose own joinlist lacks one of its local processes has
        // restarted corosync (a process that goes away otherwise leaves
        // with a procleave first): its clients start from nothing. A node
        // that was only cut off still lists them, and the downlist below
        // gives its clients the nodedown they saw when they were alone
        // (the one-node ring itself never reaches the wire).
        // (No joinlist at all: the node has no processes.)
        let own = self.joinlists.get(&node).cloned().unwrap_or_default();
        let listed: BTreeSet<(Vec<u8>, u32)> =
            own.iter().map(|(pid, g)| (g.clone(), *pid)).collect();
        let restarted = self.groups.iter().any(|(g, m)| {
            m.iter()
                .any(|p| p.0 == node && !listed.contains(&(g.clone(), p.1)))
        });
        if restarted {
            self.groups.clear();
            self.partial.clear();
        }
        // The node's own joinlist names its local processes: bootstrap a
        // view that started before the capture, without callbacks. After a
        // corosync (re)start within the capture, they joined in the
        // one-node ring corosync forms first, off the wire: their clients
        // were handed those joins.
        let private_joins = restarted || self.started_here;
        if let Some(own) = self.joinlists.get(&node).cloned() {
            for (pid, group) in own {
                let known = self
                    .groups
                    .get(&group)
                    .is_some_and(|m| m.contains(&(node, pid)));
                if private_joins && !known {
                    let first = out.len();
                    let joined = vec![CpgAddress {
                        nodeid: node,
                        pid,
                        reason: REASON_JOIN,
                    }];
                    self.change(node, &group, Vec::new(), joined, ctx, out);
                    for e in &mut out[first..] {
                        e.synthetic = true;
                    }
                } else {
                    self.groups.entry(group).or_default().insert((node, pid));
                }
            }
        }
        self.started_here = false;
        // 1. downlist: processes of nodes outside the transitional membership.
        let first_downlist_event = out.len();
        let transitional = self.transitional.clone();
        self.remove_remote(node, REASON_NODEDOWN, ctx, out, |_, p| {
            !transitional.contains(&p.0)
        });
        // A node that comes from a ring the capture never saw, and was not
        // restarted, was alone: these are the confchgs of that ring.
        if self.from_unseen_ring && !restarted {
            for e in &mut out[first_downlist_event..] {
                e.synthetic = true;
            }
        }
        // 2. joinlists of the others: processes this node did not know.
        let mut joined: BTreeMap<Vec<u8>, Vec<CpgAddress>> = BTreeMap::new();
        let mut mentioned: BTreeSet<(Vec<u8>, Proc)> = BTreeSet::new();
        for (&from, entries) in &self.joinlists {
            for (pid, group) in entries {
                mentioned.insert((group.clone(), (from, *pid)));
                if from == node {
                    continue;
                }
                let known = self
                    .groups
                    .get(group)
                    .is_some_and(|m| m.contains(&(from, *pid)));
                if !known {
                    joined.entry(group.clone()).or_default().push(CpgAddress {
                        nodeid: from,
                        pid: *pid,
                        reason: REASON_NODEUP,
                    });
                }
            }
        }
        for (g, list) in joined {
            self.change(node, &g, Vec::new(), list, ctx, out);
        }
        // 3. known remote processes that no joinlist mentioned.
        let reported: BTreeSet<u32> = self.joinlists.keys().copied().collect();
        self.remove_remote(node, REASON_PROCDOWN, ctx, out, |g, p| {
            reported.contains(&p.0) && !mentioned.contains(&(g.to_vec(), *p))
        });
    }

    /// Removes, group by group, the other nodes' processes that `gone`
    /// selects, with one confchg per group for the local members.
    fn remove_remote(
        &mut self,
        node: u32,
        reason: u32,
        ctx: (f64, RingId),
        out: &mut Vec<ViewEvent>,
        gone: impl Fn(&[u8], &Proc) -> bool,
    ) {
        let groups: Vec<Vec<u8>> = self.groups.keys().cloned().collect();
        for g in &groups {
            let left: Vec<CpgAddress> = self.groups[g]
                .iter()
                .filter(|p| p.0 != node && gone(g, p))
                .map(|&(nodeid, pid)| CpgAddress {
                    nodeid,
                    pid,
                    reason,
                })
                .collect();
            if !left.is_empty() {
                self.change(node, g, left, Vec::new(), ctx, out);
            }
        }
    }

    fn handle(
        &mut self,
        node: u32,
        sender: u32,
        msg: &ServiceMessage,
        ctx: (f64, RingId),
        out: &mut Vec<ViewEvent>,
    ) {
        match msg {
            ServiceMessage::CpgJoinList { entries } => {
                self.joinlists.insert(sender, entries.clone());
            }
            ServiceMessage::CpgDownList => {
                self.downlists.insert(sender);
            }
            // A node without CPG processes sends no joinlist, but every
            // member sends a downlist and then its barrier.
            ServiceMessage::SyncBarrier { ring } if *ring == ctx.1 => {
                if self.downlists.contains(&sender) && !self.synced {
                    self.barrier_after_downlist.insert(sender);
                    if self
                        .members
                        .iter()
                        .all(|m| self.barrier_after_downlist.contains(m))
                    {
                        self.activate(node, ctx, out);
                    }
                }
            }
            ServiceMessage::CpgProcJoin { group, pid, reason } => {
                let joined = vec![CpgAddress {
                    nodeid: sender,
                    pid: *pid,
                    reason: *reason,
                }];
                self.change(node, group, Vec::new(), joined, ctx, out);
            }
            ServiceMessage::CpgProcLeave { group, pid, reason } => {
                let known = self
                    .groups
                    .get(group)
                    .is_some_and(|m| m.contains(&(sender, *pid)));
                if known {
                    let left = vec![CpgAddress {
                        nodeid: sender,
                        pid: *pid,
                        reason: *reason,
                    }];
                    self.change(node, group, left, Vec::new(), ctx, out);
                }
            }
            ServiceMessage::CpgMcast {
                group, pid, msg, ..
            } => self.deliver(node, sender, *pid, group, msg, ctx, out),
            ServiceMessage::CpgPartialMcast {
                group,
                pid,
                kind,
                fragment,
                ..
            } => {
                let key = (sender, *pid, group.clone());
                let buf = self.partial.entry(key.clone()).or_default();
                if *kind == 1 {
                    buf.clear();
                }
                buf.extend_from_slice(fragment);
                if *kind == 3 {
                    let whole = self.partial.remove(&key).unwrap_or_default();
                    self.deliver(node, sender, *pid, group, &whole, ctx, out);
                }
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &self,
        node: u32,
        sender: u32,
        pid: u32,
        group: &[u8],
        msg: &[u8],
        ctx: (f64, RingId),
        out: &mut Vec<ViewEvent>,
    ) {
        let Some(members) = self.groups.get(group) else {
            return;
        };
        // corosync hands a group's mcast only from nodes with a member in it.
        if !members.iter().any(|p| p.0 == sender) {
            return;
        }
        for local in self.local(node, group) {
            out.push(ViewEvent {
                time: ctx.0,
                ring: ctx.1,
                event: Event::new(
                    EventKind::Deliver,
                    node,
                    local,
                    group,
                    EventBody::Deliver {
                        sender_nodeid: sender,
                        sender_pid: pid,
                        msg: msg.to_vec(),
                    },
                ),
                own_leave: false,
                synthetic: false,
            });
        }
    }
}

/// What the emulation hands on as it goes.
#[derive(Clone, Debug)]
pub enum Emitted {
    /// A CPG message in the agreed order (delivered or not).
    Message(CpgMessage),
    /// A callback node `node`'s clients were handed.
    View(u32, ViewEvent),
}

/// Layer 7 as a stream: [`OrderEvent`]s in, every node's callbacks out.
/// A ring's events arrive between its `Start` and its `End`; rings of the
/// two sides of a partition may interleave, their members are disjoint.
#[derive(Default)]
pub struct Emulator {
    nodes: BTreeMap<u32, NodeView>,
    seen: BTreeSet<RingId>,
    /// Open rings: their members and their totempg reassembly.
    open: HashMap<RingId, (Vec<u32>, Assembler)>,
    /// Only these nodes' callbacks are computed (all when `None`).
    only: Option<BTreeSet<u32>>,
    pub totempg_orphans: u64,
    pub totempg_unfinished: u64,
}

impl Emulator {
    /// An emulator that computes only `nodes`' callbacks (the messages of
    /// every node are still handed on).
    pub fn for_nodes(nodes: impl IntoIterator<Item = u32>) -> Emulator {
        Emulator {
            only: Some(nodes.into_iter().collect()),
            ..Emulator::default()
        }
    }

    pub fn handle(&mut self, event: OrderEvent, out: &mut dyn FnMut(Emitted)) {
        match event {
            OrderEvent::Start(ring) => {
                let Some(id) = ring.id else { return };
                let members = ring.members();
                start_ring(&ring, id, &members, &self.seen, &mut self.nodes);
                self.seen.insert(id);
                self.open.insert(id, (members, Assembler::default()));
            }
            OrderEvent::Mcast { ring, seq, mcast } => {
                let Some((members, assembler)) = self.open.get_mut(&ring) else {
                    return;
                };
                let om = mcast;
                let Some(pieces) =
                    assembler.feed(om.mcast.nodeid, &om.mcast.payload, om.big_endian)
                else {
                    return;
                };
                for piece in pieces {
                    let Some(msg) = totempg::decode(&piece, om.big_endian) else {
                        continue;
                    };
                    if matches!(msg, ServiceMessage::Other { .. }) {
                        continue;
                    }
                    if om.delivered {
                        for &node in members.iter() {
                            if self.only.as_ref().is_some_and(|o| !o.contains(&node)) {
                                continue;
                            }
                            let view = self.nodes.entry(node).or_default();
                            let mut events = Vec::new();
                            view.handle(node, om.mcast.nodeid, &msg, (om.time, ring), &mut events);
                            for e in events {
                                out(Emitted::View(node, e));
                            }
                        }
                    }
                    out(Emitted::Message(CpgMessage {
                        time: om.time,
                        ring,
                        seq,
                        sender: om.mcast.nodeid,
                        delivered: om.delivered,
                        message: msg,
                    }));
                }
            }
            OrderEvent::End(ring) => {
                if let Some((_, assembler)) = ring.id.and_then(|id| self.open.remove(&id)) {
                    self.totempg_orphans += assembler.orphans;
                    self.totempg_unfinished += assembler.unfinished() as u64;
                }
            }
        }
    }
}

/// Emulates every node's CPG clients over the ordered rings.
pub fn emulate(totem: &Totem) -> Views {
    let mut emulator = Emulator::default();
    let mut per_node: BTreeMap<u32, Vec<ViewEvent>> = BTreeMap::new();
    let mut messages = Vec::new();
    let mut collect = |e: Emitted| match e {
        Emitted::Message(m) => messages.push(m),
        Emitted::View(node, v) => per_node.entry(node).or_default().push(v),
    };
    for ring in &totem.rings {
        let Some(id) = ring.id else { continue };
        let meta = Ring {
            id: ring.id,
            first_seen: ring.first_seen,
            mcasts: BTreeMap::new(),
            commit: ring.commit.clone(),
            tokens: ring.tokens,
            retransmit_requests: ring.retransmit_requests,
            recovery_seqs: ring.recovery_seqs.clone(),
            senders: ring.senders.clone(),
            token_nodes: ring.token_nodes.clone(),
            late_nodes: ring.late_nodes.clone(),
            lost: ring.lost.clone(),
        };
        emulator.handle(OrderEvent::Start(meta.clone()), &mut collect);
        for (seq, om) in &ring.mcasts {
            let e = OrderEvent::Mcast {
                ring: id,
                seq: *seq,
                mcast: om.clone(),
            };
            emulator.handle(e, &mut collect);
        }
        emulator.handle(OrderEvent::End(meta), &mut collect);
    }
    Views {
        per_node,
        messages,
        totempg_orphans: emulator.totempg_orphans,
        totempg_unfinished: emulator.totempg_unfinished,
    }
}

fn start_ring(
    ring: &Ring,
    id: RingId,
    members: &[u32],
    seen: &BTreeSet<RingId>,
    nodes: &mut BTreeMap<u32, NodeView>,
) {
    for &node in members {
        let view = nodes.entry(node).or_default();
        let old = ring
            .commit
            .as_ref()
            .and_then(|c| c.members.iter().find(|m| m.nodeid == node))
            .map(|m| m.old_ring);
        // The members that come from the node's old ring. Without a commit
        // token (a ring whose start was not captured, or a one-node ring
        // that leaked), every member counts as coming along.
        view.transitional = match &ring.commit {
            Some(c) => c
                .members
                .iter()
                .filter(|m| Some(m.old_ring) == old)
                .map(|m| m.nodeid)
                .collect(),
            None => members.iter().copied().collect(),
        };
        view.from_unseen_ring = view.old_ring.is_some() && old.is_some_and(|o| !seen.contains(&o));
        view.started_here = view.old_ring.is_none() && ring.late_nodes.contains(&node);
        view.old_ring = Some(id);
        view.members = members.to_vec();
        view.joinlists.clear();
        view.downlists.clear();
        view.barrier_after_downlist.clear();
        view.synced = false;
    }
}
