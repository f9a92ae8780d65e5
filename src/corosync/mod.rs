//! The corosync edge and the cluster-mode driver of the node: CPG for
//! `pve_dcdb_v1` and `pve_kvstore_v1`, quorum, and cmap's nodelist.
//!
//! One thread runs a small tokio runtime (the quinn driver shape): the
//! corosync descriptors as `AsyncFd`, the node's next deadline as a timer,
//! and the changes of the FUSE and IPC threads over a channel. It feeds
//! every input to the core through the engine (`core::engine::run`), of
//! which it is the port: the core's step and commit happen under the
//! node's lock, the sends, replies and effects after it. Callbacks of the
//! corosync libraries (`ffi`) only queue what corosync said; `cmap_info`
//! reads the cluster's nodelist.
//!
//! The services connect independently, as C's do (quorum, confdb, dcdb,
//! status); one that is not connected is tried again every 5 s, with C's
//! log lines. The retry schedule is this edge's; every protocol decision
//! (what to send, when to leave or rejoin a group) is the core's.

mod cmap_info;
mod ffi;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rust_corosync::{cmap, cpg, quorum, CsError, DispatchFlags, TrackFlags};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use crate::core::corosync_conf::{config_version, decide, Decision};
use crate::core::dfsm::Member;
use crate::core::engine::{self, Batch, Port, SendFailed};
use crate::core::logline::{LogLine, Subsystem};
use crate::core::memdb::Row;
use crate::core::node::{Group, Input, Reply, RequestId, Time};
use crate::host::{DriverLink, Host, ToDriver};
use crate::log;
use crate::record::Recorder;
use cmap_info::read_cmap;
pub use ffi::address;
use ffi::{
    cs_code, cs_name, init_failure, on_cmap, on_confchg, on_deliver, on_quorum, readable, retry,
    watch, Connected, Fd, Incoming, INCOMING,
};
use pmxcfs_wire::capture::{EventBody, EventKind};

/// C's pause between (re)initialisation attempts of a service.
const RETRY: Duration = Duration::from_secs(5);
/// C's service loop looks at its services every second.
const TICK: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Service {
    Quorum,
    Confdb,
    Group(Group),
}

struct Driver {
    host: Arc<Host>,
    quorum: Option<Connected<quorum::Handle>>,
    cmap: Option<(Connected<cmap::Handle>, Vec<cmap::TrackHandle>)>,
    groups: [Option<Connected<cpg::Handle>>; 2],
    last_attempt: HashMap<Service, Instant>,
    /// When the service loop next looks at the services (every second,
    /// as C's start job).
    next_round: Instant,
    /// Services lost after being connected (C logs "start cluster
    /// connection" when it starts over).
    lost: [bool; 2],
    host_conf: PathBuf,
    recorder: Option<Recorder>,
    /// The instant of the input being processed: the core's clock and the
    /// timestamp of its records (so a recording replays exactly).
    input_time: SystemTime,
}

fn time_of(t: SystemTime) -> Time {
    Time(
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0),
    )
}

fn group_index(g: Group) -> usize {
    match g {
        Group::Dcdb => 0,
        Group::Kvstore => 1,
    }
}

enum Event {
    Ready(Service),
    Call(Option<ToDriver>),
    Timer,
}

impl Driver {
    fn stamp(&mut self) -> Time {
        self.input_time = SystemTime::now();
        time_of(self.input_time)
    }

    fn fd(&self, s: Service) -> Option<&AsyncFd<Fd>> {
        match s {
            Service::Quorum => self.quorum.as_ref().map(|c| &c.fd),
            Service::Confdb => self.cmap.as_ref().map(|(c, _)| &c.fd),
            Service::Group(g) => self.groups[group_index(g)].as_ref().map(|c| &c.fd),
        }
    }

    /// Feed one input to the core, and everything that follows from it,
    /// through the engine; this driver is its port.
    fn feed(&mut self, input: Input) {
        let now = self.stamp();
        let host = self.host.clone();
        engine::run(now, input, self, &mut |now, input| {
            host.lock().step(now, input)
        });
    }

    /// Perform the boot's batch, taken before the driver started.
    fn start(&mut self, first: Batch) {
        let now = self.stamp();
        let host = self.host.clone();
        engine::run_batch(now, first, self, &mut |now, input| {
            host.lock().step(now, input)
        });
    }

    /// Join a connected group: who we are in it, once joined.
    fn join_connected(&mut self, g: Group) -> Option<Member> {
        let c = self.groups[group_index(g)].as_ref()?;
        let me = match cpg::local_get(&c.handle) {
            Ok(id) => Member {
                nodeid: u32::from(id),
                pid: std::process::id(),
            },
            Err(e) => {
                log::crit(
                    g.subsystem(),
                    &format!("cpg_local_get failed: {}", cs_name(&e)),
                );
                return None;
            }
        };
        let (r, _) = retry(|| cpg::join(&c.handle, g.cpg_name()));
        match r {
            Ok(()) => {
                if let Some(rec) = self.recorder.as_mut() {
                    rec.me = me;
                }
                Some(me)
            }
            Err(e) => {
                log::crit(g.subsystem(), &format!("cpg_join failed: {}", cs_name(&e)));
                self.groups[group_index(g)] = None;
                None
            }
        }
    }

    /// Bring the host's corosync.conf up to date (spec §7.4); a reload
    /// waits 1 s and runs `corosync-cfgtool -R`, off this thread.
    fn write_corosync_conf(&mut self, new: Option<Vec<u8>>, reload: bool) {
        let old = std::fs::read(&self.host_conf).ok();
        match decide(new.as_deref(), old.as_deref(), reload) {
            Decision::Keep(why) => log::debug(Subsystem::Dcdb, &format!("corosync.conf: {why}")),
            Decision::Write { reload } => {
                let new = new.unwrap_or_default();
                if let Err(e) = write_atomically(&self.host_conf, &new) {
                    log::crit(
                        Subsystem::Dcdb,
                        &format!("unable to write '{}': {e}", self.host_conf.display()),
                    );
                    return;
                }
                log::notice(
                    Subsystem::Dcdb,
                    &format!(
                        "wrote new corosync config '{}' (version = {})",
                        self.host_conf.display(),
                        config_version(&new)
                    ),
                );
                if reload {
                    std::thread::spawn(|| {
                        std::thread::sleep(Duration::from_secs(1));
                        match std::process::Command::new("corosync-cfgtool")
                            .arg("-R")
                            .output()
                        {
                            Ok(o) if o.status.success() => {}
                            Ok(o) => log::crit(
                                Subsystem::Dcdb,
                                &format!("corosync-cfgtool -R failed: {}", o.status),
                            ),
                            Err(e) => log::crit(
                                Subsystem::Dcdb,
                                &format!("unable to run corosync-cfgtool: {e}"),
                            ),
                        }
                    });
                }
            }
        }
    }

    fn due(&self, s: Service) -> bool {
        self.last_attempt
            .get(&s)
            .is_none_or(|t| t.elapsed() >= RETRY)
    }

    /// (Re)connect the services that are not connected and due, in C's
    /// order: quorum, confdb, dcdb, status; once a second, so what was
    /// lost at once is reported before it is tried again.
    fn connect_due(&mut self) {
        if Instant::now() < self.next_round {
            return;
        }
        self.next_round = Instant::now() + TICK;
        if self.quorum.is_none() && self.due(Service::Quorum) {
            self.last_attempt.insert(Service::Quorum, Instant::now());
            self.connect_quorum();
        }
        if self.cmap.is_none() && self.due(Service::Confdb) {
            self.last_attempt.insert(Service::Confdb, Instant::now());
            self.connect_cmap();
        }
        for g in Group::ALL {
            let i = group_index(g);
            if self.groups[i].is_none() && self.due(Service::Group(g)) {
                self.last_attempt.insert(Service::Group(g), Instant::now());
                self.connect_group(g);
            }
        }
    }

    fn connect_quorum(&mut self) {
        let model = quorum::ModelData::ModelV1(quorum::Model1Data {
            flags: quorum::Model1Flags::None,
            quorum_notification_fn: Some(on_quorum),
            nodelist_notification_fn: None,
        });
        let connected = quorum::initialize(&model, 0)
            .map_err(|e| init_failure("quorum_initialize", &e))
            .and_then(|(h, _)| {
                // The current state comes as the first notification.
                quorum::trackstart(&h, TrackFlags::Changes)
                    .map_err(|e| format!("quorum_trackstart failed: {}", cs_name(&e)))?;
                let fd = quorum::fd_get(&h);
                watch(h, fd).map_err(|e| format!("quorum_fd_get failed: {}", cs_name(&e)))
            });
        match connected {
            Ok(c) => self.quorum = Some(c),
            Err(why) => {
                log::crit(Subsystem::Quorum, &why);
                log::crit(Subsystem::Quorum, "can't initialize service");
            }
        }
    }

    fn connect_cmap(&mut self) {
        let connected = cmap::initialize(cmap::Map::Icmap)
            .map_err(|e| init_failure("cmap_initialize", &e))
            .and_then(|h| {
                let notify = cmap::NotifyCallback {
                    notify_fn: Some(on_cmap),
                };
                let changes =
                    || cmap::TrackType::ADD | cmap::TrackType::DELETE | cmap::TrackType::MODIFY;
                let mut tracks = Vec::new();
                for (key, kind) in [
                    ("nodelist.node.", changes() | cmap::TrackType::PREFIX),
                    ("totem.config_version", changes()),
                ] {
                    tracks.push(
                        cmap::track_add(&h, key, kind, &notify, 0)
                            .map_err(|e| format!("cmap_track_add failed: {}", cs_name(&e)))?,
                    );
                }
                let info =
                    read_cmap(&h).map_err(|e| format!("cmap read failed: {}", cs_name(&e)))?;
                let fd = cmap::fd_get(&h);
                let c = watch(h, fd).map_err(|e| format!("cmap_fd_get failed: {}", cs_name(&e)))?;
                Ok((c, tracks, info))
            });
        match connected {
            Ok((c, tracks, info)) => {
                self.cmap = Some((c, tracks));
                self.feed(Input::ClusterInfo(info));
            }
            Err(why) => {
                log::crit(Subsystem::Confdb, &why);
                log::crit(Subsystem::Confdb, "can't initialize service");
            }
        }
    }

    fn connect_group(&mut self, g: Group) {
        let i = group_index(g);
        if self.lost[i] {
            log::notice(g.subsystem(), "start cluster connection");
            self.lost[i] = false;
        }
        let model = cpg::ModelData::ModelV1(cpg::Model1Data {
            flags: cpg::Model1Flags::None,
            deliver_fn: Some(on_deliver),
            confchg_fn: Some(on_confchg),
            totem_confchg_fn: None,
        });
        let connected = cpg::initialize(&model, 0)
            .map_err(|e| init_failure("cpg_initialize", &e))
            .and_then(|h| {
                let fd = cpg::fd_get(&h);
                watch(h, fd).map_err(|e| format!("cpg_fd_get failed: {}", cs_name(&e)))
            });
        match connected {
            Ok(c) => {
                self.groups[i] = Some(c);
                // Whether to join is the core's decision.
                self.feed(Input::Connected { group: g });
            }
            Err(why) => {
                log::crit(g.subsystem(), &why);
                log::crit(g.subsystem(), "can't initialize service");
            }
        }
    }

    /// A readable descriptor: dispatch what corosync has, then feed it.
    /// (CPG callbacks are taken [`DISPATCH_BATCH`] at a time.)
    fn dispatch(&mut self, s: Service) {
        let result = match s {
            Service::Quorum => self
                .quorum
                .as_ref()
                .map(|c| quorum::dispatch(&c.handle, DispatchFlags::All)),
            Service::Confdb => self
                .cmap
                .as_ref()
                .map(|(c, _)| cmap::dispatch(&c.handle, DispatchFlags::All)),
            Service::Group(g) => {
                // One callback at a time, fed to the core every
                // DISPATCH_BATCH: a sync's UPDATEs (the whole tree) come
                // faster than they are handled, and taken all at once they
                // would be held as received bytes besides the entries the
                // core makes of them.
                let mut result = None;
                'taking: loop {
                    for _ in 0..DISPATCH_BATCH {
                        let Some(c) = self.groups[group_index(g)].as_ref() else {
                            break 'taking;
                        };
                        match cpg::dispatch(&c.handle, DispatchFlags::OneNonblocking) {
                            Ok(()) => result = Some(Ok(())),
                            // Nothing more waiting.
                            Err(CsError::CsErrTryAgain) => break 'taking,
                            Err(e) => {
                                result = Some(Err(e));
                                break 'taking;
                            }
                        }
                    }
                    self.process_incoming();
                }
                result
            }
        };
        self.process_incoming();
        match result {
            Some(Err(CsError::CsErrTryAgain)) | Some(Ok(())) | None => {}
            Some(Err(e)) => self.lost_service(s, e),
        }
    }

    fn lost_service(&mut self, s: Service, e: CsError) {
        match s {
            Service::Quorum => {
                log::crit(
                    Subsystem::Quorum,
                    &format!("quorum_dispatch failed: {}", cs_name(&e)),
                );
                self.quorum = None;
                self.feed(Input::Quorum { quorate: false });
            }
            Service::Confdb => {
                log::crit(
                    Subsystem::Confdb,
                    &format!("cmap_dispatch failed: {}", cs_code(&e)),
                );
                self.cmap = None;
            }
            Service::Group(g) => {
                log::crit(
                    g.subsystem(),
                    &format!("cpg_dispatch failed: {}", cs_name(&e)),
                );
                if let Some(c) = self.groups[group_index(g)].take() {
                    if let Err(e) = cpg::leave(&c.handle, g.cpg_name()) {
                        log::crit(g.subsystem(), &format!("cpg_leave failed: {}", cs_name(&e)));
                    }
                }
                self.lost[group_index(g)] = true;
                self.feed(Input::GroupLost { group: g });
            }
        }
        // Try again at the next round of the service loop.
        self.last_attempt.remove(&s);
    }

    fn record(&mut self, e: &Incoming) {
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
                group.cpg_name().as_bytes(),
                EventKind::Confchg,
                EventBody::Confchg {
                    members: members.clone(),
                    left: left.clone(),
                    joined: joined.clone(),
                },
            ),
            Incoming::Deliver { group, from, msg } => rec.record(
                at,
                group.cpg_name().as_bytes(),
                EventKind::Deliver,
                EventBody::Deliver {
                    sender_nodeid: from.nodeid,
                    sender_pid: from.pid,
                    msg: msg.clone(),
                },
            ),
            Incoming::CmapChanged => {}
        }
    }

    fn process_incoming(&mut self) {
        let events = INCOMING.with(|q| std::mem::take(&mut *q.borrow_mut()));
        let mut cmap_changed = false;
        for e in events {
            self.stamp();
            self.record(&e);
            match e {
                Incoming::Quorum { quorate, .. } => self.feed(Input::Quorum { quorate }),
                Incoming::Confchg {
                    group,
                    members,
                    joined,
                    ..
                } => self.feed(Input::Confchg {
                    group,
                    members: members.iter().map(Member::from).collect(),
                    joined_any: !joined.is_empty(),
                }),
                Incoming::Deliver { group, from, msg } => {
                    self.feed(Input::Deliver { group, from, msg })
                }
                Incoming::CmapChanged => cmap_changed = true,
            }
        }
        if cmap_changed {
            let info = self.cmap.as_ref().map(|(c, _)| read_cmap(&c.handle));
            match info {
                Some(Ok(info)) => self.feed(Input::ClusterInfo(info)),
                Some(Err(e)) => {
                    log::crit(
                        Subsystem::Confdb,
                        &format!("cmap read failed: {}", cs_name(&e)),
                    );
                    self.cmap = None;
                }
                None => {}
            }
        }
    }

    /// When the loop must wake up at the latest.
    fn deadline(&self) -> tokio::time::Instant {
        let mut wait = Duration::from_secs(3600);
        if let Some(t) = self.host.lock().node.poll_timeout() {
            let now = time_of(SystemTime::now());
            wait = wait.min(Duration::from_micros(t.0.saturating_sub(now.0)));
        }
        let all_up =
            self.quorum.is_some() && self.cmap.is_some() && self.groups.iter().all(|g| g.is_some());
        if !all_up {
            wait = wait.min(self.next_round.saturating_duration_since(Instant::now()));
        }
        tokio::time::Instant::now() + wait
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<ToDriver>) {
        loop {
            self.connect_due();
            let deadline = self.deadline();
            let event = tokio::select! {
                biased;
                _ = readable(self.fd(Service::Confdb)) => Event::Ready(Service::Confdb),
                _ = readable(self.fd(Service::Quorum)) => Event::Ready(Service::Quorum),
                _ = readable(self.fd(Service::Group(Group::Dcdb))) => Event::Ready(Service::Group(Group::Dcdb)),
                _ = readable(self.fd(Service::Group(Group::Kvstore))) => Event::Ready(Service::Group(Group::Kvstore)),
                call = rx.recv() => Event::Call(call),
                _ = tokio::time::sleep_until(deadline) => Event::Timer,
            };
            match event {
                Event::Ready(s) => self.dispatch(s),
                Event::Call(Some(ToDriver::Request { id, request })) => {
                    self.feed(Input::Request { id, request });
                }
                Event::Call(Some(ToDriver::Shutdown(done))) => {
                    self.shutdown();
                    let _ = done.send(());
                    return;
                }
                Event::Call(None) => {
                    self.shutdown();
                    return;
                }
                Event::Timer => {}
            }
            // The core's timers, whenever the loop comes by.
            if self
                .host
                .lock()
                .node
                .poll_timeout()
                .is_some_and(|t| t <= time_of(SystemTime::now()))
            {
                self.feed(Input::Timers);
            }
        }
    }

    /// Leave the groups (the caller bounds how long it waits for this:
    /// a frozen corosync does not answer) and answer every change still
    /// waiting for the cluster.
    fn shutdown(&mut self) {
        self.host.abort_all();
        for g in Group::ALL {
            if let Some(c) = self.groups[group_index(g)].take() {
                let _ = cpg::leave(&c.handle, g.cpg_name());
            }
        }
        self.cmap = None;
        self.quorum = None;
    }
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

/// Start the corosync driver for the node `host` holds; `host_conf` is the host's
/// corosync.conf; `initial` is the node's first output batch (boot), which
/// the driver performs before anything else.
pub fn start(
    host: Arc<Host>,
    host_conf: &Path,
    recorder: Option<Recorder>,
    initial: Batch,
) -> std::io::Result<DriverLink> {
    let (tx, rx) = mpsc::unbounded_channel();
    let driver = Driver {
        host,
        quorum: None,
        cmap: None,
        groups: [None, None],
        last_attempt: HashMap::new(),
        next_round: Instant::now(),
        lost: [false, false],
        host_conf: host_conf.to_path_buf(),
        recorder,
        input_time: SystemTime::now(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    std::thread::Builder::new()
        .name("corosync".into())
        .spawn(move || {
            runtime.block_on(async move {
                let mut driver = driver;
                driver.start(initial);
                driver.run(rx).await
            })
        })?;
    Ok(DriverLink::new(tx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corosync_error_names_as_c_prints_them() {
        assert_eq!(cs_name(&CsError::CsErrLibrary), "CS_ERR_LIBRARY");
        assert_eq!(cs_name(&CsError::CsErrTryAgain), "CS_ERR_TRY_AGAIN");
        assert_eq!(cs_name(&CsError::CsErrBadHandle), "CS_ERR_BAD_HANDLE");
        assert_eq!(cs_code(&CsError::CsErrLibrary), 2);
        assert_eq!(
            init_failure("cpg_initialize", &CsError::CsErrLibrary),
            "cpg_initialize failed: CS_ERR_LIBRARY (failed to connect to corosync)"
        );
    }
}

/// CPG callbacks taken from corosync before the core is fed them.
const DISPATCH_BATCH: usize = 64;

/// The cluster driver is the node's port: it sends through CPG, joins and
/// leaves the groups, writes corosync.conf, and hands answers back.
impl Port for Driver {
    fn send(&mut self, group: Group, bytes: Vec<u8>) -> Result<(), SendFailed> {
        let Some(c) = &self.groups[group_index(group)] else {
            return Err(SendFailed(bytes));
        };
        let handle = &c.handle;
        let recorder = &mut self.recorder;
        let at = self.input_time;
        let (result, retries) = retry(|| {
            let r = cpg::mcast_joined(handle, cpg::Guarantee::TypeAgreed, &bytes);
            if let Some(rec) = recorder.as_mut() {
                let result = match &r {
                    Ok(()) => 1,
                    Err(e) => cs_code(e),
                };
                rec.record(
                    at,
                    group.cpg_name().as_bytes(),
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
        match result {
            Ok(()) => {
                if retries > 0 {
                    log::notice(
                        group.subsystem(),
                        &format!("cpg_send_message retried {retries} times"),
                    );
                }
                Ok(())
            }
            Err(e) => {
                log::crit(
                    group.subsystem(),
                    &format!("cpg_send_message failed: {}", cs_name(&e)),
                );
                Err(SendFailed(bytes))
            }
        }
    }

    fn reply(&mut self, id: RequestId, reply: Reply) {
        self.host.complete(id, reply);
    }

    fn join(&mut self, g: Group) -> Option<Member> {
        // Without a connection nothing happens: the core hears
        // `Input::Connected` when it is up and asks again.
        self.join_connected(g)
    }

    fn leave(&mut self, g: Group) {
        if let Some(c) = &self.groups[group_index(g)] {
            let (r, _) = retry(|| cpg::leave(&c.handle, g.cpg_name()));
            if let Err(e) = r {
                log::crit(g.subsystem(), &format!("cpg_leave failed: {}", cs_name(&e)));
            }
        }
    }

    fn probe_storage(&mut self) -> Option<Vec<Row>> {
        self.host.probe_storage()
    }

    fn log(&mut self, line: LogLine) {
        self.host.log(line)
    }

    fn set_debug(&mut self, on: bool) {
        self.host.set_debug(on)
    }

    fn rrd(&mut self, key: String, value: Vec<u8>, time: u32) {
        self.host.rrd(key, value, time)
    }

    fn tree_changed(&mut self, change: crate::core::node::TreeChange) {
        self.host.tree_changed(change)
    }

    fn sync_corosync_conf(&mut self, conf: Option<Vec<u8>>, reload: bool) {
        self.write_corosync_conf(conf, reload)
    }

    fn first_sync(&mut self) {
        self.host.first_sync()
    }

    fn batch_done(&mut self, rows: usize, sent: usize) {
        crate::host::batch_done(rows, sent)
    }
}
