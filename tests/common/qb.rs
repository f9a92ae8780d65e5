//! A real libqb IPC client, as PVE::IPCC uses it: `qb_ipcc_connect("pve2",
//! 1 MiB)` and `qb_ipcc_sendv_recv` into a 1 MiB buffer.

#![allow(dead_code)]

use std::ffi::{c_void, CString};

#[repr(C)]
struct IoVec {
    base: *const c_void,
    len: usize,
}

#[link(name = "qb")]
extern "C" {
    fn qb_ipcc_connect(name: *const std::ffi::c_char, max_msg_size: usize) -> *mut c_void;
    fn qb_ipcc_sendv_recv(
        c: *mut c_void,
        iov: *const IoVec,
        iov_len: u32,
        res: *mut c_void,
        res_size: usize,
        timeout_ms: i32,
    ) -> isize;
    fn qb_ipcc_disconnect(c: *mut c_void);
}

/// PVE::IPCC's buffer size.
pub const MAX_MSG: usize = 8192 * 128;

pub struct QbClient {
    conn: *mut c_void,
}

impl QbClient {
    pub fn connect(name: &str) -> Option<QbClient> {
        QbClient::connect_with(name, MAX_MSG)
    }

    /// A client that asks for a buffer of `max_msg` bytes (libqb gives
    /// the connection the larger of the client's and the server's).
    pub fn connect_with(name: &str, max_msg: usize) -> Option<QbClient> {
        let name = CString::new(name).unwrap();
        let conn = unsafe { qb_ipcc_connect(name.as_ptr(), max_msg) };
        (!conn.is_null()).then_some(QbClient { conn })
    }

    /// Send a whole request; the response bytes, or the negative errno of
    /// the transport.
    pub fn call(&self, request: &[u8]) -> Result<Vec<u8>, i32> {
        let iov = IoVec {
            base: request.as_ptr().cast(),
            len: request.len(),
        };
        let mut buf = vec![0u8; MAX_MSG];
        let n = unsafe {
            qb_ipcc_sendv_recv(self.conn, &iov, 1, buf.as_mut_ptr().cast(), buf.len(), -1)
        };
        if n < 0 {
            return Err(n as i32);
        }
        buf.truncate(n as usize);
        Ok(buf)
    }
}

impl Drop for QbClient {
    fn drop(&mut self) {
        unsafe { qb_ipcc_disconnect(self.conn) };
    }
}
