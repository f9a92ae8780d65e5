//! dcdb, the replicated configuration database on CPG group `pve_dcdb_v1`
//! (spec §2): the NORMAL payloads that carry file-system operations, the
//! memdb index sent as STATE, the tree entry sent as UPDATE, and the verify
//! round.

use crate::codec::{
    array_field, bytes_field, expect_len, expect_min_len, fail, len_u32, nul_terminated_field,
    rest, u32_field, u64_field, u8_field, Codec, ErrorKind, PResult, Put,
};
use crate::dfsm::{Framing, MessageType, Sequence};

/// The CPG group name as C joins it: the trailing NUL is part of the name.
pub const GROUP_NAME: &[u8] = b"pve_dcdb_v1\0";
pub const PROTOCOL_VERSION: u32 = 1;
/// Files are limited to 1 MiB (`offset + count`).
pub const MAX_FILE_SIZE: u32 = 1024 * 1024;

/// NORMAL message subtypes (spec §2.2). C leaves the group on any other
/// value; it is kept here so the caller can decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subtype {
    Write,
    Mkdir,
    Delete,
    Rename,
    Create,
    Mtime,
    UnlockRequest,
    Unlock,
    Unknown(u16),
}

impl From<u16> for Subtype {
    fn from(v: u16) -> Self {
        match v {
            1 => Subtype::Write,
            2 => Subtype::Mkdir,
            3 => Subtype::Delete,
            4 => Subtype::Rename,
            5 => Subtype::Create,
            6 => Subtype::Mtime,
            7 => Subtype::UnlockRequest,
            8 => Subtype::Unlock,
            n => Subtype::Unknown(n),
        }
    }
}

impl From<Subtype> for u16 {
    fn from(s: Subtype) -> u16 {
        match s {
            Subtype::Write => 1,
            Subtype::Mkdir => 2,
            Subtype::Delete => 3,
            Subtype::Rename => 4,
            Subtype::Create => 5,
            Subtype::Mtime => 6,
            Subtype::UnlockRequest => 7,
            Subtype::Unlock => 8,
            Subtype::Unknown(n) => n,
        }
    }
}

impl Subtype {
    pub fn name(self) -> &'static str {
        match self {
            Subtype::Write => "WRITE",
            Subtype::Mkdir => "MKDIR",
            Subtype::Delete => "DELETE",
            Subtype::Rename => "RENAME",
            Subtype::Create => "CREATE",
            Subtype::Mtime => "MTIME",
            Subtype::UnlockRequest => "UNLOCK_REQUEST",
            Subtype::Unlock => "UNLOCK",
            Subtype::Unknown(_) => "UNKNOWN",
        }
    }

    /// Subtypes whose payload is the fuse message layout.
    pub fn carries_fuse_message(self) -> bool {
        matches!(
            self,
            Subtype::Write
                | Subtype::Mkdir
                | Subtype::Delete
                | Subtype::Rename
                | Subtype::Create
                | Subtype::Mtime
        )
    }
}

/// The payload of WRITE..MTIME (spec §2.3).
///
/// `path` and `to` hold the string bytes without their terminating NUL;
/// `None` stands for a zero length on the wire (C then has a NULL path).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FuseMessage {
    /// Write offset; the new length for a truncate; the new mtime for MTIME.
    pub offset: u32,
    /// WRITE: 1 = truncate. Others: 0.
    pub flags: u32,
    pub path: Option<Vec<u8>>,
    pub to: Option<Vec<u8>>,
    pub data: Vec<u8>,
}

impl FuseMessage {
    pub const FIXED_LEN: usize = 20;

    pub fn new(path: &str) -> FuseMessage {
        FuseMessage {
            path: Some(path.as_bytes().to_vec()),
            ..FuseMessage::default()
        }
    }

    /// The path as the C receiver sees it (up to the first NUL), lossily
    /// converted for display.
    pub fn path_lossy(&self) -> Option<String> {
        self.path.as_deref().map(lossy_c_str)
    }

    pub fn to_lossy(&self) -> Option<String> {
        self.to.as_deref().map(lossy_c_str)
    }
}

impl Codec for FuseMessage {
    const NAME: &'static str = "fuse message";

    fn parse(i: &[u8]) -> PResult<'_, Self> {
        let whole = i;
        expect_min_len(i, "fuse message", Self::FIXED_LEN)?;
        let (i, size) = u32_field("size")(i)?;
        let (i, offset) = u32_field("offset")(i)?;
        let (i, pathlen) = u32_field("pathlen")(i)?;
        let (i, tolen) = u32_field("tolen")(i)?;
        let (i, flags) = u32_field("flags")(i)?;
        // C: payload length == 20 + size + pathlen + tolen, computed without
        // overflow here.
        let expected = Self::FIXED_LEN as u64 + size as u64 + pathlen as u64 + tolen as u64;
        if expected != whole.len() as u64 {
            return Err(fail(
                whole,
                "size + pathlen + tolen",
                ErrorKind::LengthMismatch {
                    expected: usize::try_from(expected).unwrap_or(usize::MAX),
                    actual: whole.len(),
                },
            ));
        }
        let (i, path) = optional_c_string(i, "path", pathlen as usize)?;
        let (i, to) = optional_c_string(i, "to", tolen as usize)?;
        let (i, data) = bytes_field("data", size as usize)(i)?;
        Ok((
            i,
            FuseMessage {
                offset,
                flags,
                path,
                to,
                data: data.to_vec(),
            },
        ))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let c_len = |s: &Option<Vec<u8>>| s.as_ref().map_or(0, |s| len_u32(s.len() + 1));
        out.put_u32(len_u32(self.data.len()));
        out.put_u32(self.offset);
        out.put_u32(c_len(&self.path));
        out.put_u32(c_len(&self.to));
        out.put_u32(self.flags);
        for s in [&self.path, &self.to].into_iter().flatten() {
            out.put_bytes(s);
            out.put_u8(0);
        }
        out.put_bytes(&self.data);
    }
}

fn lossy_c_str(bytes: &[u8]) -> String {
    String::from_utf8_lossy(crate::codec::c_str(bytes)).into_owned()
}

fn optional_c_string<'a>(
    i: &'a [u8],
    field: &'static str,
    len: usize,
) -> PResult<'a, Option<Vec<u8>>> {
    if len == 0 {
        return Ok((i, None));
    }
    let (i, s) = nul_terminated_field(field, len)(i)?;
    Ok((i, Some(s[..s.len() - 1].to_vec())))
}

/// The payload of UNLOCK_REQUEST and UNLOCK (spec §2.4): the entry checksum
/// of the lock directory and its path. Not the fuse message layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnlockMessage {
    pub csum: [u8; 32],
    /// Without the terminating NUL.
    pub path: Vec<u8>,
}

impl UnlockMessage {
    pub fn path_lossy(&self) -> String {
        lossy_c_str(&self.path)
    }
}

impl Codec for UnlockMessage {
    const NAME: &'static str = "unlock message";

    fn parse(i: &[u8]) -> PResult<'_, Self> {
        expect_min_len(i, "unlock message", 33)?;
        let (i, csum) = array_field::<32>("csum")(i)?;
        let (i, path) = nul_terminated_field("path", i.len())(i)?;
        Ok((
            i,
            UnlockMessage {
                csum,
                path: path[..path.len() - 1].to_vec(),
            },
        ))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.put_bytes(&self.csum);
        out.put_bytes(&self.path);
        out.put_u8(0);
    }
}

pub const DT_DIR: u8 = 4;
pub const DT_REG: u8 = 8;

/// Inode type as stored in memory, on the wire and in SQLite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryType {
    Dir,
    Reg,
    Unknown(u8),
}

impl From<u8> for EntryType {
    fn from(v: u8) -> Self {
        match v {
            DT_DIR => EntryType::Dir,
            DT_REG => EntryType::Reg,
            n => EntryType::Unknown(n),
        }
    }
}

impl From<EntryType> for u8 {
    fn from(t: EntryType) -> u8 {
        match t {
            EntryType::Dir => DT_DIR,
            EntryType::Reg => DT_REG,
            EntryType::Unknown(n) => n,
        }
    }
}

/// A memdb tree entry as sent in UPDATE (spec §2.9) and hashed by the
/// digests (spec §2.7).
///
/// `size` is kept beside `data` because C can hold a size without data
/// (truncating an empty file, spec §2.5.1); on the wire data follows only
/// for regular files with size > 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    pub parent: u64,
    pub inode: u64,
    pub version: u64,
    pub writer: u32,
    pub mtime: u32,
    pub size: u32,
    pub entry_type: EntryType,
    /// Without the terminating NUL; empty for the root.
    pub name: Vec<u8>,
    pub data: Vec<u8>,
}

impl TreeEntry {
    /// The fixed part before the name: 8+8+8+4+4+4+4+1.
    pub const FIXED_LEN: usize = 41;

    pub fn name_lossy(&self) -> String {
        lossy_c_str(&self.name)
    }

    pub fn is_dir(&self) -> bool {
        self.entry_type == EntryType::Dir
    }
}

impl Codec for TreeEntry {
    const NAME: &'static str = "tree entry";

    fn parse(i: &[u8]) -> PResult<'_, Self> {
        // C checks >= 40 but reads the type byte at offset 40; a 40-byte
        // payload would make it read past the message, so 41 is required.
        expect_min_len(i, "tree entry", Self::FIXED_LEN)?;
        let (i, parent) = u64_field("parent")(i)?;
        let (i, inode) = u64_field("inode")(i)?;
        let (i, version) = u64_field("version")(i)?;
        let (i, writer) = u32_field("writer")(i)?;
        let (i, mtime) = u32_field("mtime")(i)?;
        let (i, size) = u32_field("size")(i)?;
        let (i, namelen) = u32_field("namelen")(i)?;
        let type_at = i;
        let (i, type_byte) = u8_field("type")(i)?;
        if type_byte != DT_DIR && type_byte != DT_REG {
            return Err(fail(
                type_at,
                "type",
                ErrorKind::InvalidValue {
                    value: type_byte as u64,
                },
            ));
        }
        let expected = size as u64 + namelen as u64;
        if expected != i.len() as u64 {
            return Err(fail(
                i,
                "size + namelen",
                ErrorKind::LengthMismatch {
                    expected: usize::try_from(expected).unwrap_or(usize::MAX),
                    actual: i.len(),
                },
            ));
        }
        let (i, name) = nul_terminated_field("name", namelen as usize)(i)?;
        let (i, data) = bytes_field("data", size as usize)(i)?;
        Ok((
            i,
            TreeEntry {
                parent,
                inode,
                version,
                writer,
                mtime,
                size,
                entry_type: type_byte.into(),
                name: name[..name.len() - 1].to_vec(),
                data: data.to_vec(),
            },
        ))
    }

    /// The UPDATE payload. Data is sent only for regular files with size > 0,
    /// exactly as C does; a size without data (C's empty-file truncate quirk)
    /// cannot be sent and is sent as zeroes of that size.
    fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64(self.parent);
        out.put_u64(self.inode);
        out.put_u64(self.version);
        out.put_u32(self.writer);
        out.put_u32(self.mtime);
        out.put_u32(self.size);
        out.put_u32(len_u32(self.name.len() + 1));
        out.put_u8(self.entry_type.into());
        out.put_bytes(&self.name);
        out.put_u8(0);
        if self.size > 0 {
            let size = self.size as usize;
            let data = &self.data[..self.data.len().min(size)];
            out.put_bytes(data);
            out.resize(out.len() + (size - data.len()), 0);
        }
    }
}

/// One 40-byte entry of the memdb index: inode and index digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IndexEntry {
    pub inode: u64,
    pub digest: [u8; 32],
}

impl IndexEntry {
    pub const LEN: usize = 40;
}

/// The memdb index, the dcdb STATE payload (spec §2.7.1).
///
/// The receiving C node only checks `len ≥ 32` and `len == bytes`; it does
/// not check `bytes == 32 + 40·size`. The header fields are therefore kept
/// as sent, and bytes that do not fill a whole entry are kept in
/// `remainder`, so that every accepted index re-encodes identically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemdbIndex {
    pub version: u64,
    pub last_inode: u64,
    pub writer: u32,
    pub mtime: u32,
    /// Entry count as sent (including the root).
    pub size: u32,
    /// Total length as sent.
    pub bytes: u32,
    pub entries: Vec<IndexEntry>,
    pub remainder: Vec<u8>,
}

impl MemdbIndex {
    pub const HEADER_LEN: usize = 32;

    /// A consistent index over `entries`, which must be sorted by inode.
    pub fn new(version: u64, writer: u32, mtime: u32, entries: Vec<IndexEntry>) -> MemdbIndex {
        let last_inode = entries.iter().map(|e| e.inode).max().unwrap_or(0);
        MemdbIndex {
            version,
            last_inode,
            writer,
            mtime,
            size: len_u32(entries.len()),
            bytes: len_u32(Self::HEADER_LEN + IndexEntry::LEN * entries.len()),
            entries,
            remainder: Vec::new(),
        }
    }

    /// True if the header fields agree with the entries.
    pub fn is_consistent(&self) -> bool {
        self.remainder.is_empty()
            && self.size as usize == self.entries.len()
            && self.bytes as usize == Self::HEADER_LEN + IndexEntry::LEN * self.entries.len()
    }
}

impl Codec for MemdbIndex {
    const NAME: &'static str = "memdb index";

    fn parse(i: &[u8]) -> PResult<'_, Self> {
        let whole = i;
        expect_min_len(i, "memdb index", Self::HEADER_LEN)?;
        let (i, version) = u64_field("version")(i)?;
        let (i, last_inode) = u64_field("last_inode")(i)?;
        let (i, writer) = u32_field("writer")(i)?;
        let (i, mtime) = u32_field("mtime")(i)?;
        let (i, size) = u32_field("size")(i)?;
        let bytes_at = i;
        let (mut i, bytes) = u32_field("bytes")(i)?;
        if bytes as usize != whole.len() {
            return Err(fail(
                bytes_at,
                "bytes",
                ErrorKind::LengthMismatch {
                    expected: bytes as usize,
                    actual: whole.len(),
                },
            ));
        }
        let mut entries = Vec::with_capacity(i.len() / IndexEntry::LEN);
        while i.len() >= IndexEntry::LEN {
            let (r, inode) = u64_field("entry.inode")(i)?;
            let (r, digest) = array_field::<32>("entry.digest")(r)?;
            entries.push(IndexEntry { inode, digest });
            i = r;
        }
        let (i, remainder) = rest(i)?;
        Ok((
            i,
            MemdbIndex {
                version,
                last_inode,
                writer,
                mtime,
                size,
                bytes,
                entries,
                remainder: remainder.to_vec(),
            },
        ))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64(self.version);
        out.put_u64(self.last_inode);
        out.put_u32(self.writer);
        out.put_u32(self.mtime);
        out.put_u32(self.size);
        out.put_u32(self.bytes);
        for e in &self.entries {
            out.put_u64(e.inode);
            out.put_bytes(&e.digest);
        }
        out.put_bytes(&self.remainder);
    }
}

/// VERIFY: the requester's id and its full-tree checksum (exactly 40 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verify {
    pub id: u64,
    pub csum: [u8; 32],
}

/// The payload of a dcdb message, decoded according to its dfsm type and
/// subtype.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// WRITE, MKDIR, DELETE, RENAME, CREATE, MTIME.
    Fuse(FuseMessage),
    /// UNLOCK_REQUEST, UNLOCK.
    Unlock(UnlockMessage),
    /// STATE.
    Index(MemdbIndex),
    /// UPDATE.
    Update(TreeEntry),
    /// VERIFY_REQUEST: the request id (exactly 8 bytes).
    VerifyRequest(u64),
    /// VERIFY.
    Verify(Verify),
    /// SYNC_START and UPDATE_COMPLETE carry no payload; C does not check,
    /// so whatever was sent is kept.
    Empty(Vec<u8>),
    /// An unknown dfsm type or NORMAL subtype: the bytes, untouched.
    Unknown(Vec<u8>),
}

/// A whole message of the dcdb group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub framing: Framing,
    pub payload: Payload,
}

impl Message {
    pub fn subtype(&self) -> Option<Subtype> {
        match self.framing.sequence {
            Sequence::Count(_) => Some(self.framing.header.subtype.into()),
            Sequence::Epoch(_) => None,
        }
    }

    /// A short name such as `NORMAL/WRITE` or `STATE`.
    pub fn kind_name(&self) -> String {
        match self.subtype() {
            Some(s) => match s {
                Subtype::Unknown(n) => format!("NORMAL/UNKNOWN({n})"),
                s => format!("NORMAL/{}", s.name()),
            },
            None => match self.framing.header.msg_type {
                MessageType::Unknown(n) => format!("UNKNOWN({n})"),
                t => t.name().to_string(),
            },
        }
    }

    fn parse_payload<'a>(framing: &Framing, i: &'a [u8]) -> PResult<'a, Payload> {
        match (
            framing.header.msg_type,
            Subtype::from(framing.header.subtype),
        ) {
            (MessageType::Normal, s) if s.carries_fuse_message() => {
                let (i, m) = FuseMessage::parse(i)?;
                Ok((i, Payload::Fuse(m)))
            }
            (MessageType::Normal, Subtype::UnlockRequest | Subtype::Unlock) => {
                let (i, m) = UnlockMessage::parse(i)?;
                Ok((i, Payload::Unlock(m)))
            }
            (MessageType::State, _) => {
                let (i, m) = MemdbIndex::parse(i)?;
                Ok((i, Payload::Index(m)))
            }
            (MessageType::Update, _) => {
                let (i, m) = TreeEntry::parse(i)?;
                Ok((i, Payload::Update(m)))
            }
            (MessageType::VerifyRequest, _) => {
                expect_len(i, "verify request id", 8)?;
                let (i, id) = u64_field("id")(i)?;
                Ok((i, Payload::VerifyRequest(id)))
            }
            (MessageType::Verify, _) => {
                expect_len(i, "verify payload", 40)?;
                let (i, id) = u64_field("id")(i)?;
                let (i, csum) = array_field::<32>("csum")(i)?;
                Ok((i, Payload::Verify(Verify { id, csum })))
            }
            (MessageType::SyncStart | MessageType::UpdateComplete, _) => {
                let (i, r) = rest(i)?;
                Ok((i, Payload::Empty(r.to_vec())))
            }
            _ => {
                let (i, r) = rest(i)?;
                Ok((i, Payload::Unknown(r.to_vec())))
            }
        }
    }
}

impl Codec for Message {
    const NAME: &'static str = "dcdb message";

    fn parse(i: &[u8]) -> PResult<'_, Self> {
        let (i, framing) = Framing::parse(i)?;
        let (i, payload) = Message::parse_payload(&framing, i)?;
        Ok((i, Message { framing, payload }))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        self.framing.encode(out);
        match &self.payload {
            Payload::Fuse(m) => m.encode(out),
            Payload::Unlock(m) => m.encode(out),
            Payload::Index(m) => m.encode(out),
            Payload::Update(m) => m.encode(out),
            Payload::VerifyRequest(id) => out.put_u64(*id),
            Payload::Verify(v) => {
                out.put_u64(v.id);
                out.put_bytes(&v.csum);
            }
            Payload::Empty(b) | Payload::Unknown(b) => out.put_bytes(b),
        }
    }
}
