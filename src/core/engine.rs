//! The engine: the one loop that feeds the node core and performs its
//! output, written once for every driver (raft-rs's `Ready`/`advance` and
//! quinn's driver over quinn-proto are the models).
//!
//! A driver is a [`Port`]: it does I/O only (send, reply, join, leave,
//! log, ...) and never looks at the node's outputs or its protocol state.
//! [`run`] feeds an input with its time, takes the node's batch — which
//! exists only once its changes were handed to [`Storage`] — and performs
//! it on the port, in order. What the port reports back (a send that
//! failed, a group joined at once, a database that takes writes again) is
//! queued as the next input and fed after the whole batch was performed,
//! never from inside it.
//!
//! The daemon, the simulator and capture replay are the ports; this file
//! holds the only `match` over the node's output.

use std::collections::VecDeque;

use super::dfsm::Member;
use super::io::{Action, Effect, Group, Input, Reply, RequestId, Time, TreeChange};
use super::logline::LogLine;
use super::memdb::Row;

pub use super::io::{Batch, Storage};

/// A message the port could not send, for good: its bytes, handed back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendFailed(pub Vec<u8>);

/// What a driver does for the node. Every method is I/O; none decides.
pub trait Port {
    /// Multicast `bytes` in `group` (agreed order).
    fn send(&mut self, group: Group, bytes: Vec<u8>) -> Result<(), SendFailed>;
    /// Answer a local request.
    fn reply(&mut self, id: RequestId, reply: Reply);
    /// Join the group. `Some(me)` when joined at once; `None` when the
    /// port reports `Input::Joined` itself later (or cannot join now).
    fn join(&mut self, group: Group) -> Option<Member>;
    /// Leave the group.
    fn leave(&mut self, group: Group);
    /// Try a write on the database that failed: its rows when it takes
    /// writes again.
    fn probe_storage(&mut self) -> Option<Vec<Row>> {
        None
    }
    fn log(&mut self, _line: LogLine) {}
    fn set_debug(&mut self, _on: bool) {}
    fn rrd(&mut self, _key: String, _value: Vec<u8>, _time: u32) {}
    /// memdb's corosync.conf may be newer than the host's (the rule is
    /// `corosync_conf::decide`).
    fn sync_corosync_conf(&mut self, _conf: Option<Vec<u8>>, _reload: bool) {}
    /// The dcdb reached SYNCED for the first time since start.
    fn first_sync(&mut self) {}
    /// The tree changed without a request of the mount (the kernel's
    /// caches of it are stale).
    fn tree_changed(&mut self, _change: TreeChange) {}
    /// After a batch that wrote `rows` database rows and sent `sent`
    /// messages (a sync of a large tree frees as much memory).
    fn batch_done(&mut self, _rows: usize, _sent: usize) {}
}

impl Batch {
    /// Perform the batch on the port, in order; the inputs the port
    /// reported back, to be fed next.
    pub fn perform(self, port: &mut dyn Port) -> Vec<Input> {
        let mut follow_ups = Vec::new();
        let mut sent = 0;
        for action in self.actions {
            match action {
                Action::Send { group, bytes } => {
                    sent += 1;
                    if let Err(SendFailed(bytes)) = port.send(group, bytes) {
                        follow_ups.push(Input::SendFailed { group, bytes });
                    }
                }
                Action::Reply { id, reply } => port.reply(id, reply),
                Action::Effect(effect) => match effect {
                    Effect::Log(line) => port.log(line),
                    Effect::Debug(on) => port.set_debug(on),
                    Effect::Rrd { key, value, time } => port.rrd(key, value, time),
                    Effect::SyncCorosyncConf { conf, reload } => {
                        port.sync_corosync_conf(conf, reload)
                    }
                    Effect::FirstSync => port.first_sync(),
                    Effect::TreeChanged(change) => port.tree_changed(change),
                    Effect::LeaveGroup(group) => port.leave(group),
                    Effect::JoinGroup(group) => {
                        if let Some(me) = port.join(group) {
                            follow_ups.push(Input::Joined { group, me });
                        }
                    }
                    Effect::ProbeStorage => {
                        if let Some(rows) = port.probe_storage() {
                            follow_ups.push(Input::StorageRecovered { rows });
                        }
                    }
                },
            }
        }
        port.batch_done(self.rows, sent);
        follow_ups
    }

    /// Whether the batch holds nothing to perform.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// Feed `input` at `now` and every follow-up it causes. `step` gives the
/// node the input and returns its persisted batch (the daemon locks the
/// node for it; the port's work happens outside that lock). Batch N is
/// performed completely before input N+1 is fed.
pub fn run(
    now: Time,
    input: Input,
    port: &mut dyn Port,
    step: &mut dyn FnMut(Time, Input) -> Batch,
) {
    let first = step(now, input);
    run_batch(now, first, port, step);
}

/// Perform a batch already taken (the boot's, taken before the ports
/// existed) and feed what follows from it, as [`run`].
pub fn run_batch(
    now: Time,
    batch: Batch,
    port: &mut dyn Port,
    step: &mut dyn FnMut(Time, Input) -> Batch,
) {
    let mut queue: VecDeque<Input> = batch.perform(port).into();
    while let Some(input) = queue.pop_front() {
        let batch = step(now, input);
        queue.extend(batch.perform(port));
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
