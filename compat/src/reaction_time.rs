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

use pmxcfs_wire::dfsm::Framing;

use crate::capture::EventBody;
use crate::describe::group_of;
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

/// The header second of a message the process itself sent.
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
    Framing::parse(msg).ok().map(|(_, f)| f.header.time)
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
