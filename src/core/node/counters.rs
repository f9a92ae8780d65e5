//! What the node core counts for the metrics file: messages sent and
//! received by kind, changes applied, sync rounds and their duration,
//! connections to corosync, errors by kind. Plain numbers under the
//! node's lock; `core::metrics` renders them.

use std::collections::BTreeMap;

use pmxcfs_wire::dfsm::{Framing, MessageType};

use super::super::dfsm::Mode;
use super::super::metrics::Histogram;
use super::{Group, Time};

#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Messages handed to corosync, per group and kind.
    pub sent: [BTreeMap<&'static str, u64>; 2],
    /// Messages delivered by corosync, per group and kind (ours included).
    pub received: [BTreeMap<&'static str, u64>; 2],
    /// dcdb changes delivered in the agreed order: this node's own, and
    /// the other nodes'.
    pub changes_local: u64,
    pub changes_remote: u64,
    /// Sync rounds started (a membership change) and, for those that
    /// ended synced, how long they took.
    pub sync_rounds: [u64; 2],
    pub sync_seconds: [Histogram; 2],
    sync_started: [Option<Time>; 2],
    /// Connections to corosync made (the first, then every reconnect).
    pub connections: [u64; 2],
    /// Errors by kind: a send corosync refused, a persist that failed, a
    /// group machine entering an error mode.
    pub errors: BTreeMap<&'static str, u64>,
}

/// The kind of a dfsm message, as the metrics name it.
pub fn message_kind(bytes: &[u8]) -> &'static str {
    match Framing::parse(bytes) {
        Ok((_, f)) => match f.header.msg_type {
            MessageType::Normal => "normal",
            MessageType::SyncStart => "sync_start",
            MessageType::State => "state",
            MessageType::Update => "update",
            MessageType::UpdateComplete => "update_complete",
            MessageType::VerifyRequest => "verify_request",
            MessageType::Verify => "verify",
            MessageType::Unknown(_) => "unknown",
        },
        Err(_) => "undecodable",
    }
}

impl Counters {
    pub fn sent(&mut self, group: Group, bytes: &[u8]) {
        *self.sent[group.index()]
            .entry(message_kind(bytes))
            .or_default() += 1;
    }

    /// A delivered message; `own` when this node sent it.
    pub fn received(&mut self, group: Group, bytes: &[u8], own: bool) {
        let kind = message_kind(bytes);
        *self.received[group.index()].entry(kind).or_default() += 1;
        if group == Group::Dcdb && kind == "normal" {
            if own {
                self.changes_local += 1;
            } else {
                self.changes_remote += 1;
            }
        }
    }

    pub fn error(&mut self, kind: &'static str) {
        *self.errors.entry(kind).or_default() += 1;
    }

    pub fn mode_changed(&mut self, group: Group, mode: Mode, now: Time) {
        let i = group.index();
        match mode {
            Mode::StartSync => {
                self.sync_rounds[i] += 1;
                self.sync_started[i] = Some(now);
            }
            Mode::Synced => {
                if let Some(t) = self.sync_started[i].take() {
                    self.sync_seconds[i].observe(now.0.saturating_sub(t.0) as f64 / 1e6);
                }
            }
            Mode::Leave | Mode::Error | Mode::VersionError => {
                self.sync_started[i] = None;
                self.error(match mode {
                    Mode::Leave => "group_left",
                    Mode::Error => "group_error",
                    _ => "group_version_error",
                });
            }
            _ => {}
        }
    }
}
