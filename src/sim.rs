//! An in-process cluster for tests: N nodes, each the node core the daemon
//! runs (`core::node::Node`), connected by a bus that delivers in total
//! order within each partition, with scripted or random membership changes
//! (join, leave, partition, merge, crash, restart) and quorum as
//! votequorum computes it. A third driver of the same core, beside the
//! corosync driver and capture replay; no I/O, no clocks.

use std::collections::{BTreeMap, VecDeque};

use crate::core::corosync_conf::QuorumRule;
use crate::core::dfsm::Member;
use crate::core::engine::{self, Port, SendFailed};
use crate::core::logline::LogLine;
use crate::core::memdb::{Memdb, Row};
use crate::core::node::{
    Group, Input, Node, NodeConfig, Reply, Request, RequestId, Time, TreeChange,
};

/// The corosync.conf every simulated node imports into its new database
/// (what makes it a cluster node).
const COROSYNC_CONF: &[u8] = b"totem {\n  cluster_name: sim\n  config_version: 1\n}\n";

/// How far ahead a quiet cluster lets the clock run to a node's timer
/// (C's service restart delay, with room).
const SOON: u32 = 10;

/// A simulated node's I/O: its partition's bus is its CPG.
struct SimPort<'a> {
    id: u32,
    me: Member,
    bus: Option<&'a mut VecDeque<(Group, Member, Vec<u8>)>>,
    writes: &'a mut Vec<WriteRecord>,
    in_group: &'a mut [bool; 2],
    waiting: &'a mut BTreeMap<RequestId, usize>,
    stale: &'a mut Vec<TreeChange>,
    /// The node joined or left a group: the views change.
    membership: bool,
}

impl Port for SimPort<'_> {
    fn send(&mut self, group: Group, bytes: Vec<u8>) -> Result<(), SendFailed> {
        // Outside the group (or cut off) a message is lost, as a CPG send
        // of a process that is not joined.
        if self.in_group[group_index(group)] {
            if let Some(bus) = self.bus.as_mut() {
                bus.push_back((group, self.me, bytes));
            }
        }
        Ok(())
    }

    fn reply(&mut self, id: RequestId, reply: Reply) {
        if let Some(w) = self.waiting.remove(&id) {
            self.writes[w].result = Some(match reply {
                Reply::Fs(Ok(v)) => v as i32,
                Reply::Fs(Err(e)) => -e,
                Reply::Ipc(_) => -libc::EIO,
            });
        }
    }

    fn join(&mut self, group: Group) -> Option<Member> {
        self.in_group[group_index(group)] = true;
        self.membership = true;
        Some(self.me)
    }

    fn leave(&mut self, group: Group) {
        self.in_group[group_index(group)] = false;
        self.membership = true;
    }

    fn tree_changed(&mut self, change: TreeChange) {
        self.stale.push(change);
    }

    fn log(&mut self, line: LogLine) {
        if std::env::var_os("PMXCFS_SIM_TRACE").is_some() {
            eprintln!("node {}: {}", self.id, line.render());
        }
    }
}

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

/// A simulated host: its pmxcfs process (the node core), its database
/// rows, whether it runs, and its pid.
pub struct SimHost {
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
    /// What the node told its mount's kernel was changed behind its back.
    pub stale: Vec<TreeChange>,
}

impl SimHost {
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
    pub nodes: BTreeMap<u32, SimHost>,
    /// The partitions: each a set of nodeids that see each other.
    pub partitions: Vec<Vec<u32>>,
    /// Per partition, messages in total order: (group, sender, bytes).
    bus: Vec<VecDeque<(Group, Member, Vec<u8>)>>,
    pub writes: Vec<WriteRecord>,
    pub now: u32,
    /// votequorum's rule: one vote per node.
    quorum: QuorumRule,
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
            quorum: QuorumRule::equal_votes(n),
            next_id: 1,
            views: BTreeMap::new(),
        };
        for id in 1..=n {
            let pid = 1000 + id;
            c.nodes.insert(
                id,
                SimHost {
                    node: boot(id, pid, None, now),
                    rows: BTreeMap::new(),
                    up: true,
                    pid,
                    in_group: [false; 2],
                    waiting: BTreeMap::new(),
                    stale: Vec::new(),
                },
            );
            c.start_process(id);
        }
        c.set_partitions(vec![(1..=n).collect()]);
        c
    }

    /// A process that just booted: its first batch (it joins both groups).
    fn start_process(&mut self, id: u32) {
        self.feed(id, Input::Start);
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
        for p in self.partitions.clone() {
            let quorate = self.quorum.quorate(&p);
            for &id in &p {
                self.feed(id, Input::Quorum { quorate });
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
                    self.feed(
                        id,
                        Input::Confchg {
                            group: g,
                            members: members.clone(),
                            joined_any,
                        },
                    );
                }
            }
        }
    }

    /// Feed node `id` an input through the engine: its rows are its
    /// database, the bus of its partition its CPG.
    fn feed(&mut self, id: u32, input: Input) {
        let now = Time::from_secs(self.now);
        let comp = self.component_of(id);
        let Cluster {
            nodes, bus, writes, ..
        } = self;
        let sim = nodes.get_mut(&id).expect("node");
        let me = sim.me(id);
        let SimHost {
            node,
            rows,
            in_group,
            waiting,
            stale,
            ..
        } = sim;
        let mut port = SimPort {
            id,
            me,
            bus: comp.and_then(|c| bus.get_mut(c)),
            writes,
            in_group,
            waiting,
            stale,
            membership: false,
        };
        engine::run(now, input, &mut port, &mut |now, input| {
            node.step(now, input, rows)
        });
        if port.membership && comp.is_some() {
            self.update_views();
        }
    }

    /// Create-and-write `path` on node `id`, as a FUSE write does: a create
    /// and a write request; the write's reply is the result.
    pub fn write(&mut self, id: u32, path: &str, data: &[u8]) {
        self.now += 1;
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
        self.feed(
            id,
            Input::Request {
                id: create,
                request: Request::Create {
                    path: path.as_bytes().to_vec(),
                },
            },
        );
        self.feed(
            id,
            Input::Request {
                id: write,
                request: Request::Write {
                    path: path.as_bytes().to_vec(),
                    offset: 0,
                    data: data.to_vec(),
                },
            },
        );
        // An immediate EACCES is the refusal of a node without quorum.
        let w = &mut self.writes[idx];
        if w.result == Some(-libc::EACCES) {
            w.result = None;
            w.refused = true;
        }
    }

    /// Put a message on the bus of node `id`'s partition as if that node's
    /// process had sent it (a peer that sends what our core never would: a
    /// buggy or hostile node, a replayed capture).
    pub fn inject(&mut self, id: u32, group: Group, bytes: Vec<u8>) {
        let me = self.nodes[&id].me(id);
        if let Some(c) = self.component_of(id) {
            self.bus[c].push_back((group, me, bytes));
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
        for id in self.partitions[c].clone() {
            if !self.nodes[&id].in_group[group_index(group)] {
                continue;
            }
            self.feed(
                id,
                Input::Deliver {
                    group,
                    from,
                    msg: bytes.clone(),
                },
            );
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
            // Nothing in flight: let the clock run to the next timer of
            // a node that is due soon (a rejoin, a storage probe); the
            // hourly verify only runs in `verify_round`.
            let next = self
                .nodes
                .iter()
                .filter(|(_, n)| n.up)
                .filter_map(|(id, n)| Some((n.node.poll_timeout()?.secs(), *id)))
                .filter(|(t, _)| *t <= self.now + SOON)
                .min();
            if let Some((t, id)) = next {
                self.now = self.now.max(t);
                self.feed(id, Input::Timers);
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
        let ids: Vec<u32> = self.nodes.keys().copied().collect();
        for id in ids {
            if !self.nodes[&id].up {
                continue;
            }
            self.feed(id, Input::Timers);
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
