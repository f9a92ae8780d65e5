//! An in-process cluster for tests: N nodes, each running the dcdb core,
//! connected by a bus that delivers in total order within each partition,
//! with scripted or random membership changes (join, leave, partition,
//! merge) and quorum as votequorum computes it. A third driver of the
//! same core, beside corosync and capture replay; no I/O, no clocks.

use std::collections::{BTreeMap, VecDeque};

use pmxcfs_wire::dcdb::{FuseMessage, Subtype};

use crate::core::dcdb::Dcdb;
use crate::core::dfsm::{Dfsm, Member, Mode, Output};
use crate::core::memdb::{DbChange, Memdb, Row};

/// A write a test asked for, and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteRecord {
    pub node: u32,
    pub path: String,
    pub data: Vec<u8>,
    /// `None` while waiting for its delivery; the result after.
    pub result: Option<i32>,
    /// Refused before sending (not quorate: EACCES).
    pub refused: bool,
}

pub struct SimNode {
    pub dfsm: Dfsm<Dcdb>,
    /// config.db as the node would hold it.
    pub rows: BTreeMap<u64, Row>,
    /// count → index into `writes` of our pending messages.
    waiting: BTreeMap<u64, Vec<usize>>,
    pub up: bool,
    /// The process id; a restart gets a new one.
    pub pid: u32,
}

impl SimNode {
    pub fn memdb(&self) -> &Memdb {
        &self.dfsm.app.memdb
    }
}

pub struct Cluster {
    pub nodes: BTreeMap<u32, SimNode>,
    /// The partitions: each a set of nodeids that see each other.
    pub partitions: Vec<Vec<u32>>,
    /// Per partition, messages in total order: (sender, bytes).
    bus: Vec<VecDeque<(Member, Vec<u8>)>>,
    pub writes: Vec<WriteRecord>,
    pub now: u32,
    total_votes: usize,
}

fn pid_of(nodeid: u32) -> u32 {
    1000 + nodeid
}

impl Cluster {
    /// `n` nodes with empty databases, each alone, none started yet.
    pub fn new(n: u32) -> Cluster {
        let mut nodes = BTreeMap::new();
        for id in 1..=n {
            let (memdb, first) = Memdb::new_empty(1_000_000);
            let me = Member {
                nodeid: id,
                pid: pid_of(id),
            };
            let mut node = SimNode {
                dfsm: Dfsm::new(Dcdb::new(memdb), me),
                rows: BTreeMap::new(),
                waiting: BTreeMap::new(),
                up: true,
                pid: pid_of(id),
            };
            apply_rows(&mut node.rows, vec![first]);
            nodes.insert(id, node);
        }
        let mut c = Cluster {
            nodes,
            partitions: Vec::new(),
            bus: Vec::new(),
            writes: Vec::new(),
            now: 1_000_000,
            total_votes: n as usize,
        };
        c.set_partitions(vec![(1..=n).collect()]);
        c
    }

    fn component_of(&self, id: u32) -> Option<usize> {
        self.partitions.iter().position(|p| p.contains(&id))
    }

    /// Deliver everything in flight, then install new partitions: each
    /// member of each partition gets the confchg of its view.
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
        let now = self.now;
        let old = std::mem::replace(&mut self.partitions, partitions.clone());
        self.bus = vec![VecDeque::new(); partitions.len()];
        for p in &partitions {
            let members: Vec<Member> = p.iter().map(|&id| self.nodes[&id].dfsm.me()).collect();
            let quorate = p.len() * 2 > self.total_votes;
            for &id in p {
                let was_with: Vec<u32> = old
                    .iter()
                    .find(|o| o.contains(&id))
                    .cloned()
                    .unwrap_or_default();
                let joined = p.iter().any(|x| !was_with.contains(x));
                let node = self.nodes.get_mut(&id).expect("node");
                node.dfsm.app.quorate = quorate;
                if node.dfsm.mode() == Mode::Leave {
                    node.dfsm.initialize();
                }
                node.dfsm.confchg(&members, joined, now);
            }
        }
        for id in self.nodes.keys().copied().collect::<Vec<_>>() {
            self.collect(id);
        }
    }

    /// Everyone in one partition again.
    pub fn heal(&mut self) {
        let all: Vec<u32> = self.nodes.keys().copied().collect();
        self.set_partitions(vec![all]);
    }

    /// Move a node's outputs onto the bus and its changes into its rows.
    fn collect(&mut self, id: u32) {
        let comp = self.component_of(id);
        let node = self.nodes.get_mut(&id).expect("node");
        let me = node.dfsm.me();
        for out in node.dfsm.take_outputs() {
            match out {
                Output::Send(bytes) => {
                    if let Some(c) = comp {
                        self.bus[c].push_back((me, bytes));
                    }
                }
                Output::Delivered { count, result } => {
                    if let Some(list) = node.waiting.get_mut(&count) {
                        if !list.is_empty() {
                            let w = list.remove(0);
                            self.writes[w].result = Some(result);
                        }
                    }
                }
                _ => {}
            }
        }
        let changes = node.dfsm.app.memdb.take_changes();
        apply_rows(&mut node.rows, changes);
        let _ = node.dfsm.app.take_effects();
    }

    /// Create-and-write `path` on node `id`, as a FUSE write would: refused
    /// without quorum, otherwise two NORMAL messages.
    pub fn write(&mut self, id: u32, path: &str, data: &[u8]) {
        self.now += 1;
        let now = self.now;
        let node = self.nodes.get_mut(&id).expect("node");
        let idx = self.writes.len();
        let quorate = node.dfsm.app.quorate && node.up;
        self.writes.push(WriteRecord {
            node: id,
            path: path.to_string(),
            data: data.to_vec(),
            result: None,
            refused: !quorate,
        });
        if !quorate {
            return;
        }
        let create = FuseMessage::new(path);
        let mut payload = Vec::new();
        create.encode(&mut payload);
        node.dfsm.send_normal(Subtype::Create.into(), &payload, now);
        let write = FuseMessage {
            data: data.to_vec(),
            ..FuseMessage::new(path)
        };
        let mut payload = Vec::new();
        write.encode(&mut payload);
        if let Some(count) = node.dfsm.send_normal(Subtype::Write.into(), &payload, now) {
            node.waiting.entry(count).or_default().push(idx);
        }
        self.collect(id);
    }

    /// Deliver the next message of partition `c`; false if none.
    pub fn step(&mut self, c: usize) -> bool {
        if c >= self.partitions.len() {
            return false;
        }
        let Some((from, bytes)) = self.bus.get_mut(c).and_then(|q| q.pop_front()) else {
            return false;
        };
        self.now += 1;
        let now = self.now;
        for id in self.partitions[c].clone() {
            self.nodes
                .get_mut(&id)
                .expect("node")
                .dfsm
                .deliver(from, &bytes, now);
            self.collect(id);
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
            // A node that left rejoins, as the daemon's service restart does.
            let left: Vec<u32> = self
                .nodes
                .iter()
                .filter(|(_, n)| n.up && n.dfsm.mode() == Mode::Leave)
                .map(|(id, _)| *id)
                .collect();
            if !left.is_empty() {
                let parts = self.partitions.clone();
                for n in left {
                    self.nodes.get_mut(&n).expect("node").dfsm.initialize();
                }
                self.partitions = Vec::new();
                self.set_partitions(parts);
                any = true;
            }
            if !any {
                break;
            }
        }
    }

    /// Stop a node (its process dies): it leaves its partition.
    pub fn crash(&mut self, id: u32) {
        let parts: Vec<Vec<u32>> = self
            .partitions
            .iter()
            .map(|p| p.iter().copied().filter(|x| *x != id).collect())
            .collect();
        self.set_partitions(parts);
        self.nodes.get_mut(&id).expect("node").up = false;
    }

    /// Restart a stopped node on its database, alone until `set_partitions`.
    pub fn restart(&mut self, id: u32) {
        let now = self.now;
        let node = self.nodes.get_mut(&id).expect("node");
        let rows: Vec<Row> = node.rows.values().cloned().collect();
        let (memdb, _) = Memdb::from_rows(rows, now).expect("its own database loads");
        node.pid += 100;
        let me = Member {
            nodeid: id,
            pid: node.pid,
        };
        node.dfsm = Dfsm::new(Dcdb::new(memdb), me);
        node.waiting.clear();
        node.up = true;
        let mut parts = self.partitions.clone();
        parts.push(vec![id]);
        self.partitions = Vec::new();
        self.set_partitions(parts);
    }
}

fn apply_rows(rows: &mut BTreeMap<u64, Row>, changes: Vec<DbChange>) {
    for c in changes {
        c.apply_to(rows);
    }
}
