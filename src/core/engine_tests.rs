//! The engine's contract with its ports: batch N is performed completely
//! before input N+1 (a follow-up included) is fed, nothing is replied or
//! sent before it is persisted, and what a port reports back (a failed
//! send, a join done at once) comes back as the next input.

use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::core::errno::{EBUSY, EIO};
use crate::core::memdb::DbChange;
use crate::core::node::{Node, NodeConfig, PersistFailure, Request};

const CONF: &[u8] = b"totem {\n  cluster_name: t\n  config_version: 1\n}\n";
const ME: Member = Member {
    nodeid: 1,
    pid: 100,
};

fn t(secs: u32) -> Time {
    Time::from_secs(secs)
}

fn boot(local: bool) -> Node {
    let config = NodeConfig {
        nodename: "n1".into(),
        node_ip: "10.0.0.1".into(),
        pid: ME.pid,
        force_local: local,
        ..NodeConfig::default()
    };
    Node::boot(config, None, Some(CONF), t(1000)).unwrap()
}

/// One journal of everything that happens, in order: the steps fed, the
/// persists, and the port's calls.
type Journal = Rc<RefCell<Vec<String>>>;

struct Recorder {
    journal: Journal,
    /// The next `fail_sends` sends fail.
    fail_sends: usize,
    /// Whether corosync is there: without it a join does nothing.
    disconnected: bool,
}

impl Port for Recorder {
    fn send(&mut self, group: Group, bytes: Vec<u8>) -> Result<(), SendFailed> {
        let what = super::super::node::describe_message(&bytes);
        let kind = what.split(',').next().unwrap_or("").to_string();
        if self.fail_sends > 0 {
            self.fail_sends -= 1;
            self.journal
                .borrow_mut()
                .push(format!("send {group:?} {kind} failed"));
            return Err(SendFailed(bytes));
        }
        self.journal
            .borrow_mut()
            .push(format!("send {group:?} {kind}"));
        Ok(())
    }

    fn reply(&mut self, id: RequestId, reply: Reply) {
        self.journal
            .borrow_mut()
            .push(format!("reply {id} {reply:?}"));
    }

    fn join(&mut self, group: Group) -> Option<Member> {
        if self.disconnected {
            self.journal
                .borrow_mut()
                .push(format!("join {group:?}: no connection"));
            return None;
        }
        self.journal.borrow_mut().push(format!("join {group:?}"));
        Some(ME)
    }

    fn leave(&mut self, group: Group) {
        self.journal.borrow_mut().push(format!("leave {group:?}"));
    }
}

/// Storage that journals its persists; fails while `failing`.
struct Disk {
    journal: Journal,
    failing: bool,
}

impl Storage for Disk {
    fn persist(&mut self, changes: &[DbChange]) -> Result<(), PersistFailure> {
        if self.failing {
            self.journal.borrow_mut().push("persist failed".into());
            return Err(PersistFailure {
                applied: 0,
                lines: vec!["disk full".into()],
            });
        }
        self.journal
            .borrow_mut()
            .push(format!("persist {}", changes.len()));
        Ok(())
    }
}

struct Rig {
    node: Node,
    disk: Disk,
    port: Recorder,
    journal: Journal,
}

impl Rig {
    fn new(local: bool) -> Rig {
        let journal: Journal = Rc::default();
        Rig {
            node: boot(local),
            disk: Disk {
                journal: journal.clone(),
                failing: false,
            },
            port: Recorder {
                journal: journal.clone(),
                fail_sends: 0,
                disconnected: false,
            },
            journal,
        }
    }

    fn feed(&mut self, now: Time, input: Input) {
        let Rig {
            node, disk, port, ..
        } = self;
        let journal = self.journal.clone();
        run(now, input, port, &mut |now, input| {
            let name = format!("{input:?}");
            let name = name.split([' ', '{', '(']).next().unwrap_or("").to_string();
            journal.borrow_mut().push(format!("step {name}"));
            node.step(now, input, disk)
        });
    }

    fn take(&mut self) -> Vec<String> {
        std::mem::take(&mut *self.journal.borrow_mut())
    }

    /// A cluster node alone in its groups, synced and quorate.
    fn synced() -> Rig {
        let mut rig = Rig::new(false);
        rig.feed(t(1000), Input::Start);
        rig.feed(t(1000), Input::Quorum { quorate: true });
        for group in Group::ALL {
            rig.feed(
                t(1000),
                Input::Confchg {
                    group,
                    members: vec![ME],
                    joined_any: true,
                },
            );
        }
        assert_eq!(rig.node.dcdb_mode(), super::super::dfsm::Mode::Synced);
        rig.take();
        rig
    }
}

#[test]
fn a_follow_up_is_fed_after_its_whole_batch() {
    let mut rig = Rig::new(false);
    rig.feed(t(1000), Input::Start);
    // The boot batch persists the new database, then joins both groups;
    // the joins come back as inputs only after both were performed.
    assert_eq!(
        rig.take(),
        [
            "step Start",
            "persist 3",
            "join Dcdb",
            "join Kvstore",
            "step Joined",
            "step Joined",
        ]
    );
}

#[test]
fn a_failed_send_of_a_request_is_answered_ebusy_after_its_batch() {
    let mut rig = Rig::synced();
    rig.port.fail_sends = 1;
    rig.feed(
        t(1001),
        Input::Request {
            id: 7,
            request: Request::Create {
                path: b"a".to_vec(),
            },
        },
    );
    assert_eq!(
        rig.take(),
        [
            "step Request",
            "send Dcdb Normal subtype 5 failed",
            "step SendFailed",
            "reply 7 Fs(Err(16))",
        ]
    );
    assert_eq!(EBUSY, 16);
    // Nothing was applied: the create never reached the tree.
    assert!(rig.node.memdb().lookup(b"a").is_none());
}

#[test]
fn a_failed_state_message_leaves_the_group_and_rejoins_later() {
    let mut rig = Rig::synced();
    let other = Member {
        nodeid: 2,
        pid: 200,
    };
    // A peer joins: as the lowest node we send SYNC_START, which fails.
    rig.port.fail_sends = 1;
    rig.feed(
        t(1001),
        Input::Confchg {
            group: Group::Dcdb,
            members: vec![ME, other],
            joined_any: true,
        },
    );
    let journal = rig.take();
    let failed = journal
        .iter()
        .position(|l| l.starts_with("send Dcdb") && l.ends_with("failed"))
        .expect("a send failed");
    assert_eq!(journal[failed + 1], "step SendFailed");
    assert!(journal[failed + 2..].contains(&"leave Dcdb".to_string()));
    assert!(rig.node.dcdb_mode().is_error());
    // The leave goes through: the rejoin comes from the core's timer.
    rig.feed(
        t(1002),
        Input::Confchg {
            group: Group::Dcdb,
            members: vec![other],
            joined_any: false,
        },
    );
    let due = rig.node.poll_timeout().expect("a rejoin is scheduled");
    assert!(due <= t(1007));
    rig.take();
    rig.feed(due, Input::Timers);
    assert_eq!(rig.take(), ["step Timers", "join Dcdb", "step Joined"]);
}

#[test]
fn writers_waiting_when_the_group_goes_to_an_error_mode_hear_ebusy() {
    let mut rig = Rig::synced();
    rig.feed(
        t(1001),
        Input::Request {
            id: 9,
            request: Request::Create {
                path: b"a".to_vec(),
            },
        },
    );
    assert!(!rig.take().iter().any(|l| l.starts_with("reply")));
    // A message of a newer protocol version: VERSION_ERROR, for good.
    let mut newer = Vec::new();
    pmxcfs_wire::dfsm::Framing::normal(1, 2, 1001, 1).encode(&mut newer);
    newer.extend_from_slice(&[0; 16]);
    rig.feed(
        t(1002),
        Input::Deliver {
            group: Group::Dcdb,
            from: Member {
                nodeid: 2,
                pid: 200,
            },
            msg: newer,
        },
    );
    let journal = rig.take();
    assert!(journal.contains(&"leave Dcdb".to_string()), "{journal:?}");
    assert!(
        journal.contains(&"reply 9 Fs(Err(16))".to_string()),
        "{journal:?}"
    );
}

#[test]
fn a_failed_persist_is_answered_eio_and_the_reply_follows_it() {
    let mut rig = Rig::new(true);
    rig.feed(t(1000), Input::Start);
    rig.take();
    rig.disk.failing = true;
    rig.feed(
        t(1001),
        Input::Request {
            id: 3,
            request: Request::Create {
                path: b"a".to_vec(),
            },
        },
    );
    assert_eq!(
        rig.take(),
        [
            "step Request",
            "persist failed",
            &format!("reply 3 Fs(Err({EIO}))")
        ]
    );
}

#[test]
fn replies_come_after_their_persist() {
    let mut rig = Rig::new(true);
    rig.feed(t(1000), Input::Start);
    rig.take();
    rig.feed(
        t(1001),
        Input::Request {
            id: 4,
            request: Request::Create {
                path: b"a".to_vec(),
            },
        },
    );
    assert_eq!(
        rig.take(),
        ["step Request", "persist 1", "reply 4 Fs(Ok(0))"]
    );
}

#[test]
fn the_node_decides_whether_a_group_whose_connection_comes_back_is_joined() {
    // corosync is not there at start: the joins do nothing...
    let mut rig = Rig::new(false);
    rig.port.disconnected = true;
    rig.feed(t(1000), Input::Start);
    rig.take();
    // ... until the connection is up: the node wants both groups.
    rig.port.disconnected = false;
    rig.feed(t(1001), Input::Connected { group: Group::Dcdb });
    assert_eq!(rig.take(), ["step Connected", "join Dcdb", "step Joined"]);
    // Joined already: a connection event changes nothing.
    rig.feed(t(1002), Input::Connected { group: Group::Dcdb });
    assert_eq!(rig.take(), ["step Connected"]);
    // corosync lost and back: joined again.
    rig.feed(t(1003), Input::GroupLost { group: Group::Dcdb });
    rig.feed(t(1004), Input::Connected { group: Group::Dcdb });
    let journal = rig.take();
    assert!(journal.contains(&"join Dcdb".to_string()), "{journal:?}");
}

#[test]
fn a_group_left_for_good_is_not_joined_again_when_its_connection_comes_back() {
    let mut rig = Rig::synced();
    // A newer protocol version: VERSION_ERROR, which C never leaves.
    let mut newer = Vec::new();
    pmxcfs_wire::dfsm::Framing::normal(1, 2, 1001, 1).encode(&mut newer);
    newer.extend_from_slice(&[0; 16]);
    let peer = Member {
        nodeid: 2,
        pid: 200,
    };
    rig.feed(
        t(1001),
        Input::Deliver {
            group: Group::Dcdb,
            from: peer,
            msg: newer,
        },
    );
    rig.feed(t(1002), Input::GroupLost { group: Group::Dcdb });
    rig.take();
    rig.feed(t(1010), Input::Connected { group: Group::Dcdb });
    assert_eq!(rig.take(), ["step Connected"]);
}
