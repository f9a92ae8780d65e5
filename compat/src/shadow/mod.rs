//! `pmxcfs-replay shadow`: would our daemon have done exactly what a C node
//! did, on the cluster's real traffic?
//!
//! The operator has a packet capture (tcpdump on the knet ports, from
//! before the node's pmxcfs started), the corosync authkey and the
//! node's config.db as it was when that pmxcfs started. The capture is
//! decoded as a stream into node N's CPG view (`knet::stream`); from the
//! start of N's pmxcfs process, the view is run through our node core (the
//! one the daemon runs), booted on the snapshot with N's identity:
//! - every message N sent is in its view (CPG delivers a sender's own
//!   messages back to it): the ones its protocol decided must be the
//!   core's, byte for byte, at that point; the ones a local request caused
//!   (a FUSE write, an IPC call) are handed to the core as that request,
//!   as `check` does;
//! - every dcdb STATE of a node that was in sync with N must be the core's
//!   memdb index; after a sync, the core's index must be the leader's; a
//!   VERIFY checksum must be the core's checksum at its request;
//! - the core's leaves and rejoins must be C's.
//!
//! Taken from outside the capture, as `check` takes them, and said so in the
//! report: the node's name and address (corosync.conf's nodelist: the
//! daemon resolves its host name), the second a local request was made (its
//! message's header), the second N's process started (its cluster log's
//! "starting cluster log" entry, or a new database's index mtime), and
//! quorum (the votes of the ring's members by corosync.conf: votequorum's
//! own messages are not in the capture's CPG view).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde_json::{json, Value};

use pmxcfs::core::corosync_conf::QuorumRule;
use pmxcfs::core::dfsm::{Member, Mode};
use pmxcfs::core::memdb::{Memdb, Row};
use pmxcfs::core::node::{Group as NodeGroup, Input, Time};
use pmxcfs_wire::capture::EventBody;
use pmxcfs_wire::dcdb::MemdbIndex;
use pmxcfs_wire::dcdb::{Message as DcdbMessage, Payload as DcdbPayload};
use pmxcfs_wire::dfsm::{Framing, MessageType};
use pmxcfs_wire::kvstore::Payload as KvPayload;
use pmxcfs_wire::Codec;

use crate::describe::{event_summary, group_of, Decoded, Group};
use crate::drive::{
    config_from_nodelist, describe, fresh_index, input_of, node_names, parse_nodes, ConfNode,
    Driven,
};
use crate::knet::order::Ring;
use crate::knet::totem::RingId;
use crate::knet::views::{Emitted, ViewEvent};
use crate::knet::{StreamSummary, Streamed};
use crate::reaction_time::ReactionTime;

mod report;
use report::sum;
pub use report::{utc, Divergence, Report, Tally};

/// The database node N's pmxcfs started on.
pub enum StartDb {
    /// Its config.db, copied while its pmxcfs was stopped.
    Snapshot(Vec<Row>),
    /// A new one (config.db did not exist): it imports corosync.conf.
    Fresh,
}

pub struct Options {
    pub node: u32,
    pub start_db: StartDb,
    /// The host's corosync.conf (else the snapshot's /etc/pve/corosync.conf).
    pub corosync_conf: Option<Vec<u8>>,
    /// The address the node announces (else its ring0_addr).
    pub node_ip: Option<String>,
}

pub const KEEP_DIVERGENCES: usize = 10;
/// Events of node N shown before a divergence.
pub const CONTEXT_EVENTS: usize = 10;
/// Messages our core decided this close to the end of the capture may
/// still have been on their way when tcpdump stopped.
const IN_FLIGHT_AT_END_US: u64 = 2_000_000;
/// How long (capture seconds, events) a new process's first events are
/// held until its first STATEs show the second it started.
const LOOKAHEAD_SECS: f64 = 120.0;
const LOOKAHEAD_EVENTS: usize = 10_000;

fn time_of(t: f64) -> Time {
    Time((t.max(0.0) * 1e6).round() as u64)
}

/// Our core shadowing one pmxcfs process of node N.
struct Process {
    pid: u32,
    driven: Driven,
    mode: Mode,
    /// dcdb members that went through the last sync with us (their
    /// database is ours) and have stayed since.
    synced_peers: BTreeSet<Member>,
    /// The dcdb STATEs of the sync under way.
    epoch_states: Vec<(Member, Vec<u8>)>,
    /// Our checksum at the last VERIFY_REQUEST: (request id, checksum).
    verify: Option<(u64, [u8; 32])>,
    /// Per group: our core left it (a dfsm error) and C's leave is due.
    our_leave: [bool; 2],
    /// Per group: C's process left it without our core leaving.
    c_left: [bool; 2],
    quorate: Option<bool>,
    /// The process sent its first dcdb STATE (its database at start).
    first_state_seen: bool,
}

/// Why two dcdb STATEs of node N differ, for the report.
fn state_hint(ours: Option<&[u8]>, c: &[u8], first_seen: bool) -> String {
    let payload = |b: &[u8]| Framing::parse(b).ok().map(|(p, _)| p.to_vec());
    let (Some(ours), Some(theirs)) = (ours.and_then(payload), payload(c)) else {
        return String::new();
    };
    let mut s = format!(": {}", index_difference(&ours, &theirs));
    if !first_seen {
        let v = |b: &[u8]| MemdbIndex::decode(b).map(|i| i.version).unwrap_or(0);
        let which = match v(&ours).cmp(&v(&theirs)) {
            std::cmp::Ordering::Less => "older than",
            std::cmp::Ordering::Greater => "newer than",
            std::cmp::Ordering::Equal => "not",
        };
        s.push_str(&format!(
            ". This is the process's first STATE, its database at start: the database our core started on is {which} the one the node's pmxcfs started on (take the snapshot on this node, with its pmxcfs stopped, right before the start the capture holds)"
        ));
    }
    s
}

/// A new process's first events, held until its first STATEs arrive.
struct Lookahead {
    pid: u32,
    events: Vec<ViewEvent>,
    dcdb_state: Option<Vec<u8>>,
    kvstore_state: Option<Vec<u8>>,
}

pub struct Shadow {
    opts_node: u32,
    node_ip: Option<String>,
    /// The database the next process starts on (`None`: a new one).
    next_rows: Option<Vec<Row>>,
    /// A database carried over from a process of the capture (not the
    /// operator's snapshot).
    carried: bool,
    conf: Vec<u8>,
    process: Option<Process>,
    lookahead: Option<Lookahead>,
    /// Processes of N already running when the capture started.
    skipped: BTreeSet<u32>,
    ring_quorate: HashMap<RingId, bool>,
    history: VecDeque<String>,
    report: Report,
    cpg_messages: u64,
    /// Messages our core sent while node N was alone (delivered to it
    /// only; never on the wire, so never checked).
    private_deliveries: u64,
    alone_since: Option<f64>,
    private_join_noted: bool,
    /// The shadowed process's callbacks, held until the second it handled
    /// them is known.
    reaction: ReactionTime,
}

fn is_state_message(bytes: &[u8]) -> Option<MessageType> {
    Framing::parse(bytes).ok().map(|(_, f)| f.header.msg_type)
}

fn decoded_json(group: Group, bytes: &[u8]) -> Value {
    match Decoded::decode(group, bytes) {
        Ok(d) => d.to_json(),
        Err(e) => json!({"undecodable": e.to_string(), "len": bytes.len()}),
    }
}

/// Two memdb indexes, told apart in words.
fn index_difference(ours: &[u8], theirs: &[u8]) -> String {
    let parse = |b: &[u8]| MemdbIndex::decode(b).ok();
    match (parse(ours), parse(theirs)) {
        (Some(a), Some(b)) => {
            let mut d = Vec::new();
            if a.version != b.version {
                d.push(format!("version {} against {}", a.version, b.version));
            }
            if a.mtime != b.mtime {
                d.push(format!("mtime {} against {}", a.mtime, b.mtime));
            }
            if a.writer != b.writer {
                d.push(format!("last writer {} against {}", a.writer, b.writer));
            }
            let ea: BTreeMap<u64, _> = a.entries.iter().map(|e| (e.inode, e.digest)).collect();
            let eb: BTreeMap<u64, _> = b.entries.iter().map(|e| (e.inode, e.digest)).collect();
            let differing = ea.iter().filter(|(i, dg)| eb.get(i) != Some(dg)).count()
                + eb.keys().filter(|i| !ea.contains_key(i)).count();
            if differing > 0 {
                d.push(format!("{differing} entries differ"));
            }
            if d.is_empty() {
                "the bytes differ".into()
            } else {
                d.join(", ")
            }
        }
        _ => "one of them does not decode".into(),
    }
}

impl Shadow {
    pub fn new(opts: Options) -> Result<Shadow, String> {
        let (rows, fresh) = match opts.start_db {
            StartDb::Snapshot(rows) => (Some(rows), false),
            StartDb::Fresh => (None, true),
        };
        let conf = match (&opts.corosync_conf, &rows) {
            (Some(c), _) => c.clone(),
            (None, Some(rows)) => {
                let (m, _) = Memdb::from_rows(rows.clone(), 0)
                    .map_err(|e| format!("the snapshot does not load: {e}"))?;
                match m.lookup(b"corosync.conf").filter(|e| !e.is_dir()) {
                    Some(e) => e.data().to_vec(),
                    None => {
                        return Err(
                            "the snapshot holds no corosync.conf (a node in local mode?); pass --corosync-conf"
                                .into(),
                        )
                    }
                }
            }
            (None, None) => {
                return Err(
                    "a new database imports the host's corosync.conf: pass --corosync-conf".into(),
                )
            }
        };
        let nodes = parse_nodes(&String::from_utf8_lossy(&conf));
        let Some(me) = nodes.iter().find(|n| n.nodeid == opts.node).cloned() else {
            return Err(format!(
                "node {} is not in corosync.conf's nodelist (nodes: {})",
                opts.node,
                nodes
                    .iter()
                    .map(|n| format!("{} {}", n.nodeid, n.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        let mut report = Report {
            node: opts.node,
            node_name: me.name.clone(),
            ..Report::default()
        };
        report.notes.push(match &opts.node_ip {
            Some(ip) => format!("node {}'s name {} from corosync.conf, its address {ip} as given", opts.node, me.name),
            None => format!(
                "node {}'s name and address ({}, {}) from corosync.conf's nodelist (the daemon resolves its host name; give --node-ip if that is another address)",
                opts.node, me.name, me.ring0_addr
            ),
        });
        report.notes.push(
            "local requests (FUSE operations, IPC calls) at the second in their message's header"
                .into(),
        );
        report.notes.push(
            "quorum from the votes of each ring's members in corosync.conf (the daemon hears it from votequorum)"
                .into(),
        );
        if fresh {
            report.notes.push(format!(
                "node {}'s first pmxcfs process started on a new database",
                opts.node
            ));
        }
        Ok(Shadow {
            opts_node: opts.node,
            node_ip: opts.node_ip,
            next_rows: rows,
            carried: false,
            conf,
            process: None,
            lookahead: None,
            skipped: BTreeSet::new(),
            ring_quorate: HashMap::new(),
            history: VecDeque::new(),
            report,
            cpg_messages: 0,
            private_deliveries: 0,
            alone_since: None,
            private_join_noted: false,
            reaction: ReactionTime::default(),
        })
    }

    /// The corosync.conf in force: the tree's, which the host's follows.
    fn current_conf(&self) -> String {
        if let Some(p) = &self.process {
            if let Some(e) = p
                .driven
                .node
                .memdb()
                .lookup(b"corosync.conf")
                .filter(|e| !e.is_dir())
            {
                return String::from_utf8_lossy(e.data()).into_owned();
            }
        }
        String::from_utf8_lossy(&self.conf).into_owned()
    }

    pub fn handle(&mut self, s: Streamed) {
        match s {
            Streamed::RingStart(ring) => self.ring_start(&ring),
            Streamed::RingEnd(ring) => self.ring_end(&ring),
            Streamed::Emitted(Emitted::Message(_)) => self.cpg_messages += 1,
            Streamed::Emitted(Emitted::View(node, v)) if node == self.opts_node => self.view(v),
            Streamed::Emitted(Emitted::View(..)) => {}
        }
    }

    fn ring_start(&mut self, ring: &Ring) {
        let Some(id) = ring.id else { return };
        let members = ring.members();
        if !members.contains(&self.opts_node) {
            return;
        }
        let rule = QuorumRule::of(&self.current_conf());
        let q = rule.quorate(&members);
        if self.ring_quorate.len() > 10_000 {
            self.ring_quorate.clear();
        }
        self.ring_quorate.insert(id, q);
        let t = ring.first_seen;
        self.set_quorum(q, t);
    }

    fn set_quorum(&mut self, quorate: bool, t: f64) {
        if let Some(p) = &mut self.process {
            if p.quorate != Some(quorate) {
                p.quorate = Some(quorate);
                p.driven.input(time_of(t), Input::Quorum { quorate });
            }
        }
    }

    /// Messages of a ring of N the capture lacks: N's view cannot be known.
    fn ring_end(&mut self, ring: &Ring) {
        let Some(id) = ring.id else { return };
        if ring.lost.is_empty() || !ring.members().contains(&self.opts_node) {
            return;
        }
        let n = ring.lost.len();
        let more = if n >= crate::knet::order::MAX_LOST_LISTED {
            "+"
        } else {
            ""
        };
        // Seqs 1..=n missing and nothing else: the ring began before the
        // capture did.
        let prefix = ring
            .lost
            .iter()
            .enumerate()
            .all(|(i, s)| *s == i as u32 + 1);
        if prefix {
            self.report.notes.push(format!(
                "the capture begins inside ring {id} (its first {n}{more} messages are before it): who was in which group is known from the next membership change on"
            ));
        } else {
            self.report.problems.push(format!(
                "ring {id}: the capture lacks {n}{more} of its messages (seq {}{}): tcpdump dropped packets, or did not see every link",
                ring.lost[0],
                if n > 1 { ", ..." } else { "" }
            ));
        }
    }

    fn own(&self, pid: u32) -> Member {
        Member {
            nodeid: self.opts_node,
            pid,
        }
    }

    fn is_own_join(&self, v: &ViewEvent) -> bool {
        match &v.event.body {
            EventBody::Confchg { joined, .. } => joined
                .iter()
                .any(|a| a.nodeid == self.opts_node && a.pid == v.event.local_pid),
            _ => false,
        }
    }

    fn view(&mut self, v: ViewEvent) {
        let pid = v.event.local_pid;
        if let Some(la) = &mut self.lookahead {
            if la.pid == pid {
                if let EventBody::Deliver {
                    sender_nodeid,
                    sender_pid,
                    msg,
                } = &v.event.body
                {
                    if *sender_nodeid == self.opts_node && *sender_pid == pid {
                        let state = is_state_message(msg) == Some(MessageType::State);
                        match group_of(&v.event.group) {
                            Some(NodeGroup::Dcdb) if state && la.dcdb_state.is_none() => {
                                la.dcdb_state = Framing::parse(msg).ok().map(|(p, _)| p.to_vec())
                            }
                            Some(NodeGroup::Kvstore) if state && la.kvstore_state.is_none() => {
                                la.kvstore_state = Some(msg.clone())
                            }
                            _ => {}
                        }
                    }
                }
                let t0 = la.events.first().map_or(v.time, |e| e.time);
                let done = (la.dcdb_state.is_some() && la.kvstore_state.is_some())
                    || v.time - t0 > LOOKAHEAD_SECS
                    || la.events.len() >= LOOKAHEAD_EVENTS;
                la.events.push(v);
                if done {
                    self.boot();
                }
                return;
            }
            // Another process before this one's STATEs: boot on what we have.
            self.boot();
        }
        if self.process.as_ref().is_some_and(|p| p.pid == pid) {
            self.take(v);
            return;
        }
        if self.is_own_join(&v) && !self.skipped.contains(&pid) {
            self.release_held();
            self.end_process(v.time);
            self.lookahead = Some(Lookahead {
                pid,
                events: vec![v],
                dcdb_state: None,
                kvstore_state: None,
            });
            return;
        }
        if self.process.is_none() && self.skipped.insert(pid) {
            self.report.notes.push(format!(
                "node {}'s pmxcfs process {pid} was running when the capture started: not shadowed",
                self.opts_node
            ));
        }
    }

    /// Start our core for the held-back process.
    fn boot(&mut self) {
        let Some(la) = self.lookahead.take() else {
            return;
        };
        let me = self.own(la.pid);
        let first = la.events.first().map_or(0.0, |e| e.time);
        let conf = self.conf.clone();
        let conf_text = String::from_utf8_lossy(&conf).into_owned();
        let nodes: Vec<ConfNode> = parse_nodes(&conf_text);
        let nodelist = nodes
            .iter()
            .map(|n| (n.nodeid, (n.name.clone(), n.ring0_addr.clone())))
            .collect();
        let mut config = config_from_nodelist(&nodelist, me);
        if let Some(ip) = &self.node_ip {
            config.node_ip = ip.clone();
        }
        let name = config.nodename.clone();
        // The second the process started: a new database's index carries
        // it as its mtime; the cluster log's first entry carries it too.
        let index_mtime = la
            .dcdb_state
            .as_ref()
            .and_then(|s| MemdbIndex::decode(s).ok())
            .map(|i| i.mtime);
        let clog_start = la.kvstore_state.as_deref().and_then(|m| {
            let msg = pmxcfs_wire::kvstore::Message::decode(m).ok()?;
            let KvPayload::State(buffer) = msg.payload else {
                return None;
            };
            let entries = buffer.entries().ok()?;
            entries
                .iter()
                .map(|r| &r.entry)
                .find(|e| {
                    e.pid == la.pid && e.node_str() == name && e.msg_str() == "starting cluster log"
                })
                .map(|e| e.time)
        });
        let mut rows = self.next_rows.take();
        let mut db_text = match (&rows, self.carried) {
            (None, _) => "a new database".to_string(),
            (Some(_), false) => "the given snapshot".to_string(),
            (Some(_), true) => "the database its previous process left".to_string(),
        };
        // A restart within the capture may have started on a new database
        // (config.db deleted): its first STATE says so.
        if self.carried && rows.is_some() {
            if let (Some(state), Some(mtime)) = (&la.dcdb_state, index_mtime) {
                if &fresh_index(&conf, mtime) == state {
                    rows = None;
                    db_text = "a new database (its first state is a fresh one's)".into();
                }
            }
        }
        let start_secs = match (&rows, index_mtime, clog_start) {
            (None, Some(m), _) => m,
            (_, _, Some(c)) => c,
            _ => first.floor() as u32,
        };
        self.report.notes.push(format!(
            "process {}'s start at second {start_secs}: {}",
            la.pid,
            match (&rows, index_mtime, clog_start) {
                (None, Some(_), _) => "the mtime of its new database's index",
                (_, _, Some(_)) => "its cluster log's \"starting cluster log\" entry",
                _ => "its first event in the capture",
            }
        ));
        let start = if (start_secs as f64) <= first && first < start_secs as f64 + 1.0 {
            time_of(first)
        } else {
            Time::from_secs(start_secs)
        };
        let driven = match Driven::boot(config, me, rows, Some(&conf), node_names(&nodelist), start)
        {
            Ok(d) => d,
            Err(e) => {
                self.report
                    .problems
                    .push(format!("our core does not start on {db_text}: {e}"));
                return;
            }
        };
        self.report.processes.push((la.pid, first, db_text));
        let mode = driven.node.dcdb_mode();
        self.process = Some(Process {
            pid: la.pid,
            driven,
            mode,
            synced_peers: BTreeSet::new(),
            epoch_states: Vec::new(),
            verify: None,
            our_leave: [false; 2],
            c_left: [false; 2],
            quorate: None,
            first_state_seen: false,
        });
        // Quorum as the ring the process started in has it.
        if let Some(q) = la
            .events
            .first()
            .and_then(|e| self.ring_quorate.get(&e.ring))
        {
            let q = *q;
            self.set_quorum(q, first);
        }
        for e in la.events {
            self.take(e);
        }
    }

    /// A callback of the shadowed process, fed once the second it was
    /// handled in is known.
    fn take(&mut self, v: ViewEvent) {
        for e in self.reaction.push(v) {
            self.feed(e);
        }
    }

    fn release_held(&mut self) {
        for e in self.reaction.flush() {
            self.feed(e);
        }
    }

    fn end_process(&mut self, t: f64) {
        let Some(mut p) = self.process.take() else {
            return;
        };
        let end = time_of(t);
        for (group, bytes, decided) in p.driven.take_pending() {
            if end.0.saturating_sub(decided.0) <= IN_FLIGHT_AT_END_US {
                self.report.notes.push(format!(
                    "our core decided {} right before the end: not in the capture",
                    describe(group, &bytes)
                ));
                continue;
            }
            self.diverge(
                t,
                "-".into(),
                format!(
                    "our core sent {} which node {}'s process {} never sent",
                    describe(group, &bytes),
                    self.opts_node,
                    p.pid
                ),
                Some(decoded_json(group, &bytes)),
                None,
            );
        }
        for g in NodeGroup::ALL {
            if p.our_leave[g.index()] {
                self.diverge(
                    t,
                    "-".into(),
                    format!(
                        "our core left {} (a dfsm error) and C's node never did",
                        g.cpg_name()
                    ),
                    None,
                    None,
                );
            }
        }
        self.next_rows = Some(std::mem::take(&mut p.driven.rows).into_values().collect());
        self.carried = true;
    }

    fn diverge(
        &mut self,
        time: f64,
        ring: String,
        what: String,
        ours: Option<Value>,
        c: Option<Value>,
    ) {
        self.report.divergence_count += 1;
        if self.report.divergences.len() < KEEP_DIVERGENCES {
            self.report.divergences.push(Divergence {
                time,
                ring,
                what,
                ours,
                c,
                before: self.history.iter().cloned().collect(),
            });
        }
    }

    fn remember(&mut self, v: &ViewEvent) {
        let mut line = format!("{:.6} {} {}", v.time, v.ring, event_summary(&v.event));
        if let EventBody::Deliver { msg, .. } = &v.event.body {
            line.push_str(": ");
            line.push_str(&describe(group_of(&v.event.group), msg));
        }
        if v.synthetic {
            line.push_str(" (inferred: the node was alone)");
        }
        if self.history.len() == CONTEXT_EVENTS {
            self.history.pop_front();
        }
        self.history.push_back(line);
    }

    /// One callback of the shadowed process.
    fn feed(&mut self, v: ViewEvent) {
        let now = time_of(v.time);
        let node = self.opts_node;
        let ring = v.ring.to_string();
        {
            let desired = if v.synthetic {
                Some(QuorumRule::of(&self.current_conf()).quorate(&[node]))
            } else {
                self.ring_quorate.get(&v.ring).copied()
            };
            if let Some(q) = desired {
                self.set_quorum(q, v.time);
            }
        }
        let Some(mut p) = self.process.take() else {
            return;
        };
        p.driven.run_timers(now);
        let group = group_of(&v.event.group);
        let me = p.driven.me;
        let mut feed = true;
        let mut remembered = false;
        match &v.event.body {
            EventBody::Confchg {
                members,
                left,
                joined,
            } => {
                let g = group;
                let own_left = left.iter().any(|a| a.nodeid == node && a.pid == p.pid);
                let own_joined = joined.iter().any(|a| a.nodeid == node && a.pid == p.pid);
                if let Some(g) = g {
                    let i = g.index();
                    if own_left {
                        if p.our_leave[i] {
                            p.our_leave[i] = false;
                        } else {
                            // C left without our core leaving: a shutdown
                            // (nothing more follows) or a dfsm error (a
                            // rejoin follows).
                            p.c_left[i] = true;
                            feed = false;
                        }
                    } else if own_joined && p.driven.node.members(g).contains(&me) {
                        // Joined again without leaving: its corosync went
                        // away and came back.
                        if !self
                            .report
                            .notes
                            .iter()
                            .any(|n| n.contains("CPG connection"))
                        {
                            self.report.notes.push(format!(
                                "node {node}'s process rejoined without leaving: its CPG connection was lost (corosync restarted)"
                            ));
                        }
                        p.driven.input(now, Input::GroupLost { group: g });
                        p.driven.input(now, Input::Joined { group: g, me });
                    } else if own_joined && p.c_left[i] {
                        p.c_left[i] = false;
                        self.diverge(
                            v.time,
                            ring.clone(),
                            format!(
                                "C's node left {} and joined again (a dfsm error), our core stayed",
                                g.cpg_name()
                            ),
                            None,
                            None,
                        );
                        p.driven.input(now, Input::Joined { group: g, me });
                    }
                    if g == NodeGroup::Dcdb && !own_left {
                        let present: BTreeSet<Member> = members.iter().map(Member::from).collect();
                        p.synced_peers.retain(|m| present.contains(m));
                        p.epoch_states.clear();
                    }
                }
            }
            EventBody::Deliver {
                sender_nodeid,
                sender_pid,
                msg,
            } => {
                let from = Member {
                    nodeid: *sender_nodeid,
                    pid: *sender_pid,
                };
                if group == Some(NodeGroup::Dcdb) {
                    self.state_checks(&mut p, &v, from, msg);
                }
                if from == me && group != None {
                    let kind = Decoded::decode(group, msg)
                        .map(|d| d.kind_name())
                        .unwrap_or_else(|_| "undecodable".into());
                    let key = format!(
                        "{} {kind}",
                        if group == Some(NodeGroup::Dcdb) {
                            "dcdb"
                        } else {
                            "kvstore"
                        }
                    );
                    let result = p.driven.sent(group, msg, true);
                    self.report
                        .messages
                        .entry(key)
                        .or_default()
                        .add(result.is_ok());
                    if let Err(m) = result {
                        let ours = m.ours.as_deref().map(|o| decoded_json(group, o));
                        let mut what = format!("our core {}", m.describe());
                        if group == Some(NodeGroup::Dcdb)
                            && is_state_message(msg) == Some(MessageType::State)
                        {
                            what.push_str(&state_hint(m.ours.as_deref(), msg, p.first_state_seen));
                        }
                        self.remember(&v);
                        self.diverge(
                            v.time,
                            ring.clone(),
                            what,
                            ours,
                            Some(decoded_json(group, msg)),
                        );
                        remembered = true;
                    }
                    if group == Some(NodeGroup::Dcdb)
                        && is_state_message(msg) == Some(MessageType::State)
                    {
                        p.first_state_seen = true;
                    }
                }
            }
            _ => {}
        }
        if !remembered {
            self.remember(&v);
        }
        if feed {
            if let Some(input) = input_of(&v.event) {
                p.driven.input(now, input);
            }
        }
        if v.synthetic {
            let own_join = matches!(&v.event.body, EventBody::Confchg { joined, .. }
                if joined.iter().any(|a| a.nodeid == node));
            if own_join {
                if !self.private_join_noted {
                    self.private_join_noted = true;
                    self.report.notes.push(format!(
                        "node {node}'s pmxcfs joined its groups while its corosync was alone, right after it started (shown at {}): that one-node ring never reaches the wire, so those callbacks are inferred",
                        utc(v.time)
                    ));
                }
            } else if self.alone_since.is_none() {
                self.alone_since = Some(v.time);
                self.report.notes.push(format!(
                    "node {node} was cut off from the others for a while (shown at {}): a one-node ring never reaches the wire, so its callbacks then are inferred, and local requests it served alone are not in the capture",
                    utc(v.time)
                ));
            }
            // The node was alone: what it sent then was delivered to it
            // alone, off the wire.
            let n = p.driven.deliver_own_pending(now);
            if n > 0 {
                self.private_deliveries += n as u64;
            }
        }
        self.process = Some(p);
        self.after(v.time);
    }

    /// After each input: leaves our core decided, and the end of a sync.
    fn after(&mut self, time: f64) {
        let Some(p) = &mut self.process else { return };
        for g in std::mem::take(&mut p.driven.left) {
            p.our_leave[g.index()] = true;
        }
        let mode = p.driven.node.dcdb_mode();
        let became_synced = mode == Mode::Synced && p.mode != Mode::Synced;
        p.mode = mode;
        if !became_synced || p.epoch_states.is_empty() {
            return;
        }
        let me = p.driven.me;
        let ours = p.driven.node.memdb().index().to_bytes();
        // The members whose database now is ours: those whose STATE was
        // ours; the others once the leader's UPDATE_COMPLETE came.
        p.synced_peers = p
            .epoch_states
            .iter()
            .filter(|(m, s)| *m != me && *s == ours)
            .map(|(m, _)| *m)
            .collect();
        let versions: Vec<(Member, u64, &Vec<u8>)> = p
            .epoch_states
            .iter()
            .filter_map(|(m, s)| MemdbIndex::decode(s).ok().map(|i| (*m, i.version, s)))
            .collect();
        let Some(top) = versions.iter().map(|v| v.1).max() else {
            return;
        };
        let leaders: Vec<&(Member, u64, &Vec<u8>)> =
            versions.iter().filter(|v| v.1 == top).collect();
        if leaders.iter().any(|l| l.0 == me) {
            // We were a leader: nothing came from another node to compare.
            return;
        }
        let our_version = MemdbIndex::decode(&ours).map(|i| i.version).unwrap_or(0);
        if our_version != top {
            // Writes queued during the sync were applied as it ended.
            return;
        }
        let ok = leaders.iter().any(|l| *l.2 == ours);
        let detail = if ok {
            String::new()
        } else {
            index_difference(&ours, leaders[0].2)
        };
        let leader = leaders[0].0;
        self.report
            .states
            .entry("database after a sync".into())
            .or_default()
            .add(ok);
        if !ok {
            self.diverge(
                time,
                "-".into(),
                format!(
                    "after the sync our database is not that of the leader {}/{}: {detail}",
                    leader.nodeid, leader.pid
                ),
                None,
                None,
            );
        }
    }

    /// STATEs and VERIFYs of the cluster against our database.
    fn state_checks(&mut self, p: &mut Process, v: &ViewEvent, from: Member, msg: &[u8]) {
        let Ok((payload, framing)) = Framing::parse(msg) else {
            return;
        };
        let me = p.driven.me;
        match framing.header.msg_type {
            MessageType::State => {
                p.epoch_states.push((from, payload.to_vec()));
                if from != me && p.synced_peers.contains(&from) {
                    let ours = p.driven.node.memdb().index().to_bytes();
                    self.judge(v, msg, "STATE of a node in sync with ours", ours == payload, || {
                        format!(
                            "the STATE of {}/{} (in sync with node {} since the last sync) is not our database: {}",
                            from.nodeid,
                            from.pid,
                            me.nodeid,
                            index_difference(&ours, payload)
                        )
                    });
                }
            }
            MessageType::UpdateComplete => {
                // The leader's updates are in: every member's database is
                // the leader's, which is ours once we are synced.
                let members = p.driven.node.members(NodeGroup::Dcdb);
                if p.driven.node.dcdb_mode() == Mode::Synced {
                    p.synced_peers = members.into_iter().filter(|m| *m != me).collect();
                }
            }
            MessageType::VerifyRequest if p.driven.node.dcdb_mode() == Mode::Synced => {
                if let Ok(DcdbPayload::VerifyRequest(id)) =
                    DcdbMessage::decode(msg).map(|m| m.payload)
                {
                    p.verify = Some((id, p.driven.node.memdb().checksum()));
                }
            }
            MessageType::Verify if from != me => {
                let Ok(DcdbPayload::Verify(verify)) = DcdbMessage::decode(msg).map(|m| m.payload)
                else {
                    return;
                };
                if let Some((vid, csum)) = p.verify {
                    if vid == verify.id {
                        self.judge(v, msg, "VERIFY checksum", csum == verify.csum, || {
                            format!(
                                "the checksum {}/{} verifies with is not our database's",
                                from.nodeid, from.pid
                            )
                        });
                    }
                }
            }
            _ => {}
        }
    }

    /// One judged STATE or VERIFY, counted under `kind`; a mismatch is a
    /// divergence, said by `what`, with the message decoded.
    fn judge(
        &mut self,
        v: &ViewEvent,
        msg: &[u8],
        kind: &str,
        ok: bool,
        what: impl FnOnce() -> String,
    ) {
        self.report.states.entry(kind.into()).or_default().add(ok);
        if !ok {
            self.remember(v);
            self.diverge(
                v.time,
                v.ring.to_string(),
                what(),
                None,
                Some(decoded_json(Some(NodeGroup::Dcdb), msg)),
            );
        }
    }

    /// The end of the capture.
    pub fn finish(mut self, summary: &StreamSummary) -> Report {
        if self.lookahead.is_some() {
            self.boot();
        }
        self.release_held();
        if self.reaction.moved > 0 {
            self.report.notes.push(format!(
                "{} callbacks were taken as handled in the second after the capture shows them: the message the node sent in reaction carries that second",
                self.reaction.moved
            ));
        }
        let t = summary.last_time.unwrap_or(0.0);
        self.end_process(t);
        let r = &summary.read;
        let o = &summary.order;
        self.report.first_time = summary.first_time;
        self.report.last_time = summary.last_time;
        for (k, v) in [
            ("frames", r.frames),
            ("datagrams", o.datagrams),
            ("authenticated", o.authenticated),
            ("failed_auth", o.failed_auth),
            ("cpg_messages", self.cpg_messages),
            ("not_delivered", o.not_delivered),
            ("totempg_orphans", summary.totempg_orphans),
        ] {
            self.report.capture.insert(k.into(), v);
        }
        if r.truncated {
            self.report.problems.push(
                "the capture file ends inside a packet record: it was cut short, and covers only what comes before the cut"
                    .into(),
            );
        }
        if self.private_deliveries > 0 {
            self.report.notes.push(format!(
                "while node {} was alone, the {} messages our core sent were delivered back to it unchecked, as corosync does",
                self.opts_node, self.private_deliveries
            ));
        }
        if summary.totempg_unfinished > 0 {
            self.report.notes.push(format!(
                "{} CPG messages were still being assembled when the capture ended",
                summary.totempg_unfinished
            ));
        }
        if self.report.processes.is_empty() {
            self.report.problems.push(format!(
                "the capture does not hold the start of node {}'s pmxcfs (its join of pve_dcdb_v1): start tcpdump before starting pve-cluster",
                self.opts_node
            ));
        }
        if let Some(p) = &self.process {
            if p.driven.node.dcdb_mode() != Mode::Synced {
                self.report
                    .notes
                    .push("the capture ends while the node's dcdb is not synced".into());
            }
        }
        self.report
    }
}

/// Progress of a long run, for a line on stderr.
pub struct Progress {
    pub bytes_read: u64,
    pub capture_time: f64,
    pub messages_checked: u64,
    pub divergences: u64,
}

/// Reads and shadows a capture. `progress` is called every few seconds.
pub fn run(
    reader: &mut dyn std::io::Read,
    keys: Vec<Vec<u8>>,
    ports: std::ops::RangeInclusive<u16>,
    opts: Options,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Report, String> {
    let node = opts.node;
    let mut shadow = Shadow::new(opts)?;
    let read = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let mut counted = Counting {
        inner: reader,
        read: read.clone(),
    };
    let mut last_progress = std::time::Instant::now();
    let mut sink = |s: Streamed| {
        let time = match &s {
            Streamed::Emitted(Emitted::View(_, v)) => Some(v.time),
            Streamed::Emitted(Emitted::Message(m)) => Some(m.time),
            _ => None,
        };
        shadow.handle(s);
        if let Some(time) = time {
            if last_progress.elapsed().as_secs() >= 2 {
                last_progress = std::time::Instant::now();
                progress(&Progress {
                    bytes_read: read.get(),
                    capture_time: time,
                    messages_checked: sum(&shadow.report.messages).total,
                    divergences: shadow.report.divergence_count,
                });
            }
        }
    };
    let summary = crate::knet::stream(&mut counted, keys, ports, Some(vec![node]), &mut sink)
        .map_err(|e| e.to_string())?;
    Ok(shadow.finish(&summary))
}

/// A reader that counts what was read (for progress).
struct Counting<'a> {
    inner: &'a mut dyn std::io::Read,
    read: std::rc::Rc<std::cell::Cell<u64>>,
}

impl std::io::Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_rule_follows_votequorum() {
        let conf = "nodelist {\n  node {\n    name: a\n    nodeid: 1\n    quorum_votes: 1\n    ring0_addr: 10.0.0.1\n  }\n  node {\n    name: b\n    nodeid: 2\n    quorum_votes: 1\n    ring0_addr: 10.0.0.2\n  }\n  node {\n    name: c\n    nodeid: 3\n    quorum_votes: 1\n    ring0_addr: 10.0.0.3\n  }\n}\nquorum {\n  provider: corosync_votequorum\n}\n";
        let r = QuorumRule::of(conf);
        assert!(r.quorate(&[1, 2]));
        assert!(!r.quorate(&[2]));
        let two = "nodelist {\n  node {\n    nodeid: 1\n    ring0_addr: a\n  }\n  node {\n    nodeid: 2\n    ring0_addr: b\n  }\n}\nquorum {\n  provider: corosync_votequorum\n  two_node: 1\n}\n";
        assert!(QuorumRule::of(two).quorate(&[1]));
        let weighted = conf.replacen("quorum_votes: 1", "quorum_votes: 3", 1);
        // 5 votes, 3 needed: node 1 alone has them.
        assert!(QuorumRule::of(&weighted).quorate(&[1]));
        assert!(!QuorumRule::of(&weighted).quorate(&[2, 3]));
    }

    #[test]
    fn utc_formats_civil_time() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00.000000 UTC");
        assert_eq!(utc(1_795_243_677.25), "2026-11-21 06:47:57.250000 UTC");
    }
}
