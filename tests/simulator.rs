//! The dcdb core in an in-process cluster (`pmxcfs::sim`): scripted and
//! random sequences of writes and membership changes. Properties:
//! - after healing, every member holds a byte-identical memdb index;
//! - every write acknowledged while quorate is on every member afterwards;
//! - members without quorum refuse writes (EACCES before sending);
//! - each node's database rows load back into the same tree.

use proptest::prelude::*;

use pmxcfs::core::dfsm::Mode;
use pmxcfs::core::memdb::Memdb;
use pmxcfs::sim::Cluster;
use pmxcfs_wire::Codec;

fn assert_converged(c: &Cluster) {
    let mut indexes = c
        .nodes
        .iter()
        .filter(|(_, n)| n.up)
        .map(|(id, n)| (*id, n.memdb().index().to_bytes()));
    let (first_id, first) = indexes.next().expect("a node");
    for (id, idx) in indexes {
        assert_eq!(idx, first, "node {id} differs from node {first_id}");
    }
    for (id, n) in &c.nodes {
        if !n.up {
            continue;
        }
        assert_eq!(n.node.dcdb_mode(), Mode::Synced, "node {id}");
        // The database holds what memory holds.
        let rows = n.rows.values().cloned().collect();
        let (reloaded, _) = Memdb::from_rows(rows, 0).expect("rows load");
        assert_eq!(
            reloaded.index(),
            n.memdb().index(),
            "node {id}: database and memory differ"
        );
    }
}

fn assert_acknowledged_writes_survive(c: &Cluster) {
    for w in &c.writes {
        if w.result.is_some_and(|r| r >= 0) {
            for (id, n) in &c.nodes {
                if !n.up {
                    continue;
                }
                let e = n.memdb().lookup(w.path.as_bytes());
                assert!(
                    e.is_some_and(|e| e.data() == w.data.as_slice()),
                    "acknowledged write of {} by node {} missing on node {id}",
                    w.path,
                    w.node
                );
            }
        }
    }
}

#[test]
fn three_nodes_form_and_replicate() {
    let mut c = Cluster::new(3);
    c.run_until_quiet();
    c.write(1, "a.cfg", b"one");
    c.write(2, "b.cfg", b"two");
    c.run_until_quiet();
    assert!(
        c.writes.iter().all(|w| w.result == Some(3)),
        "{:?}",
        c.writes
    );
    assert_converged(&c);
    assert_acknowledged_writes_survive(&c);
    // Writer = sender nodeid.
    assert_eq!(c.nodes[&3].memdb().lookup(b"b.cfg").unwrap().writer, 2);
}

/// The mount's kernel hears of the changes it did not ask for: another
/// node's, and everything after a sync or a change of quorum (modes); a
/// node's own changes it made itself.
#[test]
fn the_kernel_hears_of_changes_behind_its_back_only() {
    use pmxcfs::core::node::TreeChange;
    let mut c = Cluster::new(3);
    c.run_until_quiet();
    for n in c.nodes.values_mut() {
        assert!(n.stale.contains(&TreeChange::All), "quorum came");
        n.stale.clear();
    }
    c.write(1, "a.cfg", b"one");
    c.run_until_quiet();
    assert_eq!(c.nodes[&1].stale, []);
    for id in [2, 3] {
        // The create, then the write.
        assert_eq!(
            c.nodes[&id].stale,
            [
                TreeChange::Paths(vec![b"a.cfg".to_vec()]),
                TreeChange::Paths(vec![b"a.cfg".to_vec()])
            ],
            "node {id}"
        );
    }
    c.set_partitions(vec![vec![1, 2], vec![3]]);
    c.run_until_quiet();
    assert!(c.nodes[&3].stale.contains(&TreeChange::All), "quorum lost");
    c.nodes.get_mut(&3).unwrap().stale.clear();
    c.heal();
    c.run_until_quiet();
    assert!(c.nodes[&3].stale.contains(&TreeChange::All), "synced again");
}

#[test]
fn minority_refuses_majority_writes_heal_converges() {
    let mut c = Cluster::new(3);
    c.run_until_quiet();
    c.set_partitions(vec![vec![1, 2], vec![3]]);
    c.write(3, "minority.cfg", b"x");
    c.write(1, "majority.cfg", b"y");
    c.run_until_quiet();
    assert!(c.writes[0].refused, "the minority refuses");
    assert_eq!(c.writes[1].result, Some(1));
    assert!(c.nodes[&3].memdb().lookup(b"majority.cfg").is_none());
    c.heal();
    c.run_until_quiet();
    assert_converged(&c);
    assert_acknowledged_writes_survive(&c);
    assert!(c.nodes[&3].memdb().lookup(b"minority.cfg").is_none());
}

#[test]
fn a_restarted_node_catches_up() {
    let mut c = Cluster::new(3);
    c.run_until_quiet();
    c.write(1, "before.cfg", b"1");
    c.run_until_quiet();
    c.crash(3);
    c.write(2, "while-down.cfg", b"2");
    c.run_until_quiet();
    c.restart(3);
    c.heal();
    c.run_until_quiet();
    assert_converged(&c);
    assert_acknowledged_writes_survive(&c);
}

#[derive(Clone, Debug)]
enum Step {
    Write(u32),
    Partition(u8),
    Heal,
    Deliver(u8),
    Crash(u32),
    Restart(u32),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (1u32..=5).prop_map(Step::Write),
        2 => any::<u8>().prop_map(Step::Partition),
        1 => Just(Step::Heal),
        4 => any::<u8>().prop_map(Step::Deliver),
        1 => (1u32..=5).prop_map(Step::Crash),
        1 => (1u32..=5).prop_map(Step::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_histories_converge(steps in proptest::collection::vec(step(), 1..40)) {
        let mut c = Cluster::new(5);
        c.run_until_quiet();
        let mut n = 0;
        for s in steps {
            match s {
                Step::Write(node) => {
                    n += 1;
                    if c.nodes[&node].up {
                        c.write(node, &format!("f{n}.cfg"), format!("content {n}").as_bytes());
                    }
                }
                Step::Partition(mask) => {
                    let up: Vec<u32> = c.nodes.iter().filter(|(_, x)| x.up).map(|(id, _)| *id).collect();
                    let a: Vec<u32> = up.iter().copied().filter(|id| mask & (1 << id) != 0).collect();
                    let b: Vec<u32> = up.iter().copied().filter(|id| mask & (1 << id) == 0).collect();
                    c.set_partitions(vec![a, b]);
                }
                Step::Heal => c.heal(),
                Step::Deliver(k) => {
                    let parts = c.partitions.len().max(1);
                    for _ in 0..(k % 8) {
                        c.step(k as usize % parts);
                    }
                }
                Step::Crash(node) => {
                    if c.nodes[&node].up && c.nodes.values().filter(|x| x.up).count() > 1 {
                        c.crash(node);
                    }
                }
                Step::Restart(node) => {
                    if !c.nodes[&node].up {
                        c.restart(node);
                    }
                }
            }
            // Writes refused only without quorum.
            for w in &c.writes {
                if w.refused {
                    prop_assert!(w.result.is_none());
                }
            }
        }
        for id in 1..=5 {
            if !c.nodes[&id].up {
                c.restart(id);
            }
        }
        c.heal();
        c.run_until_quiet();
        // A node that writes while it waits for the leader's updates can
        // apply messages in another order than the synced members (C's
        // queue rules, replicated: spec §9 #9); the hourly verify is what
        // brings such members back, in C clusters as in ours.
        c.verify_round();
        assert_converged(&c);
        assert_acknowledged_writes_survive(&c);
    }
}

/// The queue ordering race of C (spec §9 #9), deterministic: a restarted
/// node writes while it waits for the leader's updates, the others write
/// too; the members can differ, and the verify round repairs it.
#[test]
fn a_write_during_the_update_is_repaired_by_the_verify_round() {
    let mut c = Cluster::new(5);
    c.run_until_quiet();
    c.crash(2);
    c.write(3, "f1.cfg", b"content 1");
    c.restart(2);
    c.heal();
    c.step(0);
    c.write(2, "f2.cfg", b"content 2");
    c.write(1, "f3.cfg", b"content 3");
    c.run_until_quiet();
    c.verify_round();
    assert_converged(&c);
    assert_acknowledged_writes_survive(&c);
}

/// A follower puts the messages of synced members that arrive while it
/// waits for the leader's updates in `sync_queue`, in arrival order (spec
/// §1.8), so it applies them as the synced members do.
#[test]
fn writes_of_synced_members_during_an_update_keep_their_order() {
    let mut c = Cluster::new(5);
    c.run_until_quiet();
    c.set_partitions(vec![vec![1, 3, 4], vec![2, 5]]);
    c.write(3, "f1.cfg", b"content 1");
    c.heal();
    c.step(0);
    c.write(1, "f2.cfg", b"content 2");
    c.write(2, "f3.cfg", b"content 3");
    c.run_until_quiet();
    assert_converged(&c);
    assert_acknowledged_writes_survive(&c);
}

/// The daemon, the simulator and capture replay drive one node type: the
/// compiler checks that each hands out a `core::node::Node`, and the
/// replayed C node ends where the C node ended.
#[test]
fn daemon_simulator_and_replay_drive_one_node_type() {
    use pmxcfs::core::node::Node;
    let _daemon: fn(&pmxcfs::host::Shared) -> &Node = |s| &s.node;
    let sim: fn(&pmxcfs::sim::SimHost) -> &Node = |n| &n.node;
    let c = Cluster::new(1);
    assert_eq!(sim(&c.nodes[&1]).dcdb_mode(), Mode::Synced);
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/s1-formation-and-writes");
    let (report, node): (_, Option<Node>) =
        pmxcfs_compat::check::replay_node(&dir, "node1", &dir.join("node1.pcap")).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    let node = node.expect("a replayed process");
    assert_eq!(node.dcdb_mode(), Mode::Synced);
    assert!(node.memdb().lookup(b"datacenter.cfg").is_some());
}

/// A dcdb message carrying `request`, as node software other than ours
/// might send it.
fn dcdb_message(request: pmxcfs::core::node::Request, count: u64) -> Vec<u8> {
    let (subtype, message) = pmxcfs::core::requests::dcdb_message(request).unwrap();
    let mut bytes = Vec::new();
    pmxcfs_wire::dfsm::Framing::normal(subtype.into(), 1, 1_000_100, count).encode(&mut bytes);
    bytes.extend_from_slice(&message.to_bytes());
    bytes
}

#[test]
fn hostile_changes_from_a_peer_are_refused_alike_and_every_database_still_loads() {
    use pmxcfs::core::node::{Group, Request};
    let mut c = Cluster::new(3);
    c.write(1, "f", b"file\n");
    c.run_until_quiet();
    let v = |p: &str| p.as_bytes().to_vec();
    let hostile = [
        Request::Mkdir { path: v("a") },
        // A directory below itself: unloadable on every node that applies it.
        Request::Rename {
            from: v("a"),
            to: v("a/b"),
        },
        // Entries named "." and "..".
        Request::Rename {
            from: v("f"),
            to: v("a/."),
        },
        Request::Rename {
            from: v("f"),
            to: v("a/.."),
        },
        // Names the mount refuses to a local user (a fixed root name).
        Request::Create {
            path: v(".members"),
        },
        Request::Mkdir { path: v("//local") },
    ];
    for (i, request) in hostile.into_iter().enumerate() {
        c.inject(2, Group::Dcdb, dcdb_message(request, 1000 + i as u64));
    }
    c.run_until_quiet();
    assert_converged(&c);
    for (id, n) in &c.nodes {
        let m = n.memdb();
        assert!(
            m.lookup(b"a").unwrap().is_dir(),
            "node {id}: the valid mkdir"
        );
        assert!(m.lookup(b"a/b").is_none() && m.lookup(b"f").is_some());
        assert!(m.lookup(b".members").is_none() && m.lookup(b"local").is_none());
    }
    // Every node starts again on its database.
    for id in 1..=3 {
        c.crash(id);
        c.restart(id);
    }
    c.heal();
    c.run_until_quiet();
    assert_converged(&c);
}
