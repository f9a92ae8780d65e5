//! Admission of local requests: what a FUSE change, a `.debug` write or
//! an IPC call does — applied at once in local mode, multicast and
//! answered at its delivery in cluster mode, refused without quorum or
//! outside the group.

use pmxcfs_wire::dcdb::{Subtype, UnlockMessage};
use pmxcfs_wire::Codec;

use super::super::dfsm::Env;
use super::super::errno::{Errno, EACCES, EBUSY, EIO};
use super::super::ipc::{self, Client};
use super::super::logline::{Level, Subsystem};
use super::{Effect, Group, Node, Reply, Request, RequestId, Time};

impl Node {
    pub(super) fn request(&mut self, now: Time, id: RequestId, request: Request) {
        if self.debug() {
            let what = request.describe();
            self.log(
                Subsystem::Main,
                Level::Debug,
                format!("request {id}: {what}"),
            );
        }
        match request {
            Request::Ipc { client, bytes } => {
                let reply = self.ipc(now, client, &bytes);
                self.replies.push_back((id, Reply::Ipc(reply)));
            }
            Request::WriteDebug { offset, data } => {
                let result = self.write_debug(offset, &data);
                self.replies.push_back((id, Reply::Fs(result)));
            }
            fs => {
                let result = if self.storage_failed() {
                    Some(Err(EIO))
                } else if self.cluster_mode {
                    self.send_fs(now, id, fs)
                } else {
                    Some(self.apply_local(now, fs))
                };
                if let Some(result) = result {
                    self.replies.push_back((id, Reply::Fs(result)));
                }
            }
        }
    }

    /// `.debug`: `1\n` or `0\n` at offset 0 switch debug logging; anything
    /// else is EIO (C's special-file write rule).
    fn write_debug(&mut self, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        if offset != 0 || !(data.starts_with(b"0\n") || data.starts_with(b"1\n")) {
            return Err(EIO);
        }
        let on = data[0] == b'1';
        if on != self.debug() {
            if on {
                self.kvstore.app.status.debug = true;
                self.effects.push_back(Effect::Debug(true));
                self.log(Subsystem::Main, Level::Notice, "enable debug mode");
            } else {
                self.log(Subsystem::Main, Level::Notice, "disable debug mode");
                self.kvstore.app.status.debug = false;
                self.effects.push_back(Effect::Debug(false));
            }
        }
        Ok(2)
    }

    /// Local mode: apply at once, writer 0, stamped now (utimens uses the
    /// given mtime), as C's `-l`.
    fn apply_local(&mut self, now: Time, request: Request) -> Result<u32, Errno> {
        const WRITER: u32 = 0;
        let now = now.secs();
        let m = &mut self.dcdb.app.memdb;
        match request {
            Request::Mkdir { path } => m.mkdir(&path, WRITER, now, now).map(|_| 0),
            Request::Create { path } => m.create(&path, WRITER, now).map(|_| 0),
            Request::Write { path, offset, data } => {
                m.write(&path, WRITER, now, &data, offset, false)
            }
            Request::Truncate { path, size } => {
                m.write(&path, WRITER, now, &[], size, true).map(|_| 0)
            }
            Request::Delete { path } => m.delete(&path, WRITER, now).map(|_| 0),
            Request::Rename { from, to } => m.rename(&from, &to, WRITER, now).map(|_| 0),
            Request::SetMtime { path, mtime } => {
                if mtime == 0 && m.lock_checksum(&path).is_some() {
                    m.unlock_or_touch(&path, WRITER, now).map(|_| 0)
                } else {
                    m.set_mtime(&path, WRITER, mtime, now).map(|_| 0)
                }
            }
            Request::WriteDebug { .. } | Request::Ipc { .. } => Err(EIO),
        }
    }

    /// Cluster mode: multicast the operation; the reply comes with its own
    /// delivery (spec §2.6). `Some` is an immediate answer.
    fn send_fs(
        &mut self,
        now: Time,
        id: RequestId,
        request: Request,
    ) -> Option<Result<u32, Errno>> {
        if !self.quorate() {
            return Some(Err(EACCES));
        }
        if !self.joined[Group::Dcdb.index()] {
            return Some(Err(EBUSY));
        }
        // utime(0) on a lock directory: first ask the lowest node to
        // release it (without waiting), then the MTIME that fails while
        // the lock is fresh (spec §2.12).
        if let Request::SetMtime { path, mtime: 0 } = &request {
            if let Some(csum) = self.memdb().lock_checksum(path) {
                let unlock = UnlockMessage {
                    csum,
                    path: path.clone(),
                };
                self.dcdb.send_normal(
                    Subtype::UnlockRequest.into(),
                    &unlock.to_bytes(),
                    now.secs(),
                );
            }
        }
        let Some((subtype, message)) = super::super::requests::dcdb_message(request) else {
            return Some(Err(EIO));
        };
        match self
            .dcdb
            .send_normal(subtype.into(), &message.to_bytes(), now.secs())
        {
            Some(count) => {
                self.waiters.insert(count, id);
                None
            }
            None => Some(Err(EBUSY)),
        }
    }

    /// An IPC call. Broadcasts (SET_STATUS, LOG_CLUSTER_MSG) go out through
    /// the kvstore while we are in its group; otherwise only the local
    /// store changes, as when C's send fails.
    fn ipc(&mut self, now: Time, client: Client, bytes: &[u8]) -> Vec<u8> {
        let secs = now.secs();
        let broadcast = self.cluster_mode && self.joined[Group::Kvstore.index()];
        let Node { dcdb, kvstore, .. } = self;
        let memdb = &dcdb.app.memdb;
        if broadcast {
            kvstore.with_app(secs, |kv, env| ipc::handle(memdb, kv, env, client, bytes))
        } else {
            let mut env = Env::detached(secs);
            ipc::handle(memdb, &mut kvstore.app, &mut env, client, bytes)
        }
    }

    /// Answer an IPC request that only reads (every opcode but SET_STATUS
    /// and LOG_CLUSTER_MSG) at once, without the output batch; `None` for a
    /// request that must be fed as an input.
    pub fn query(&mut self, now: Time, client: Client, bytes: &[u8]) -> Option<Vec<u8>> {
        if !ipc::is_query(bytes) {
            return None;
        }
        let Node { dcdb, kvstore, .. } = self;
        let mut env = Env::detached(now.secs());
        Some(ipc::handle(
            &dcdb.app.memdb,
            &mut kvstore.app,
            &mut env,
            client,
            bytes,
        ))
    }
}
