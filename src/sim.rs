//! An in-process cluster for tests: N nodes, each the node core the daemon
//! runs (`core::node::Node`), connected by a bus that delivers in total
//! order within each partition, with scripted or random membership changes
//! (join, leave, partition, merge, crash, restart) and quorum as
//! votequorum computes it. A third driver of the same core, beside the
//! corosync driver and capture replay; no I/O, no clocks.

use std::collections::{BTreeMap, VecDeque};

use crate::core::dfsm::{Member, Mode};
use crate::core::memdb::{DbChange, Memdb, Row};
use crate::core::node::{
    Action, Effect, Group, Input, Node, NodeConfig, Reply, Request, RequestId, Time,
};

/// The corosync.conf every simulated node imports into its new database
/// (what makes it a cluster node).
const COROSYNC_CONF: &[u8] = b"totem {\n  cluster_name: sim\n  config_version: 1\n}\n";

/// A write a test asked for, and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteRecord {
    pub node: u32,
    pub path: String,
    pub data: Vec<u8>,
    /// `None` while waiting for its delivery; the result after (bytes
    /// written, or a negative errno).
    pub result: Option<i32>,
    /// Refused before sending (not quorate: EACCES).
    pub refused: bool,
}

pub struct SimNode {
    pub node: Node,
    /// config.db as the node would hold it.
    pub rows: BTreeMap<u64, Row>,
    pub up: bool,
    /// The process id; a restart gets a new one.
    pub pid: u32,
    /// The groups the process is in (joined, not left).
    in_group: [bool; 2],
    /// Our requests waiting for their reply: id → index into `writes`.
    waiting: BTreeMap<RequestId, usize>,
}

impl SimNode {
    pub fn memdb(&self) -> &Memdb {
        self.node.memdb()
    }

    pub fn me(&self, id: u32) -> Member {
        Member {
            nodeid: id,
            pid: self.pid,
        }
    }
}

pub struct Cluster {
    pub nodes: BTreeMap<u32, SimNode>,
    /// The partitions: each a set of nodeids that see each other.
    pub partitions: Vec<Vec<u32>>,
    /// Per partition, messages in total order: (group, sender, bytes).
    bus: Vec<VecDeque<(Group, Member, Vec<u8>)>>,
    pub writes: Vec<WriteRecord>,
    pub now: u32,
    total_votes: usize,
    next_id: RequestId,
    /// The member list each node last got per group.
    views: BTreeMap<(u32, Group), Vec<Member>>,
}

fn group_index(g: Group) -> usize {
    match g {
        Group::Dcdb => 0,
        Group::Kvstore => 1,
    }
}

fn boot(id: u32, pid: u32, rows: Option<Vec<Row>>, now: u32) -> Node {
    let config = NodeConfig {
        nodename: format!("simnode{id}"),
        node_ip: format!("10.0.0.{id}"),
        pid,
        // PMXCFS_SIM_TRACE=1 prints every node's log, debug lines included.
        debug: std::env::var_os("PMXCFS_SIM_TRACE").is_some(),
        ..NodeConfig::default()
    };
    Node::boot(config, rows, Some(COROSYNC_CONF), Time::from_secs(now))
        .expect("a simulated node boots")
}

impl Cluster {
    /// `n` nodes with new databases, in one partition.
    pub fn new(n: u32) -> Cluster {
        let now = 1_000_000;
        let mut c = Cluster {
            nodes: BTreeMap::new(),
            partitions: Vec::new(),
            bus: Vec::new(),
            writes: Vec::new(),
            now,
            total_votes: n as usize,
            next_id: 1,
            views: BTreeMap::new(),
        };
        for id in 1..=n {
            let pid = 1000 + id;
            c.nodes.insert(
                id,
                SimNode {
                    node: boot(id, pid, None, now),
                    rows: BTreeMap::new(),
                    up: true,
                    pid,
                    in_group: [false; 2],
                    waiting: BTreeMap::new(),
                },
            );
            c.start_process(id);
        }
        c.set_partitions(vec![(1..=n).collect()]);
        c
    }

    /// A process that just booted: persist its first batch, join both
    /// groups.
    fn start_process(&mut self, id: u32) {
        self.drain(id);
        for g in Group::ALL {
            self.join(id, g);
        }
    }

    fn join(&mut self, id: u32, g: Group) {
        let now = Time::from_secs(self.now);
        let node = self.nodes.get_mut(&id).expect("node");
        node.in_group[group_index(g)] = true;
        let me = node.me(id);
        node.node.handle(now, Input::Joined { group: g, me });
        self.drain(id);
    }

    fn component_of(&self, id: u32) -> Option<usize> {
        self.partitions.iter().position(|p| p.contains(&id))
    }

    /// Deliver everything in flight, then install new partitions.
    pub fn set_partitions(&mut self, partitions: Vec<Vec<u32>>) {
        self.run_until_quiet();
        let partitions: Vec<Vec<u32>> = partitions
            .into_iter()
            .map(|p| {
                p.into_iter()
                    .filter(|id| self.nodes.get(id).is_some_and(|n| n.up))
                    .collect::<Vec<u32>>()
            })
            .filter(|p| !p.is_empty())
            .collect();
        self.now += 1;
        self.partitions = partitions;
        self.bus = vec![VecDeque::new(); self.partitions.len()];
        let now = Time::from_secs(self.now);
        for p in self.partitions.clone() {
            let quorate = p.len() * 2 > self.total_votes;
            for &id in &p {
                let node = self.nodes.get_mut(&id).expect("node");
                node.node.handle(now, Input::Quorum { quorate });
                self.drain(id);
            }
        }
        self.update_views();
    }

    /// Everyone in one partition again.
    pub fn heal(&mut self) {
        let all: Vec<u32> = self.nodes.keys().copied().collect();
        self.set_partitions(vec![all]);
    }

    /// Give every process whose group view changed its confchg.
    fn update_views(&mut self) {
        let now = Time::from_secs(self.now);
        for p in self.partitions.clone() {
            for g in Group::ALL {
                let members: Vec<Member> = p
                    .iter()
                    .filter(|id| self.nodes[id].in_group[group_index(g)])
                    .map(|id| self.nodes[id].me(*id))
                    .collect();
                for &id in &p {
                    let me = self.nodes[&id].me(id);
                    let inside = self.nodes[&id].in_group[group_index(g)];
                    let old = self.views.get(&(id, g)).cloned().unwrap_or_default();
                    // A process gets the views while it is in the group, and
                    // the one its own leave makes.
                    if !inside && !old.contains(&me) {
                        continue;
                    }
                    if old == members {
                        continue;
                    }
                    let joined_any = members.iter().any(|m| !old.contains(m));
                    self.views.insert((id, g), members.clone());
                    let node = self.nodes.get_mut(&id).expect("node");
                    node.node.handle(
                        now,
                        Input::Confchg {
                            group: g,
                            members: members.clone(),
                            joined_any,
                        },
                    );
                    self.drain(id);
                }
            }
        }
    }

    /// Perform a node's output: persist into its rows, queue its sends,
    /// record its replies, act on leaving and joining groups.
    fn drain(&mut self, id: u32) {
        let now = Time::from_secs(self.now);
        let comp = self.component_of(id);
        let node = self.nodes.get_mut(&id).expect("node");
        let me = node.me(id);
        let rows = &mut node.rows;
        let actions = node.node.drain(now, &mut |changes: &[DbChange]| {
            for c in changes {
                c.clone().apply_to(rows);
            }
            Ok(())
        });
        let mut membership = false;
        for action in actions {
            match action {
                Action::Send { group, bytes } => {
                    let inside = self.nodes[&id].in_group[group_index(group)];
                    if let (Some(c), true) = (comp, inside) {
                        self.bus[c].push_back((group, me, bytes));
                    }
                }
                Action::Reply { id: rid, reply } => {
                    let node = self.nodes.get_mut(&id).expect("node");
                    if let Some(w) = node.waiting.remove(&rid) {
                        self.writes[w].result = Some(match reply {
                            Reply::Fs(Ok(v)) => v as i32,
                            Reply::Fs(Err(e)) => -e,
                            Reply::Ipc(_) => -libc::EIO,
                        });
                    }
                }
                Action::Effect(Effect::LeaveGroup(g)) => {
                    self.nodes.get_mut(&id).expect("node").in_group[group_index(g)] = false;
                    membership = true;
                }
                Action::Effect(Effect::JoinGroup(g)) => {
                    self.join(id, g);
                    membership = true;
                }
                Action::Effect(Effect::Log(line)) => {
                    if std::env::var_os("PMXCFS_SIM_TRACE").is_some() {
                        eprintln!("t={} node {id}: {}", self.now, line.render());
                    }
                }
                Action::Effect(_) => {}
            }
        }
        if membership && comp.is_some() {
            self.update_views();
        }
    }

    /// Create-and-write `path` on node `id`, as a FUSE write does: a create
    /// and a write request; the write's reply is the result.
    pub fn write(&mut self, id: u32, path: &str, data: &[u8]) {
        self.now += 1;
        let now = Time::from_secs(self.now);
        let idx = self.writes.len();
        self.writes.push(WriteRecord {
            node: id,
            path: path.to_string(),
            data: data.to_vec(),
            result: None,
            refused: false,
        });
        let (create, write) = (self.next_id, self.next_id + 1);
        self.next_id += 2;
        let node = self.nodes.get_mut(&id).expect("node");
        node.waiting.insert(write, idx);
        node.node.handle(
            now,
            Input::Request {
                id: create,
                request: Request::Create {
                    path: path.as_bytes().to_vec(),
                },
            },
        );
        node.node.handle(
            now,
            Input::Request {
                id: write,
                request: Request::Write {
                    path: path.as_bytes().to_vec(),
                    offset: 0,
                    data: data.to_vec(),
                },
            },
        );
        self.drain(id);
        // An immediate EACCES is the refusal of a node without quorum.
        let w = &mut self.writes[idx];
        if w.result == Some(-libc::EACCES) {
            w.result = None;
            w.refused = true;
        }
    }

    /// Deliver the next message of partition `c`; false if none.
    pub fn step(&mut self, c: usize) -> bool {
        if c >= self.partitions.len() {
            return false;
        }
        let Some((group, from, bytes)) = self.bus.get_mut(c).and_then(|q| q.pop_front()) else {
            return false;
        };
        self.now += 1;
        let now = Time::from_secs(self.now);
        for id in self.partitions[c].clone() {
            if !self.nodes[&id].in_group[group_index(group)] {
                continue;
            }
            let node = self.nodes.get_mut(&id).expect("node");
            node.node.handle(
                now,
                Input::Deliver {
                    group,
                    from,
                    msg: bytes.clone(),
                },
            );
            self.drain(id);
        }
        true
    }

    pub fn run_until_quiet(&mut self) {
        let mut guard = 0;
        loop {
            let mut any = false;
            for c in 0..self.bus.len() {
                while self.step(c) {
                    any = true;
                    guard += 1;
                    assert!(guard < 1_000_000, "the cluster does not settle");
                }
            }
            // A node that left a group waits for its rejoin timer: let
            // the clock run to it.
            let waiting: Vec<u32> = self
                .nodes
                .iter()
                .filter(|(_, n)| {
                    n.up && (n.node.dcdb_mode() == Mode::Leave
                        || n.node.kvstore_mode() == Mode::Leave)
                })
                .map(|(id, _)| *id)
                .collect();
            for id in waiting {
                if let Some(t) = self.nodes[&id].node.poll_timeout() {
                    self.now = self.now.max(t.secs());
                }
                let now = Time::from_secs(self.now);
                self.nodes
                    .get_mut(&id)
                    .expect("node")
                    .node
                    .handle_timeout(now);
                self.drain(id);
                any = true;
                guard += 1;
                assert!(guard < 1_000_000, "the cluster does not settle");
            }
            if !any {
                break;
            }
        }
    }

    /// The hourly verify round: the clock moves on by the verify period,
    /// the lowest node asks for the tree checksums, members whose tree
    /// differs from its leave and resync. This is how a C cluster repairs
    /// the queue ordering race (spec §9 #9), which the core replicates.
    pub fn verify_round(&mut self) {
        self.run_until_quiet();
        self.now += crate::core::node::VERIFY_PERIOD;
        let now = Time::from_secs(self.now);
        let ids: Vec<u32> = self.nodes.keys().copied().collect();
        for id in ids {
            if !self.nodes[&id].up {
                continue;
            }
            self.nodes
                .get_mut(&id)
                .expect("node")
                .node
                .handle_timeout(now);
            self.drain(id);
        }
        self.run_until_quiet();
    }

    /// Stop a node (its process dies): it leaves its partition.
    pub fn crash(&mut self, id: u32) {
        let parts: Vec<Vec<u32>> = self
            .partitions
            .iter()
            .map(|p| p.iter().copied().filter(|x| *x != id).collect())
            .collect();
        let node = self.nodes.get_mut(&id).expect("node");
        node.up = false;
        node.in_group = [false; 2];
        self.views.retain(|(n, _), _| *n != id);
        self.set_partitions(parts);
    }

    /// Restart a stopped node on its database, alone until `set_partitions`.
    pub fn restart(&mut self, id: u32) {
        let now = self.now;
        let node = self.nodes.get_mut(&id).expect("node");
        let rows: Vec<Row> = node.rows.values().cloned().collect();
        node.pid += 100;
        node.node = boot(id, node.pid, Some(rows), now);
        node.waiting.clear();
        node.up = true;
        node.in_group = [false; 2];
        let mut parts = self.partitions.clone();
        parts.push(vec![id]);
        self.partitions = parts;
        self.bus.push(VecDeque::new());
        self.start_process(id);
        let parts = self.partitions.clone();
        self.set_partitions(parts);
    }
}
