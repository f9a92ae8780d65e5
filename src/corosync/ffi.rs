//! The corosync libraries as the driver uses them: C's names of their
//! errors, the callbacks (which only queue what corosync said, to be fed
//! to the core after the dispatch), descriptors watched by tokio, and C's
//! TRY_AGAIN retry.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use rust_corosync::{cmap, cpg, quorum, CsError, NodeId};
use tokio::io::unix::AsyncFd;

use crate::core::dfsm::Member;
use crate::core::node::Group;
use pmxcfs_wire::capture::CpgAddress;

/// C's name of a corosync error, as its log prints it: `CS_ERR_LIBRARY`.
pub(super) fn cs_name(e: &CsError) -> String {
    let mut out = String::new();
    for (i, c) in format!("{e:?}").char_indices() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The numeric cs_error_t of a failure (C prints it for cmap dispatch).
pub(super) fn cs_code(e: &CsError) -> i32 {
    *e as u32 as i32
}

/// `quorum_initialize failed: CS_ERR_LIBRARY (failed to connect to corosync)`.
pub(super) fn init_failure(call: &str, e: &CsError) -> String {
    let why = if *e == CsError::CsErrLibrary {
        " (failed to connect to corosync)"
    } else {
        ""
    };
    format!("{call} failed: {}{why}", cs_name(e))
}

/// What corosync told us, queued by the callbacks.
pub(super) enum Incoming {
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
    CmapChanged,
}

thread_local! {
    pub(super) static INCOMING: RefCell<Vec<Incoming>> = const { RefCell::new(Vec::new()) };
}

pub(super) fn queue(e: Incoming) {
    INCOMING.with(|q| q.borrow_mut().push(e));
}

pub(super) fn on_deliver(
    _h: &cpg::Handle,
    group: String,
    nodeid: NodeId,
    pid: u32,
    msg: &[u8],
    _len: usize,
) {
    if let Some(group) = Group::of_name(group.as_bytes()) {
        let from = Member {
            nodeid: u32::from(nodeid),
            pid,
        };
        queue(Incoming::Deliver {
            group,
            from,
            msg: msg.to_vec(),
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

pub(super) fn on_confchg(
    _h: &cpg::Handle,
    group: &str,
    members: Vec<cpg::Address>,
    left: Vec<cpg::Address>,
    joined: Vec<cpg::Address>,
) {
    if let Some(group) = Group::of_name(group.as_bytes()) {
        queue(Incoming::Confchg {
            group,
            members: members.iter().map(address).collect(),
            left: left.iter().map(address).collect(),
            joined: joined.iter().map(address).collect(),
        });
    }
}

pub(super) fn on_quorum(
    _h: &quorum::Handle,
    quorate: bool,
    ring: quorum::RingId,
    members: Vec<NodeId>,
) {
    queue(Incoming::Quorum {
        quorate,
        ring_seq: ring.seq,
        nodes: members.into_iter().map(u32::from).collect(),
    });
}

#[allow(clippy::too_many_arguments)]
pub(super) fn on_cmap(
    _h: &cmap::Handle,
    _t: &cmap::TrackHandle,
    _event: cmap::TrackType,
    _key: &str,
    _new: &cmap::Data,
    _old: &cmap::Data,
    _user: u64,
) {
    // Re-read everything after the dispatch (no cmap call may be made
    // from inside a callback).
    queue(Incoming::CmapChanged);
}

/// A raw descriptor for `AsyncFd` (the library owns it).
pub(super) struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// A connected service: its descriptor and its handle (in this order, so
/// the descriptor is deregistered before the handle closes it).
pub(super) struct Connected<H> {
    pub(super) fd: AsyncFd<Fd>,
    pub(super) handle: H,
}

/// Watch a service's descriptor (inside the runtime).
pub(super) fn watch<H>(handle: H, fd: Result<i32, CsError>) -> Result<Connected<H>, CsError> {
    let fd = fd?;
    // SAFETY: the descriptor belongs to `handle`, which is kept beside the
    // AsyncFd and dropped after it, so it stays open while registered.
    let fd = unsafe { AsyncFd::register_with_interest(Fd(fd), tokio::io::Interest::READABLE) }
        .map_err(|_| CsError::CsErrLibrary)?;
    Ok(Connected { fd, handle })
}

/// CS_ERR_TRY_AGAIN: wait 100 ms and retry, at most 100 times (C); the
/// number of retries it took.
pub(super) fn retry(mut f: impl FnMut() -> Result<(), CsError>) -> (Result<(), CsError>, u32) {
    for n in 0..100 {
        match f() {
            Err(CsError::CsErrTryAgain) => std::thread::sleep(Duration::from_millis(100)),
            other => return (other, n),
        }
    }
    (Err(CsError::CsErrTryAgain), 100)
}

/// Resolves when the descriptor is readable (never without one).
pub(super) async fn readable(fd: Option<&AsyncFd<Fd>>) {
    match fd {
        Some(fd) => {
            if let Ok(mut guard) = fd.readable().await {
                guard.clear_ready();
            }
        }
        None => std::future::pending().await,
    }
}
