//! The node: everything one pmxcfs process decides, as one sans-IO state
//! machine (the quinn-proto / raft-rs shape). The daemon's corosync driver,
//! the in-process simulator (`crate::sim`) and capture replay
//! (`pmxcfs-replay check` and `shadow`) all drive this one type.
//!
//! Inputs come with the time they happen at: a CPG configuration change
//! or delivery, a quorum or cmap change, a local request (a FUSE operation,
//! an IPC call), a timer. The node owns both dfsm machines (dcdb and
//! kvstore), the quorum state, the boot rules, write admission (quorum,
//! lock release, the `.debug` switch) and the timers (hourly verify,
//! rejoining a group it had to leave, probing a database that failed).
//!
//! Its output is one ordered batch per input, taken with [`Node::step`]:
//! first the changes to persist, handed to the caller's storage before
//! anything else leaves the node; then messages to send, replies to give
//! and effects (log lines, corosync.conf, RRD samples, leaving or joining a
//! group), performed by `core::engine`. A reply is therefore never given
//! before the change it reports is on disk; when persisting fails, the
//! replies of that batch become EIO.
//!
//! By job: this file holds the state, the inputs and the output batch;
//! `boot` starting on a database, `admission` local requests, `timers`
//! the timers; the types in and out are `core::io`'s.

mod admission;
mod boot;
pub mod counters;
mod timers;

use std::collections::{BTreeMap, VecDeque};

use pmxcfs_wire::dfsm::{Framing, MessageType, Sequence};

use super::dcdb::{self, Dcdb};
use super::dfsm::{Dfsm, Member, Mode, Output};
use super::errno::{Errno, EBUSY, EIO};
pub use super::io::*;
use super::kvstore::Kvstore;
use super::logline::{Level, LogLine, Subsystem};
use super::memdb::{DbChange, Memdb};
use super::status::Status;

pub use boot::{BootError, NodeConfig};

/// The dcdb verify timer (C `DCDB_VERIFY_TIME`).
pub const VERIFY_PERIOD: u32 = 3600;
/// C restarts a service no sooner than 5 s after its last start.
const SERVICE_RESTART_US: u64 = 5_000_000;
/// How often a database that failed is tried again.
const STORAGE_PROBE_US: u64 = 5_000_000;

pub struct Node {
    dcdb: Dfsm<Dcdb>,
    kvstore: Dfsm<Kvstore>,
    config: NodeConfig,
    cluster_mode: bool,
    persist: Vec<DbChange>,
    sends: VecDeque<(Group, Vec<u8>)>,
    replies: VecDeque<(RequestId, Reply)>,
    effects: VecDeque<Effect>,
    /// Our dcdb messages waiting for their own delivery: count → request.
    waiters: BTreeMap<u64, RequestId>,
    joined: [bool; 2],
    /// Whether the node wants to be in the group: from the start in
    /// cluster mode, until an error mode C never comes back from (ERROR,
    /// VERSION_ERROR); a LEAVE keeps it (the rejoin is scheduled).
    wanted: [bool; 2],
    last_join: [Option<Time>; 2],
    /// When each group's machine entered its current mode.
    mode_since: [Time; 2],
    rejoin_at: [Option<Time>; 2],
    /// Set after a failed persist in cluster mode: when to probe next.
    storage_probe_at: Option<Time>,
    verify_last: u32,
    synced_once: bool,
    /// For the metrics file.
    pub counters: counters::Counters,
}

fn result_of(r: i32) -> Result<u32, Errno> {
    if r < 0 {
        Err(-r)
    } else {
        Ok(r as u32)
    }
}

/// A one-line account of a dfsm message for debug lines.
pub fn describe_message(bytes: &[u8]) -> String {
    match Framing::parse(bytes) {
        Ok((payload, f)) => {
            let seq = match f.sequence {
                Sequence::Count(c) => format!("count {c}"),
                Sequence::Epoch(e) => format!("epoch {}/{}/{:08X}", e.nodeid, e.pid, e.epoch),
            };
            let subtype = if f.header.msg_type == MessageType::Normal {
                format!(" subtype {}", f.header.subtype)
            } else {
                String::new()
            };
            format!(
                "{:?}{subtype}, {seq}, time {}, {} bytes of payload",
                f.header.msg_type,
                f.header.time,
                payload.len()
            )
        }
        Err(_) => format!("undecodable message of {} bytes", bytes.len()),
    }
}

impl Node {
    pub fn is_cluster(&self) -> bool {
        self.cluster_mode
    }

    pub fn memdb(&self) -> &Memdb {
        &self.dcdb.app.memdb
    }

    pub fn kv(&self) -> &Kvstore {
        &self.kvstore.app
    }

    pub fn status(&self) -> &Status {
        &self.kvstore.app.status
    }

    pub fn nodename(&self) -> &str {
        &self.config.nodename
    }

    /// Local mode counts as quorate; in cluster mode, what corosync says.
    pub fn quorate(&self) -> bool {
        self.dcdb.app.quorate
    }

    pub fn debug(&self) -> bool {
        self.kvstore.app.status.debug
    }

    pub fn dcdb_mode(&self) -> Mode {
        self.dcdb.mode()
    }

    pub fn kvstore_mode(&self) -> Mode {
        self.kvstore.mode()
    }

    pub fn me(&self) -> Member {
        self.dcdb.me()
    }

    /// The members of the group's current view.
    pub fn members(&self, group: Group) -> Vec<Member> {
        match group {
            Group::Dcdb => self.dcdb.members(),
            Group::Kvstore => self.kvstore.members(),
        }
    }

    /// When the group's machine entered its current mode.
    /// Messages (and bytes) delivered to a group but not yet applied.
    pub fn queued(&self, group: Group) -> (usize, usize) {
        match group {
            Group::Dcdb => self.dcdb.queued(),
            Group::Kvstore => self.kvstore.queued(),
        }
    }

    pub fn mode_since(&self, group: Group) -> Time {
        self.mode_since[group.index()]
    }

    /// Whether the database failed and the node waits for it to recover.
    pub fn storage_failed(&self) -> bool {
        self.storage_probe_at.is_some() || self.memdb().has_error()
    }

    fn corosync_conf(&self) -> Option<Vec<u8>> {
        self.memdb()
            .lookup(b"corosync.conf")
            .filter(|e| !e.is_dir())
            .map(|e| e.data().to_vec())
    }

    #[track_caller]
    fn log(&mut self, subsystem: Subsystem, level: Level, text: impl Into<String>) {
        if level == Level::Debug && !self.debug() {
            return;
        }
        self.effects
            .push_back(Effect::Log(LogLine::new(subsystem, level, text)));
    }

    fn machine_mode(&self, group: Group) -> Mode {
        match group {
            Group::Dcdb => self.dcdb.mode(),
            Group::Kvstore => self.kvstore.mode(),
        }
    }

    /// Feed one input and persist what it changed: the batch that may now
    /// leave the node (performed by [`super::engine::run`]). When the
    /// persist fails, the batch's replies say so (see [`Node::drain`]).
    pub fn step(&mut self, now: Time, input: Input, storage: &mut dyn Storage) -> Batch {
        self.handle(now, input);
        let mut rows = 0;
        let actions = self.drain(now, &mut |changes| {
            rows += changes.iter().map(|c| c.write_rows.len()).sum::<usize>();
            storage.persist(changes)
        });
        Batch { actions, rows }
    }

    /// Feed one input.
    fn handle(&mut self, now: Time, input: Input) {
        let secs = now.secs();
        match input {
            Input::Joined { group, me } => {
                self.joined[group.index()] = true;
                self.last_join[group.index()] = Some(now);
                self.rejoin_at[group.index()] = None;
                match group {
                    Group::Dcdb => {
                        self.dcdb.set_me(me);
                        self.dcdb.initialize();
                        // C's dfsm_initialize wakes the waiting writers.
                        self.abort_waiters();
                    }
                    Group::Kvstore => {
                        self.kvstore.set_me(me);
                        self.kvstore.initialize();
                    }
                }
            }
            Input::Confchg {
                group,
                members,
                joined_any,
            } => {
                match group {
                    Group::Dcdb => self.dcdb.confchg(&members, joined_any, secs),
                    Group::Kvstore => self.kvstore.confchg(&members, joined_any, secs),
                }
                if !members.contains(&self.me()) && self.machine_mode(group) == Mode::Leave {
                    self.schedule_rejoin(group, now);
                }
            }
            Input::Deliver { group, from, msg } => {
                let own = from == self.me();
                self.counters.received(group, &msg, own);
                if self.debug() {
                    let what = describe_message(&msg);
                    self.log(
                        group.subsystem(),
                        Level::Debug,
                        format!("deliver from {}/{}: {what}", from.nodeid, from.pid),
                    );
                }
                match group {
                    Group::Dcdb => self.dcdb.deliver(from, &msg, secs),
                    Group::Kvstore => self.kvstore.deliver(from, &msg, secs),
                }
            }
            Input::GroupLost { group } => {
                self.joined[group.index()] = false;
                match group {
                    Group::Dcdb => {
                        self.dcdb.initialize();
                        self.abort_waiters();
                    }
                    Group::Kvstore => self.kvstore.initialize(),
                }
            }
            Input::Quorum { quorate } => {
                if quorate != self.quorate() {
                    let text = if quorate {
                        "node has quorum"
                    } else {
                        "node lost quorum"
                    };
                    self.log(Subsystem::Status, Level::Notice, text);
                    // Every mode follows quorum (0666 or 0444).
                    self.effects.push_back(Effect::TreeChanged(TreeChange::All));
                }
                self.dcdb.app.quorate = quorate;
                self.kvstore.app.quorate = quorate;
            }
            Input::ClusterInfo(info) => {
                self.log(
                    Subsystem::Status,
                    Level::Notice,
                    format!(
                        "update cluster info (cluster name  {}, version = {})",
                        info.name, info.config_version
                    ),
                );
                let kv = &mut self.kvstore.app;
                kv.cluster_name = info.name;
                kv.config_version = info.config_version as u32;
                kv.nodes = info.nodes;
                kv.status.clinfo_version = kv.status.clinfo_version.wrapping_add(1);
            }
            Input::Request { id, request } => self.request(now, id, request),
            Input::SendFailed { group, bytes } => {
                self.counters.error("send_failed");
                match super::dfsm::normal_count(&bytes) {
                    // A request's message: its writer hears EBUSY (C's
                    // result of a failed dfsm_send_message_sync).
                    Some(count) => {
                        if group == Group::Dcdb {
                            if let Some(id) = self.waiters.remove(&count) {
                                self.replies.push_back((id, Reply::Fs(Err(EBUSY))));
                            }
                        }
                    }
                    // A state-machine message (SYNC_START, STATE, UPDATE,
                    // VERIFY...) that did not go out leaves the peers waiting
                    // for it: leave, and rejoin for a full resync (C: a failed
                    // send in the sync protocol sets LEAVE).
                    None => {
                        let why = format!("cannot send {}", describe_message(&bytes));
                        match group {
                            Group::Dcdb => self.dcdb.leave_group(secs, &why),
                            Group::Kvstore => self.kvstore.leave_group(secs, &why),
                        }
                    }
                }
            }
            Input::StorageRecovered { rows } => self.storage_recovered(now, rows),
            Input::Timers => self.handle_timeout(now),
            Input::Start => {
                if self.cluster_mode {
                    for group in Group::ALL {
                        self.wanted[group.index()] = true;
                        self.effects.push_back(Effect::JoinGroup(group));
                    }
                }
            }
            Input::Connected { group } => {
                let i = group.index();
                self.counters.connections[i] += 1;
                if self.wanted[i] && !self.joined[i] && self.rejoin_at[i].is_none() {
                    self.effects.push_back(Effect::JoinGroup(group));
                }
            }
        }
        self.collect(now);
    }

    /// The dcdb writers waiting for their own delivery get EBUSY (C's
    /// preset result when the wait is aborted).
    fn abort_waiters(&mut self) {
        for (_, id) in std::mem::take(&mut self.waiters) {
            self.replies.push_back((id, Reply::Fs(Err(EBUSY))));
        }
    }

    /// Move what the machines produced into the output batch.
    fn collect(&mut self, now: Time) {
        for group in Group::ALL {
            let outputs = match group {
                Group::Dcdb => self.dcdb.take_outputs(),
                Group::Kvstore => self.kvstore.take_outputs(),
            };
            for out in outputs {
                match out {
                    Output::Send(bytes) => {
                        self.counters.sent(group, &bytes);
                        if self.debug() {
                            let what = describe_message(&bytes);
                            self.log(group.subsystem(), Level::Debug, format!("send {what}"));
                        }
                        self.sends.push_back((group, bytes));
                    }
                    Output::Delivered { count, result } => {
                        if group == Group::Dcdb {
                            if let Some(id) = self.waiters.remove(&count) {
                                self.replies.push_back((id, Reply::Fs(result_of(result))));
                            }
                        }
                    }
                    Output::ModeChanged(mode) => {
                        self.mode_since[group.index()] = now;
                        self.counters.mode_changed(group, mode, now);
                        if mode.is_error() {
                            // C leaves the group when its dfsm is in an
                            // error mode, and comes back (LEAVE only) once
                            // the leave went through. Writers waiting for
                            // their delivery will not get it in this
                            // membership: they hear EBUSY now, whatever
                            // the error mode (ERROR and VERSION_ERROR
                            // never come back).
                            self.joined[group.index()] = false;
                            if mode != Mode::Leave {
                                self.wanted[group.index()] = false;
                            }
                            self.effects.push_back(Effect::LeaveGroup(group));
                            if group == Group::Dcdb {
                                self.abort_waiters();
                            }
                        }
                        if mode == Mode::Synced && group == Group::Dcdb && !self.synced_once {
                            self.synced_once = true;
                            self.effects.push_back(Effect::FirstSync);
                        }
                    }
                    Output::Log(level, text, location) => {
                        if level != Level::Debug || self.debug() {
                            self.effects.push_back(Effect::Log(LogLine {
                                subsystem: group.subsystem(),
                                level,
                                text,
                                location,
                            }));
                        }
                    }
                }
            }
        }
        self.persist.extend(self.dcdb.app.memdb.take_changes());
        for effect in self.dcdb.app.take_effects() {
            match effect {
                dcdb::Effect::SyncCorosyncConf { reload } => {
                    let conf = self.corosync_conf();
                    self.effects
                        .push_back(Effect::SyncCorosyncConf { conf, reload });
                }
                dcdb::Effect::TreeChanged(change) => {
                    self.effects.push_back(Effect::TreeChanged(change))
                }
            }
        }
        for (key, value) in std::mem::take(&mut self.kvstore.app.rrd_samples) {
            self.effects.push_back(Effect::Rrd {
                key,
                value,
                time: now.secs(),
            });
        }
    }

    /// The output batch of the inputs fed so far, in order: the changes to
    /// persist go to `persist` first; only then come the sends, replies and
    /// effects. When `persist` fails, the replies of the batch become EIO,
    /// and the node stops taking changes: in local mode until a restart,
    /// as C; in cluster mode it leaves the dcdb group, keeps serving
    /// reads, and probes the database until it takes writes again, then
    /// reloads it and rejoins as a follower (C stays in the group with a
    /// database that no longer matches its memory).
    fn drain(
        &mut self,
        now: Time,
        persist: &mut dyn FnMut(&[DbChange]) -> Result<(), PersistFailure>,
    ) -> Vec<Action> {
        if !self.persist.is_empty() {
            let changes = std::mem::take(&mut self.persist);
            if let Err(failure) = persist(&changes) {
                self.persist_failed(now, failure);
            }
        }
        let mut actions =
            Vec::with_capacity(self.sends.len() + self.replies.len() + self.effects.len());
        actions.extend(
            self.sends
                .drain(..)
                .map(|(group, bytes)| Action::Send { group, bytes }),
        );
        actions.extend(
            self.replies
                .drain(..)
                .map(|(id, reply)| Action::Reply { id, reply }),
        );
        actions.extend(self.effects.drain(..).map(Action::Effect));
        actions
    }

    /// After the first failed persist: say so, and probe the database
    /// every few seconds until it takes writes again.
    fn start_probing(&mut self, now: Time, subsystem: Subsystem, why: &str) {
        if self.storage_probe_at.is_none() {
            self.log(subsystem, Level::Crit, why);
            self.storage_probe_at = Some(now.plus_micros(STORAGE_PROBE_US));
        }
    }

    fn persist_failed(&mut self, now: Time, failure: PersistFailure) {
        self.counters.error("persist_failed");
        for line in &failure.lines {
            self.log(Subsystem::Database, Level::Crit, line.clone());
        }
        // What the callers were about to hear as success is not on disk.
        for (_, reply) in self.replies.iter_mut() {
            if matches!(reply, Reply::Fs(Ok(_))) {
                *reply = Reply::Fs(Err(EIO));
            }
        }
        if !self.cluster_mode {
            // C answers EIO to every later write until it is restarted,
            // while its memory serves the change that was not saved. We
            // refuse writes too, but probe the database and reload it once
            // it takes writes again, so memory and disk agree.
            self.dcdb.app.memdb.set_error();
            self.start_probing(
                now,
                Subsystem::Database,
                "cannot write config.db - refusing changes until it takes writes again",
            );
            return;
        }
        self.start_probing(
            now,
            Subsystem::Dcdb,
            "cannot write config.db - leaving the cluster group, serving reads only, until it takes writes again",
        );
        // Nothing more goes out on behalf of a tree that is not on disk.
        self.sends.retain(|(g, _)| *g != Group::Dcdb);
        self.dcdb
            .leave_group(now.secs(), "config.db cannot be written");
        self.abort_waiters();
        self.collect(now);
    }
}

#[cfg(test)]
mod tests;
