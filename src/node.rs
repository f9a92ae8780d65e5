//! The running node: the core node and its database behind one lock,
//! shared by the FUSE, IPC and corosync threads, and how a request gets to
//! the core and its answer back.
//!
//! Reads (getattr, read, readdir, IPC queries) look at the core's state
//! under the lock. A change is an input of the core: in local mode the
//! calling thread drives the core itself (feed, persist, reply, perform
//! the effects); in cluster mode it hands the request to the corosync
//! driver, which owns every input and the order of the output. Either way
//! the reply only comes out of [`Node::drain`] after the change is on disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::core::errno::{EBUSY, EIO};
use crate::core::logline::Subsystem;
use crate::core::node::{Action, Effect, Input, Node, Reply, Request, Time};
use crate::corosync::DriverLink;
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

/// Rows written, or messages sent, by one batch after which freed memory
/// is handed back to the system (a sync of a large tree; a local change
/// writes one row and sends one message).
pub const TRIM_AFTER: usize = 1000;

/// Hand the pages of freed memory back to the system: glibc keeps them
/// until told, and after a sync of a large tree that is the size of the
/// tree again.
pub fn release_freed_memory() {
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe { libc::malloc_trim(0) };
}

impl Shared {
    /// The core's output batch, persisted to config.db first.
    pub fn drain(&mut self, now: Time) -> Vec<Action> {
        let Shared { node, db } = self;
        let mut rows = 0;
        let actions = node.drain(now, &mut |changes| {
            rows += changes.iter().map(|c| c.write_rows.len()).sum::<usize>();
            db.apply_all(changes)
        });
        if rows >= TRIM_AFTER {
            // A sync brought much of the tree: the copies it was made of
            // are free now.
            release_freed_memory();
        }
        actions
    }
}

pub struct NodeHandle {
    shared: Mutex<Shared>,
    /// Where RRD samples go; none in tests that do not care.
    rrd: Option<RrdWriter>,
    /// In cluster mode: the corosync driver takes every input.
    cluster: OnceLock<DriverLink>,
    next_id: AtomicU64,
    first_sync: (Mutex<bool>, Condvar),
}

impl NodeHandle {
    pub fn new(shared: Shared, rrd: Option<RrdWriter>) -> NodeHandle {
        NodeHandle {
            shared: Mutex::new(shared),
            rrd,
            cluster: OnceLock::new(),
            next_id: AtomicU64::new(1),
            first_sync: (Mutex::new(false), Condvar::new()),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock must not take the filesystem down
        // with it: the state is only changed through complete inputs.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Switch to cluster mode: from now on the corosync driver takes the
    /// requests.
    pub fn set_cluster(&self, link: DriverLink) {
        let _ = self.cluster.set(link);
    }

    pub fn cluster_link(&self) -> Option<&DriverLink> {
        self.cluster.get()
    }

    pub fn new_request_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A change (FUSE operation, `.debug` write, IPC call) and its answer.
    pub fn request(&self, request: Request) -> Reply {
        if let Some(link) = self.cluster.get() {
            return link.call(request);
        }
        let id = self.new_request_id();
        let now = now();
        let actions = {
            let mut s = self.lock();
            s.node.handle(now, Input::Request { id, request });
            s.drain(now)
        };
        let mut reply = None;
        for action in actions {
            match action {
                Action::Reply { id: to, reply: r } if to == id => reply = Some(r),
                Action::Reply { .. } => {}
                Action::Send { .. } => log::debug(Subsystem::Main, "local mode: nothing is sent"),
                Action::Effect(e) => {
                    if let Some(e) = self.perform(e) {
                        log::debug(Subsystem::Main, &format!("local mode ignores {e:?}"));
                    }
                }
            }
        }
        reply.unwrap_or(Reply::Fs(Err(EIO)))
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

    /// The effects every driver performs alike; the others (corosync's)
    /// are handed back.
    pub fn perform(&self, effect: Effect) -> Option<Effect> {
        match effect {
            Effect::Log(line) => log::emit(&line),
            Effect::Debug(on) => log::set_debug(on),
            Effect::Rrd { key, value, time } => {
                if let Some(rrd) = &self.rrd {
                    rrd.write(&key, &value, time as i64);
                }
            }
            Effect::FirstSync => {
                let (done, cv) = &self.first_sync;
                *done.lock().unwrap_or_else(|e| e.into_inner()) = true;
                cv.notify_all();
            }
            other => return Some(other),
        }
        None
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
