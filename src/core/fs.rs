//! What /etc/pve shows (spec §5, observed-behaviour §3): the fixed root
//! entries (symlinks and special files), which path is served by what,
//! the modes by path class and quorum, the contents of the special files,
//! and which chmod and chown C accepts. Pure; the FUSE edge maps kernel
//! requests onto these answers.

use super::errno::{Errno, EACCES, EFBIG, EIO, EISDIR, ENOENT};
use super::memdb::{Entry, Memdb, BLOCK_SIZE, MAX_FS_BLOCKS, MAX_INODES};
use super::node::{Node, Request};
use super::paths;
use super::status::Status;
use pmxcfs_wire::dcdb::MAX_FILE_SIZE;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Special {
    Version,
    Members,
    Vmlist,
    Rrd,
    Clusterlog,
    Debug,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fixed {
    /// A symlink to `nodes/<hostname>` + suffix.
    Link(&'static str),
    Special(Special),
}

/// The fixed root entries, in the order C lists them.
pub const FIXED: [(&str, Fixed); 10] = [
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

pub fn fixed(name: &[u8]) -> Option<Fixed> {
    FIXED
        .iter()
        .find(|(n, _)| n.as_bytes() == name)
        .map(|(_, f)| *f)
}

/// What a path (relative to the mount, no leading slash) is served by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Root,
    Fixed(Fixed),
    Memdb(Vec<u8>),
    /// Below a special file or symlink: C has no plug for it (EACCES).
    NoPlug,
}

pub fn classify(path: Vec<u8>) -> Target {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
}

/// The attributes C reports (the edge adds the inode number, root as
/// owner and the www-data group).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub kind: Kind,
    pub perm: u16,
    pub size: u64,
    pub blocks: u64,
    pub mtime: u32,
}

impl Attr {
    fn new(kind: Kind, perm: u32, size: u64, mtime: u32) -> Attr {
        Attr {
            kind,
            perm: perm as u16,
            size,
            blocks: size.div_ceil(BLOCK_SIZE),
            mtime,
        }
    }
}

/// C's legacy rule: OpenVZ action scripts get the owner execute bit.
pub fn is_openvz_script(name: &[u8]) -> bool {
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

/// Modes as C computes them (spec §5.3): 0777/0666 quorate, 0555/0444
/// not, then masked by 0700 for private paths, 0755 for directories and
/// symlinks, 0750 for files.
pub fn entry_attr(path: &[u8], e: &Entry, quorate: bool) -> Attr {
    let (kind, mut mode) = if e.is_dir() {
        (Kind::Dir, if quorate { 0o777 } else { 0o555 })
    } else {
        (Kind::File, if quorate { 0o666 } else { 0o444 })
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
    Attr::new(kind, mode & mask, e.size as u64, e.mtime)
}

/// The symlink target of a `Link` entry.
pub fn link_target(nodename: &str, suffix: &str) -> String {
    format!("nodes/{nodename}{suffix}")
}

/// The content of a special file, generated now.
pub fn special_content(node: &Node, special: Special, now: u32) -> Vec<u8> {
    let memdb = node.memdb();
    let kv = node.kv();
    match special {
        Special::Version => kv
            .status
            .version_json(&memdb.vmlist, &memdb.changes)
            .into_bytes(),
        Special::Members => kv.members_json().into_bytes(),
        Special::Vmlist => Status::vmlist_json(&memdb.vmlist).into_bytes(),
        Special::Rrd => kv.status.rrd_dump(now).into_bytes(),
        Special::Clusterlog => kv.status.clog.dump_json(0, None).into_bytes(),
        Special::Debug => kv.status.debug_text().as_bytes().to_vec(),
    }
}

/// The attributes of what `target` names. The root is always 0755; the
/// symlinks and special files have mtime 0 and no blocks (C's plugs leave
/// `st_blocks` at 0); a symlink's size is its target's length and a special
/// file's its content's, generated now.
pub fn attr(node: &Node, target: &Target, now: u32) -> Result<Attr, Errno> {
    match target {
        Target::Root => Ok(Attr::new(Kind::Dir, 0o755, 0, 0)),
        Target::Fixed(Fixed::Link(suffix)) => {
            let mode = if node.quorate() { 0o777 } else { 0o555 };
            let len = link_target(node.nodename(), suffix).len() as u64;
            Ok(Attr {
                blocks: 0,
                ..Attr::new(Kind::Symlink, mode & 0o755, len, 0)
            })
        }
        Target::Fixed(Fixed::Special(sp)) => {
            let perm = if *sp == Special::Debug { 0o640 } else { 0o440 };
            let len = special_content(node, *sp, now).len() as u64;
            Ok(Attr {
                blocks: 0,
                ..Attr::new(Kind::File, perm, len, 0)
            })
        }
        Target::Memdb(path) => {
            let e = node.memdb().lookup(path).ok_or(ENOENT)?;
            Ok(entry_attr(path, e, node.quorate()))
        }
        Target::NoPlug => Err(EACCES),
    }
}

/// chmod never changes anything; C accepts only the mode it would report
/// for a file of that class (0600 private, 0640 otherwise), even on a
/// directory.
pub fn chmod_allowed(path: &[u8], mode: u32) -> bool {
    let wanted = if paths::is_private(path) {
        0o600
    } else {
        0o640
    };
    mode & 0o7777 == wanted
}

/// chown never changes anything; C accepts root (or -1) as the owner and
/// www-data (or -1) as the group.
pub fn chown_allowed(uid: Option<u32>, gid: Option<u32>, www_data_gid: u32) -> bool {
    uid.is_none_or(|u| u == 0 || u == u32::MAX)
        && gid.is_none_or(|g| g == www_data_gid || g == u32::MAX)
}

/// Whether a change of `path` that came from a peer passes the rule the
/// mount applies to a local one: nothing at or below a fixed root name
/// (`.members`, `local`, ...), however the path is spelled (a peer's path
/// is not the kernel's: leading and doubled slashes are possible). The
/// tree's own rules (names, parents, limits) are memdb's, for both.
pub fn peer_path_allowed(path: &[u8]) -> bool {
    let first = super::paths::components(path).next().unwrap_or_default();
    first.is_empty() || fixed(first).is_none()
}

/// What a truncate (setattr's size, open's O_TRUNC) of `target` asks for:
/// a memdb file is changed; `.debug` takes it and stays as it is
/// (`None`); any other fixed entry, and the root, answer EIO, as C's.
pub fn truncate_request(target: &Target, size: u64) -> Result<Option<Request>, Errno> {
    match target {
        Target::Memdb(path) => {
            let size = u32::try_from(size).map_err(|_| EFBIG)?;
            Ok(Some(Request::Truncate {
                path: path.clone(),
                size,
            }))
        }
        Target::Fixed(Fixed::Special(Special::Debug)) => Ok(None),
        _ => Err(EIO),
    }
}

/// What a utimens of `target` asks for: only memdb entries have a time
/// to set (EACCES elsewhere, as C's).
pub fn mtime_request(target: &Target, mtime: u32) -> Result<Request, Errno> {
    match target {
        Target::Memdb(path) => Ok(Request::SetMtime {
            path: path.clone(),
            mtime,
        }),
        _ => Err(EACCES),
    }
}

/// What a write of `data` at `offset` to `target` asks for. A memdb file
/// takes it, clipped at the 1 MiB limit: a chunk that crosses it is
/// written up to the limit and reported short, so the caller sees what C
/// callers see (a short write ending at 1 MiB, then EFBIG) however the
/// kernel split the buffer. `.debug` takes its switch; other fixed
/// entries answer EIO, anything else EACCES.
pub fn write_request(target: &Target, offset: u64, data: &[u8]) -> Result<Request, Errno> {
    match target {
        Target::Memdb(path) => {
            let offset = u32::try_from(offset).map_err(|_| EFBIG)?;
            let room = (MAX_FILE_SIZE as usize).saturating_sub(offset as usize);
            let data = if room > 0 && data.len() > room {
                &data[..room]
            } else {
                data
            };
            Ok(Request::Write {
                path: path.clone(),
                offset,
                data: data.to_vec(),
            })
        }
        Target::Fixed(Fixed::Special(Special::Debug)) => Ok(Request::WriteDebug {
            offset,
            data: data.to_vec(),
        }),
        Target::Fixed(_) => Err(EIO),
        _ => Err(EACCES),
    }
}

/// `size` bytes at `offset` of a memdb file. A size without data (C's
/// truncate of an empty file to a length) reads as zeroes.
pub fn read_file(e: &Entry, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
    if e.is_dir() {
        return Err(EISDIR);
    }
    let len = e.size as usize;
    let start = (offset as usize).min(len);
    let end = start.saturating_add(size as usize).min(len);
    let data = e.data();
    let mut out = data[start.min(data.len())..end.min(data.len())].to_vec();
    out.resize(end - start, 0);
    Ok(out)
}

/// A directory's entries as readdir lists them: ".", "..", at the root the
/// fixed names, then memdb's children in its order, without memdb names
/// that the fixed root names hide. A missing or non-directory path lists
/// nothing more, as in C.
pub fn listing(memdb: &Memdb, path: &[u8]) -> Vec<(Vec<u8>, Kind)> {
    let mut names: Vec<(Vec<u8>, Kind)> =
        vec![(b".".to_vec(), Kind::Dir), (b"..".to_vec(), Kind::Dir)];
    if path.is_empty() {
        for (name, f) in FIXED {
            let kind = match f {
                Fixed::Link(_) => Kind::Symlink,
                Fixed::Special(_) => Kind::File,
            };
            names.push((name.as_bytes().to_vec(), kind));
        }
    }
    if let Some(dir) = memdb.lookup(path).filter(|e| e.is_dir()) {
        for e in memdb.children(dir.inode) {
            if path.is_empty() && fixed(&e.name).is_some() {
                continue;
            }
            let kind = if e.is_dir() { Kind::Dir } else { Kind::File };
            names.push((e.name.to_vec(), kind));
        }
    }
    names
}

/// What statfs reports: C's fixed totals, less what the tree uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Statfs {
    pub blocks: u64,
    pub free_blocks: u64,
    pub files: u64,
    pub free_files: u64,
    pub block_size: u32,
    pub name_max: u32,
}

pub fn statfs(memdb: &Memdb) -> Statfs {
    let (bytes, entries) = memdb.usage();
    Statfs {
        blocks: MAX_FS_BLOCKS,
        free_blocks: MAX_FS_BLOCKS.saturating_sub(bytes.div_ceil(BLOCK_SIZE)),
        files: MAX_INODES,
        free_files: MAX_INODES.saturating_sub(entries),
        block_size: BLOCK_SIZE as u32,
        name_max: 256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_classes() {
        assert_eq!(classify(Vec::new()), Target::Root);
        assert_eq!(classify(b"local".to_vec()), Target::Fixed(Fixed::Link("")));
        assert_eq!(classify(b".version/x".to_vec()), Target::NoPlug);
        assert_eq!(
            classify(b"nodes/a".to_vec()),
            Target::Memdb(b"nodes/a".to_vec())
        );
    }

    #[test]
    fn chmod_and_chown_rules_of_c() {
        assert!(chmod_allowed(b"storage.cfg", 0o640));
        assert!(!chmod_allowed(b"storage.cfg", 0o644));
        assert!(chmod_allowed(b"priv/x", 0o600));
        assert!(!chmod_allowed(b"priv/x", 0o640));
        assert!(chown_allowed(Some(0), Some(33), 33));
        assert!(chown_allowed(Some(0), None, 33));
        assert!(!chown_allowed(Some(1000), Some(33), 33));
        assert!(!chown_allowed(Some(0), Some(0), 33));
        assert!(is_openvz_script(b"101.mount"));
        assert!(is_openvz_script(b"vps.x"));
        assert!(!is_openvz_script(b"101.conf"));
    }

    #[test]
    fn change_rules_of_the_edges() {
        let memdb = Target::Memdb(b"a".to_vec());
        let debug = Target::Fixed(Fixed::Special(Special::Debug));
        let members = Target::Fixed(Fixed::Special(Special::Members));
        // A write crossing 1 MiB is clipped there; past it, the node's EFBIG.
        let big = vec![7u8; 200];
        match write_request(&memdb, MAX_FILE_SIZE as u64 - 100, &big).unwrap() {
            Request::Write { data, offset, .. } => {
                assert_eq!((data.len(), offset), (100, MAX_FILE_SIZE - 100))
            }
            other => panic!("{other:?}"),
        }
        match write_request(&memdb, MAX_FILE_SIZE as u64, &big).unwrap() {
            Request::Write { data, .. } => assert_eq!(data.len(), 200),
            other => panic!("{other:?}"),
        }
        assert_eq!(write_request(&memdb, 1 << 33, &big), Err(EFBIG));
        assert!(matches!(
            write_request(&debug, 0, b"1\n"),
            Ok(Request::WriteDebug { .. })
        ));
        assert_eq!(write_request(&members, 0, b"x"), Err(EIO));
        assert_eq!(write_request(&Target::Root, 0, b"x"), Err(EACCES));
        // Truncate: memdb changes, .debug takes it unchanged, others EIO.
        assert!(matches!(
            truncate_request(&memdb, 0),
            Ok(Some(Request::Truncate { size: 0, .. }))
        ));
        assert_eq!(truncate_request(&debug, 0), Ok(None));
        assert_eq!(truncate_request(&members, 0), Err(EIO));
        assert_eq!(truncate_request(&Target::Root, 0), Err(EIO));
        assert_eq!(mtime_request(&debug, 5), Err(EACCES));
    }

    #[test]
    fn peers_cannot_change_what_the_mount_does_not_let_a_local_user_change() {
        for bad in [
            ".members",
            "/.members",
            "//.version",
            "local/x",
            ".debug",
            "qemu-server",
        ] {
            assert!(!peer_path_allowed(bad.as_bytes()), "{bad}");
        }
        for good in [
            "storage.cfg",
            "/nodes/n1/x",
            "nodes//n1/qemu-server/100.conf",
            "",
        ] {
            assert!(peer_path_allowed(good.as_bytes()), "{good}");
        }
    }

    #[test]
    fn reads_listings_and_statfs() {
        let (mut m, _) = Memdb::new_empty(1000);
        m.create(b"f", 0, 1000).unwrap();
        m.write(b"f", 0, 1000, b"abc", 0, false).unwrap();
        // A size without data reads as zeroes.
        m.create(b"z", 0, 1000).unwrap();
        m.write(b"z", 0, 1000, &[], 4, true).unwrap();
        m.mkdir(b"d", 0, 1000, 1000).unwrap();
        // A memdb entry named like a fixed root name is hidden there.
        m.create(b".members", 0, 1000).unwrap();
        let f = m.lookup(b"f").unwrap();
        assert_eq!(read_file(f, 1, 10).unwrap(), b"bc");
        assert_eq!(read_file(f, 10, 10).unwrap(), b"");
        assert_eq!(read_file(m.lookup(b"z").unwrap(), 0, 10).unwrap(), [0; 4]);
        assert_eq!(read_file(m.lookup(b"d").unwrap(), 0, 1), Err(EISDIR));
        let names: Vec<Vec<u8>> = listing(&m, b"").into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names.iter().filter(|n| n.as_slice() == b".members").count(),
            1
        );
        assert!(names.contains(&b"f".to_vec()) && names.contains(&b"local".to_vec()));
        assert_eq!(listing(&m, b"d").len(), 2, ". and .. only");
        assert_eq!(listing(&m, b"missing").len(), 2);
        let st = statfs(&m);
        let (bytes, entries) = m.usage();
        assert_eq!(st.blocks - st.free_blocks, bytes.div_ceil(BLOCK_SIZE));
        assert_eq!(st.files - st.free_files, entries);
    }
}
