//! The IPC edge: a libqb server named `pve2`, through the system libqb (the
//! library PVE ships), so PVE::IPCC talks to it unchanged. It runs libqb's
//! own main loop on one thread; each request is handed, as bytes, to the
//! node, whose core answers it (`core::ipc`).

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread::JoinHandle;

use crate::core::ipc::{access, Client};
use crate::core::logline::Subsystem;
use crate::host::Host;
use crate::log;

#[allow(non_camel_case_types)]
mod ffi {
    use std::ffi::{c_char, c_int, c_void};

    pub type qb_loop_t = c_void;
    pub type qb_ipcs_service_t = c_void;
    pub type qb_ipcs_connection_t = c_void;

    pub type PollFn = extern "C" fn(fd: i32, revents: i32, data: *mut c_void) -> i32;
    pub type JobFn = extern "C" fn(data: *mut c_void);

    pub const QB_IPC_SHM: c_int = 1;
    pub const QB_LOOP_MED: c_int = 1;

    #[repr(C)]
    pub struct ServiceHandlers {
        pub connection_accept: Option<extern "C" fn(*mut qb_ipcs_connection_t, u32, u32) -> i32>,
        pub connection_created: Option<extern "C" fn(*mut qb_ipcs_connection_t)>,
        pub msg_process:
            Option<extern "C" fn(*mut qb_ipcs_connection_t, *mut c_void, usize) -> i32>,
        pub connection_closed: Option<extern "C" fn(*mut qb_ipcs_connection_t) -> i32>,
        pub connection_destroyed: Option<extern "C" fn(*mut qb_ipcs_connection_t)>,
    }

    #[repr(C)]
    pub struct PollHandlers {
        pub job_add: extern "C" fn(c_int, *mut c_void, JobFn) -> i32,
        pub dispatch_add: extern "C" fn(c_int, i32, i32, *mut c_void, PollFn) -> i32,
        pub dispatch_mod: extern "C" fn(c_int, i32, i32, *mut c_void, PollFn) -> i32,
        pub dispatch_del: extern "C" fn(i32) -> i32,
    }

    #[repr(C)]
    #[derive(Default)]
    pub struct ConnectionStats {
        pub client_pid: i32,
        pub requests: u64,
        pub responses: u64,
        pub events: u64,
        pub send_retries: u64,
        pub recv_retries: u64,
        pub flow_control_state: i32,
        pub flow_control_count: u64,
    }

    #[link(name = "qb")]
    extern "C" {
        pub fn qb_loop_create() -> *mut qb_loop_t;
        pub fn qb_loop_run(l: *mut qb_loop_t);
        pub fn qb_loop_stop(l: *mut qb_loop_t);
        pub fn qb_loop_destroy(l: *mut qb_loop_t);
        pub fn qb_loop_poll_add(
            l: *mut qb_loop_t,
            p: c_int,
            fd: i32,
            events: i32,
            data: *mut c_void,
            f: PollFn,
        ) -> i32;
        pub fn qb_loop_poll_mod(
            l: *mut qb_loop_t,
            p: c_int,
            fd: i32,
            events: i32,
            data: *mut c_void,
            f: PollFn,
        ) -> i32;
        pub fn qb_loop_poll_del(l: *mut qb_loop_t, fd: i32) -> i32;
        pub fn qb_loop_job_add(l: *mut qb_loop_t, p: c_int, data: *mut c_void, f: JobFn) -> i32;
        pub fn qb_loop_timer_add(
            l: *mut qb_loop_t,
            p: c_int,
            nsec: u64,
            data: *mut c_void,
            f: JobFn,
            handle: *mut u64,
        ) -> i32;
        pub fn qb_ipcs_create(
            name: *const c_char,
            service_id: i32,
            kind: c_int,
            h: *mut ServiceHandlers,
        ) -> *mut qb_ipcs_service_t;
        pub fn qb_ipcs_poll_handlers_set(s: *mut qb_ipcs_service_t, h: *mut PollHandlers);
        pub fn qb_ipcs_run(s: *mut qb_ipcs_service_t) -> i32;
        pub fn qb_ipcs_destroy(s: *mut qb_ipcs_service_t);
        pub fn qb_ipcs_response_send(
            c: *mut qb_ipcs_connection_t,
            data: *const c_void,
            size: usize,
        ) -> isize;
        pub fn qb_ipcs_disconnect(c: *mut qb_ipcs_connection_t);
        pub fn qb_ipcs_context_set(c: *mut qb_ipcs_connection_t, ctx: *mut c_void);
        pub fn qb_ipcs_context_get(c: *mut qb_ipcs_connection_t) -> *mut c_void;
        pub fn qb_ipcs_connection_stats_get(
            c: *mut qb_ipcs_connection_t,
            s: *mut ConnectionStats,
            clear: i32,
        ) -> i32;
    }
}

/// The service name PVE::IPCC connects to, and C's service id.
const SERVICE_NAME: &str = "pve2";
const SERVICE_ID: i32 = 1;

/// libqb's callbacks carry no context of ours: the one server of this
/// process keeps its state here.
struct Shared {
    host: Arc<Host>,
    www_data_gid: u32,
}

static SHARED: OnceLock<Shared> = OnceLock::new();
static LOOP: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static STOP: AtomicBool = AtomicBool::new(false);

fn qb_loop() -> *mut c_void {
    LOOP.load(Ordering::Acquire)
}

extern "C" fn job_add(p: c_int, data: *mut c_void, f: ffi::JobFn) -> i32 {
    // SAFETY: forwarding to libqb with the loop this thread runs.
    unsafe { ffi::qb_loop_job_add(qb_loop(), p, data, f) }
}
extern "C" fn dispatch_add(p: c_int, fd: i32, ev: i32, data: *mut c_void, f: ffi::PollFn) -> i32 {
    unsafe { ffi::qb_loop_poll_add(qb_loop(), p, fd, ev, data, f) }
}
extern "C" fn dispatch_mod(p: c_int, fd: i32, ev: i32, data: *mut c_void, f: ffi::PollFn) -> i32 {
    unsafe { ffi::qb_loop_poll_mod(qb_loop(), p, fd, ev, data, f) }
}
extern "C" fn dispatch_del(fd: i32) -> i32 {
    unsafe { ffi::qb_loop_poll_del(qb_loop(), fd) }
}

/// What C's connection-accept callback returns for a refused client.
const REFUSED: i32 = 1;

/// Per connection: read-only or not (boxed into libqb's context pointer).
struct ConnInfo {
    readonly: bool,
}

extern "C" fn accept(c: *mut c_void, uid: u32, gid: u32) -> i32 {
    let Some(shared) = SHARED.get() else {
        return REFUSED;
    };
    match access(uid, gid, shared.www_data_gid) {
        Some(readonly) => {
            let info = Box::into_raw(Box::new(ConnInfo { readonly }));
            // SAFETY: libqb keeps the pointer until `destroyed` frees it.
            unsafe { ffi::qb_ipcs_context_set(c, info.cast()) };
            0
        }
        None => {
            crate::stats::ipc_refused();
            log::crit(
                Subsystem::Ipcs,
                &format!("connection from bad user {uid}/{gid} - rejected"),
            );
            // C's accept answers 1, not a negative errno: libqb hands that
            // value to the client as the connection result, whose
            // qb_ipcc_connect then fails with errno -1 (what PVE::IPCC
            // leaves in `$!`). -EACCES would show as errno 13.
            REFUSED
        }
    }
}

extern "C" fn destroyed(c: *mut c_void) {
    // SAFETY: the pointer was made by `accept` and is released once here.
    unsafe {
        let info = ffi::qb_ipcs_context_get(c) as *mut ConnInfo;
        if !info.is_null() {
            ffi::qb_ipcs_context_set(c, std::ptr::null_mut());
            drop(Box::from_raw(info));
        }
    }
}

extern "C" fn closed(_c: *mut c_void) -> i32 {
    0
}

extern "C" fn msg_process(c: *mut c_void, data: *mut c_void, size: usize) -> i32 {
    let Some(shared) = SHARED.get() else { return 0 };
    // SAFETY: libqb hands us `size` readable bytes at `data` for this call,
    // and the context set in `accept`.
    // The request is read where libqb put it, never copied whole: its size
    // is the client's choice (libqb takes the larger of the client's and
    // our buffer), so one larger than any valid request is refused first.
    let (request, readonly, pid) = unsafe {
        let request = std::slice::from_raw_parts(data as *const u8, size);
        let info = ffi::qb_ipcs_context_get(c) as *const ConnInfo;
        let readonly = info.is_null() || (*info).readonly;
        let mut stats = ffi::ConnectionStats::default();
        ffi::qb_ipcs_connection_stats_get(c, &mut stats, 0);
        (request, readonly, stats.client_pid.max(0) as u32)
    };
    if let Some(id) = request.get(..4) {
        crate::stats::ipc_request(i32::from_le_bytes([id[0], id[1], id[2], id[3]]));
    }
    let response = match crate::core::ipc::refuse_oversized(request) {
        Some(refusal) => {
            log::warning(
                Subsystem::Ipcs,
                &format!("refused an IPC request of {size} bytes from pid {pid}"),
            );
            refusal
        }
        None => shared.host.ipc(Client { readonly, pid }, request),
    };
    // SAFETY: sending our own buffer on the connection being served.
    let sent = unsafe { ffi::qb_ipcs_response_send(c, response.as_ptr().cast(), response.len()) };
    if sent < 0 {
        log::crit(
            Subsystem::Ipcs,
            &format!("sending an IPC response failed ({sent}); disconnecting the client"),
        );
        unsafe { ffi::qb_ipcs_disconnect(c) };
    }
    0
}

/// Every second: stop when asked (C's server housekeeping timer).
extern "C" fn tick(_data: *mut c_void) {
    if STOP.load(Ordering::Acquire) {
        unsafe { ffi::qb_loop_stop(qb_loop()) };
        return;
    }
    let mut handle = 0u64;
    unsafe {
        ffi::qb_loop_timer_add(
            qb_loop(),
            ffi::QB_LOOP_MED,
            200_000_000,
            std::ptr::null_mut(),
            tick,
            &mut handle,
        )
    };
}

/// The running server.
pub struct IpcServer {
    thread: Option<JoinHandle<()>>,
}

impl IpcServer {
    /// Start serving `pve2` for `host`; returns once clients can connect.
    pub fn start(host: Arc<Host>, www_data_gid: u32) -> Result<IpcServer, String> {
        if SHARED.set(Shared { host, www_data_gid }).is_err() {
            return Err("the IPC server runs already".into());
        }
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ipc".into())
            .spawn(move || {
                // SAFETY: the loop and service live on this thread only,
                // from creation to destruction below.
                unsafe {
                    let l = ffi::qb_loop_create();
                    if l.is_null() {
                        let _ = tx.send(Err("qb_loop_create failed".to_string()));
                        return;
                    }
                    LOOP.store(l, Ordering::Release);
                    let mut handlers = ffi::ServiceHandlers {
                        connection_accept: Some(accept),
                        connection_created: None,
                        msg_process: Some(msg_process),
                        connection_closed: Some(closed),
                        connection_destroyed: Some(destroyed),
                    };
                    let name = CString::new(SERVICE_NAME).expect("no NUL");
                    let s = ffi::qb_ipcs_create(
                        name.as_ptr() as *const c_char,
                        SERVICE_ID,
                        ffi::QB_IPC_SHM,
                        &mut handlers,
                    );
                    if s.is_null() {
                        let _ = tx.send(Err("qb_ipcs_create failed".to_string()));
                        return;
                    }
                    let mut poll = ffi::PollHandlers {
                        job_add,
                        dispatch_add,
                        dispatch_mod,
                        dispatch_del,
                    };
                    ffi::qb_ipcs_poll_handlers_set(s, &mut poll);
                    let rc = ffi::qb_ipcs_run(s);
                    if rc != 0 {
                        let _ = tx.send(Err(format!(
                            "qb_ipcs_run failed: {}",
                            std::io::Error::from_raw_os_error(-rc)
                        )));
                        ffi::qb_ipcs_destroy(s);
                        return;
                    }
                    // libqb's own line, which C's log shows.
                    log::info(Subsystem::Libqb, &format!("server name: {SERVICE_NAME}"));
                    tick(std::ptr::null_mut());
                    let _ = tx.send(Ok(()));
                    ffi::qb_loop_run(l);
                    ffi::qb_ipcs_destroy(s);
                    LOOP.store(std::ptr::null_mut(), Ordering::Release);
                    ffi::qb_loop_destroy(l);
                }
            })
            .map_err(|e| format!("cannot start the IPC thread: {e}"))?;
        match rx.recv() {
            Ok(Ok(())) => Ok(IpcServer {
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(format!("IPC server '{SERVICE_NAME}': {e}")),
            Err(_) => Err("the IPC thread died".into()),
        }
    }

    /// Stop serving (withdraw the socket) and wait for the thread.
    pub fn stop(mut self) {
        log::info(Subsystem::Libqb, "withdrawing server sockets");
        STOP.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
