//! The running node: the core node and its database behind one lock,
//! shared by the FUSE, IPC and corosync threads, and how a request gets to
//! the core and its answer back.
//!
//! Reads (getattr, read, readdir, IPC queries) look at the core's state
//! under the lock, which is only ever held for one step of the core and
//! its commit, never across I/O with the cluster. A change is submitted
//! with a completion, called once its answer is known: in local mode the
//! submitting thread runs the engine (`core::engine::run`) itself; in
//! cluster mode the corosync driver does, and the submitting thread goes
//! back to serving requests at once. Either way the answer only comes out
//! of a batch whose changes are on disk.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::core::dfsm::Member;
use crate::core::engine::{self, Batch, Port, SendFailed, Storage};
use crate::core::errno::EBUSY;
use crate::core::logline::{LogLine, Subsystem};
use crate::core::memdb::DbChange;
use crate::core::node::{
    Group, Input, Node, PersistFailure, Reply, Request, RequestId, Time, TreeChange,
};
use crate::database::Database;
use crate::log;
use crate::rrd::RrdWriter;

/// The wall clock as the core reads it.
pub fn now() -> Time {
    Time(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0),
    )
}

/// What lives behind the lock.
pub struct Shared {
    pub node: Node,
    pub db: Database,
}

impl Storage for Database {
    fn persist(&mut self, changes: &[DbChange]) -> Result<(), PersistFailure> {
        self.apply_all(changes)
    }
}

impl Shared {
    /// One step of the core, its changes committed to config.db.
    pub fn step(&mut self, now: Time, input: Input) -> Batch {
        let Shared { node, db } = self;
        node.step(now, input, db)
    }
}

/// Rows written, or messages sent, by one batch after which freed memory
/// is handed back to the system (a sync of a large tree; a local change
/// writes one row and sends one message).
const TRIM_AFTER: usize = 1000;

/// After a batch: hand the pages of freed memory back to the system when
/// it was large. glibc keeps them until told, and after a sync of a large
/// tree (its rows written, its UPDATEs sent) that is the tree's size again.
pub fn batch_done(rows: usize, sent: usize) {
    if rows >= TRIM_AFTER || sent >= TRIM_AFTER {
        release_free_memory();
    }
}

/// Hand the pages of freed memory back to the system, wherever they are
/// in the heap.
pub fn release_free_memory() {
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe { libc::malloc_trim(0) };
}

/// What is called with the answer of a submitted change.
pub type Completion = Box<dyn FnOnce(Reply) + Send>;

/// What the corosync driver is handed by the other threads.
pub enum ToDriver {
    /// A change; its completion waits in the node handle under `id`.
    Request { id: RequestId, request: Request },
    /// Leave the groups and stop; the sender hears when done.
    Shutdown(std_mpsc::SyncSender<()>),
}

/// How the rest of the daemon reaches the cluster driver.
pub struct DriverLink {
    pub(crate) tx: mpsc::UnboundedSender<ToDriver>,
}

impl DriverLink {
    pub fn new(tx: mpsc::UnboundedSender<ToDriver>) -> DriverLink {
        DriverLink { tx }
    }

    /// Leave the groups and close every connection, waiting at most
    /// `limit` (corosync may be frozen: nothing here may hang a stop).
    pub fn shutdown(&self, limit: Duration) -> bool {
        let (tx, rx) = std_mpsc::sync_channel(1);
        self.tx.send(ToDriver::Shutdown(tx)).is_ok() && rx.recv_timeout(limit).is_ok()
    }
}

/// RRD samples waiting for the writer thread (a rrdcached that does not
/// answer must not hold up anything else; what does not fit is dropped,
/// as a sample that came late is worth nothing).
const RRD_QUEUE: usize = 4096;

/// The RRD files, written by a thread of their own.
struct RrdSink {
    tx: std_mpsc::SyncSender<(String, Vec<u8>, u32)>,
    dropped: AtomicU64,
}

impl RrdSink {
    fn start(writer: RrdWriter) -> RrdSink {
        let (tx, rx) = std_mpsc::sync_channel::<(String, Vec<u8>, u32)>(RRD_QUEUE);
        let spawned = std::thread::Builder::new()
            .name("rrd".into())
            .spawn(move || {
                for (key, value, time) in rx {
                    writer.write(&key, &value, time as i64);
                }
            });
        if let Err(e) = spawned {
            log::crit(
                Subsystem::Status,
                &format!("cannot start the RRD writer: {e}"),
            );
        }
        RrdSink {
            tx,
            dropped: AtomicU64::new(0),
        }
    }

    fn write(&self, key: String, value: Vec<u8>, time: u32) {
        if self.tx.try_send((key, value, time)).is_err()
            && self.dropped.fetch_add(1, Ordering::Relaxed) == 0
        {
            log::warning(
                Subsystem::Status,
                "RRD files are written slower than samples arrive - dropping samples",
            );
        }
    }
}

pub struct Host {
    shared: Mutex<Shared>,
    /// Where RRD samples go; none in tests that do not care.
    rrd: Option<RrdSink>,
    /// In cluster mode: the corosync driver takes every input.
    cluster: OnceLock<DriverLink>,
    next_id: AtomicU64,
    /// Submitted changes waiting for their answer, with when they came.
    waiters: Mutex<HashMap<RequestId, (Instant, Completion)>>,
    first_sync: (Mutex<bool>, Condvar),
    /// Where the mount hears of changes its kernel did not ask for.
    kernel_caches: OnceLock<std_mpsc::Sender<TreeChange>>,
}

impl Host {
    pub fn new(shared: Shared, rrd: Option<RrdWriter>) -> Host {
        Host {
            shared: Mutex::new(shared),
            rrd: rrd.map(RrdSink::start),
            cluster: OnceLock::new(),
            next_id: AtomicU64::new(1),
            waiters: Mutex::new(HashMap::new()),
            first_sync: (Mutex::new(false), Condvar::new()),
            kernel_caches: OnceLock::new(),
        }
    }

    /// The mount's notifier: told of every change behind the kernel's back.
    pub fn set_kernel_caches(&self, tx: std_mpsc::Sender<TreeChange>) {
        let _ = self.kernel_caches.set(tx);
    }

    /// Hand a change to the mount's notifier (never waits: the notifier
    /// may wait for the kernel, which may wait for an answer of ours).
    pub fn tree_changed(&self, change: TreeChange) {
        if let Some(tx) = self.kernel_caches.get() {
            let _ = tx.send(change);
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock must not take the filesystem down
        // with it: the state is only changed through complete inputs.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn waiting(&self) -> MutexGuard<'_, HashMap<RequestId, (Instant, Completion)>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Switch to cluster mode: from now on the corosync driver takes the
    /// requests.
    pub fn set_cluster(&self, link: DriverLink) {
        let _ = self.cluster.set(link);
    }

    pub fn cluster_link(&self) -> Option<&DriverLink> {
        self.cluster.get()
    }

    /// Submit a change (FUSE operation, `.debug` write, IPC call):
    /// `done` is called with its answer, from whichever thread learns it.
    /// In cluster mode this returns at once.
    pub fn submit(&self, request: Request, done: Completion) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.waiting().insert(id, (Instant::now(), done));
        match self.cluster.get() {
            Some(link) => {
                if link.tx.send(ToDriver::Request { id, request }).is_err() {
                    // The driver has stopped (the daemon is going down).
                    self.complete(id, Reply::Fs(Err(EBUSY)));
                }
            }
            None => self.run_local(Input::Request { id, request }),
        }
    }

    /// A change and its answer, waiting for it (IPC calls; tests).
    pub fn request(&self, request: Request) -> Reply {
        let (tx, rx) = std_mpsc::sync_channel(1);
        self.submit(
            request,
            Box::new(move |reply| {
                let _ = tx.send(reply);
            }),
        );
        rx.recv().unwrap_or(Reply::Fs(Err(EBUSY)))
    }

    /// Call the completion of request `id`.
    pub fn complete(&self, id: RequestId, reply: Reply) {
        let waiter = self.waiting().remove(&id);
        if let Some((since, done)) = waiter {
            crate::stats::CHANGE_TIME.observe(since.elapsed());
            done(reply);
        }
    }

    /// Answer every change still waiting with EBUSY (the driver stopped).
    pub fn abort_all(&self) {
        let waiters: Vec<_> = self.waiting().drain().collect();
        for (_, (_, done)) in waiters {
            done(Reply::Fs(Err(EBUSY)));
        }
    }

    /// How many changes wait for their answer, and how long the oldest has.
    pub fn waiting_requests(&self) -> (usize, Option<Duration>) {
        let w = self.waiting();
        (w.len(), w.values().map(|(t, _)| t.elapsed()).max())
    }

    /// Local mode: run the engine on this thread. Replies are handed out
    /// after the whole run, so a completion that submits again starts a
    /// run of its own after this one.
    pub fn run_local(&self, input: Input) {
        let mut port = LocalPort {
            node: self,
            replies: Vec::new(),
        };
        engine::run(now(), input, &mut port, &mut |now, input| {
            self.lock().step(now, input)
        });
        for (id, reply) in port.replies {
            self.complete(id, reply);
        }
    }

    /// Local mode: perform the boot's batch.
    pub fn start_local(&self, first: Batch) {
        let mut port = LocalPort {
            node: self,
            replies: Vec::new(),
        };
        engine::run_batch(now(), first, &mut port, &mut |now, input| {
            self.lock().step(now, input)
        });
    }

    /// An IPC call: a query is answered under the lock by this thread; a
    /// change is a request.
    pub fn ipc(&self, client: crate::core::ipc::Client, bytes: &[u8]) -> Vec<u8> {
        if let Some(answer) = self.lock().node.query(now(), client, bytes) {
            return answer;
        }
        match self.request(Request::Ipc {
            client,
            bytes: bytes.to_vec(),
        }) {
            Reply::Ipc(answer) => answer,
            Reply::Fs(result) => {
                let id = pmxcfs_wire::ipc::RequestHeader::parse(bytes)
                    .map(|(_, h)| h.id)
                    .unwrap_or(0);
                let errno = result.err().unwrap_or(EBUSY);
                pmxcfs_wire::ipc::Response::error(id, errno).to_bytes()
            }
        }
    }

    // What every daemon port does alike.

    /// Try a write on config.db after it failed: its rows if it works.
    pub fn probe_storage(&self) -> Option<Vec<crate::core::memdb::Row>> {
        let probe = self.lock().db.probe();
        match probe {
            Ok(rows) => Some(rows),
            Err(e) => {
                log::debug(
                    Subsystem::Database,
                    &format!("config.db still takes no writes: {e}"),
                );
                None
            }
        }
    }

    /// Local mode: run the node's timers when they are due (the daemon's
    /// main loop calls this; cluster mode has the driver's loop).
    pub fn local_timers(&self) {
        let due = self.lock().node.poll_timeout().is_some_and(|t| t <= now());
        if due {
            self.run_local(Input::Timers);
        }
    }

    pub fn log(&self, line: LogLine) {
        log::emit(&line)
    }

    pub fn set_debug(&self, on: bool) {
        log::set_debug(on)
    }

    /// RRD samples dropped so far (the writer could not keep up).
    pub fn rrd_dropped(&self) -> u64 {
        self.rrd
            .as_ref()
            .map_or(0, |r| r.dropped.load(Ordering::Relaxed))
    }

    pub fn rrd(&self, key: String, value: Vec<u8>, time: u32) {
        if let Some(rrd) = &self.rrd {
            rrd.write(key, value, time);
        }
    }

    pub fn first_sync(&self) {
        let (done, cv) = &self.first_sync;
        *done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }

    /// Wait until the dcdb has synced once, or `timeout` passed.
    pub fn wait_first_sync(&self, timeout: Duration) -> bool {
        let (done, cv) = &self.first_sync;
        let guard = done.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = cv
            .wait_timeout_while(guard, timeout, |d| !*d)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }
}

/// The port of local mode: nothing is sent and no group joined (the core
/// asks for neither without corosync.conf).
struct LocalPort<'a> {
    node: &'a Host,
    replies: Vec<(RequestId, Reply)>,
}

impl Port for LocalPort<'_> {
    fn send(&mut self, _group: Group, bytes: Vec<u8>) -> Result<(), SendFailed> {
        log::debug(Subsystem::Main, "local mode: nothing is sent");
        Err(SendFailed(bytes))
    }

    fn reply(&mut self, id: RequestId, reply: Reply) {
        self.replies.push((id, reply));
    }

    fn join(&mut self, _group: Group) -> Option<Member> {
        None
    }

    fn leave(&mut self, _group: Group) {}

    fn probe_storage(&mut self) -> Option<Vec<crate::core::memdb::Row>> {
        self.node.probe_storage()
    }

    fn log(&mut self, line: LogLine) {
        self.node.log(line)
    }

    fn set_debug(&mut self, on: bool) {
        self.node.set_debug(on)
    }

    fn rrd(&mut self, key: String, value: Vec<u8>, time: u32) {
        self.node.rrd(key, value, time)
    }

    fn tree_changed(&mut self, change: TreeChange) {
        self.node.tree_changed(change)
    }

    fn batch_done(&mut self, rows: usize, sent: usize) {
        batch_done(rows, sent)
    }
}
