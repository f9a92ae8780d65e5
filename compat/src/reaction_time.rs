//! When a shadowed node really handled a callback.
//!
//! A packet capture shows when a membership change or a message reached the
//! wire, not when the node's pmxcfs was handed it: that is a few
//! milliseconds later, and now and then in the next second. Every dfsm
//! message carries the second its sender read its clock, so a message the
//! node sends in reaction to a callback (a SYNC_START after a confchg, a
//! STATE after a SYNC_START) shows the second the callback was handled.
//! Fed at its capture time, our core would stamp that reaction with the
//! second before, and the shadow check would report a divergence that is
//! only the capture's clock.
//!
//! [`ReactionTime`] holds the node's callbacks until their reaction is
//! known: the next event in the same group. When that is the node's own
//! message and its header's second is later than the callback's capture
//! time (and not later than its own capture time allows), the callback is
//! moved to the start of that second; the callbacks behind it are kept in
//! order by moving them no earlier than that. A callback without a
//! reaction within [`HOLD_SECS`] keeps its capture time.

use std::collections::VecDeque;

use pmxcfs_wire::dfsm::{Framing, MessageType};

use crate::capture::EventBody;
use crate::describe::{group_of, Group, NodeGroup};
use crate::knet::views::ViewEvent;

/// How long a callback waits for its reaction (capture seconds). A
/// reaction is sent inside the callback; its delivery comes one token
/// rotation later, well within this.
pub const HOLD_SECS: f64 = 3.0;

struct Held {
    event: ViewEvent,
    /// Its reaction (the next event in its group) has been seen, or it
    /// waited long enough.
    settled: bool,
}

/// Callbacks of one process, released in their order with the time the
/// node handled them.
#[derive(Default)]
pub struct ReactionTime {
    held: VecDeque<Held>,
    /// No released callback is earlier than this (capture seconds).
    floor: f64,
    /// Callbacks moved to a later second, for the report.
    pub moved: u64,
}

impl ReactionTime {
    /// Take the process's next callback; returns those now settled, in
    /// order.
    pub fn push(&mut self, v: ViewEvent) -> Vec<ViewEvent> {
        let group = group_of(&v.event.group);
        let reaction_second = own_message_second(&v);
        if let Some(prev) = self
            .held
            .iter_mut()
            .rev()
            .find(|h| !h.settled && group_of(&h.event.event.group) == group)
        {
            prev.settled = true;
            if let Some(second) = reaction_second {
                let s = second as f64;
                // The reaction was sent after the callback was handed
                // over and before it was captured (a second of slack for
                // the clocks of two hosts).
                if s > prev.event.time && s <= v.time + 1.0 && s - prev.event.time < HOLD_SECS {
                    prev.event.time = s;
                    self.moved += 1;
                }
            }
        }
        for h in self.held.iter_mut() {
            if v.time - h.event.time > HOLD_SECS {
                h.settled = true;
            }
        }
        let settled = group == None;
        self.held.push_back(Held { event: v, settled });
        self.release(false)
    }

    /// Everything held, at once (the process ended, or the capture did).
    pub fn flush(&mut self) -> Vec<ViewEvent> {
        self.release(true)
    }

    fn release(&mut self, all: bool) -> Vec<ViewEvent> {
        let mut out = Vec::new();
        while self.held.front().is_some_and(|h| all || h.settled) {
            let mut v = self.held.pop_front().expect("front checked").event;
            if v.time < self.floor {
                v.time = self.floor;
            }
            self.floor = v.time;
            out.push(v);
        }
        if all {
            self.floor = 0.0;
        }
        out
    }
}

/// The header second of a message the process itself sent, if it can be
/// a reaction to a callback.
fn own_message_second(v: &ViewEvent) -> Option<u32> {
    let EventBody::Deliver {
        sender_nodeid,
        sender_pid,
        msg,
    } = &v.event.body
    else {
        return None;
    };
    if *sender_nodeid != v.event.local_nodeid || *sender_pid != v.event.local_pid {
        return None;
    }
    reaction_second(group_of(&v.event.group), msg)
}

/// The header second of `msg` if the node may have sent it in reaction to
/// a callback: the sync protocol's messages, the lowest node's UNLOCK, the
/// kvstore's UPDATEs (its `nodeip` once synced). A FUSE change (and the
/// UNLOCK_REQUEST of a `utime(0)`) or a cluster-log entry comes from a local
/// request, whenever a user made it: its second says nothing of when a
/// callback was handled (taking it for a reaction moved a sync's last
/// callbacks into the next second, after the node had already answered
/// them).
pub fn reaction_second(group: Group, msg: &[u8]) -> Option<u32> {
    let (_, framing) = Framing::parse(msg).ok()?;
    if framing.header.msg_type == MessageType::Normal {
        let local_request = match group {
            Some(NodeGroup::Dcdb) => {
                pmxcfs_wire::dcdb::Subtype::from(framing.header.subtype)
                    != pmxcfs_wire::dcdb::Subtype::Unlock
            }
            Some(NodeGroup::Kvstore) => {
                pmxcfs_wire::kvstore::Subtype::from(framing.header.subtype)
                    == pmxcfs_wire::kvstore::Subtype::Log
            }
            None => false,
        };
        if local_request {
            return None;
        }
    }
    Some(framing.header.time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{CpgAddress, Event, EventKind};
    use crate::knet::totem::RingId;
    use pmxcfs_wire::dfsm::{Epoch, MessageType};

    const DCDB: &[u8] = b"pve_dcdb_v1\0";
    const KV: &[u8] = b"pve_kvstore_v1\0";

    fn event(time: f64, group: &[u8], body: EventBody) -> ViewEvent {
        ViewEvent {
            time,
            ring: RingId { rep: 1, seq: 4 },
            event: Event {
                version: 1,
                kind: match body {
                    EventBody::Deliver { .. } => EventKind::Deliver,
                    _ => EventKind::Confchg,
                },
                local_nodeid: 1,
                local_pid: 100,
                group: group.to_vec(),
                body,
            },
            own_leave: false,
            synthetic: false,
        }
    }

    fn confchg(time: f64, group: &[u8]) -> ViewEvent {
        let me = CpgAddress {
            nodeid: 1,
            pid: 100,
            reason: 1,
        };
        event(
            time,
            group,
            EventBody::Confchg {
                members: vec![me],
                left: vec![],
                joined: vec![me],
            },
        )
    }

    fn sent(time: f64, group: &[u8], from: u32, header_time: u32) -> ViewEvent {
        let mut msg = Vec::new();
        Framing::state(MessageType::SyncStart, 0, header_time, Epoch::default()).encode(&mut msg);
        event(
            time,
            group,
            EventBody::Deliver {
                sender_nodeid: from,
                sender_pid: 100,
                msg,
            },
        )
    }

    fn times(v: &[ViewEvent]) -> Vec<f64> {
        v.iter().map(|e| e.time).collect()
    }

    #[test]
    fn a_callback_moves_to_the_second_its_reaction_shows() {
        let mut r = ReactionTime::default();
        assert!(r.push(confchg(645.95, DCDB)).is_empty());
        assert!(r.push(confchg(645.95, KV)).is_empty());
        // dcdb's reaction in the same second: the dcdb confchg stays.
        let out = r.push(sent(646.06, DCDB, 1, 645));
        assert_eq!(times(&out), vec![645.95]);
        // kvstore's in the next: the kvstore confchg was handled in 646.
        let out = r.push(sent(646.07, KV, 1, 646));
        assert_eq!(times(&out), vec![646.0]);
        assert_eq!(r.moved, 1);
        // The deliveries wait for their own reactions; none come.
        assert_eq!(times(&r.flush()), vec![646.06, 646.07]);
    }

    /// A message of the node's own: a NORMAL of `subtype` in `group`.
    fn sent_normal(time: f64, group: &[u8], subtype: u16, header_time: u32) -> ViewEvent {
        let mut msg = Vec::new();
        Framing::normal(subtype, 0, header_time, 1).encode(&mut msg);
        event(
            time,
            group,
            EventBody::Deliver {
                sender_nodeid: 1,
                sender_pid: 100,
                msg,
            },
        )
    }

    #[test]
    fn a_local_request_is_no_reaction() {
        // A callback, then the node's own NORMAL of `subtype` in `group`
        // a second later: the callback's time once everything is out.
        let first_time = |group: &[u8], subtype: u16| {
            let mut r = ReactionTime::default();
            let mut out = r.push(confchg(761.9, group));
            out.extend(r.push(sent_normal(762.05, group, subtype, 762)));
            out.extend(r.flush());
            times(&out)[0]
        };
        // A FUSE change (dcdb MKDIR, 2) or a cluster-log entry (kvstore
        // LOG, 3) came from a user, not from the callback.
        assert_eq!(first_time(DCDB, 2), 761.9);
        assert_eq!(first_time(KV, 3), 761.9);
        // The lowest node's UNLOCK (8) and the kvstore's own UPDATE (1)
        // are reactions.
        assert_eq!(first_time(DCDB, 8), 762.0);
        assert_eq!(first_time(KV, 1), 762.0);
    }

    #[test]
    fn what_comes_behind_a_moved_callback_is_no_earlier() {
        let mut r = ReactionTime::default();
        r.push(confchg(645.95, KV));
        r.push(sent(645.97, DCDB, 2, 645));
        let out = r.push(sent(646.3, KV, 1, 646));
        assert_eq!(times(&out), vec![646.0]);
        assert_eq!(times(&r.flush()), vec![646.0, 646.3]);
    }

    #[test]
    fn another_senders_message_or_a_late_reaction_keeps_the_capture_time() {
        let mut r = ReactionTime::default();
        r.push(confchg(10.9, DCDB));
        let out = r.push(sent(11.2, DCDB, 2, 11));
        assert_eq!(times(&out), vec![10.9]);
        r.push(confchg(20.9, DCDB));
        // Seen long after: not its reaction's time.
        let out = r.push(sent(25.0, DCDB, 1, 25));
        assert_eq!(times(&out), vec![20.9]);
        // A header second later than the message's own capture allows.
        r.flush();
        r.push(confchg(30.9, DCDB));
        let out = r.push(sent(31.0, DCDB, 1, 33));
        assert_eq!(times(&out), vec![30.9]);
        assert_eq!(r.moved, 0);
    }

    #[test]
    fn a_callback_without_a_reaction_is_released_after_the_hold() {
        let mut r = ReactionTime::default();
        r.push(confchg(1.0, DCDB));
        assert!(r.push(confchg(2.0, KV)).is_empty());
        let out = r.push(confchg(1.0 + HOLD_SECS + 0.5, KV));
        assert_eq!(times(&out), vec![1.0, 2.0]);
    }
}
