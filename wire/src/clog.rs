//! The cluster log (spec §3.5): the entry layout shared by kvstore LOG
//! messages and the ring buffer, the packing rules that decide its bytes
//! (FNV-1a digests, message sanitising, the size rule), and the 131072-byte
//! ring buffer that is the kvstore STATE.

use byteorder::{ByteOrder, LittleEndian};

use crate::codec::{
    array_field, bytes_field, decode_frame, expect_min_len, fail, len_u32, nul_terminated_field,
    u32_field, u64_field, u8_field, Codec, ErrorKind, PResult, Put, WireError,
};

/// Offset of the strings in an entry: the end of the C struct's fields.
pub const ENTRY_STRINGS_OFFSET: usize = 44;
/// `sizeof(clog_entry_t)`: the fixed part counted in an entry's size,
/// 4 bytes more than the fields because of 8-byte alignment.
pub const ENTRY_FIXED_LEN: usize = 48;
pub const MAX_ENTRY_SIZE: usize = 4096;
/// The ring buffer size, and so the kvstore STATE size.
pub const DEFAULT_BUFFER_SIZE: usize = 131072;
/// The ring header: size and cpos.
pub const BUFFER_HEADER_LEN: usize = 8;
/// Longest node, ident or tag, NUL included.
pub const MAX_SHORT_STRING: usize = 255;

/// Standard FNV-1a 64 (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// C's `utf8_to_ascii` (spec §3.5.2): the input up to its first NUL made
/// printable ASCII. Output is written while it is shorter than
/// `bufsize − 7` bytes; the result excludes the terminating NUL.
pub fn utf8_to_ascii(input: &[u8], bufsize: usize, quotequote: bool) -> Vec<u8> {
    let input = crate::codec::c_str(input);
    let limit = bufsize.saturating_sub(7);
    let mut out = Vec::with_capacity(input.len().min(limit + 6));
    match std::str::from_utf8(input) {
        Ok(text) => {
            for c in text.chars() {
                if out.len() >= limit {
                    break;
                }
                let u = c as u32;
                if c == '"' && quotequote {
                    out.extend_from_slice(b"\\\"");
                } else if u < 32 || u == 127 {
                    out.extend_from_slice(format!("#{u:03}").as_bytes());
                } else if u < 127 {
                    out.push(u as u8);
                } else if u < 65536 {
                    out.extend_from_slice(format!("\\u{u:04x}").as_bytes());
                }
                // Code points above the BMP are dropped.
            }
        }
        Err(_) => {
            for &b in input {
                if out.len() >= limit {
                    break;
                }
                if b == b'"' && quotequote {
                    out.extend_from_slice(b"\\\"");
                } else if b < 32 {
                    out.extend_from_slice(format!("#0{b:02}").as_bytes());
                } else if b < 127 {
                    out.push(b);
                } else {
                    out.push(b'?');
                }
            }
        }
    }
    out
}

/// The inverse of C's `utf8_to_ascii` on its own output: `\\"` → `"`,
/// `#ddd` → that byte, `\\uXXXX` → that character. Sanitising the result
/// again gives the input back, which is all a replay needs: only the
/// sanitised text of a cluster-log message travels, and the core packs
/// the text again from the request.
pub fn unsanitize(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && s.get(i + 1) == Some(&b'"') {
            out.push(b'"');
            i += 2;
        } else if s[i] == b'#' && s.len() >= i + 4 && s[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        {
            let v: u32 = std::str::from_utf8(&s[i + 1..i + 4])
                .unwrap_or("0")
                .parse()
                .unwrap_or(0);
            if v < 256 {
                out.push(v as u8);
            } else {
                out.extend_from_slice(&s[i..i + 4]);
            }
            i += 4;
        } else if s[i] == b'\\'
            && s.get(i + 1) == Some(&b'u')
            && s.len() >= i + 6
            && s[i + 2..i + 6].iter().all(u8::is_ascii_hexdigit)
        {
            let v = u32::from_str_radix(std::str::from_utf8(&s[i + 2..i + 6]).unwrap_or("0"), 16)
                .unwrap_or(0);
            match char::from_u32(v) {
                Some(c) => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                None => out.extend_from_slice(&s[i..i + 6]),
            }
            i += 6;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// One cluster-log entry.
///
/// The four strings are kept as their raw fields, terminator included, as
/// `node_len` etc. count it: a locally packed message cut at the size limit
/// has no NUL (spec §3.5.1), and such an entry must survive a trip through
/// the ring unchanged. `tail` is the 4 bytes after the strings that C counts
/// and sends but never initialises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClogEntry {
    pub prev: u32,
    pub next: u32,
    pub uid: u32,
    pub time: u32,
    pub node_digest: u64,
    pub ident_digest: u64,
    pub pid: u32,
    pub priority: u8,
    pub node: Vec<u8>,
    pub ident: Vec<u8>,
    pub tag: Vec<u8>,
    pub msg: Vec<u8>,
    pub tail: [u8; 4],
}

/// Inputs of [`ClogEntry::pack`].
#[derive(Clone, Debug)]
pub struct LogRecord<'a> {
    pub node: &'a [u8],
    pub ident: &'a [u8],
    pub tag: &'a [u8],
    pub pid: u32,
    pub time: u32,
    pub priority: u8,
    pub msg: &'a [u8],
}

/// A node/ident/tag field as `clog_pack` makes it: `min(strlen+1, 255)`
/// bytes, the copy cut and NUL-terminated, the digest over that many bytes
/// of the original string (which lacks the NUL when it was cut).
fn pack_short_string(s: &[u8]) -> (Vec<u8>, u64) {
    let s = crate::codec::c_str(s);
    let len = (s.len() + 1).min(MAX_SHORT_STRING);
    let mut with_nul = s.to_vec();
    with_nul.push(0);
    let digest = fnv1a64(&with_nul[..len]);
    let mut field = s[..len - 1].to_vec();
    field.push(0);
    (field, digest)
}

impl ClogEntry {
    /// Pack an entry as C's `clog_pack` does. Returns `None` for a priority
    /// of 8 or more, where C refuses to pack.
    pub fn pack(record: &LogRecord<'_>, uid: u32) -> Option<ClogEntry> {
        if record.priority >= 8 {
            return None;
        }
        let (node, node_digest) = pack_short_string(record.node);
        let (ident, ident_digest) = pack_short_string(record.ident);
        let (tag, _) = pack_short_string(record.tag);
        let used = ENTRY_STRINGS_OFFSET + node.len() + ident.len() + tag.len();
        let mut msg = utf8_to_ascii(record.msg, MAX_ENTRY_SIZE - used, true);
        msg.push(0);
        // The size counts 48 bytes of fixed part, 4 more than the strings'
        // offset; a message filling the buffer therefore overflows 4096 and
        // is cut, losing its NUL (C peers then reject it).
        let total = ENTRY_FIXED_LEN + node.len() + ident.len() + tag.len() + msg.len();
        if total > MAX_ENTRY_SIZE {
            msg.truncate(msg.len() - (total - MAX_ENTRY_SIZE));
        }
        Some(ClogEntry {
            prev: 0,
            next: 0,
            uid,
            time: record.time,
            node_digest,
            ident_digest,
            pid: record.pid,
            priority: record.priority,
            node,
            ident,
            tag,
            msg,
            tail: [0; 4],
        })
    }

    /// The entry size as C counts it: 48 + the four string lengths.
    pub fn size(&self) -> usize {
        ENTRY_FIXED_LEN + self.node.len() + self.ident.len() + self.tag.len() + self.msg.len()
    }

    pub fn node_str(&self) -> String {
        lossy(&self.node)
    }
    pub fn ident_str(&self) -> String {
        lossy(&self.ident)
    }
    pub fn tag_str(&self) -> String {
        lossy(&self.tag)
    }
    pub fn msg_str(&self) -> String {
        lossy(&self.msg)
    }

    /// Parse an entry stored in a ring buffer: the strings are taken as
    /// their lengths say, without the message checks.
    fn parse_stored(i: &[u8]) -> PResult<'_, ClogEntry> {
        let (i, fixed) = Fixed::parse(i)?;
        let (i, node) = bytes_field("node", fixed.node_len as usize)(i)?;
        let (i, ident) = bytes_field("ident", fixed.ident_len as usize)(i)?;
        let (i, tag) = bytes_field("tag", fixed.tag_len as usize)(i)?;
        let (i, msg) = bytes_field("msg", fixed.msg_len as usize)(i)?;
        let (i, tail) = array_field::<4>("tail")(i)?;
        Ok((i, fixed.into_entry(node, ident, tag, msg, tail)))
    }

    /// Everything but prev and next: what `clog_copy` moves into a ring.
    fn encode_from_uid(&self, out: &mut Vec<u8>) {
        let short_len = |s: &[u8]| s.len().min(u8::MAX as usize) as u8;
        out.put_u32(self.uid);
        out.put_u32(self.time);
        out.put_u64(self.node_digest);
        out.put_u64(self.ident_digest);
        out.put_u32(self.pid);
        out.put_u8(self.priority);
        out.put_u8(short_len(&self.node));
        out.put_u8(short_len(&self.ident));
        out.put_u8(short_len(&self.tag));
        out.put_u32(len_u32(self.msg.len()));
        for s in [&self.node, &self.ident, &self.tag, &self.msg] {
            out.put_bytes(s);
        }
        out.put_bytes(&self.tail);
    }
}

impl Codec for ClogEntry {
    const NAME: &'static str = "log entry";

    /// Parse a LOG message payload with the receiver's checks (spec §3.5.1):
    /// at least 48 bytes, exactly 48 + the string lengths, every string
    /// NUL-terminated at its last byte.
    fn parse(i: &[u8]) -> PResult<'_, Self> {
        let whole = i;
        expect_min_len(i, "log entry", ENTRY_FIXED_LEN)?;
        let (i, fixed) = Fixed::parse(i)?;
        let size = fixed.entry_size();
        if size != whole.len() {
            return Err(fail(
                whole,
                "entry size",
                ErrorKind::LengthMismatch {
                    expected: size,
                    actual: whole.len(),
                },
            ));
        }
        let (i, node) = nul_terminated_field("node", fixed.node_len as usize)(i)?;
        let (i, ident) = nul_terminated_field("ident", fixed.ident_len as usize)(i)?;
        let (i, tag) = nul_terminated_field("tag", fixed.tag_len as usize)(i)?;
        let (i, msg) = nul_terminated_field("msg", fixed.msg_len as usize)(i)?;
        let (i, tail) = array_field::<4>("tail")(i)?;
        Ok((i, fixed.into_entry(node, ident, tag, msg, tail)))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.prev);
        out.put_u32(self.next);
        self.encode_from_uid(out);
    }
}

fn lossy(field: &[u8]) -> String {
    String::from_utf8_lossy(crate::codec::c_str(field)).into_owned()
}

/// The 44 bytes of fields before the strings.
struct Fixed {
    prev: u32,
    next: u32,
    uid: u32,
    time: u32,
    node_digest: u64,
    ident_digest: u64,
    pid: u32,
    priority: u8,
    node_len: u8,
    ident_len: u8,
    tag_len: u8,
    msg_len: u32,
}

impl Fixed {
    fn parse(i: &[u8]) -> PResult<'_, Fixed> {
        let (i, prev) = u32_field("prev")(i)?;
        let (i, next) = u32_field("next")(i)?;
        let (i, uid) = u32_field("uid")(i)?;
        let (i, time) = u32_field("time")(i)?;
        let (i, node_digest) = u64_field("node_digest")(i)?;
        let (i, ident_digest) = u64_field("ident_digest")(i)?;
        let (i, pid) = u32_field("pid")(i)?;
        let (i, priority) = u8_field("priority")(i)?;
        let (i, node_len) = u8_field("node_len")(i)?;
        let (i, ident_len) = u8_field("ident_len")(i)?;
        let (i, tag_len) = u8_field("tag_len")(i)?;
        let (i, msg_len) = u32_field("msg_len")(i)?;
        Ok((
            i,
            Fixed {
                prev,
                next,
                uid,
                time,
                node_digest,
                ident_digest,
                pid,
                priority,
                node_len,
                ident_len,
                tag_len,
                msg_len,
            },
        ))
    }

    fn entry_size(&self) -> usize {
        ENTRY_FIXED_LEN
            + self.node_len as usize
            + self.ident_len as usize
            + self.tag_len as usize
            + self.msg_len as usize
    }

    fn into_entry(
        self,
        node: &[u8],
        ident: &[u8],
        tag: &[u8],
        msg: &[u8],
        tail: [u8; 4],
    ) -> ClogEntry {
        ClogEntry {
            prev: self.prev,
            next: self.next,
            uid: self.uid,
            time: self.time,
            node_digest: self.node_digest,
            ident_digest: self.ident_digest,
            pid: self.pid,
            priority: self.priority,
            node: node.to_vec(),
            ident: ident.to_vec(),
            tag: tag.to_vec(),
            msg: msg.to_vec(),
            tail,
        }
    }
}

/// An entry found by walking a ring from its newest entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingEntry {
    pub pos: u32,
    pub entry: ClogEntry,
    /// True for the last entry of a walk that stopped because the chain
    /// wraps into space already overwritten. Sort, dump and merge keep it;
    /// the JSON dump omits it (spec §3.5.3).
    pub wraps: bool,
}

/// The cluster-log ring buffer (`clog_base_t`), kept as its raw bytes so a
/// received STATE re-encodes identically, padding and stale bytes included.
#[derive(Clone, PartialEq, Eq)]
pub struct ClogBuffer {
    raw: Vec<u8>,
}

impl std::fmt::Debug for ClogBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClogBuffer")
            .field("size", &self.size())
            .field("cpos", &self.cpos())
            .finish()
    }
}

impl ClogBuffer {
    /// An empty ring of `size` bytes (at least the 8-byte header).
    pub fn new(size: usize) -> ClogBuffer {
        let size = size.max(BUFFER_HEADER_LEN);
        let mut raw = vec![0u8; size];
        LittleEndian::write_u32(&mut raw[0..4], len_u32(size));
        ClogBuffer { raw }
    }

    pub fn size(&self) -> u32 {
        LittleEndian::read_u32(&self.raw[0..4])
    }

    /// Offset of the newest entry; 0 when empty.
    pub fn cpos(&self) -> u32 {
        LittleEndian::read_u32(&self.raw[4..8])
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// Parse a STATE payload with the receiver's check (length > 8 and equal
    /// to the size field), then walk its entries, which C does not validate
    /// (a malformed ring crashes C peers) and this decoder rejects.
    pub fn parse(i: &[u8]) -> PResult<'_, ClogBuffer> {
        let whole = i;
        expect_min_len(i, "clog buffer", BUFFER_HEADER_LEN + 1)?;
        let (_, size) = u32_field("size")(i)?;
        if size as usize != whole.len() {
            return Err(fail(
                whole,
                "size",
                ErrorKind::LengthMismatch {
                    expected: size as usize,
                    actual: whole.len(),
                },
            ));
        }
        let buffer = ClogBuffer {
            raw: whole.to_vec(),
        };
        buffer.walk_in(whole)?;
        Ok((&whole[whole.len()..], buffer))
    }

    /// The entries from newest to oldest, following `prev` as C does.
    pub fn entries(&self) -> Result<Vec<RingEntry>, WireError> {
        decode_frame("clog buffer", &self.raw, |i| {
            let entries = self.walk_in(i)?;
            Ok((&i[i.len()..], entries))
        })
    }

    fn walk_in<'a>(
        &self,
        raw: &'a [u8],
    ) -> Result<Vec<RingEntry>, nom::Err<crate::codec::Fail<'a>>> {
        let cpos = self.cpos() as u64;
        let mut pos = cpos;
        let mut out: Vec<RingEntry> = Vec::new();
        while pos != 0 {
            if !(pos <= cpos || pos > cpos + MAX_ENTRY_SIZE as u64) {
                break;
            }
            let at = usize::try_from(pos).unwrap_or(usize::MAX);
            if at < BUFFER_HEADER_LEN || at >= raw.len() {
                let anchor = &raw[raw.len().min(4)..];
                return Err(fail(
                    anchor,
                    "entry position",
                    ErrorKind::InvalidValue { value: pos },
                ));
            }
            let (_, entry) = ClogEntry::parse_stored(&raw[at..])?;
            // Every entry takes at least 48 bytes, so a walk longer than
            // this has visited some entry twice.
            if out.len() > raw.len() / ENTRY_FIXED_LEN {
                return Err(fail(&raw[at..], "prev", ErrorKind::Cycle));
            }
            let prev = entry.prev as u64;
            let wraps = pos < prev && prev <= cpos;
            out.push(RingEntry {
                pos: pos as u32,
                entry,
                wraps,
            });
            if wraps {
                break;
            }
            pos = prev;
        }
        Ok(out)
    }

    /// Append an entry as `clog_alloc_entry` + `clog_copy` do: allocate
    /// `(size + 7) & ~7` bytes after the newest entry (wrapping to 8 when it
    /// would reach the end), link it, copy everything but prev/next. Entries
    /// of 48 bytes or less, or over 4096, are dropped as in C; returns
    /// whether the entry was stored.
    pub fn push(&mut self, entry: &ClogEntry) -> bool {
        let size = entry.size();
        if size <= ENTRY_FIXED_LEN || size > MAX_ENTRY_SIZE {
            return false;
        }
        let realsize = (size + 7) & !7;
        let buffer_size = self.raw.len();
        if BUFFER_HEADER_LEN + realsize >= buffer_size {
            return false;
        }
        let cpos = self.cpos() as usize;
        let mut newpos = if cpos == 0 {
            BUFFER_HEADER_LEN
        } else {
            // The newest entry's `next`; a ring decoded from a peer may
            // point anywhere, so an out-of-range cpos restarts at the front.
            self.raw
                .get(cpos + 4..cpos + 8)
                .map_or(BUFFER_HEADER_LEN, |b| LittleEndian::read_u32(b) as usize)
        };
        if newpos < BUFFER_HEADER_LEN || newpos + realsize >= buffer_size {
            newpos = BUFFER_HEADER_LEN;
        }
        // An entry that overwrites the previous newest one cannot link to
        // it. Only rings far smaller than C's 131072 bytes get there: with
        // entries of at most 4096 bytes, a wrap lands far from the newest.
        let prev = if cpos != 0 && newpos <= cpos && cpos < newpos + realsize {
            0
        } else {
            cpos
        };
        let mut bytes = Vec::with_capacity(size);
        bytes.put_u32(len_u32(prev));
        bytes.put_u32(len_u32(newpos + realsize));
        entry.encode_from_uid(&mut bytes);
        self.raw[newpos..newpos + size].copy_from_slice(&bytes);
        LittleEndian::write_u32(&mut self.raw[4..8], len_u32(newpos));
        true
    }
}

impl Codec for ClogBuffer {
    const NAME: &'static str = "clog buffer";

    fn parse(i: &[u8]) -> PResult<'_, Self> {
        ClogBuffer::parse(i)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.put_bytes(&self.raw);
    }
}
