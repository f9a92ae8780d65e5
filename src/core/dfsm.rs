//! dfsm: the distributed state machine both CPG groups run (spec §1), as
//! plain state. Inputs: membership changes, delivered messages, local
//! sends, timer ticks, each with the current time. Outputs: bytes to
//! multicast, results of our own messages, mode changes and log lines.
//! The application (dcdb, kvstore) is a trait object of this machine; what
//! it wants to send goes through [`Env`] and comes out as [`Output::Send`].

use pmxcfs_wire::dfsm::{
    Epoch, Framing, Header, MessageType, Sequence, NORMAL_HEADER_LEN, STATE_HEADER_LEN,
};

use std::panic::Location;

use super::logline::Level;

/// dfsm modes (spec §1.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    Start = 0,
    StartSync = 1,
    Synced = 2,
    Update = 3,
    Leave = 253,
    VersionError = 254,
    Error = 255,
}

impl Mode {
    pub fn is_error(self) -> bool {
        self as u8 >= 128
    }
}

/// A CPG member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Member {
    pub nodeid: u32,
    pub pid: u32,
}

impl From<&pmxcfs_wire::capture::CpgAddress> for Member {
    /// A confchg entry without its reason (the member list of a confchg).
    fn from(a: &pmxcfs_wire::capture::CpgAddress) -> Member {
        Member {
            nodeid: a.nodeid,
            pid: a.pid,
        }
    }
}

/// What the machine asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Multicast these bytes to the group (CPG_TYPE_AGREED).
    Send(Vec<u8>),
    /// Our own NORMAL message `count` was delivered with this result (a
    /// negative errno or the application's value).
    Delivered {
        count: u64,
        result: i32,
    },
    ModeChanged(Mode),
    /// A line for this group's log (`[dcdb]` or `[status]`), and where in
    /// the code it was decided.
    Log(Level, String, &'static Location<'static>),
}

/// What an application asks to send while it handles an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppSend {
    Normal {
        subtype: u16,
        payload: Vec<u8>,
    },
    State {
        msg_type: MessageType,
        payload: Vec<u8>,
    },
    /// A state message built in place: `bytes` begins with
    /// STATE_HEADER_LEN bytes the dfsm overwrites with the header, so a
    /// large payload (a sync's UPDATEs: the whole tree) is not copied once
    /// more to be framed.
    StateInPlace {
        msg_type: MessageType,
        bytes: Vec<u8>,
    },
}

/// The context of an application callback.
#[derive(Debug)]
pub struct Env {
    pub me: Member,
    pub lowest_nodeid: u32,
    pub now: u32,
    pub sends: Vec<AppSend>,
    pub logs: Vec<(Level, String, &'static Location<'static>)>,
}

impl Env {
    /// A context outside any group (local mode): what is sent is dropped.
    pub fn detached(now: u32) -> Env {
        Env {
            me: Member { nodeid: 0, pid: 0 },
            lowest_nodeid: 0,
            now,
            sends: Vec::new(),
            logs: Vec::new(),
        }
    }

    pub fn send_normal(&mut self, subtype: u16, payload: Vec<u8>) {
        self.sends.push(AppSend::Normal { subtype, payload });
    }
    pub fn send_state(&mut self, msg_type: MessageType, payload: Vec<u8>) {
        self.sends.push(AppSend::State { msg_type, payload });
    }
    /// A state message whose payload `write` appends to the buffer the
    /// message is sent from (`capacity`: the payload's length, if known).
    pub fn send_state_with(
        &mut self,
        msg_type: MessageType,
        capacity: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let mut bytes = Vec::with_capacity(STATE_HEADER_LEN + capacity);
        bytes.resize(STATE_HEADER_LEN, 0);
        write(&mut bytes);
        self.sends.push(AppSend::StateInPlace { msg_type, bytes });
    }
    /// A notice line of this group's log.
    #[track_caller]
    pub fn log(&mut self, line: String) {
        self.logs.push((Level::Notice, line, Location::caller()));
    }
    #[track_caller]
    pub fn log_at(&mut self, level: Level, line: String) {
        self.logs.push((level, line, Location::caller()));
    }
    pub fn is_lowest(&self) -> bool {
        self.me.nodeid == self.lowest_nodeid
    }
}

/// How a delivery of a NORMAL message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Applied; the result goes back to the originator.
    Done(i32),
    /// A protocol or application error: leave the group (and resync). The
    /// originator sees the value given (C leaves the preset −1).
    Leave(i32),
    /// A permanent error (e.g. the database failed): stop for good.
    Error(i32),
}

/// One member's collected state during a sync round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberState {
    pub member: Member,
    pub state: Vec<u8>,
}

/// The application side of a dfsm (C's `dfsm_callbacks_t`).
pub trait App {
    fn protocol_version(&self) -> u32;
    fn deliver(
        &mut self,
        env: &mut Env,
        from: Member,
        subtype: u16,
        time: u32,
        payload: &[u8],
    ) -> Delivery;
    /// Our state for a STATE message; `None` leaves the group.
    fn get_state(&mut self, env: &mut Env) -> Option<Vec<u8>>;
    /// All states are in (sorted by member): decide who is synced (one flag
    /// per state, in order) and send updates. `None` leaves the group.
    fn process_state_update(&mut self, env: &mut Env, states: &[MemberState]) -> Option<Vec<bool>>;
    fn process_update(&mut self, env: &mut Env, from: Member, payload: &[u8]) -> bool;
    fn commit(&mut self, env: &mut Env) -> bool;
    /// A sync round ended or was abandoned.
    fn cleanup(&mut self);
    /// Whether the application takes part in the verify round (dcdb).
    fn has_checksum(&self) -> bool {
        false
    }
    /// The full-state checksum of the verify round; `None` leaves the group.
    fn checksum(&mut self) -> Option<[u8; 32]> {
        None
    }
    /// The machine entered SYNCED.
    fn synced(&mut self, _env: &mut Env) {}
    /// The membership changed.
    fn confchg(&mut self, _env: &mut Env, _members: &[Member]) {}
}

#[derive(Clone, Debug)]
struct NodeInfo {
    member: Member,
    state: Option<Vec<u8>>,
    synced: bool,
}

#[derive(Clone, Debug)]
struct Queued {
    from: Member,
    count: u64,
    bytes: Vec<u8>,
}

/// What a group may hold of messages it cannot deliver yet (C has no
/// bound): past it, the node leaves the group and resyncs rather than let
/// a flood of messages from a peer exhaust its memory.
pub const MAX_QUEUED_MESSAGES: usize = 100_000;
pub const MAX_QUEUED_BYTES: usize = 256 << 20;

/// Queued messages and their size.
#[derive(Default)]
struct Queue {
    items: Vec<Queued>,
    bytes: usize,
}

impl Queue {
    fn push(&mut self, q: Queued) {
        self.bytes += q.bytes.len();
        self.items.push(q);
    }

    /// Insert ordered by count, compared as C does (a 32-bit truncated
    /// difference); equal counts keep arrival order. Messages of a sender
    /// come in count order, so this is nearly always an append.
    fn insert_by_count(&mut self, q: Queued) {
        let pos = self
            .items
            .partition_point(|e| (e.count.wrapping_sub(q.count) as i32) <= 0);
        self.bytes += q.bytes.len();
        self.items.insert(pos, q);
    }

    fn take(&mut self) -> Vec<Queued> {
        self.bytes = 0;
        std::mem::take(&mut self.items)
    }

    fn clear(&mut self) {
        self.take();
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}

/// The state machine of one CPG group.
pub struct Dfsm<A: App> {
    pub app: A,
    me: Member,
    mode: Mode,
    local_epoch_counter: u32,
    sync_epoch: Epoch,
    lowest_nodeid: u32,
    we_are_member: bool,
    nodes: Option<Vec<NodeInfo>>,
    msg_queue: Queue,
    sync_queue: Queue,
    /// The last count used for a NORMAL message we sent.
    msgcount: u64,
    csum_counter: u64,
    csum_id: u64,
    csum_epoch: Epoch,
    csum: Option<[u8; 32]>,
    outputs: Vec<Output>,
}

fn same_epoch(a: &Epoch, b: &Epoch) -> bool {
    a == b
}

impl<A: App> Dfsm<A> {
    pub fn new(app: A, me: Member) -> Dfsm<A> {
        Dfsm {
            app,
            me,
            mode: Mode::Start,
            local_epoch_counter: 0,
            sync_epoch: Epoch::default(),
            lowest_nodeid: 0,
            we_are_member: false,
            nodes: None,
            msg_queue: Queue::default(),
            sync_queue: Queue::default(),
            msgcount: 0,
            csum_counter: 0,
            csum_id: 0,
            csum_epoch: Epoch::default(),
            csum: None,
            outputs: Vec::new(),
        }
    }

    /// Our identity, known once corosync is connected (nodeid) and for
    /// this process (pid).
    pub fn set_me(&mut self, me: Member) {
        self.me = me;
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Messages (and their bytes) waiting in the queues: delivered but not
    /// yet applied (during a sync, or before this node's own sync).
    pub fn queued(&self) -> (usize, usize) {
        (
            self.msg_queue.items.len() + self.sync_queue.items.len(),
            self.msg_queue.bytes + self.sync_queue.bytes,
        )
    }

    pub fn me(&self) -> Member {
        self.me
    }

    pub fn lowest_nodeid(&self) -> u32 {
        self.lowest_nodeid
    }

    /// The members of the current view, sorted.
    pub fn members(&self) -> Vec<Member> {
        self.nodes
            .as_ref()
            .map(|n| n.iter().map(|i| i.member).collect())
            .unwrap_or_default()
    }

    pub fn is_member(&self) -> bool {
        self.we_are_member
    }

    /// The outputs produced since the last call, in order.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    #[track_caller]
    fn log(&mut self, s: String) {
        self.outputs
            .push(Output::Log(Level::Notice, s, Location::caller()));
    }

    #[track_caller]
    fn log_at(&mut self, level: Level, s: String) {
        self.outputs.push(Output::Log(level, s, Location::caller()));
    }

    fn env(&self, now: u32) -> Env {
        Env {
            me: self.me,
            lowest_nodeid: self.lowest_nodeid,
            now,
            sends: Vec::new(),
            logs: Vec::new(),
        }
    }

    /// Turn what the application asked for into bytes, in order.
    fn flush_env(&mut self, env: Env) {
        for (level, line, location) in env.logs {
            self.outputs.push(Output::Log(level, line, location));
        }
        for send in env.sends {
            match send {
                AppSend::Normal { subtype, payload } => {
                    self.send_normal_at(subtype, &payload, env.now);
                }
                AppSend::State { msg_type, payload } => {
                    self.send_state(msg_type, &payload, env.now)
                }
                AppSend::StateInPlace {
                    msg_type,
                    mut bytes,
                } => {
                    let mut header = Vec::with_capacity(STATE_HEADER_LEN);
                    self.state_framing(msg_type, env.now).encode(&mut header);
                    bytes[..STATE_HEADER_LEN].copy_from_slice(&header);
                    self.outputs.push(Output::Send(bytes));
                }
            }
        }
    }

    /// `dfsm_set_mode`: error modes only go up; entering SYNCED tells the
    /// application.
    fn set_mode(&mut self, mode: Mode, now: u32) {
        if self.mode == mode {
            return;
        }
        if self.mode.is_error() && (!mode.is_error() || mode < self.mode) {
            return;
        }
        self.mode = mode;
        self.outputs.push(Output::ModeChanged(mode));
        // The transitions C reports at notice level.
        match mode {
            Mode::StartSync => self.log("starting data syncronisation".into()),
            Mode::Update => self.log("waiting for updates from leader".into()),
            Mode::Synced => self.log("all data is up to date".into()),
            _ => self.log_at(Level::Debug, format!("mode is now {mode:?}")),
        }
        if mode == Mode::Synced {
            let mut env = self.env(now);
            self.app.synced(&mut env);
            self.flush_env(env);
        }
    }

    /// LEAVE: set the mode and free the sync states.
    fn leave(&mut self, now: u32, why: &str) {
        self.log_at(Level::Crit, format!("leaving the group: {why}"));
        self.set_mode(Mode::Leave, now);
        self.release_states();
    }

    /// Leave the group on the node's decision (its database failed): the
    /// same LEAVE as a protocol error, so the edge leaves the CPG group and
    /// later joins again with a fresh machine.
    pub fn leave_group(&mut self, now: u32, why: &str) {
        if !self.mode.is_error() {
            self.leave(now, why);
        }
    }

    fn release_states(&mut self) {
        if let Some(nodes) = &mut self.nodes {
            let had = nodes.iter().any(|n| n.state.is_some());
            for n in nodes.iter_mut() {
                n.state = None;
            }
            if had {
                self.app.cleanup();
            }
        }
    }

    /// Let the application act on a local request (e.g. an IPC call); what
    /// it sends goes out in order.
    pub fn with_app<R>(&mut self, now: u32, f: impl FnOnce(&mut A, &mut Env) -> R) -> R {
        let mut env = self.env(now);
        let r = f(&mut self.app, &mut env);
        self.flush_env(env);
        r
    }

    /// Send a NORMAL message now (a local request): returns its count, or
    /// `None` when the machine is in an error mode and sends nothing.
    pub fn send_normal(&mut self, subtype: u16, payload: &[u8], now: u32) -> Option<u64> {
        if self.mode.is_error() {
            return None;
        }
        Some(self.send_normal_at(subtype, payload, now))
    }

    fn send_normal_at(&mut self, subtype: u16, payload: &[u8], now: u32) -> u64 {
        self.msgcount += 1;
        let framing = Framing::normal(subtype, self.app.protocol_version(), now, self.msgcount);
        let mut bytes = Vec::with_capacity(NORMAL_HEADER_LEN + payload.len());
        framing.encode(&mut bytes);
        bytes.extend_from_slice(payload);
        self.outputs.push(Output::Send(bytes));
        self.msgcount
    }

    fn state_framing(&self, msg_type: MessageType, now: u32) -> Framing {
        Framing::state(msg_type, self.app.protocol_version(), now, self.sync_epoch)
    }

    fn send_state(&mut self, msg_type: MessageType, payload: &[u8], now: u32) {
        let framing = self.state_framing(msg_type, now);
        let mut bytes = Vec::with_capacity(STATE_HEADER_LEN + payload.len());
        framing.encode(&mut bytes);
        bytes.extend_from_slice(payload);
        self.outputs.push(Output::Send(bytes));
    }

    /// `dfsm_initialize` after (re)joining: the old queue is dropped and
    /// the machine starts over.
    pub fn initialize(&mut self) {
        self.msg_queue.clear();
        if !self.mode.is_error() || self.mode == Mode::Leave {
            self.mode = Mode::Start;
        }
    }

    /// A CPG configuration change (spec §1.6).
    pub fn confchg(&mut self, members: &[Member], joined_any: bool, now: u32) {
        self.we_are_member = false;
        self.local_epoch_counter = self.local_epoch_counter.wrapping_add(1);
        self.sync_epoch = Epoch {
            epoch: self.local_epoch_counter,
            time: now,
            nodeid: self.me.nodeid,
            pid: self.me.pid,
        };
        self.csum_id = self.csum_counter;
        self.csum_epoch = Epoch::default();
        self.sync_queue.clear();
        if self.mode.is_error() {
            return;
        }
        self.log(format!("members: {}", member_list(members)));
        self.lowest_nodeid = members.iter().map(|m| m.nodeid).min().unwrap_or(0);
        self.we_are_member = members.contains(&self.me);
        self.release_states();
        let mut sorted: Vec<Member> = members.to_vec();
        sorted.sort();
        self.nodes = Some(
            sorted
                .iter()
                .map(|&member| NodeInfo {
                    member,
                    state: None,
                    synced: false,
                })
                .collect(),
        );
        if !self.we_are_member {
            if self.mode != Mode::Start {
                self.log("we left the group".into());
                self.set_mode(Mode::Leave, now);
            }
            return;
        }
        if members.len() > 1 {
            if joined_any && !self.msg_queue.is_empty() {
                let own: Vec<Vec<u8>> = self
                    .msg_queue
                    .items
                    .iter()
                    .filter(|q| q.from == self.me)
                    .map(|q| q.bytes.clone())
                    .collect();
                for bytes in own {
                    self.outputs.push(Output::Send(bytes));
                }
                self.msg_queue.clear();
            }
            self.set_mode(Mode::StartSync, now);
            if self.lowest_nodeid == self.me.nodeid {
                self.send_state(MessageType::SyncStart, &[], now);
            }
        } else {
            self.set_mode(Mode::Synced, now);
            self.mark_synced(self.me);
            self.deliver_queue(now);
        }
        let mut env = self.env(now);
        self.app.confchg(&mut env, &sorted);
        self.flush_env(env);
    }

    fn node_index(&self, m: Member) -> Option<usize> {
        self.nodes.as_ref()?.iter().position(|n| n.member == m)
    }

    fn mark_synced(&mut self, m: Member) {
        if let Some(i) = self.node_index(m) {
            if let Some(nodes) = &mut self.nodes {
                nodes[i].synced = true;
            }
        }
    }

    fn is_synced(&self, m: Member) -> bool {
        self.node_index(m)
            .and_then(|i| self.nodes.as_ref().map(|n| n[i].synced))
            .unwrap_or(false)
    }

    /// Insert into `msg_queue` ordered by count, compared as C does
    /// (`(int)(a - b)`), equal counts in arrival order.
    fn enqueue(&mut self, q: Queued) {
        self.msg_queue.insert_by_count(q);
    }

    /// Whether the queues went past their bound.
    fn queues_full(&self) -> bool {
        self.msg_queue.len() + self.sync_queue.len() > MAX_QUEUED_MESSAGES
            || self.msg_queue.bytes + self.sync_queue.bytes > MAX_QUEUED_BYTES
    }

    /// A message delivered by CPG (spec §1.7).
    pub fn deliver(&mut self, from: Member, bytes: &[u8], now: u32) {
        if self.mode.is_error() {
            return;
        }
        if self.nodes.is_none() {
            return self.leave(now, "message before any membership");
        }
        let Ok((_, header)) = Header::parse(bytes) else {
            return self.leave(now, "message shorter than the dfsm header");
        };
        let ours = self.app.protocol_version();
        if header.protocol_version > ours {
            self.log_at(
                Level::Crit,
                "detected newer protocol - please update this node".into(),
            );
            self.set_mode(Mode::VersionError, now);
            return;
        }
        if header.protocol_version < ours {
            self.log("ignore message with wrong protocol version".into());
            return;
        }
        if header.msg_type == MessageType::Normal {
            let Ok((payload, framing)) = Framing::parse(bytes) else {
                return self.leave(now, "NORMAL message shorter than its header");
            };
            let count = framing.count().unwrap_or(0);
            if self.mode != Mode::Synced {
                let q = Queued {
                    from,
                    count,
                    bytes: bytes.to_vec(),
                };
                // While we wait for the leader's updates, a synced
                // sender's message goes to `sync_queue` in arrival order
                // (spec §1.8): the synced members apply it now, in that
                // order, and so must we once the update is complete.
                if self.mode == Mode::Update && self.is_synced(from) {
                    self.sync_queue.push(q);
                } else {
                    self.enqueue(q);
                }
                if self.node_index(from).is_none() {
                    self.leave(now, "message from a non-member");
                } else if self.queues_full() {
                    // The queues go with the leave (a rejoin starts with
                    // empty ones and a full resync).
                    self.msg_queue.clear();
                    self.sync_queue.clear();
                    self.leave(now, "too many messages waiting for the sync");
                }
                return;
            }
            let mut env = self.env(now);
            let outcome = self
                .app
                .deliver(&mut env, from, header.subtype, header.time, payload);
            self.flush_env(env);
            let (result, next) = match outcome {
                Delivery::Done(r) => (r, None),
                Delivery::Leave(r) => (r, Some(Mode::Leave)),
                Delivery::Error(r) => (r, Some(Mode::Error)),
            };
            if from == self.me {
                self.outputs.push(Output::Delivered { count, result });
            }
            match next {
                Some(Mode::Leave) => self.leave(now, "delivery failed"),
                Some(m) => self.set_mode(m, now),
                None => {}
            }
            return;
        }

        let Ok((payload, framing)) = Framing::parse(bytes) else {
            return self.leave(now, "state message shorter than its header");
        };
        let epoch = framing.epoch().unwrap_or_default();
        let msg_type = header.msg_type;
        if msg_type != MessageType::SyncStart && !same_epoch(&epoch, &self.sync_epoch) {
            return;
        }
        match (self.mode, msg_type) {
            (Mode::StartSync, MessageType::SyncStart) => {
                // C names it "ignore" but processes it all the same
                // (spec §1.7 (a)).
                if from.nodeid != self.lowest_nodeid {
                    self.log_at(
                        Level::Crit,
                        format!(
                            "ignore sync request from wrong member {}/{}",
                            from.nodeid, from.pid
                        ),
                    );
                }
                self.log(format!(
                    "received sync request (epoch {}/{}/{:08X})",
                    epoch.nodeid, epoch.pid, epoch.epoch
                ));
                self.sync_epoch = epoch;
                self.release_states();
                let mut env = self.env(now);
                let state = self.app.get_state(&mut env);
                self.flush_env(env);
                match state {
                    Some(s) if !s.is_empty() => self.send_state(MessageType::State, &s, now),
                    _ => self.leave(now, "no state to send"),
                }
            }
            (Mode::StartSync, MessageType::State) => self.collect_state(from, payload, now),
            (Mode::Update, MessageType::Update) => {
                let mut env = self.env(now);
                let ok = self.app.process_update(&mut env, from, payload);
                self.flush_env(env);
                if !ok {
                    self.leave(now, "update failed");
                }
            }
            (Mode::Update, MessageType::UpdateComplete) => {
                let mut env = self.env(now);
                let ok = self.app.commit(&mut env);
                self.flush_env(env);
                if !ok {
                    return self.leave(now, "commit failed");
                }
                if let Some(nodes) = &mut self.nodes {
                    for n in nodes.iter_mut() {
                        n.synced = true;
                    }
                }
                self.set_mode(Mode::Synced, now);
                let sync_queue = self.sync_queue.take();
                if !sync_queue.is_empty() {
                    self.log(format!(
                        "dfsm_deliver_sync_queue: queue length {}",
                        sync_queue.len()
                    ));
                }
                for q in sync_queue {
                    if self.mode != Mode::Synced {
                        break;
                    }
                    self.deliver(q.from, &q.bytes, now);
                }
                self.deliver_queue(now);
                self.release_states();
            }
            (Mode::Synced, MessageType::UpdateComplete) => {
                if let Some(nodes) = &mut self.nodes {
                    for n in nodes.iter_mut() {
                        n.synced = true;
                    }
                }
                self.deliver_queue(now);
            }
            (Mode::Synced, MessageType::VerifyRequest) => {
                if payload.len() != 8 {
                    return self.leave(now, "bad VERIFY_REQUEST");
                }
                let id = u64::from_le_bytes(payload.try_into().expect("8 bytes"));
                if self.app.has_checksum() {
                    let Some(csum) = self.app.checksum() else {
                        return self.leave(now, "checksum failed");
                    };
                    self.csum = Some(csum);
                    self.csum_epoch = epoch;
                    self.csum_id = id;
                    if from == self.me {
                        let mut p = id.to_le_bytes().to_vec();
                        p.extend_from_slice(&csum);
                        self.send_state(MessageType::Verify, &p, now);
                    }
                }
            }
            (Mode::Synced, MessageType::Verify) => {
                if self.app.has_checksum() {
                    if payload.len() != 40 {
                        return self.leave(now, "bad VERIFY");
                    }
                    let id = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
                    if id == self.csum_id && same_epoch(&epoch, &self.csum_epoch) {
                        if self.csum.as_ref().map(|c| &c[..]) != Some(&payload[8..]) {
                            self.log_at(Level::Crit, "wrong checksum - restarting".into());
                            return self.leave(now, "data verification failed");
                        }
                        self.log("data verification successful".into());
                    } else {
                        self.log("skip verification - no checksum saved".into());
                    }
                }
            }
            (Mode::Synced, _) => {}
            (Mode::StartSync | Mode::Update, MessageType::VerifyRequest | MessageType::Verify) => {
                // C logs "ignore verify message while not synced" but falls
                // through to its leave label (spec §1.7 (h)); replicated,
                // since a C lowest node expects exactly that reaction.
                self.leave(now, "verify message while not synced")
            }
            (Mode::Start, _) => self.leave(now, "state message in unknown mode"),
            _ => self.leave(now, "unexpected state message"),
        }
    }

    fn collect_state(&mut self, from: Member, payload: &[u8], now: u32) {
        let Some(i) = self.node_index(from) else {
            return self.leave(now, "STATE from a non-member");
        };
        let nodes = self.nodes.as_mut().expect("sync info");
        if nodes[i].state.is_some() {
            return self.leave(now, "duplicate STATE");
        }
        nodes[i].state = Some(payload.to_vec());
        if nodes.iter().any(|n| n.state.is_none()) {
            return;
        }
        let states: Vec<MemberState> = nodes
            .iter()
            .map(|n| MemberState {
                member: n.member,
                state: n.state.clone().unwrap_or_default(),
            })
            .collect();
        self.log("received all states".into());
        let mut env = self.env(now);
        let synced = self.app.process_state_update(&mut env, &states);
        self.flush_env(env);
        let Some(synced) = synced else {
            return self.leave(now, "state processing failed");
        };
        if let Some(nodes) = &mut self.nodes {
            for (n, s) in nodes.iter_mut().zip(synced) {
                n.synced = s;
            }
        }
        if self.is_synced(self.me) {
            self.set_mode(Mode::Synced, now);
            self.release_states();
            self.deliver_queue(now);
        } else {
            self.set_mode(Mode::Update, now);
            self.deliver_queue(now);
        }
    }

    /// `dfsm_deliver_queue` (spec §1.8).
    fn deliver_queue(&mut self, now: u32) {
        if !self.msg_queue.is_empty() && matches!(self.mode, Mode::Synced | Mode::Update) {
            self.log(format!(
                "dfsm_deliver_queue: queue length {}",
                self.msg_queue.len()
            ));
        }
        // One pass over the queue (removing in place would be quadratic in
        // its length); what stays keeps its order.
        let mut rest = self.msg_queue.take().into_iter();
        let mut kept = Queue::default();
        while let Some(q) = rest.next() {
            if self.node_index(q.from).is_none() {
                self.log("remove message from non-member".into());
                continue;
            }
            let synced = self.is_synced(q.from);
            match self.mode {
                Mode::Synced if synced => self.deliver(q.from, &q.bytes, now),
                Mode::Update if synced => self.sync_queue.push(q),
                Mode::Synced | Mode::Update => kept.push(q),
                _ => {
                    kept.push(q);
                    rest.by_ref().for_each(|q| kept.push(q));
                }
            }
        }
        // Anything queued while delivering comes after, in count order.
        for q in self.msg_queue.take() {
            kept.insert_by_count(q);
        }
        self.msg_queue = kept;
    }

    /// The verify timer (spec §1.11): only the lowest member, only synced,
    /// only when its last request came back.
    pub fn verify_request(&mut self, now: u32) {
        if self.me.nodeid != self.lowest_nodeid || self.mode != Mode::Synced {
            return;
        }
        if self.csum_counter != self.csum_id {
            self.log("delay verify request".into());
            return;
        }
        self.csum_counter += 1;
        let id = self.csum_counter.to_le_bytes();
        self.send_state(MessageType::VerifyRequest, &id, now);
    }
}

/// The count of a NORMAL message (for drivers matching results).
/// `nodeid/pid` pairs as C lists members: `1/127, 2/128`.
pub fn member_list<'a>(members: impl IntoIterator<Item = &'a Member>) -> String {
    members
        .into_iter()
        .map(|m| format!("{}/{}", m.nodeid, m.pid))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn normal_count(bytes: &[u8]) -> Option<u64> {
    match Framing::parse(bytes) {
        Ok((
            _,
            Framing {
                sequence: Sequence::Count(c),
                ..
            },
        )) => Some(c),
        _ => None,
    }
}

#[cfg(test)]
#[path = "dfsm_tests.rs"]
mod tests;
