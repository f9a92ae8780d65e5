//! The node's own rules: boot, write admission, the order of its output
//! (nothing replied before it is persisted), and what a failed persist
//! does in local and in cluster mode.

use super::*;
use crate::core::errno::EACCES;
use crate::core::memdb::Row;

const CONF: &[u8] = b"totem {\n  cluster_name: t\n  config_version: 1\n}\n";

fn config(local: bool) -> NodeConfig {
    NodeConfig {
        nodename: "n1".into(),
        node_ip: "10.0.0.1".into(),
        pid: 100,
        force_local: local,
        ..NodeConfig::default()
    }
}

fn t(secs: u32) -> Time {
    Time::from_secs(secs)
}

/// Persist into a vector; fail from the `fail_at`-th change on.
fn drain_with(
    node: &mut Node,
    now: Time,
    persisted: &mut Vec<DbChange>,
    fail_at: Option<usize>,
) -> Vec<Action> {
    node.drain(now, &mut |changes| {
        for (i, c) in changes.iter().enumerate() {
            if fail_at.is_some_and(|f| persisted.len() >= f) {
                return Err(PersistFailure {
                    applied: i,
                    lines: vec!["commit transaction failed: database or disk is full\n".into()],
                });
            }
            persisted.push(c.clone());
        }
        Ok(())
    })
}

/// The rows the persisted changes leave in config.db.
fn rows_of(persisted: &[DbChange]) -> Vec<Row> {
    let mut rows = std::collections::BTreeMap::new();
    for c in persisted {
        c.clone().apply_to(&mut rows);
    }
    rows.into_values().collect()
}

fn replies(actions: &[Action]) -> Vec<(RequestId, Reply)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Reply { id, reply } => Some((*id, reply.clone())),
            _ => None,
        })
        .collect()
}

fn sends(actions: &[Action]) -> Vec<(Group, Vec<u8>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { group, bytes } => Some((*group, bytes.clone())),
            _ => None,
        })
        .collect()
}

fn logs(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Effect(Effect::Log(l)) => Some(l.render()),
            _ => None,
        })
        .collect()
}

fn write(path: &str, data: &[u8]) -> Request {
    Request::Write {
        path: path.as_bytes().to_vec(),
        offset: 0,
        data: data.to_vec(),
    }
}

fn create(path: &str) -> Request {
    Request::Create {
        path: path.as_bytes().to_vec(),
    }
}

#[test]
fn boot_rules() {
    // A new database imports corosync.conf: cluster mode, not quorate,
    // the first batch writes the version row and the import, and syncs the
    // host's corosync.conf with reload.
    let mut n = Node::boot(config(false), None, Some(CONF), t(1000)).unwrap();
    assert!(n.is_cluster());
    assert!(!n.quorate());
    let mut p = Vec::new();
    let out = drain_with(&mut n, t(1000), &mut p, None);
    assert_eq!(p.len(), 3, "version row, create, write");
    assert!(out.contains(&Action::Effect(Effect::SyncCorosyncConf {
        conf: Some(CONF.to_vec()),
        reload: true
    })));
    assert!(n
        .status()
        .clog
        .dump_json(0, None)
        .contains("starting cluster log"));
    // -l: local mode whatever the host has; quorate.
    let n = Node::boot(config(true), None, Some(CONF), t(1000)).unwrap();
    assert!(!n.is_cluster() && n.quorate());
    assert!(n.memdb().lookup(b"corosync.conf").is_none());
}

#[test]
fn local_mode_replies_after_the_change_is_persisted() {
    let mut n = Node::boot(config(true), None, None, t(1000)).unwrap();
    let mut p = Vec::new();
    drain_with(&mut n, t(1000), &mut p, None);
    n.handle(
        t(1001),
        Input::Request {
            id: 1,
            request: create("a"),
        },
    );
    n.handle(
        t(1001),
        Input::Request {
            id: 2,
            request: write("a", b"xy"),
        },
    );
    let mut order = Vec::new();
    let out = n.drain(t(1001), &mut |changes| {
        order.push(format!("persist {}", changes.len()));
        Ok(())
    });
    for a in &out {
        if let Action::Reply { id, .. } = a {
            order.push(format!("reply {id}"));
        }
    }
    assert_eq!(order, ["persist 2", "reply 1", "reply 2"]);
    assert_eq!(
        replies(&out),
        [(1, Reply::Fs(Ok(0))), (2, Reply::Fs(Ok(2)))]
    );
}

/// A local-mode node whose commit of a create of `name` (request 1)
/// failed: the node, what was persisted, and the failed batch.
fn local_node_after_a_failed_commit(name: &str) -> (Node, Vec<DbChange>, Vec<Action>) {
    let mut n = Node::boot(config(true), None, None, t(1000)).unwrap();
    let mut p = Vec::new();
    drain_with(&mut n, t(1000), &mut p, None);
    n.handle(
        t(1001),
        Input::Request {
            id: 1,
            request: create(name),
        },
    );
    let fail_at = p.len();
    let out = drain_with(&mut n, t(1001), &mut p, Some(fail_at));
    assert_eq!(replies(&out), [(1, Reply::Fs(Err(EIO)))]);
    (n, p, out)
}

#[test]
fn local_mode_persist_failure_is_eio_and_sticky_as_c() {
    let (mut n, mut p, out) = local_node_after_a_failed_commit("a");
    assert!(logs(&out).contains(
        &"[database] crit: commit transaction failed: database or disk is full\n".to_string()
    ));
    assert!(n.storage_failed());
    // Every later change is EIO (until a restart), reads still work.
    n.handle(
        t(1002),
        Input::Request {
            id: 2,
            request: create("b"),
        },
    );
    let out = drain_with(&mut n, t(1002), &mut p, None);
    assert_eq!(replies(&out), [(2, Reply::Fs(Err(EIO)))]);
    assert!(n.memdb().lookup(b"").is_some());
}

fn joined_cluster_node() -> (Node, Vec<DbChange>) {
    let mut n = Node::boot(config(false), None, Some(CONF), t(1000)).unwrap();
    let mut p = Vec::new();
    drain_with(&mut n, t(1000), &mut p, None);
    let me = Member {
        nodeid: 1,
        pid: 100,
    };
    for group in Group::ALL {
        n.handle(t(1000), Input::Joined { group, me });
    }
    n.handle(t(1000), Input::Quorum { quorate: true });
    for group in Group::ALL {
        n.handle(
            t(1000),
            Input::Confchg {
                group,
                members: vec![me],
                joined_any: true,
            },
        );
    }
    let out = drain_with(&mut n, t(1000), &mut p, None);
    assert!(logs(&out).contains(&"[status] notice: node has quorum".to_string()));
    assert_eq!(n.dcdb_mode(), Mode::Synced);
    (n, p)
}

#[test]
fn cluster_mode_writes_need_quorum_and_answer_at_their_delivery() {
    let (mut n, mut p) = joined_cluster_node();
    n.handle(t(1001), Input::Quorum { quorate: false });
    n.handle(
        t(1001),
        Input::Request {
            id: 1,
            request: create("a"),
        },
    );
    let out = drain_with(&mut n, t(1001), &mut p, None);
    assert_eq!(replies(&out), [(1, Reply::Fs(Err(EACCES)))]);
    assert!(sends(&out).is_empty(), "nothing is sent without quorum");
    n.handle(t(1002), Input::Quorum { quorate: true });
    n.handle(
        t(1002),
        Input::Request {
            id: 2,
            request: create("a"),
        },
    );
    let out = drain_with(&mut n, t(1002), &mut p, None);
    assert!(replies(&out).is_empty(), "the reply waits for the delivery");
    let sent = sends(&out);
    assert_eq!(sent.len(), 1);
    let before = p.len();
    n.handle(
        t(1003),
        Input::Deliver {
            group: Group::Dcdb,
            from: n.me(),
            msg: sent[0].1.clone(),
        },
    );
    let out = drain_with(&mut n, t(1003), &mut p, None);
    assert_eq!(p.len(), before + 1, "persisted");
    assert_eq!(replies(&out), [(2, Reply::Fs(Ok(0)))]);
}

#[test]
fn cluster_mode_persist_failure_leaves_the_group_and_recovers() {
    let (mut n, mut p) = joined_cluster_node();
    n.handle(
        t(1001),
        Input::Request {
            id: 1,
            request: create("a"),
        },
    );
    let sent = sends(&drain_with(&mut n, t(1001), &mut p, None));
    n.handle(
        t(1002),
        Input::Deliver {
            group: Group::Dcdb,
            from: n.me(),
            msg: sent[0].1.clone(),
        },
    );
    let fail_at = p.len();
    let out = drain_with(&mut n, t(1002), &mut p, Some(fail_at));
    // The writer hears EIO, the node leaves the dcdb group (not the
    // kvstore), and says why.
    assert_eq!(replies(&out), [(1, Reply::Fs(Err(EIO)))]);
    assert!(out.contains(&Action::Effect(Effect::LeaveGroup(Group::Dcdb))));
    assert!(!out.contains(&Action::Effect(Effect::LeaveGroup(Group::Kvstore))));
    assert!(logs(&out)
        .iter()
        .any(|l| l.starts_with("[dcdb] crit: cannot write config.db")));
    assert!(n.storage_failed());
    // Later changes are refused with EIO, reads are served.
    n.handle(
        t(1003),
        Input::Request {
            id: 2,
            request: create("b"),
        },
    );
    let out = drain_with(&mut n, t(1003), &mut p, None);
    assert_eq!(replies(&out), [(2, Reply::Fs(Err(EIO)))]);
    assert!(n.memdb().lookup(b"a").is_some());
    // It probes the database every 5 s, and never rejoins before it works.
    let probe_at = n.poll_timeout().unwrap();
    assert!(probe_at <= t(1008));
    n.handle_timeout(probe_at);
    let out = drain_with(&mut n, probe_at, &mut p, None);
    assert!(out.contains(&Action::Effect(Effect::ProbeStorage)));
    assert!(!out
        .iter()
        .any(|a| matches!(a, Action::Effect(Effect::JoinGroup(_)))));
    // The database works again: the node reloads what is on disk (without
    // the change that failed) and rejoins to resync.
    n.handle(probe_at, Input::StorageRecovered { rows: rows_of(&p) });
    let out = drain_with(&mut n, probe_at, &mut p, None);
    assert!(!n.storage_failed());
    assert!(
        n.memdb().lookup(b"a").is_none(),
        "memory is what is on disk"
    );
    assert!(logs(&out)
        .iter()
        .any(|l| l.starts_with("[database] notice: config.db takes writes again")));
    let join_at = n.poll_timeout().unwrap();
    n.handle_timeout(join_at);
    let out = drain_with(&mut n, join_at, &mut p, None);
    assert!(out.contains(&Action::Effect(Effect::JoinGroup(Group::Dcdb))));
}

#[test]
fn the_debug_switch() {
    let mut n = Node::boot(config(true), None, None, t(1000)).unwrap();
    let mut p = Vec::new();
    drain_with(&mut n, t(1000), &mut p, None);
    let debug = |data: &[u8], offset| Request::WriteDebug {
        offset,
        data: data.to_vec(),
    };
    n.handle(
        t(1001),
        Input::Request {
            id: 1,
            request: debug(b"1\n", 0),
        },
    );
    let out = drain_with(&mut n, t(1001), &mut p, None);
    assert!(n.debug());
    assert!(out.contains(&Action::Effect(Effect::Debug(true))));
    assert!(logs(&out).contains(&"[main] notice: enable debug mode".to_string()));
    n.handle(
        t(1002),
        Input::Request {
            id: 2,
            request: debug(b"0\n", 0),
        },
    );
    let out = drain_with(&mut n, t(1002), &mut p, None);
    assert!(!n.debug());
    assert!(logs(&out).contains(&"[main] notice: disable debug mode".to_string()));
    n.handle(
        t(1003),
        Input::Request {
            id: 3,
            request: debug(b"1\n", 1),
        },
    );
    let out = drain_with(&mut n, t(1003), &mut p, None);
    assert_eq!(replies(&out), [(3, Reply::Fs(Err(EIO)))]);
}

#[test]
fn local_mode_probes_a_failed_database_and_reloads_it_once_it_takes_writes() {
    let (mut n, mut p, _) = local_node_after_a_failed_commit("lost");
    // The change that was not saved is in memory only until the reload.
    let due = n.poll_timeout().expect("a storage probe is scheduled");
    n.handle(due, Input::Timers);
    let out = drain_with(&mut n, due, &mut p, None);
    assert!(out.contains(&Action::Effect(Effect::ProbeStorage)));
    // The database takes writes again: its rows (without "lost") come back.
    n.handle(due, Input::StorageRecovered { rows: rows_of(&p) });
    let out = drain_with(&mut n, due, &mut p, None);
    assert!(logs(&out)
        .iter()
        .any(|l| l.contains("config.db takes writes again")));
    assert!(!n.storage_failed());
    assert!(
        n.memdb().lookup(b"lost").is_none(),
        "memory is what disk has"
    );
    n.handle(
        due,
        Input::Request {
            id: 2,
            request: create("kept"),
        },
    );
    let out = drain_with(&mut n, due, &mut p, None);
    assert_eq!(replies(&out), [(2, Reply::Fs(Ok(0)))]);
}
