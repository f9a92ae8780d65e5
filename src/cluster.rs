//! The corosync edge (cluster mode): CPG for `pve_dcdb_v1` and
//! `pve_kvstore_v1`, quorum, and cmap's nodelist, driven from one thread
//! that owns the handles. Callbacks only queue what corosync said; the
//! thread then feeds it to the core under the node's lock, multicasts what
//! the core decides to send, persists what it changed, and answers local
//! writes when their own message comes back (C's FUSE writes wait the same
//! way). If corosync is not there, or goes away, it retries every 5 s;
//! meanwhile the node is not quorate and /etc/pve is read-only.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rust_corosync::{cmap, cpg, quorum, CsError, DispatchFlags, NodeId, TrackFlags};

use crate::core::corosync_conf::{decide, Decision};
use crate::core::dfsm::{Member, Mode, Output};
use crate::core::memdb::Errno;
use crate::log;
use crate::node::{now, Node, NodeState};
use pmxcfs_wire::capture::{
    pcap_file_header, pcap_record, CpgAddress, Event, EventBody, EventKind,
};

/// The group names as C joins them: the NUL is part of the name.
const DCDB_GROUP: &str = "pve_dcdb_v1\0";
const KVSTORE_GROUP: &str = "pve_kvstore_v1\0";
/// C's pause between (re)initialisation attempts of a service.
const RETRY: Duration = Duration::from_secs(5);
/// dcdb's verify timer.
const VERIFY_PERIOD: u32 = 3600;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Group {
    Dcdb,
    Kvstore,
}

fn group_of(name: &str) -> Option<Group> {
    match name.trim_end_matches('\0') {
        "pve_dcdb_v1" => Some(Group::Dcdb),
        "pve_kvstore_v1" => Some(Group::Kvstore),
        _ => None,
    }
}

/// What corosync told us, queued by the callbacks.
enum Incoming {
    Confchg {
        group: Group,
        members: Vec<CpgAddress>,
        left: Vec<CpgAddress>,
        joined: Vec<CpgAddress>,
    },
    Deliver {
        group: Group,
        from: Member,
        msg: Vec<u8>,
    },
    Quorum {
        quorate: bool,
        ring_seq: u64,
        nodes: Vec<u32>,
    },
}

thread_local! {
    static INCOMING: RefCell<Vec<Incoming>> = const { RefCell::new(Vec::new()) };
}

fn on_deliver(_h: &cpg::Handle, group: String, nodeid: NodeId, pid: u32, msg: &[u8], _len: usize) {
    if let Some(group) = group_of(&group) {
        let from = Member {
            nodeid: u32::from(nodeid),
            pid,
        };
        INCOMING.with(|q| {
            q.borrow_mut().push(Incoming::Deliver {
                group,
                from,
                msg: msg.to_vec(),
            })
        });
    }
}

/// A corosync CPG address as the capture format and the core keep it
/// (also used by `cpg-probe`).
pub fn address(a: &cpg::Address) -> CpgAddress {
    CpgAddress {
        nodeid: u32::from(a.nodeid),
        pid: a.pid,
        reason: a.reason as u32,
    }
}

fn on_confchg(
    _h: &cpg::Handle,
    group: &str,
    members: Vec<cpg::Address>,
    left: Vec<cpg::Address>,
    joined: Vec<cpg::Address>,
) {
    if let Some(group) = group_of(group) {
        INCOMING.with(|q| {
            q.borrow_mut().push(Incoming::Confchg {
                group,
                members: members.iter().map(address).collect(),
                left: left.iter().map(address).collect(),
                joined: joined.iter().map(address).collect(),
            })
        });
    }
}

fn on_quorum(_h: &quorum::Handle, quorate: bool, ring: quorum::RingId, members: Vec<NodeId>) {
    INCOMING.with(|q| {
        q.borrow_mut().push(Incoming::Quorum {
            quorate,
            ring_seq: ring.seq,
            nodes: members.into_iter().map(u32::from).collect(),
        })
    });
}

/// A local request for the cluster thread.
enum Request {
    /// Send a dcdb NORMAL message; answer with its delivery result.
    Send {
        subtype: u16,
        payload: Vec<u8>,
        reply: Option<Sender<i32>>,
    },
    /// Something was queued in the kvstore machine: flush it.
    Flush,
}

/// How the rest of the daemon reaches the cluster thread.
pub struct ClusterLink {
    tx: Sender<Request>,
    wake: i32,
}

impl ClusterLink {
    fn post(&self, r: Request) -> bool {
        let ok = self.tx.send(r).is_ok();
        let one: u64 = 1;
        // SAFETY: writing 8 bytes to our eventfd.
        unsafe { libc::write(self.wake, (&one as *const u64).cast(), 8) };
        ok
    }

    /// Send a dcdb message and wait for its delivery result (a value or a
    /// negative errno); -EBUSY when the cluster side cannot deliver it.
    pub fn call(&self, subtype: u16, payload: Vec<u8>) -> i32 {
        let (tx, rx) = mpsc::channel();
        if !self.post(Request::Send {
            subtype,
            payload,
            reply: Some(tx),
        }) {
            return -libc::EBUSY;
        }
        rx.recv().unwrap_or(-libc::EBUSY)
    }

    /// Send a dcdb message without waiting (UNLOCK_REQUEST).
    pub fn cast(&self, subtype: u16, payload: Vec<u8>) {
        self.post(Request::Send {
            subtype,
            payload,
            reply: None,
        });
    }

    /// Wake the thread to send what the kvstore queued.
    pub fn flush(&self) {
        self.post(Request::Flush);
    }
}

/// Writes what this node's CPG clients see and send to a capture file
/// (`captures/FORMAT.md`), as the recorder of the C captures did.
pub struct Recorder {
    out: std::io::BufWriter<std::fs::File>,
    me: Member,
}

impl Recorder {
    pub fn create(path: &Path) -> std::io::Result<Recorder> {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        out.write_all(&pcap_file_header())?;
        out.flush()?;
        Ok(Recorder {
            out,
            me: Member {
                nodeid: 0,
                pid: std::process::id(),
            },
        })
    }

    fn record(&mut self, at: SystemTime, group: &[u8], kind: EventKind, body: EventBody) {
        use pmxcfs_wire::Codec;
        use std::io::Write;
        let event = Event::new(kind, self.me.nodeid, self.me.pid, group, body);
        let t = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let record = pcap_record(t.as_secs() as u32, t.subsec_micros(), &event.to_bytes());
        if self
            .out
            .write_all(&record)
            .and_then(|_| self.out.flush())
            .is_err()
        {
            log::error("cannot write the CPG recording");
        }
    }
}

fn group_name(g: Group) -> &'static [u8] {
    match g {
        Group::Dcdb => DCDB_GROUP.as_bytes(),
        Group::Kvstore => KVSTORE_GROUP.as_bytes(),
    }
}

/// cs_error_t of a failed call, for the recording.
fn cs_error_code(e: &CsError) -> i32 {
    match e {
        CsError::CsErrTryAgain => 6,
        CsError::CsErrLibrary => 2,
        CsError::CsErrBadHandle => 9,
        _ => 0,
    }
}

struct Handles {
    dcdb: cpg::Handle,
    kv: cpg::Handle,
    quorum: quorum::Handle,
}

struct Driver {
    node: Arc<Node>,
    handles: Option<Handles>,
    last_attempt: Option<Instant>,
    waiters: BTreeMap<u64, Sender<i32>>,
    last_verify: u32,
    rejoin: Vec<Group>,
    /// corosync.conf syncs asked for (with reload allowed or not).
    conf_syncs: Vec<bool>,
    /// The host's corosync.conf.
    host_conf: PathBuf,
    /// Records our CPG events in the capture format, if asked to.
    recorder: Option<Recorder>,
    /// The instant of the input being processed: the core's clock, and the
    /// timestamp of its records (so a recording replays exactly).
    input_time: SystemTime,
}

fn read_cmap(s: &mut NodeState) -> Result<(), CsError> {
    let h = cmap::initialize(cmap::Map::Icmap)?;
    let text = |d: cmap::Data| match d {
        cmap::Data::String(s) => Some(s),
        _ => None,
    };
    let number = |d: &cmap::Data| match d {
        cmap::Data::UInt32(v) => Some(*v as u64),
        cmap::Data::UInt64(v) => Some(*v),
        cmap::Data::Int32(v) => Some(*v as u64),
        _ => None,
    };
    let name = cmap::get(&h, "totem.cluster_name")
        .ok()
        .and_then(text)
        .unwrap_or_default();
    let version = cmap::get(&h, "totem.config_version")
        .ok()
        .and_then(|d| number(&d))
        .unwrap_or(0);
    let mut entries: BTreeMap<String, (Option<u32>, Option<String>, Option<String>)> =
        BTreeMap::new();
    for item in cmap::CmapIterStart::new(&h, "nodelist.node.")? {
        let key = item.key_name().to_string();
        log::debug(&format!("cmap {key} = {}", item.data()));
        let mut parts = key.splitn(4, '.');
        let (Some(_), Some(_), Some(n), Some(field)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let e = entries.entry(n.to_string()).or_default();
        match (field, item.data()) {
            ("nodeid", d) => e.0 = number(d).map(|v| v as u32),
            ("name", cmap::Data::String(v)) => e.1 = Some(v.clone()),
            ("ring0_addr", cmap::Data::String(v)) => e.2 = Some(v.clone()),
            _ => {}
        }
    }
    let kv = s.kv_mut();
    kv.cluster_name = name;
    kv.config_version = version as u32;
    kv.nodes = entries
        .into_values()
        .filter_map(|(id, name, addr)| Some((id.filter(|i| *i != 0)?, name.or(addr)?)))
        .collect();
    kv.status.clinfo_version = kv.status.clinfo_version.wrapping_add(1);
    let _ = cmap::finalize(&h);
    Ok(())
}

impl Driver {
    fn connect(&mut self) -> Result<(), CsError> {
        let model = cpg::ModelData::ModelV1(cpg::Model1Data {
            flags: cpg::Model1Flags::None,
            deliver_fn: Some(on_deliver),
            confchg_fn: Some(on_confchg),
            totem_confchg_fn: None,
        });
        let qmodel = quorum::ModelData::ModelV1(quorum::Model1Data {
            flags: quorum::Model1Flags::None,
            quorum_notification_fn: Some(on_quorum),
            nodelist_notification_fn: None,
        });
        let (qh, _) = quorum::initialize(&qmodel, 0)?;
        quorum::trackstart(&qh, TrackFlags::Changes)?;
        let quorate = quorum::getquorate(&qh).unwrap_or(false);
        // Recorded and applied like a notification, before any confchg.
        INCOMING.with(|q| {
            q.borrow_mut().push(Incoming::Quorum {
                quorate,
                ring_seq: 0,
                nodes: Vec::new(),
            })
        });
        let dcdb = cpg::initialize(&model, 0)?;
        let kv = cpg::initialize(&model, 0)?;
        let nodeid = u32::from(cpg::local_get(&dcdb)?);
        {
            let mut s = self.node.lock();
            match read_cmap(&mut s) {
                Ok(()) => log::debug(&format!(
                    "cmap: {} nodes in the nodelist",
                    s.kv().nodes.len()
                )),
                Err(e) => log::error(&format!("cannot read corosync's nodelist (cmap): {e}")),
            }
            let me = Member {
                nodeid,
                pid: std::process::id(),
            };
            s.dcdb.set_me(me);
            s.kvstore.set_me(me);
            if let Some(rec) = self.recorder.as_mut() {
                rec.me = me;
            }
            s.dcdb.initialize();
            s.kvstore.initialize();
            set_quorate(&mut s, quorate);
        }
        retry(|| cpg::join(&dcdb, DCDB_GROUP))?;
        retry(|| cpg::join(&kv, KVSTORE_GROUP))?;
        log::notice(&format!(
            "joined the cluster as node {nodeid} (quorate: {quorate})"
        ));
        self.handles = Some(Handles {
            dcdb,
            kv,
            quorum: qh,
        });
        Ok(())
    }

    fn disconnect(&mut self, why: &str) {
        if let Some(h) = self.handles.take() {
            log::notice(&format!("lost corosync ({why}); retrying every 5 s"));
            let _ = cpg::finalize(&h.dcdb);
            let _ = cpg::finalize(&h.kv);
            let _ = quorum::finalize(&h.quorum);
        }
        let mut s = self.node.lock();
        set_quorate(&mut s, false);
        for (_, w) in std::mem::take(&mut self.waiters) {
            let _ = w.send(-libc::EBUSY);
        }
    }

    fn record_incoming(&mut self, e: &Incoming) {
        let at = self.input_time;
        let Some(rec) = self.recorder.as_mut() else {
            return;
        };
        match e {
            Incoming::Quorum {
                quorate,
                ring_seq,
                nodes,
            } => rec.record(
                at,
                b"",
                EventKind::Quorum,
                EventBody::Quorum {
                    quorate: u32::from(*quorate),
                    ring_seq: *ring_seq,
                    nodes: nodes.clone(),
                },
            ),
            Incoming::Confchg {
                group,
                members,
                left,
                joined,
            } => rec.record(
                at,
                group_name(*group),
                EventKind::Confchg,
                EventBody::Confchg {
                    members: members.clone(),
                    left: left.clone(),
                    joined: joined.clone(),
                },
            ),
            Incoming::Deliver { group, from, msg } => rec.record(
                at,
                group_name(*group),
                EventKind::Deliver,
                EventBody::Deliver {
                    sender_nodeid: from.nodeid,
                    sender_pid: from.pid,
                    msg: msg.clone(),
                },
            ),
        }
    }

    /// Take the time of the input about to be processed.
    fn stamp(&mut self) -> u32 {
        self.input_time = SystemTime::now();
        self.input_time
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0)
    }

    /// Feed what corosync said to the core.
    fn process_incoming(&mut self) {
        let events = INCOMING.with(|q| std::mem::take(&mut *q.borrow_mut()));
        if events.is_empty() {
            return;
        }
        let node = self.node.clone();
        let mut s = node.lock();
        for e in events {
            let now = self.stamp();
            self.record_incoming(&e);
            match e {
                Incoming::Quorum { quorate, .. } => set_quorate(&mut s, quorate),
                Incoming::Confchg {
                    group,
                    members,
                    joined,
                    ..
                } => {
                    let members: Vec<Member> = members.iter().map(Member::from).collect();
                    match group {
                        Group::Dcdb => s.dcdb.confchg(&members, !joined.is_empty(), now),
                        Group::Kvstore => s.kvstore.confchg(&members, !joined.is_empty(), now),
                    }
                }
                Incoming::Deliver { group, from, msg } => match group {
                    Group::Dcdb => s.dcdb.deliver(from, &msg, now),
                    Group::Kvstore => s.kvstore.deliver(from, &msg, now),
                },
            }
            self.flush_locked(&mut s);
        }
    }

    fn handle_request(&mut self, r: Request) {
        let now = self.stamp();
        let node = self.node.clone();
        let mut s = node.lock();
        if let Request::Send {
            subtype,
            payload,
            reply,
        } = r
        {
            if self.handles.is_none() || !s.quorate() {
                if let Some(reply) = reply {
                    let _ = reply.send(-libc::EACCES);
                }
                return;
            }
            match s.dcdb.send_normal(subtype, &payload, now) {
                Some(count) => {
                    if let Some(reply) = reply {
                        self.waiters.insert(count, reply);
                    }
                }
                None => {
                    if let Some(reply) = reply {
                        let _ = reply.send(-libc::EBUSY);
                    }
                }
            }
        }
        self.flush_locked(&mut s);
    }

    /// Send what the machines decided, answer delivered local writes,
    /// persist, and leave a group a machine gave up on.
    fn flush_locked(&mut self, s: &mut NodeState) {
        for (group, outputs) in [
            (Group::Dcdb, s.dcdb.take_outputs()),
            (Group::Kvstore, s.kvstore.take_outputs()),
        ] {
            for out in outputs {
                match out {
                    Output::Send(bytes) => {
                        if let Some(h) = &self.handles {
                            let handle = if group == Group::Dcdb { &h.dcdb } else { &h.kv };
                            let recorder = &mut self.recorder;
                            let at = self.input_time;
                            let sent = retry(|| {
                                let r =
                                    cpg::mcast_joined(handle, cpg::Guarantee::TypeAgreed, &bytes);
                                if let Some(rec) = recorder.as_mut() {
                                    let result = match &r {
                                        Ok(()) => 1,
                                        Err(e) => cs_error_code(e),
                                    };
                                    rec.record(
                                        at,
                                        group_name(group),
                                        EventKind::Mcast,
                                        EventBody::Mcast {
                                            guarantee: 2,
                                            result,
                                            msg: bytes.clone(),
                                        },
                                    );
                                }
                                r
                            });
                            if let Err(e) = sent {
                                log::error(&format!("cpg send failed: {e}"));
                            }
                        }
                    }
                    Output::Delivered { count, result } => {
                        if group == Group::Dcdb {
                            if let Some(w) = self.waiters.remove(&count) {
                                let _ = w.send(result);
                            }
                        }
                    }
                    Output::ModeChanged(mode) => {
                        log::debug(&format!("{group:?}: mode {mode:?}"));
                        if mode == Mode::Leave {
                            self.rejoin.push(group);
                        }
                    }
                    Output::Log(line) => log::notice(&format!("{group:?}: {line}")),
                }
            }
        }
        let _ = s.persist();
        for effect in s.dcdb.app.take_effects() {
            let crate::core::dcdb::Effect::SyncCorosyncConf { reload } = effect;
            self.conf_syncs.push(reload);
        }
        // RRD samples of other nodes: written like ours.
        let samples = std::mem::take(&mut s.kv_mut().rrd_samples);
        for (key, value) in samples {
            self.node.write_rrd(&key, &value);
        }
    }

    /// A group we had to leave: leave it, and join again (with a fresh
    /// machine) on the next tick, as C's service restart does.
    fn rejoin_groups(&mut self) {
        let groups = std::mem::take(&mut self.rejoin);
        let Some(h) = &self.handles else { return };
        for g in groups {
            let (handle, name) = match g {
                Group::Dcdb => (&h.dcdb, DCDB_GROUP),
                Group::Kvstore => (&h.kv, KVSTORE_GROUP),
            };
            let _ = cpg::leave(handle, name);
            {
                let mut s = self.node.lock();
                match g {
                    Group::Dcdb => s.dcdb.initialize(),
                    Group::Kvstore => s.kvstore.initialize(),
                }
            }
            let _ = retry(|| cpg::join(handle, name));
        }
    }

    /// Bring the host's corosync.conf up to date (outside the node lock: it
    /// writes a file, may sleep 1 s and run corosync-cfgtool).
    fn sync_corosync_conf(&mut self) {
        let requests = std::mem::take(&mut self.conf_syncs);
        if requests.is_empty() {
            return;
        }
        let reload = requests.iter().any(|r| *r);
        let new = {
            let s = self.node.lock();
            s.memdb()
                .lookup(b"corosync.conf")
                .filter(|e| !e.is_dir())
                .map(|e| e.data().to_vec())
        };
        let old = std::fs::read(&self.host_conf).ok();
        match decide(new.as_deref(), old.as_deref(), reload) {
            Decision::Keep(why) => log::debug(&format!("corosync.conf: {why}")),
            Decision::Write { reload } => {
                if let Err(e) =
                    write_atomically(&self.host_conf, new.as_deref().unwrap_or_default())
                {
                    log::error(&format!("cannot update {}: {e}", self.host_conf.display()));
                    return;
                }
                log::notice(&format!(
                    "wrote new corosync config '{}'",
                    self.host_conf.display()
                ));
                if reload {
                    std::thread::sleep(Duration::from_secs(1));
                    match std::process::Command::new("corosync-cfgtool")
                        .arg("-R")
                        .output()
                    {
                        Ok(o) if o.status.success() => {
                            log::notice("corosync configuration reloaded")
                        }
                        Ok(o) => log::error(&format!("corosync-cfgtool -R failed: {}", o.status)),
                        Err(e) => log::error(&format!("cannot run corosync-cfgtool: {e}")),
                    }
                }
            }
        }
    }

    fn tick(&mut self) {
        let now = self.stamp();
        if now.saturating_sub(self.last_verify) >= VERIFY_PERIOD {
            self.last_verify = now;
            let node = self.node.clone();
            let mut s = node.lock();
            s.dcdb.verify_request(now);
            self.flush_locked(&mut s);
        }
    }

    fn run(mut self, rx: Receiver<Request>, wake: i32) {
        loop {
            if self.handles.is_none() && self.last_attempt.is_none_or(|t| t.elapsed() >= RETRY) {
                self.last_attempt = Some(Instant::now());
                if let Err(e) = self.connect() {
                    log::debug(&format!("corosync not available: {e}"));
                    self.disconnect("initialisation failed");
                }
            }
            let mut fds = vec![libc::pollfd {
                fd: wake,
                events: libc::POLLIN,
                revents: 0,
            }];
            if let Some(h) = &self.handles {
                for fd in [
                    cpg::fd_get(&h.dcdb),
                    cpg::fd_get(&h.kv),
                    quorum::fd_get(&h.quorum),
                ]
                .into_iter()
                .flatten()
                {
                    fds.push(libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    });
                }
            }
            // SAFETY: polling our own array of descriptors.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 1000) };
            if fds[0].revents != 0 {
                let mut buf = 0u64;
                unsafe { libc::read(wake, (&mut buf as *mut u64).cast(), 8) };
            }
            if let Some(h) = &self.handles {
                let results = [
                    cpg::dispatch(&h.dcdb, DispatchFlags::All),
                    cpg::dispatch(&h.kv, DispatchFlags::All),
                    quorum::dispatch(&h.quorum, DispatchFlags::All),
                ];
                if let Some(Err(e)) = results.into_iter().find(|r| {
                    matches!(r, Err(CsError::CsErrLibrary) | Err(CsError::CsErrBadHandle))
                }) {
                    self.process_incoming();
                    self.disconnect(&e.to_string());
                    continue;
                }
            }
            self.process_incoming();
            while let Ok(r) = rx.try_recv() {
                self.handle_request(r);
            }
            {
                let node = self.node.clone();
                let mut s = node.lock();
                self.flush_locked(&mut s);
            }
            self.rejoin_groups();
            self.sync_corosync_conf();
            self.tick();
        }
    }
}

fn set_quorate(s: &mut NodeState, quorate: bool) {
    s.dcdb.app.quorate = quorate;
    s.kv_mut().quorate = quorate;
}

/// CS_ERR_TRY_AGAIN: wait 100 ms and retry, at most 100 times (C).
fn retry(mut f: impl FnMut() -> Result<(), CsError>) -> Result<(), CsError> {
    for _ in 0..100 {
        match f() {
            Err(CsError::CsErrTryAgain) => std::thread::sleep(Duration::from_millis(100)),
            other => return other,
        }
    }
    Err(CsError::CsErrTryAgain)
}

/// Write a file as C does: a temporary file beside it (root:root, 0644),
/// then a rename over the target.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = path.with_extension(format!("conf.{}", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, path)
}

/// Start the corosync edge for `node`; `host_conf` is the host's
/// corosync.conf, synced from /etc/pve (first with reload allowed).
pub fn start(
    node: Arc<Node>,
    host_conf: &Path,
    recorder: Option<Recorder>,
) -> Result<ClusterLink, Errno> {
    // SAFETY: a plain eventfd for waking the thread.
    let wake = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if wake < 0 {
        return Err(libc::EIO);
    }
    let (tx, rx) = mpsc::channel();
    let driver = Driver {
        node,
        handles: None,
        last_attempt: None,
        waiters: BTreeMap::new(),
        last_verify: now(),
        rejoin: Vec::new(),
        conf_syncs: vec![true],
        host_conf: host_conf.to_path_buf(),
        recorder,
        input_time: SystemTime::now(),
    };
    std::thread::Builder::new()
        .name("corosync".into())
        .spawn(move || driver.run(rx, wake))
        .map_err(|_| libc::EIO)?;
    Ok(ClusterLink { tx, wake })
}
