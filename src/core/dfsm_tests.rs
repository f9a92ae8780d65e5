//! dfsm rules with a minimal application: modes, epochs, queue order,
//! protocol versions, the verify round and C's quirks (spec §1, §9).

use super::*;

/// Counts deliveries; state is a fixed blob; everyone is synced.
#[derive(Default)]
struct Probe {
    delivered: Vec<(Member, u64)>,
    synced_calls: usize,
    version: u32,
}

impl App for Probe {
    fn protocol_version(&self) -> u32 {
        self.version
    }
    fn deliver(
        &mut self,
        _env: &mut Env,
        from: Member,
        _subtype: u16,
        _time: u32,
        payload: &[u8],
    ) -> Delivery {
        let tag = payload.first().copied().unwrap_or(0) as u64;
        self.delivered.push((from, tag));
        Delivery::Done(7)
    }
    fn get_state(&mut self, _env: &mut Env) -> Option<Vec<u8>> {
        Some(b"state".to_vec())
    }
    fn process_state_update(
        &mut self,
        _env: &mut Env,
        states: &[MemberState],
    ) -> Option<Vec<bool>> {
        Some(vec![true; states.len()])
    }
    fn process_update(&mut self, _env: &mut Env, _from: Member, _payload: &[u8]) -> bool {
        false
    }
    fn commit(&mut self, _env: &mut Env) -> bool {
        true
    }
    fn cleanup(&mut self) {}
    fn has_checksum(&self) -> bool {
        true
    }
    fn checksum(&mut self) -> Option<[u8; 32]> {
        Some([9; 32])
    }
    fn synced(&mut self, _env: &mut Env) {
        self.synced_calls += 1;
    }
}

const A: Member = Member { nodeid: 1, pid: 10 };
const B: Member = Member { nodeid: 2, pid: 20 };

fn sends(d: &mut Dfsm<Probe>) -> Vec<Vec<u8>> {
    d.take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send(b) => Some(b),
            _ => None,
        })
        .collect()
}

fn normal(count: u64, tag: u8, version: u32) -> Vec<u8> {
    let mut b = Vec::new();
    Framing::normal(1, version, 100, count).encode(&mut b);
    b.push(tag);
    b
}

#[test]
fn alone_means_synced_at_once() {
    let mut d = Dfsm::new(Probe::default(), A);
    d.confchg(&[A], true, 5);
    assert_eq!(d.mode(), Mode::Synced);
    assert_eq!(d.app.synced_calls, 1);
    assert!(sends(&mut d).is_empty(), "no SYNC_START when alone");
}

#[test]
fn lowest_sends_sync_start_and_everyone_answers_with_state() {
    let mut a = Dfsm::new(Probe::default(), A);
    let mut b = Dfsm::new(Probe::default(), B);
    a.confchg(&[A, B], true, 5);
    b.confchg(&[B, A], true, 6);
    let sa = sends(&mut a);
    assert_eq!(sa.len(), 1);
    assert!(
        sends(&mut b).is_empty(),
        "only the lowest nodeid starts the sync"
    );
    let (_, f) = Framing::parse(&sa[0]).unwrap();
    assert_eq!(f.header.msg_type, MessageType::SyncStart);
    assert_eq!(
        f.epoch().unwrap(),
        Epoch {
            epoch: 1,
            time: 5,
            nodeid: 1,
            pid: 10
        }
    );
    // Both adopt the lowest member's epoch and send their state with it.
    for d in [&mut a, &mut b] {
        d.deliver(A, &sa[0], 7);
    }
    let (sta, stb) = (sends(&mut a), sends(&mut b));
    for st in [&sta[0], &stb[0]] {
        let (payload, f) = Framing::parse(st).unwrap();
        assert_eq!(f.header.msg_type, MessageType::State);
        assert_eq!(f.epoch().unwrap().nodeid, 1);
        assert_eq!(payload, b"state");
    }
    for d in [&mut a, &mut b] {
        d.deliver(A, &sta[0], 8);
        assert_eq!(d.mode(), Mode::StartSync);
        d.deliver(B, &stb[0], 8);
        assert_eq!(d.mode(), Mode::Synced);
    }
}

#[test]
fn queue_orders_by_count_with_equal_counts_in_arrival_order() {
    let mut d = Dfsm::new(Probe::default(), A);
    d.confchg(&[A, B], false, 1);
    let sync = sends(&mut d).remove(0);
    for (from, count, tag) in [(B, 5, 1), (A, 3, 2), (B, 3, 3), (A, 4, 4)] {
        d.deliver(from, &normal(count, tag, 0), 2);
    }
    assert!(d.app.delivered.is_empty(), "queued while not synced");
    d.deliver(A, &sync, 3);
    let state = sends(&mut d).remove(0);
    d.deliver(A, &state, 4);
    let mut b_state = Vec::new();
    Framing::state(
        MessageType::State,
        0,
        1,
        Epoch {
            epoch: 1,
            time: 1,
            nodeid: 1,
            pid: 10,
        },
    )
    .encode(&mut b_state);
    b_state.extend_from_slice(b"state");
    d.deliver(B, &b_state, 4);
    assert_eq!(d.mode(), Mode::Synced);
    let tags: Vec<u64> = d.app.delivered.iter().map(|(_, t)| *t).collect();
    assert_eq!(tags, vec![2, 3, 4, 1]);
}

#[test]
fn own_queued_messages_are_resent_unchanged_when_someone_joins() {
    let mut d = Dfsm::new(Probe::default(), A);
    d.confchg(&[A, B], false, 1);
    sends(&mut d);
    let mine = normal(1, 9, 0);
    d.deliver(A, &mine, 2);
    d.deliver(B, &normal(1, 8, 0), 2);
    let c = Member { nodeid: 3, pid: 30 };
    d.confchg(&[A, B, c], true, 3);
    let out = sends(&mut d);
    assert_eq!(out[0], mine, "re-sent byte-identical, count kept");
    assert_eq!(out.len(), 2, "then the SYNC_START");
}

#[test]
fn protocol_versions() {
    let mut d = Dfsm::new(
        Probe {
            version: 1,
            ..Probe::default()
        },
        A,
    );
    d.confchg(&[A], true, 1);
    d.deliver(A, &normal(1, 1, 0), 2);
    assert!(d.app.delivered.is_empty(), "an older version is ignored");
    assert_eq!(d.mode(), Mode::Synced);
    d.deliver(A, &normal(2, 1, 2), 2);
    assert_eq!(
        d.mode(),
        Mode::VersionError,
        "a newer version stops for good"
    );
    d.confchg(&[A], true, 3);
    assert_eq!(d.mode(), Mode::VersionError);
    assert!(d.send_normal(1, b"x", 4).is_none());
}

#[test]
fn error_modes_only_go_up() {
    let mut d = Dfsm::new(Probe::default(), A);
    d.confchg(&[A], true, 1);
    d.set_mode(Mode::Error, 1);
    d.set_mode(Mode::Leave, 1);
    assert_eq!(d.mode(), Mode::Error);
    d.set_mode(Mode::Synced, 1);
    assert_eq!(d.mode(), Mode::Error);
}

#[test]
fn short_and_stale_messages() {
    let mut d = Dfsm::new(Probe::default(), A);
    d.confchg(&[A], true, 1);
    // A state message of an old epoch is ignored.
    let mut old = Vec::new();
    Framing::state(
        MessageType::State,
        0,
        1,
        Epoch {
            epoch: 99,
            time: 1,
            nodeid: 1,
            pid: 10,
        },
    )
    .encode(&mut old);
    d.deliver(A, &old, 2);
    assert_eq!(d.mode(), Mode::Synced);
    d.deliver(A, &[0u8; 10], 2);
    assert_eq!(d.mode(), Mode::Leave, "shorter than a header: leave");
}

#[test]
fn verify_round_and_its_quirk() {
    let mut a = Dfsm::new(Probe::default(), A);
    a.confchg(&[A], true, 1);
    a.verify_request(2);
    let req = sends(&mut a).remove(0);
    a.verify_request(3);
    assert!(
        sends(&mut a).is_empty(),
        "the previous request has not come back"
    );
    a.deliver(A, &req, 4);
    let verify = sends(&mut a).remove(0);
    assert_eq!(verify.len(), 32 + 40);
    a.deliver(A, &verify, 5);
    assert!(a
        .take_outputs()
        .iter()
        .any(|o| matches!(o, Output::Log(_, l, _) if l == "data verification successful")));

    // A member still syncing leaves on a verify message of its epoch (C's
    // fall-through, replicated).
    let mut b = Dfsm::new(Probe::default(), B);
    b.confchg(&[A, B], true, 1);
    let mut sync = Vec::new();
    Framing::state(
        MessageType::SyncStart,
        0,
        1,
        Epoch {
            epoch: 7,
            time: 1,
            nodeid: 1,
            pid: 10,
        },
    )
    .encode(&mut sync);
    b.deliver(A, &sync, 2);
    let mut vr = Vec::new();
    Framing::state(
        MessageType::VerifyRequest,
        0,
        1,
        Epoch {
            epoch: 7,
            time: 1,
            nodeid: 1,
            pid: 10,
        },
    )
    .encode(&mut vr);
    vr.extend_from_slice(&1u64.to_le_bytes());
    b.deliver(A, &vr, 3);
    assert_eq!(b.mode(), Mode::Leave);
}

#[test]
fn a_flood_while_syncing_makes_the_node_leave_not_grow() {
    let mut d = Dfsm::new(Probe::default(), A);
    d.confchg(&[A, B], true, 100);
    assert_eq!(d.mode(), Mode::StartSync);
    d.take_outputs();
    // Messages queue while the sync is under way...
    for count in 1..=MAX_QUEUED_MESSAGES as u64 {
        d.deliver(B, &normal(count, 1, 0), 100);
    }
    assert_eq!(d.mode(), Mode::StartSync);
    assert_eq!(d.msg_queue.len(), MAX_QUEUED_MESSAGES);
    // ... up to the bound: past it the node leaves and drops them.
    d.deliver(B, &normal(MAX_QUEUED_MESSAGES as u64 + 1, 1, 0), 100);
    assert_eq!(d.mode(), Mode::Leave);
    assert!(d.msg_queue.is_empty() && d.msg_queue.bytes == 0);
}
