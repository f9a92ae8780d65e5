//! Driving our node core with a C node's inputs and judging its sends:
//! what `check` (over our recorder's captures) and `shadow` (over packet
//! captures) share.
//!
//! A [`Driven`] node is the core the daemon runs (`pmxcfs::core::node`),
//! its database rows kept in memory as the SQLite edge would keep them,
//! and, per group, the messages the core decided to send that C has not
//! been seen sending yet. A message C sent is judged with [`Driven::sent`]:
//! it must be the core's next one in that group, or, when the core decided
//! nothing (or, with `requests_any_time`, something else), it came from a
//! local request (a FUSE operation, an IPC call), which is decoded from the
//! message and handed to the core as that request.

use std::collections::{BTreeMap, HashMap, VecDeque};

use pmxcfs::core::dfsm::Member;
use pmxcfs::core::engine::{self, Port, SendFailed};
use pmxcfs::core::memdb::{Memdb, Row};
use pmxcfs::core::node::{
    BootError, ClusterInfo, Group as NodeGroup, Input, Node, NodeConfig, Reply, Request, RequestId,
    Time,
};
use pmxcfs_wire::dfsm::{Framing, MessageType};
use pmxcfs_wire::Codec;

use crate::capture::{Event, EventBody};
use crate::describe::{group_of, Decoded, Group};

/// A short description of a message for reports.
pub fn describe(group: Group, bytes: &[u8]) -> String {
    match Decoded::decode(group, bytes) {
        Ok(d) => d.summary(),
        Err(e) => format!("undecodable ({e})"),
    }
}

pub fn is_update(bytes: &[u8]) -> bool {
    matches!(Framing::parse(bytes), Ok((_, f)) if f.header.msg_type == MessageType::Update)
}

/// A message C sent that is not the one our core decided.
#[derive(Clone, Debug)]
pub struct SendMismatch {
    pub group: Group,
    /// What our core had decided to send next, if anything.
    pub ours: Option<Vec<u8>>,
    pub c: Vec<u8>,
    /// The local request the message was taken for, and what the core
    /// answered it, when it was handed one.
    pub request: Option<String>,
}

impl SendMismatch {
    pub fn describe(&self) -> String {
        let c = describe(self.group, &self.c);
        let mut s = match &self.ours {
            Some(o) => format!("sent {} where C sent {}", describe(self.group, o), c),
            None => format!("sent nothing where C sent {c}"),
        };
        if let Some(r) = &self.request {
            s.push_str(&format!(" (taken for the local request {r})"));
        }
        s
    }
}

/// The input a CPG callback or quorum notification of a capture is to the
/// core (`None` for the node's own sends and foreign groups).
pub fn input_of(event: &Event) -> Option<Input> {
    let group = group_of(&event.group);
    match &event.body {
        EventBody::Quorum { quorate, .. } => Some(Input::Quorum {
            quorate: *quorate != 0,
        }),
        EventBody::Confchg {
            members, joined, ..
        } => Some(Input::Confchg {
            group: group?,
            members: members.iter().map(Member::from).collect(),
            joined_any: !joined.is_empty(),
        }),
        EventBody::Deliver {
            sender_nodeid,
            sender_pid,
            msg,
        } => Some(Input::Deliver {
            group: group?,
            from: Member {
                nodeid: *sender_nodeid,
                pid: *sender_pid,
            },
            msg: msg.clone(),
        }),
        _ => None,
    }
}

/// A message the core decided to send.
struct Pending {
    bytes: Vec<u8>,
    /// When the core decided it.
    decided: Time,
    /// Made for a local request (not decided by the protocol).
    from_request: bool,
}

/// Where `msg` is among the messages the core decided: its next one, or
/// within a run of UPDATEs, any of the run.
fn position(group: Group, queue: &mut VecDeque<Pending>, msg: &[u8]) -> Option<usize> {
    if group == Some(NodeGroup::Kvstore) {
        if let Some(front) = queue.front_mut() {
            adopt_uninitialised(&mut front.bytes, msg);
        }
    }
    if is_update(msg) {
        let run = queue.iter().take_while(|p| is_update(&p.bytes)).count();
        queue.iter().take(run).position(|p| p.bytes == msg)
    } else {
        (queue.front().map(|p| &p.bytes[..]) == Some(msg)).then_some(0)
    }
}

/// Our core, run with a C node's identity.
pub struct Driven {
    pub me: Member,
    pub node: Node,
    /// The database as the SQLite edge would hold it: rows by inode.
    pub rows: BTreeMap<u64, Row>,
    pending: HashMap<Group, VecDeque<Pending>>,
    next_request: u64,
    /// Groups the core left (a dfsm error) since the caller last looked.
    pub left: Vec<NodeGroup>,
    /// The answer to the local request being handed over, if it came at
    /// once (a refusal).
    replies: HashMap<u64, Reply>,
}

/// The replayed node's I/O: what it sends is queued to be judged against
/// C's sends; a join is done at once (as the daemon's cpg_join).
struct ReplayPort<'a> {
    me: Member,
    now: Time,
    pending: &'a mut HashMap<Group, VecDeque<Pending>>,
    left: &'a mut Vec<NodeGroup>,
    replies: &'a mut HashMap<u64, Reply>,
}

impl Port for ReplayPort<'_> {
    fn send(&mut self, group: NodeGroup, bytes: Vec<u8>) -> Result<(), SendFailed> {
        self.pending
            .entry(Some(group))
            .or_default()
            .push_back(Pending {
                bytes,
                decided: self.now,
                from_request: false,
            });
        Ok(())
    }

    fn reply(&mut self, id: RequestId, reply: Reply) {
        self.replies.insert(id, reply);
    }

    fn join(&mut self, _group: NodeGroup) -> Option<Member> {
        Some(self.me)
    }

    fn leave(&mut self, group: NodeGroup) {
        self.left.push(group);
    }
}

impl Driven {
    /// Boot the core on `rows` (`None`: a new database, which imports
    /// `conf`) at `start` as `me`; it joins both groups, and is told the
    /// nodes of the cluster, as the daemon is at start.
    pub fn boot(
        config: NodeConfig,
        me: Member,
        rows: Option<Vec<Row>>,
        conf: Option<&[u8]>,
        nodes: BTreeMap<u32, String>,
        start: Time,
    ) -> Result<Driven, BootError> {
        let carried: BTreeMap<u64, Row> = rows
            .iter()
            .flatten()
            .map(|r| (r.inode, r.clone()))
            .collect();
        let node = Node::boot(config, rows, conf, start)?;
        let mut d = Driven {
            me,
            node,
            rows: carried,
            pending: HashMap::new(),
            next_request: 1,
            left: Vec::new(),
            replies: HashMap::new(),
        };
        d.input(start, Input::Start);
        d.input(
            start,
            Input::ClusterInfo(ClusterInfo {
                name: String::new(),
                config_version: 0,
                nodes,
            }),
        );
        Ok(d)
    }

    /// Feed the core an input through the engine: its changes go into the
    /// rows, its sends into the queues C's messages are judged against.
    pub fn input(&mut self, now: Time, input: Input) {
        let Driven {
            me,
            node,
            rows,
            pending,
            left,
            replies,
            ..
        } = self;
        let mut port = ReplayPort {
            me: *me,
            now,
            pending,
            left,
            replies,
        };
        engine::run(now, input, &mut port, &mut |now, input| {
            node.step(now, input, rows)
        });
    }

    /// Run the timers due by `now`, at `now`: the input's time. C checks
    /// its timers on a 1-second tick whose phase no capture shows, and
    /// stamps what they send with the tick's second; the next input after
    /// a deadline (at the latest, the timer's own message) is the best
    /// clock a replay has.
    pub fn run_timers(&mut self, now: Time) {
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.input(now, Input::Timers);
        }
    }

    /// Whether the core has decided messages C has not been seen sending.
    pub fn has_pending(&self, group: Group) -> bool {
        self.pending.get(&group).is_some_and(|q| !q.is_empty())
    }

    /// Judge a message C sent in `group`. Within a run of UPDATEs the
    /// order is C's (a hash table's iteration order). With
    /// `requests_any_time`, a local request's message may come before
    /// messages the core decided earlier: a packet capture shows a
    /// message only when it is delivered, not when C sent it.
    pub fn sent(
        &mut self,
        group: Group,
        msg: &[u8],
        requests_any_time: bool,
    ) -> Result<(), SendMismatch> {
        let mut request = None;
        if !self.has_pending(group) {
            request = self.local_request(group, msg);
        }
        let queue = self.pending.entry(group).or_default();
        if let Some(i) = position(group, queue, msg) {
            queue.remove(i);
            return Ok(());
        }
        if requests_any_time && request.is_none() {
            // One of an earlier request's messages (an unlock's MTIME)...
            if let Some(i) = queue.iter().position(|p| p.from_request && p.bytes == msg) {
                queue.remove(i);
                return Ok(());
            }
            // ... or a new request's.
            let before = queue.len();
            request = self.local_request(group, msg);
            let queue = self.pending.entry(group).or_default();
            for p in queue.iter_mut().skip(before) {
                if group == Some(NodeGroup::Kvstore) {
                    adopt_uninitialised(&mut p.bytes, msg);
                }
            }
            if let Some(i) = queue.iter().skip(before).position(|p| p.bytes == msg) {
                queue.remove(before + i);
                return Ok(());
            }
        }
        let ours = self
            .pending
            .entry(group)
            .or_default()
            .pop_front()
            .map(|p| p.bytes);
        Err(SendMismatch {
            group,
            ours,
            c: msg.to_vec(),
            request,
        })
    }

    /// A message C sent that the core did not decide to send itself came
    /// from a local request: hand the core that request, at the time in
    /// the message's header (when C read its clock for it). Describes the
    /// request, or `None` for a message only the protocol sends.
    fn local_request(&mut self, group: Group, msg: &[u8]) -> Option<String> {
        let request = request_of(group, msg)?;
        let mut text = request.describe();
        let time = Framing::parse(msg).map_or(0, |(_, f)| f.header.time);
        let id = self.next_request;
        self.next_request += 1;
        let before = self.pending.get(&group).map_or(0, VecDeque::len);
        self.input(Time::from_secs(time), Input::Request { id, request });
        if let Some(Reply::Fs(Err(errno))) = self.replies.remove(&id) {
            let e = std::io::Error::from_raw_os_error(errno);
            text.push_str(&format!(", which our core refused: {e}"));
        }
        self.replies.clear();
        if let Some(q) = self.pending.get_mut(&group) {
            for p in q.iter_mut().skip(before) {
                p.from_request = true;
            }
        }
        Some(text)
    }

    /// Deliver everything the core decided back to it, in order, as a
    /// one-node ring does (its traffic never reaches the wire); what that
    /// makes it send is delivered too. Returns how many were delivered.
    pub fn deliver_own_pending(&mut self, now: Time) -> usize {
        let mut n = 0;
        // A node alone sends a handful (SYNC_START, STATE per group); the
        // bound only guards against a core that never stops.
        while n < 10_000 {
            let next = [Some(NodeGroup::Dcdb), Some(NodeGroup::Kvstore)]
                .into_iter()
                .find_map(|g| {
                    let p = self.pending.get_mut(&g)?.pop_front()?;
                    Some((g, p.bytes))
                });
            let Some((group, msg)) = next else { break };
            let Some(g) = group else { break };
            self.input(
                now,
                Input::Deliver {
                    group: g,
                    from: self.me,
                    msg,
                },
            );
            n += 1;
        }
        n
    }

    /// What the core decided that C was not seen sending, group by
    /// group, with when it was decided.
    pub fn take_pending(&mut self) -> Vec<(Group, Vec<u8>, Time)> {
        let mut out = Vec::new();
        for group in [Some(NodeGroup::Dcdb), Some(NodeGroup::Kvstore)] {
            if let Some(q) = self.pending.remove(&group) {
                out.extend(q.into_iter().map(|p| (group, p.bytes, p.decided)));
            }
        }
        out
    }
}

/// The local request that made a node send `msg` (`None` for a message
/// only the protocol sends); the mapping is the core's.
pub fn request_of(group: Group, msg: &[u8]) -> Option<Request> {
    pmxcfs::core::requests::request_of(group?, msg)
}

/// Copy into `ours` the bytes C leaves uninitialised in a kvstore NORMAL
/// message, when both are the same kind of message of the same length;
/// nothing else is touched. C copies an UPDATE's key into a stack buffer
/// (the bytes after the key's NUL are whatever was there) and never fills
/// the 4 tail bytes of a LOG entry; our daemon sends zeros there, and C
/// never reads them.
pub fn adopt_uninitialised(ours: &mut [u8], recorded: &[u8]) {
    use pmxcfs_wire::kvstore::KEY_FIELD_LEN;
    const HEADER: usize = pmxcfs_wire::dfsm::NORMAL_HEADER_LEN;
    if ours.len() != recorded.len() || ours.len() < HEADER || ours[..4] != recorded[..4] {
        return;
    }
    let subtype = u16::from_le_bytes([ours[2], ours[3]]);
    let is_normal = u16::from_le_bytes([ours[0], ours[1]]) == 0;
    match (is_normal, subtype) {
        (true, 1) if ours.len() >= HEADER + KEY_FIELD_LEN => {
            let key = &ours[HEADER..HEADER + KEY_FIELD_LEN];
            let Some(nul) = key.iter().position(|&b| b == 0) else {
                return;
            };
            if recorded[HEADER..HEADER + nul + 1] == ours[HEADER..HEADER + nul + 1] {
                ours[HEADER + nul + 1..HEADER + KEY_FIELD_LEN]
                    .copy_from_slice(&recorded[HEADER + nul + 1..HEADER + KEY_FIELD_LEN]);
            }
        }
        (true, 3) if ours.len() >= HEADER + pmxcfs_wire::clog::ENTRY_FIXED_LEN => {
            let n = ours.len();
            ours[n - 4..].copy_from_slice(&recorded[n - 4..]);
        }
        _ => {}
    }
}

/// The node config the daemon would run with as `nodeid`, from a
/// corosync.conf's nodelist: its name, and its ring0 address as the
/// address it announces (the daemon resolves its host name, which a
/// replay cannot).
pub fn config_from_nodelist(nodelist: &BTreeMap<u32, (String, String)>, me: Member) -> NodeConfig {
    let (name, ip) = nodelist.get(&me.nodeid).cloned().unwrap_or_default();
    NodeConfig {
        nodename: name,
        node_ip: ip,
        pid: me.pid,
        ..NodeConfig::default()
    }
}

/// nodeid → (name, ring0_addr) of a corosync.conf's nodelist.
pub fn parse_nodelist(conf: &str) -> BTreeMap<u32, (String, String)> {
    parse_nodes(conf)
        .into_iter()
        .map(|n| (n.nodeid, (n.name, n.ring0_addr)))
        .collect()
}

pub use pmxcfs::core::corosync_conf::{nodes as parse_nodes, ConfNode};
pub use pmxcfs_wire::clog::unsanitize;

/// The memdb index (a dcdb STATE's payload) of a database created at
/// `start` that imported `conf`, as the daemon creates one.
pub fn fresh_index(conf: &[u8], start: u32) -> Vec<u8> {
    let (mut m, _) = Memdb::new_empty(start);
    let _ = m.create(b"corosync.conf", 0, start);
    let _ = m.write(b"corosync.conf", 0, start, conf, 0, true);
    m.index().to_bytes()
}

/// Names by nodeid, as cmap tells the daemon.
pub fn node_names(nodelist: &BTreeMap<u32, (String, String)>) -> BTreeMap<u32, String> {
    nodelist
        .iter()
        .map(|(id, (n, _))| (*id, n.clone()))
        .collect()
}
