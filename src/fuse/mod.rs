//! The /etc/pve mount (spec §5, observed-behaviour §3): the fixed root
//! entries (symlinks and special files), memdb paths with C's modes and
//! ownership, and each operation's errno as the C daemon answers it. Every
//! decision about the tree is the core's; this layer maps FUSE requests to
//! paths and results to replies.

mod nodes;

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
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, SessionACL, TimeOrNow, WriteFlags,
};

use crate::core::memdb::{Entry, BLOCK_SIZE, MAX_FS_BLOCKS, MAX_INODES};
use crate::core::paths;
use crate::node::{now, Node, NodeState};
use nodes::{NodeTable, ROOT_ID};
use pmxcfs_wire::dcdb::MAX_FILE_SIZE;

/// Writes reach us in chunks of at most 128 KiB, as with C's `big_writes`:
/// a write past 1 MiB is then short, and the next one fails with EFBIG.
const MAX_WRITE: u32 = 128 * 1024;
/// libfuse's default entry and attribute timeout, which C uses.
const TTL: Duration = Duration::from_secs(1);
/// Special files are regenerated on every stat.
const NO_TTL: Duration = Duration::ZERO;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Special {
    Version,
    Members,
    Vmlist,
    Rrd,
    Clusterlog,
    Debug,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fixed {
    /// A symlink to `nodes/<hostname>` + suffix.
    Link(&'static str),
    Special(Special),
}

const FIXED: [(&str, Fixed); 10] = [
    ("local", Fixed::Link("")),
    ("qemu-server", Fixed::Link("/qemu-server")),
    ("lxc", Fixed::Link("/lxc")),
    ("openvz", Fixed::Link("/openvz")),
    (".version", Fixed::Special(Special::Version)),
    (".members", Fixed::Special(Special::Members)),
    (".vmlist", Fixed::Special(Special::Vmlist)),
    (".rrd", Fixed::Special(Special::Rrd)),
    (".clusterlog", Fixed::Special(Special::Clusterlog)),
    (".debug", Fixed::Special(Special::Debug)),
];

fn fixed(path: &[u8]) -> Option<Fixed> {
    FIXED
        .iter()
        .find(|(n, _)| n.as_bytes() == path)
        .map(|(_, f)| *f)
}

/// What a path is served by.
enum Target {
    Root,
    Fixed(Fixed),
    Memdb(Vec<u8>),
    /// Below a special file or symlink: C has no plug for it (EACCES).
    NoPlug,
}

fn classify(path: Vec<u8>) -> Target {
    if path.is_empty() {
        return Target::Root;
    }
    if let Some(f) = fixed(&path) {
        return Target::Fixed(f);
    }
    let first = path.split(|&b| b == b'/').next().unwrap_or_default();
    if fixed(first).is_some() {
        return Target::NoPlug;
    }
    Target::Memdb(path)
}

/// The filesystem served at /etc/pve.
pub struct PveFs {
    node: Arc<Node>,
    hostname: String,
    www_data_gid: u32,
    nodes: Mutex<NodeTable>,
    /// Special-file content captured at open, so reads of one open file are
    /// consistent.
    snapshots: Mutex<HashMap<u64, Vec<u8>>>,
    next_fh: AtomicU64,
}

fn errno(e: i32) -> Errno {
    Errno::from_i32(e)
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        [parent, b"/", name].concat()
    }
}

fn time(secs: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

/// C's legacy rule: OpenVZ action scripts get the owner execute bit.
fn is_openvz_script(name: &[u8]) -> bool {
    if name.starts_with(b"vps.") {
        return true;
    }
    let Some(dot) = name.iter().position(|&b| b == b'.') else {
        return false;
    };
    let (id, ext) = (&name[..dot], &name[dot + 1..]);
    paths::parse_vmid(id).is_some()
        && matches!(
            ext,
            b"mount" | b"umount" | b"start" | b"stop" | b"premount" | b"postumount"
        )
}

impl PveFs {
    pub fn new(node: Arc<Node>, hostname: &str, www_data_gid: u32) -> PveFs {
        PveFs {
            node,
            hostname: hostname.to_string(),
            www_data_gid,
            nodes: Mutex::new(NodeTable::new()),
            snapshots: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, NodeTable> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path_of(&self, ino: INodeNo) -> Option<Vec<u8>> {
        self.table().path(ino.0)
    }

    fn target_of(&self, ino: INodeNo) -> Result<Target, Errno> {
        self.path_of(ino).map(classify).ok_or(Errno::ENOENT)
    }

    fn link_target(&self, suffix: &str) -> String {
        format!("nodes/{}{}", self.hostname, suffix)
    }

    fn special_content(&self, s: &NodeState, special: Special) -> Vec<u8> {
        match special {
            Special::Version => s
                .kv()
                .status
                .version_json(&s.memdb().vmlist, &s.memdb().changes)
                .into_bytes(),
            Special::Members => s.kv().members_json().into_bytes(),
            Special::Vmlist => {
                crate::core::status::Status::vmlist_json(&s.memdb().vmlist).into_bytes()
            }
            Special::Rrd => s.kv().status.rrd_dump(now()).into_bytes(),
            Special::Clusterlog => s.kv().status.clog.dump_json(0, None).into_bytes(),
            Special::Debug => s.kv().status.debug_text().as_bytes().to_vec(),
        }
    }

    fn base_attr(&self, ino: u64, kind: FileType, perm: u16, size: u64, mtime: u32) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(BLOCK_SIZE),
            atime: time(mtime),
            mtime: time(mtime),
            ctime: time(mtime),
            crtime: time(mtime),
            kind,
            perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: 0,
            gid: self.www_data_gid,
            rdev: 0,
            blksize: BLOCK_SIZE as u32,
            flags: 0,
        }
    }

    /// Modes as C computes them (spec §5.3): 0777/0666 quorate, 0555/0444
    /// not, then masked by 0700 for private paths, 0755 for directories and
    /// symlinks, 0750 for files.
    fn memdb_attr(&self, ino: u64, path: &[u8], e: &Entry, quorate: bool) -> FileAttr {
        let (kind, mut mode) = if e.is_dir() {
            (FileType::Directory, if quorate { 0o777 } else { 0o555 })
        } else {
            (FileType::RegularFile, if quorate { 0o666 } else { 0o444 })
        };
        if !e.is_dir() && is_openvz_script(&e.name) {
            mode |= 0o100;
        }
        let mask = if paths::is_private(path) {
            0o700
        } else if e.is_dir() {
            0o755
        } else {
            0o750
        };
        self.base_attr(ino, kind, (mode & mask) as u16, e.size as u64, e.mtime)
    }

    /// The symlinks and special files: no blocks (C's plugs leave
    /// `st_blocks` at 0; only memdb entries count their size in blocks).
    fn fixed_attr(&self, ino: u64, f: Fixed, s: &NodeState) -> FileAttr {
        let mut attr = match f {
            Fixed::Link(suffix) => {
                let mode = if s.quorate() { 0o777 } else { 0o555 };
                let len = self.link_target(suffix).len() as u64;
                self.base_attr(ino, FileType::Symlink, mode & 0o755, len, 0)
            }
            Fixed::Special(sp) => {
                let perm = if sp == Special::Debug { 0o640 } else { 0o440 };
                let len = self.special_content(s, sp).len() as u64;
                self.base_attr(ino, FileType::RegularFile, perm, len, 0)
            }
        };
        attr.blocks = 0;
        attr
    }

    /// Attributes and TTL of a node id.
    fn attr(&self, ino: u64) -> Result<(FileAttr, Duration), Errno> {
        let target = self.target_of(INodeNo(ino))?;
        let s = self.node.lock();
        match target {
            Target::Root => {
                let root = s.memdb().root();
                let mut a = self.base_attr(ino, FileType::Directory, 0o755, 0, 0);
                a.mtime = time(0);
                let _ = root;
                Ok((a, TTL))
            }
            Target::Fixed(f) => Ok((self.fixed_attr(ino, f, &s), NO_TTL)),
            Target::Memdb(path) => {
                let e = s.memdb().lookup(&path).ok_or(Errno::ENOENT)?;
                Ok((self.memdb_attr(ino, &path, e, s.quorate()), TTL))
            }
            Target::NoPlug => Err(Errno::EACCES),
        }
    }

    /// The path of `name` in directory `parent`, for operations that create
    /// or remove it; fixed root names and paths below them answer EACCES.
    fn child_path(&self, parent: INodeNo, name: &OsStr) -> Result<Vec<u8>, Errno> {
        let parent_path = self.path_of(parent).ok_or(Errno::ENOENT)?;
        let path = join(&parent_path, name.as_bytes());
        match classify(path) {
            Target::Memdb(p) => Ok(p),
            _ => Err(Errno::EACCES),
        }
    }

    /// Reply with a newly looked-up entry.
    fn entry(&self, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let id = self.table().lookup(parent.0, name.as_bytes());
        match self.attr(id) {
            Ok((a, ttl)) => reply.entry(&ttl, &a, Generation(0)),
            Err(e) => {
                self.table().forget(id, 1);
                reply.error(e)
            }
        }
    }

    fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
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
}

impl Filesystem for PveFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(MAX_WRITE);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.entry(parent, name, reply);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.table().forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
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
        let result = (|| -> Result<(), Errno> {
            let target = self.target_of(ino)?;
            let path = match &target {
                Target::Memdb(p) => p.clone(),
                Target::Root => Vec::new(),
                Target::Fixed(_) => Vec::new(),
                Target::NoPlug => return Err(Errno::EACCES),
            };
            // chmod and chown never change anything; C accepts only the
            // values it would report anyway.
            if let Some(mode) = mode {
                let wanted = if paths::is_private(&path) {
                    0o600
                } else {
                    0o640
                };
                if mode & 0o7777 != wanted {
                    return Err(Errno::EPERM);
                }
            }
            if uid.is_some_and(|u| u != 0 && u != u32::MAX) {
                return Err(Errno::EPERM);
            }
            if gid.is_some_and(|g| g != self.www_data_gid && g != u32::MAX) {
                return Err(Errno::EPERM);
            }
            if let Some(size) = size {
                match &target {
                    Target::Memdb(p) => {
                        let size = u32::try_from(size).map_err(|_| Errno::EFBIG)?;
                        self.node.truncate(p, size).map_err(errno)?;
                    }
                    Target::Fixed(Fixed::Special(Special::Debug)) => {}
                    _ => return Err(Errno::EIO),
                }
            }
            if let Some(t) = mtime {
                let secs = match t {
                    TimeOrNow::Now => now(),
                    TimeOrNow::SpecificTime(t) => t
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs() as u32)
                        .unwrap_or(0),
                };
                match &target {
                    Target::Memdb(p) => self.node.set_mtime(p, secs).map_err(errno)?,
                    _ => return Err(Errno::EACCES),
                }
            }
            Ok(())
        })();
        match result.and_then(|_| self.attr(ino.0)) {
            Ok((a, ttl)) => reply.attr(&ttl, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.target_of(ino) {
            Ok(Target::Fixed(Fixed::Link(suffix))) => {
                reply.data(self.link_target(suffix).as_bytes())
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
        // libfuse turns a regular-file mknod into create; nothing else exists.
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::ENOSYS);
        }
        match self
            .child_path(parent, name)
            .and_then(|p| self.node.create(&p).map_err(errno))
        {
            Ok(()) => self.entry(parent, name, reply),
            Err(e) => reply.error(e),
        }
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
        match self
            .child_path(parent, name)
            .and_then(|p| self.node.mkdir(&p).map_err(errno))
        {
            Ok(()) => self.entry(parent, name, reply),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self
            .child_path(parent, name)
            .and_then(|p| self.node.delete(&p).map_err(errno))
        {
            Ok(()) => {
                self.table().detach(parent.0, name.as_bytes());
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.unlink(req, parent, name, reply)
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
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
        if !flags.is_empty() {
            // The libfuse 2 API of C has no rename flags.
            return reply.error(Errno::EINVAL);
        }
        let result = self.child_path(parent, name).and_then(|from| {
            let to = self.child_path(newparent, newname)?;
            self.node.rename(&from, &to).map_err(errno)
        });
        match result {
            Ok(()) => {
                self.table()
                    .rename(parent.0, name.as_bytes(), newparent.0, newname.as_bytes());
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.target_of(ino) {
            Ok(Target::Memdb(path)) => {
                if self.node.lock().memdb().lookup(&path).is_some() {
                    reply.opened(FileHandle(0), Self::open_flags())
                } else {
                    reply.error(Errno::ENOENT)
                }
            }
            Ok(Target::Fixed(Fixed::Special(sp))) => {
                let content = {
                    let s = self.node.lock();
                    self.special_content(&s, sp)
                };
                let fh = self.new_fh();
                self.snapshots
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(fh, content);
                reply.opened(FileHandle(fh), Self::open_flags())
            }
            Ok(_) => reply.error(Errno::EACCES),
            Err(e) => reply.error(e),
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
        let slice = |data: &[u8]| -> Vec<u8> {
            let start = (offset as usize).min(data.len());
            let end = start.saturating_add(size as usize).min(data.len());
            data[start..end].to_vec()
        };
        match self.target_of(ino) {
            Ok(Target::Memdb(path)) => {
                let s = self.node.lock();
                match s.memdb().lookup(&path) {
                    Some(e) if !e.is_dir() => {
                        let data = e.data();
                        if data.len() >= e.size as usize {
                            reply.data(&slice(&data[..e.size as usize]))
                        } else {
                            // A size without data (C's empty-file truncate)
                            // reads as zeroes.
                            let mut padded = data.to_vec();
                            padded.resize(e.size as usize, 0);
                            reply.data(&slice(&padded))
                        }
                    }
                    Some(_) => reply.error(Errno::EISDIR),
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
                    let s = self.node.lock();
                    self.special_content(&s, sp)
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
        match self.target_of(ino) {
            Ok(Target::Memdb(path)) => {
                let Ok(offset) = u32::try_from(offset) else {
                    return reply.error(Errno::EFBIG);
                };
                // A chunk that crosses the 1 MiB limit is written up to the
                // limit and reported short, so the caller sees exactly what
                // C callers see (a short write ending at 1 MiB, then EFBIG)
                // however the kernel happened to split the user's buffer.
                let room = (MAX_FILE_SIZE as usize).saturating_sub(offset as usize);
                let data = if room > 0 && data.len() > room {
                    &data[..room]
                } else {
                    data
                };
                match self.node.write(&path, offset, data) {
                    Ok(n) => reply.written(n),
                    Err(e) => reply.error(errno(e)),
                }
            }
            Ok(Target::Fixed(Fixed::Special(Special::Debug))) => {
                // `0\n` or `1\n` at offset 0 switches debug logging.
                if offset == 0
                    && data.len() >= 2
                    && (data.starts_with(b"0\n") || data.starts_with(b"1\n"))
                {
                    let on = data[0] == b'1';
                    self.node.lock().kv_mut().status.debug = on;
                    crate::log::set_debug(on);
                    reply.written(2)
                } else {
                    reply.error(Errno::EIO)
                }
            }
            Ok(Target::Fixed(_)) => reply.error(Errno::EIO),
            Ok(_) => reply.error(Errno::EACCES),
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
        // Every change is committed before its request returns; ENOSYS (as
        // C, which has no fsync handler) tells the kernel so once, and
        // fsync() then returns 0 without asking again.
        reply.error(Errno::ENOSYS);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let target = match self.target_of(ino) {
            Ok(t) => t,
            Err(e) => return reply.error(e),
        };
        let path = match target {
            Target::Root => Vec::new(),
            Target::Memdb(p) => p,
            _ => return reply.error(Errno::ENOTDIR),
        };
        let mut names: Vec<(Vec<u8>, FileType)> = vec![
            (b".".to_vec(), FileType::Directory),
            (b"..".to_vec(), FileType::Directory),
        ];
        if path.is_empty() {
            for (name, f) in FIXED {
                let kind = match f {
                    Fixed::Link(_) => FileType::Symlink,
                    Fixed::Special(_) => FileType::RegularFile,
                };
                names.push((name.as_bytes().to_vec(), kind));
            }
        }
        {
            let s = self.node.lock();
            // A missing or non-directory path lists nothing, as in C.
            if let Some(dir) = s.memdb().lookup(&path).filter(|e| e.is_dir()) {
                for e in s.memdb().children(dir.inode) {
                    if path.is_empty() && fixed(&e.name).is_some() {
                        continue;
                    }
                    let kind = if e.is_dir() {
                        FileType::Directory
                    } else {
                        FileType::RegularFile
                    };
                    names.push((e.name.clone(), kind));
                }
            }
        }
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

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (bytes, entries) = self.node.lock().memdb().usage();
        let free = MAX_FS_BLOCKS.saturating_sub(bytes.div_ceil(BLOCK_SIZE));
        let ffree = MAX_INODES.saturating_sub(entries);
        reply.statfs(
            MAX_FS_BLOCKS,
            free,
            free,
            MAX_INODES,
            ffree,
            BLOCK_SIZE as u32,
            256,
            0,
        );
    }

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
        reply.error(Errno::ENOTSUP);
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::ENOTSUP);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOTSUP);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::ENOTSUP);
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
        let created = self
            .child_path(parent, name)
            .and_then(|p| self.node.create(&p).map_err(errno));
        if let Err(e) = created {
            return reply.error(e);
        }
        let id = self.table().lookup(parent.0, name.as_bytes());
        match self.attr(id) {
            Ok((a, ttl)) => {
                reply.created(&ttl, &a, Generation(0), FileHandle(0), Self::create_flags())
            }
            Err(e) => {
                self.table().forget(id, 1);
                reply.error(e)
            }
        }
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
