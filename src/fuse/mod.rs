//! The /etc/pve mount: maps kernel requests (inode numbers, attributes,
//! replies) onto the node. What a path is, its modes, the special files
//! and every errno are the core's (`core::fs`, `core::memdb`); a change
//! is a request of the node (`core::node::Request`).

mod inodes;
pub mod notify;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, SessionACL, TimeOrNow, WriteFlags,
};

use crate::core::fs::{self as view, Fixed, Kind, Target};
use crate::core::logline::Subsystem;
use crate::core::memdb::BLOCK_SIZE;
use crate::core::node::{Reply, Request as NodeRequest};
use crate::core::paths::join;
use crate::host::{now, Host};
use crate::log;
use inodes::{InodeTable, ROOT_ID};

/// Writes reach us in chunks of at most 128 KiB, as with C's `big_writes`:
/// a write past 1 MiB is then short, and the next one fails with EFBIG.
const MAX_WRITE: u32 = 128 * 1024;
/// How long the kernel keeps a name and its attributes. C has libfuse's
/// 1 s, after which every open asks for the attributes again and every
/// path's names are looked up again. The kernel is told of every change it
/// did not make itself (`notify`), so it may keep them for long; the bound
/// only limits what a notification that went wrong could leave behind.
const TTL: Duration = Duration::from_secs(60);
/// Special files are regenerated on every stat.
const NO_TTL: Duration = Duration::ZERO;

/// The filesystem served at /etc/pve. Its threads never wait for the
/// cluster: a change hands the kernel's reply object to a completion and
/// the thread goes back to the next request (libfuse's loop in C starts
/// more threads instead; the effect for readers is the same).
pub struct PveFs(Arc<FsState>);

impl std::ops::Deref for PveFs {
    type Target = Arc<FsState>;
    fn deref(&self) -> &Arc<FsState> {
        &self.0
    }
}

/// What the FUSE threads and the completions of their changes share.
pub struct FsState {
    host: Arc<Host>,
    www_data_gid: u32,
    inodes: Mutex<InodeTable>,
    /// Special-file content captured at open, so reads of one open file are
    /// consistent.
    snapshots: Mutex<HashMap<u64, Vec<u8>>>,
    /// Directory listings by open directory handle, taken at the first
    /// readdir (offset 0), as libfuse's high-level API buffers them for
    /// C: the later pieces of one listing come from it, so listing a
    /// large directory is linear, and consistent.
    listings: Mutex<HashMap<u64, std::sync::Arc<Vec<(Vec<u8>, FileType)>>>>,
    next_fh: AtomicU64,
    /// The attributes of the costly special files, with the second they
    /// were generated in.
    stat_cache: Mutex<HashMap<view::Special, (u32, view::Attr)>>,
}

fn errno(e: i32) -> Errno {
    Errno::from_i32(e)
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
    }
}

fn time(secs: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

impl PveFs {
    /// What the mount's notifier needs (`notify::start`), kept before the
    /// filesystem is handed to the session.
    pub fn state(&self) -> Arc<FsState> {
        self.0.clone()
    }

    pub fn new(host: Arc<Host>, www_data_gid: u32) -> PveFs {
        PveFs(Arc::new(FsState {
            host,
            www_data_gid,
            inodes: Mutex::new(InodeTable::new()),
            snapshots: Mutex::new(HashMap::new()),
            listings: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            stat_cache: Mutex::new(HashMap::new()),
        }))
    }
}

/// The result of a change as the kernel hears it.
type Changed = Result<u32, Errno>;

impl FsState {
    fn table(&self) -> std::sync::MutexGuard<'_, InodeTable> {
        self.inodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path_of(&self, ino: INodeNo) -> Option<Vec<u8>> {
        self.table().path(ino.0)
    }

    fn target_of(&self, ino: INodeNo) -> Result<Target, Errno> {
        self.path_of(ino).map(view::classify).ok_or(Errno::ENOENT)
    }

    /// The kernel's attributes of a core answer.
    fn file_attr(&self, ino: u64, a: view::Attr) -> FileAttr {
        let kind = file_type(a.kind);
        FileAttr {
            ino: INodeNo(ino),
            size: a.size,
            blocks: a.blocks,
            atime: time(a.mtime),
            mtime: time(a.mtime),
            ctime: time(a.mtime),
            crtime: time(a.mtime),
            kind,
            perm: a.perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: 0,
            gid: self.www_data_gid,
            rdev: 0,
            blksize: BLOCK_SIZE as u32,
            flags: 0,
        }
    }

    /// Attributes and TTL of an inode number.
    fn attr(&self, ino: u64) -> Result<(FileAttr, Duration), Errno> {
        let target = self.target_of(INodeNo(ino))?;
        let ttl = if matches!(target, Target::Fixed(_)) {
            NO_TTL
        } else {
            TTL
        };
        let second = now().secs();
        // `.rrd` and `.clusterlog` are generated whole to know their size:
        // a stat of them takes the one generated within the same second,
        // so a local user who stats them in a loop does not hold the node
        // for every other reader (opening them generates them anew).
        let costly = match &target {
            Target::Fixed(Fixed::Special(
                sp @ (view::Special::Rrd | view::Special::Clusterlog),
            )) => Some(*sp),
            _ => None,
        };
        if let Some(sp) = costly {
            let cached = self
                .stat_cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&sp)
                .copied();
            if let Some((_, a)) = cached.filter(|(at, _)| *at == second) {
                return Ok((self.file_attr(ino, a), ttl));
            }
        }
        let a = view::attr(&self.host.lock().node, &target, second).map_err(errno)?;
        if let Some(sp) = costly {
            self.stat_cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(sp, (second, a));
        }
        Ok((self.file_attr(ino, a), ttl))
    }

    /// The path of `name` in directory `parent`, for operations that create
    /// or remove it; fixed root names and paths below them answer EACCES.
    fn child_path(&self, parent: INodeNo, name: &OsStr) -> Result<Vec<u8>, Errno> {
        let parent_path = self.path_of(parent).ok_or(Errno::ENOENT)?;
        let path = join(&parent_path, name.as_bytes());
        match view::classify(path) {
            Target::Memdb(p) => Ok(p),
            _ => Err(Errno::EACCES),
        }
    }

    /// Submit a change to the node; `then` gets its value or errno, on
    /// whichever thread learns it (in cluster mode: the driver's, once the
    /// change was delivered and committed).
    fn change_then(
        self: &Arc<Self>,
        request: NodeRequest,
        then: impl FnOnce(&Arc<FsState>, Changed) + Send + 'static,
    ) {
        let what = log::debug_enabled().then(|| request.describe());
        let fs = self.clone();
        self.host.submit(
            request,
            Box::new(move |reply| {
                let result = match reply {
                    Reply::Fs(r) => r,
                    Reply::Ipc(_) => Err(libc::EIO),
                };
                if let Some(what) = what {
                    log::debug(Subsystem::Main, &format!("fuse {what}: {result:?}"));
                }
                then(&fs, result.map_err(errno))
            }),
        );
    }

    /// Changes one after the other, stopping at the first error; `then`
    /// gets the last value (0 for none) or that error.
    fn changes_then(
        self: &Arc<Self>,
        mut requests: std::collections::VecDeque<NodeRequest>,
        then: impl FnOnce(&Arc<FsState>, Changed) + Send + 'static,
    ) {
        match requests.pop_front() {
            None => then(self, Ok(0)),
            Some(request) => self.change_then(request, move |fs, result| match result {
                Ok(_) if !requests.is_empty() => fs.changes_then(requests, then),
                other => then(fs, other),
            }),
        }
    }

    /// A debug line for a kernel request that reads (changes have theirs
    /// in `change`).
    fn trace(&self, op: &str, ino: INodeNo, name: Option<&OsStr>) {
        if log::debug_enabled() {
            let mut path = self.path_of(ino).unwrap_or_default();
            if let Some(n) = name {
                path = join(&path, n.as_bytes());
            }
            log::debug(
                Subsystem::Main,
                &format!("fuse {op} '{}'", String::from_utf8_lossy(&path)),
            );
        }
    }

    /// Reply with a newly looked-up entry.
    fn entry(&self, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let id = self.table().lookup(parent.0, name.as_bytes());
        match self.attr(id) {
            Ok((a, ttl)) => {
                self.table().set_dir(id, a.kind == FileType::Directory);
                reply.entry(&ttl, &a, Generation(0))
            }
            Err(e) => {
                self.table().forget(id, 1);
                reply.error(e)
            }
        }
    }

    fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    /// unlink and rmdir: one delete request (C's `cfs_fuse_unlink` and
    /// `cfs_fuse_rmdir` both send CFS_DELETE).
    fn remove(self: &Arc<Self>, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let path = match self.child_path(parent, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let name = name.to_owned();
        self.change_then(
            NodeRequest::Delete { path },
            move |fs, result| match result {
                Ok(_) => {
                    fs.table().detach(parent.0, name.as_bytes());
                    reply.ok()
                }
                Err(e) => reply.error(e),
            },
        )
    }

    /// mknod (of a regular file) and mkdir: the change, then the entry.
    fn make(
        self: &Arc<Self>,
        parent: INodeNo,
        name: &OsStr,
        request: impl FnOnce(Vec<u8>) -> NodeRequest,
        reply: ReplyEntry,
    ) {
        let path = match self.child_path(parent, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let name = name.to_owned();
        self.change_then(request(path), move |fs, result| match result {
            Ok(_) => fs.entry(parent, &name, reply),
            Err(e) => reply.error(e),
        })
    }

    /// The listing of an open directory: taken anew at offset 0, else the
    /// one taken then.
    fn listing_of(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
    ) -> Result<std::sync::Arc<Vec<(Vec<u8>, FileType)>>, Errno> {
        let mut listings = self.listings.lock().unwrap_or_else(|e| e.into_inner());
        if offset != 0 {
            if let Some(l) = listings.get(&fh.0) {
                return Ok(l.clone());
            }
        }
        drop(listings);
        let fresh = std::sync::Arc::new(self.listing(ino)?);
        listings = self.listings.lock().unwrap_or_else(|e| e.into_inner());
        if fh.0 != 0 {
            listings.insert(fh.0, fresh.clone());
        }
        Ok(fresh)
    }

    /// A directory's entries as readdir lists them (`core::fs::listing`).
    fn listing(&self, ino: INodeNo) -> Result<Vec<(Vec<u8>, FileType)>, Errno> {
        let path = match self.target_of(ino)? {
            Target::Root => Vec::new(),
            Target::Memdb(p) => p,
            _ => return Err(Errno::ENOTDIR),
        };
        let names = view::listing(self.host.lock().node.memdb(), &path);
        Ok(names
            .into_iter()
            .map(|(name, kind)| (name, file_type(kind)))
            .collect())
    }
}

/// What C's open sets: `direct_io`, no `keep_cache`, so reads always
/// reach the daemon.
fn open_flags() -> FopenFlags {
    FopenFlags::FOPEN_DIRECT_IO
}

/// What C's create answers: no flags. C sets `direct_io` in its open
/// handler only, so a file created by open(O_CREAT) is written through
/// the kernel's page cache, which hands the daemon pieces of 128 KiB
/// aligned on the file offset (a 1 MiB write: 8 pieces). A direct-I/O
/// write is cut at the caller's buffer pages instead (32 pages per
/// piece, so 9 pieces for an unaligned 1 MiB buffer) and every later
/// inode and version would differ from C's.
fn create_flags() -> FopenFlags {
    FopenFlags::empty()
}

impl Filesystem for PveFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(MAX_WRITE);
        // open(O_TRUNC) truncates in the open request instead of a
        // separate setattr (one round trip less; the same truncate
        // change); directory listings carry the entries' attributes, so
        // opening the files listed needs no lookup each.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_ATOMIC_O_TRUNC);
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_DO_READDIRPLUS);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _timer = crate::stats::fuse_request("lookup");
        self.trace("lookup", parent, Some(name));
        self.entry(parent, name, reply);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let _timer = crate::stats::fuse_request("forget");
        self.table().forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let _timer = crate::stats::fuse_request("getattr");
        self.trace("getattr", ino, None);
        match self.attr(ino.0) {
            Ok((a, ttl)) => reply.attr(&ttl, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _timer = crate::stats::fuse_request("setattr");
        // What to change, checked before anything is changed.
        let changes = (|| -> Result<std::collections::VecDeque<NodeRequest>, Errno> {
            let target = self.target_of(ino)?;
            let path = match &target {
                Target::Memdb(p) => p.clone(),
                Target::Root => Vec::new(),
                Target::Fixed(_) => Vec::new(),
                Target::NoPlug => return Err(Errno::EACCES),
            };
            // chmod and chown never change anything (core::fs).
            if mode.is_some_and(|m| !view::chmod_allowed(&path, m)) {
                return Err(Errno::EPERM);
            }
            if !view::chown_allowed(uid, gid, self.www_data_gid) {
                return Err(Errno::EPERM);
            }
            let mut changes = std::collections::VecDeque::new();
            if let Some(size) = size {
                changes.extend(view::truncate_request(&target, size).map_err(errno)?);
            }
            if let Some(t) = mtime {
                let mtime = match t {
                    TimeOrNow::Now => now().secs(),
                    TimeOrNow::SpecificTime(t) => t
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs() as u32)
                        .unwrap_or(0),
                };
                changes.push_back(view::mtime_request(&target, mtime).map_err(errno)?);
            }
            Ok(changes)
        })();
        match changes {
            Err(e) => reply.error(e),
            Ok(changes) => self.changes_then(changes, move |fs, result| {
                match result.and_then(|_| fs.attr(ino.0)) {
                    Ok((a, ttl)) => reply.attr(&ttl, &a),
                    Err(e) => reply.error(e),
                }
            }),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let _timer = crate::stats::fuse_request("readlink");
        self.trace("readlink", ino, None);
        match self.target_of(ino) {
            Ok(Target::Fixed(Fixed::Link(suffix))) => {
                let target = view::link_target(self.host.lock().node.nodename(), suffix);
                reply.data(target.as_bytes())
            }
            Ok(_) => reply.error(Errno::EACCES),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let _timer = crate::stats::fuse_request("mknod");
        // libfuse turns a regular-file mknod into create; nothing else exists.
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::ENOSYS);
        }
        self.make(parent, name, |path| NodeRequest::Create { path }, reply)
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let _timer = crate::stats::fuse_request("mkdir");
        self.make(parent, name, |path| NodeRequest::Mkdir { path }, reply)
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _timer = crate::stats::fuse_request("unlink");
        self.remove(parent, name, reply)
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let _timer = crate::stats::fuse_request("opendir");
        reply.opened(FileHandle(self.new_fh()), FopenFlags::empty());
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let _timer = crate::stats::fuse_request("releasedir");
        self.listings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&_fh.0);
        reply.ok();
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // As C (no access handler; default_permissions does the checks).
        let _timer = crate::stats::fuse_request("access");
        reply.error(Errno::ENOSYS);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _timer = crate::stats::fuse_request("rmdir");
        self.remove(parent, name, reply)
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        let _timer = crate::stats::fuse_request("other");
        reply.error(Errno::ENOSYS);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let _timer = crate::stats::fuse_request("rename");
        if !flags.is_empty() {
            // The libfuse 2 API of C has no rename flags.
            return reply.error(Errno::EINVAL);
        }
        let paths = self.child_path(parent, name).and_then(|from| {
            let to = self.child_path(newparent, newname)?;
            Ok((from, to))
        });
        let (from, to) = match paths {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let (name, newname) = (name.to_owned(), newname.to_owned());
        self.change_then(
            NodeRequest::Rename { from, to },
            move |fs, result| match result {
                Ok(_) => {
                    fs.table()
                        .rename(parent.0, name.as_bytes(), newparent.0, newname.as_bytes());
                    reply.ok()
                }
                Err(e) => reply.error(e),
            },
        )
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _timer = crate::stats::fuse_request("open");
        self.trace("open", ino, None);
        // O_TRUNC (atomic_o_trunc): the truncate C gets as a setattr right
        // after the open, with the same change (or error).
        let truncate = |target: &Target| -> Result<Option<NodeRequest>, Errno> {
            if flags.0 & libc::O_TRUNC != 0 {
                view::truncate_request(target, 0).map_err(errno)
            } else {
                Ok(None)
            }
        };
        let target = match self.target_of(ino) {
            Ok(t) => t,
            Err(e) => return reply.error(e),
        };
        match &target {
            Target::Memdb(path) => {
                if self.host.lock().node.memdb().lookup(path).is_none() {
                    return reply.error(Errno::ENOENT);
                }
                match truncate(&target) {
                    Err(e) => reply.error(e),
                    Ok(None) => reply.opened(FileHandle(0), open_flags()),
                    Ok(Some(change)) => self.change_then(change, move |_, result| match result {
                        Ok(_) => reply.opened(FileHandle(0), open_flags()),
                        Err(e) => reply.error(e),
                    }),
                }
            }
            Target::Fixed(Fixed::Special(sp)) => {
                // A truncate of a special file changes nothing (`.debug`)
                // or fails.
                if let Err(e) = truncate(&target) {
                    return reply.error(e);
                }
                let content = view::special_content(&self.host.lock().node, *sp, now().secs());
                let fh = self.new_fh();
                self.snapshots
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(fh, content);
                reply.opened(FileHandle(fh), open_flags())
            }
            _ => reply.error(Errno::EACCES),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _timer = crate::stats::fuse_request("read");
        self.trace("read", ino, None);
        let slice = |data: &[u8]| -> Vec<u8> {
            let start = (offset as usize).min(data.len());
            let end = start.saturating_add(size as usize).min(data.len());
            data[start..end].to_vec()
        };
        match self.target_of(ino) {
            Ok(Target::Memdb(path)) => {
                let s = self.host.lock();
                match s.node.memdb().lookup(&path) {
                    Some(e) => match view::read_file(e, offset, size) {
                        Ok(data) => reply.data(&data),
                        Err(e) => reply.error(errno(e)),
                    },
                    None => reply.error(Errno::ENOENT),
                }
            }
            Ok(Target::Fixed(Fixed::Special(sp))) => {
                let snap = self
                    .snapshots
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&fh.0)
                    .cloned();
                let content = snap.unwrap_or_else(|| {
                    view::special_content(&self.host.lock().node, sp, now().secs())
                });
                reply.data(&slice(&content))
            }
            Ok(_) => reply.error(Errno::EACCES),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _timer = crate::stats::fuse_request("write");
        let write = self
            .target_of(ino)
            .and_then(|target| view::write_request(&target, offset, data).map_err(errno));
        match write {
            Ok(write) => self.change_then(write, move |_, result| match result {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(e),
            }),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let _timer = crate::stats::fuse_request("flush");
        // As C (no flush handler): ENOSYS makes the kernel stop sending
        // flush requests, one round trip less per close.
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _timer = crate::stats::fuse_request("release");
        self.snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _timer = crate::stats::fuse_request("fsync");
        // Every change is committed before its request returns, durable
        // against a crash of the daemon (synchronous=NORMAL, as C). C
        // answers ENOSYS, which the kernel turns into success without the
        // data being any safer; here fsync(2) makes the committed changes
        // durable against a power loss too (a WAL checkpoint, synced).
        let synced = self.host.lock().db.sync();
        match synced {
            Ok(()) => reply.ok(),
            Err(e) => {
                log::crit(
                    Subsystem::Database,
                    &format!("fsync: cannot sync config.db: {e}"),
                );
                reply.error(Errno::EIO)
            }
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let _timer = crate::stats::fuse_request("readdir");
        self.trace("readdir", ino, None);
        let names = match self.listing_of(ino, fh, offset) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let table = self.table();
        for (i, (name, kind)) in names.iter().enumerate().skip(offset as usize) {
            let id = match name.as_slice() {
                b"." => ino.0,
                b".." => ROOT_ID,
                n => table.peek(ino.0, n).unwrap_or(u32::MAX as u64),
            };
            if reply.add(INodeNo(id), (i + 1) as u64, *kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let _timer = crate::stats::fuse_request("readdir");
        self.trace("readdirplus", ino, None);
        let names = match self.listing_of(ino, fh, offset) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let dir_attr = match self.attr(ino.0) {
            Ok((a, _)) => a,
            Err(e) => return reply.error(e),
        };
        for (i, (name, _)) in names.iter().enumerate().skip(offset as usize) {
            let next = (i + 1) as u64;
            // The kernel makes no dentry of "." and "..": they count no
            // lookup.
            if name == b"." || name == b".." {
                let id = if name == b"." { ino.0 } else { ROOT_ID };
                if reply.add(
                    INodeNo(id),
                    next,
                    OsStr::from_bytes(name),
                    &NO_TTL,
                    &dir_attr,
                    Generation(0),
                ) {
                    break;
                }
                continue;
            }
            // Every other entry is a lookup the kernel will forget.
            let id = self.table().lookup(ino.0, name);
            let Ok((attr, ttl)) = self.attr(id) else {
                self.table().forget(id, 1);
                continue;
            };
            if attr.kind == FileType::Directory {
                self.table().set_dir(id, true);
            }
            if reply.add(
                INodeNo(id),
                next,
                OsStr::from_bytes(name),
                &ttl,
                &attr,
                Generation(0),
            ) {
                self.table().forget(id, 1);
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let _timer = crate::stats::fuse_request("statfs");
        self.trace("statfs", _ino, None);
        let st = view::statfs(self.host.lock().node.memdb());
        reply.statfs(
            st.blocks,
            st.free_blocks,
            st.free_blocks,
            st.files,
            st.free_files,
            st.block_size,
            st.name_max,
            0,
        );
    }

    // xattrs: ENOSYS, as C (no handlers: libfuse's default). The kernel
    // remembers it, answers EOPNOTSUPP itself from then on, and stops
    // asking for security.capability before every write.
    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let _timer = crate::stats::fuse_request("other");
        reply.error(Errno::ENOSYS);
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        let _timer = crate::stats::fuse_request("getxattr");
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        let _timer = crate::stats::fuse_request("other");
        reply.error(Errno::ENOSYS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        let _timer = crate::stats::fuse_request("other");
        reply.error(Errno::ENOSYS);
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let _timer = crate::stats::fuse_request("create");
        let path = match self.child_path(parent, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let name = name.to_owned();
        self.change_then(NodeRequest::Create { path }, move |fs, result| {
            if let Err(e) = result {
                return reply.error(e);
            }
            let id = fs.table().lookup(parent.0, name.as_bytes());
            match fs.attr(id) {
                Ok((a, ttl)) => {
                    reply.created(&ttl, &a, Generation(0), FileHandle(0), create_flags())
                }
                Err(e) => {
                    fs.table().forget(id, 1);
                    reply.error(e)
                }
            }
        })
    }
}

/// Mount options of C: default_permissions, allow_other, and the kernel's
/// view `/dev/fuse /etc/pve fuse rw,nosuid,nodev,...`.
pub fn mount_config() -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("/dev/fuse".into()),
        MountOption::RW,
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::DefaultPermissions,
    ];
    config.acl = SessionACL::All;
    // Two threads: with one, every request waits for the thread to wake up
    // again (measured 4-7x slower); more than two did not help on 2 cores.
    config.n_threads = Some(2);
    config
}
