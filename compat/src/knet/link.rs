//! Layer 3: the knet header (big-endian), knet defragmentation and
//! decompression (knet-wire.md §4).

use std::collections::HashMap;
use std::io::Read;

pub const TYPE_DATA: u8 = 0x00;
pub const TYPE_PING: u8 = 0x81;
pub const TYPE_PONG: u8 = 0x82;
pub const TYPE_PMTUD: u8 = 0x83;
pub const TYPE_PMTUD_REPLY: u8 = 0x84;

/// A knet DATA header: the 14 bytes before one fragment's user data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataHeader {
    pub node: u16,
    pub seq: u16,
    pub compress: u8,
    pub bcast: u8,
    pub frag_num: u8,
    pub frag_seq: u8,
    pub channel: i8,
}

/// A knet packet after decryption.
#[derive(Debug, PartialEq, Eq)]
pub enum KnetPacket<'a> {
    Data(DataHeader, &'a [u8]),
    /// PING, PONG, PMTUD, PMTUD_REPLY: link-level, no corosync payload.
    Link {
        kind: u8,
        node: u16,
        /// PING/PONG: the sender's current data seq (0: it restarted).
        seq: Option<u16>,
    },
    /// A version or type this decoder does not know.
    Unknown {
        version: u8,
        kind: u8,
    },
}

pub fn parse(p: &[u8]) -> Option<KnetPacket<'_>> {
    if p.len() < 6 {
        return None;
    }
    let (version, kind) = (p[0], p[1]);
    let node = u16::from_be_bytes([p[2], p[3]]);
    if version != 1 {
        return Some(KnetPacket::Unknown { version, kind });
    }
    match kind {
        TYPE_DATA => {
            if p.len() < 14 {
                return None;
            }
            Some(KnetPacket::Data(
                DataHeader {
                    node,
                    seq: u16::from_be_bytes([p[6], p[7]]),
                    compress: p[8],
                    bcast: p[10],
                    frag_num: p[11],
                    frag_seq: p[12],
                    channel: p[13] as i8,
                },
                &p[14..],
            ))
        }
        TYPE_PING | TYPE_PONG => Some(KnetPacket::Link {
            kind,
            node,
            seq: p.get(23..25).map(|b| u16::from_be_bytes([b[0], b[1]])),
        }),
        TYPE_PMTUD | TYPE_PMTUD_REPLY => Some(KnetPacket::Link {
            kind,
            node,
            seq: None,
        }),
        _ => Some(KnetPacket::Unknown { version, kind }),
    }
}

/// knet never hands corosync more than 64 KiB in one packet; a
/// decompressed packet larger than this is garbage (or a bomb).
pub const MAX_PACKET: usize = 128 * 1024;

/// A writer that refuses to grow past `MAX_PACKET` (for lzma-rs, which
/// writes rather than reads).
struct Bounded(Vec<u8>);

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_PACKET {
            return Err(std::io::Error::other("more than the largest knet packet"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decompresses a reassembled knet packet. `Err` names what failed.
pub fn decompress(model: u8, data: &[u8]) -> Result<Vec<u8>, String> {
    let limit = MAX_PACKET as u64 + 1;
    let mut out = Vec::new();
    let read = |r: &mut dyn Read, out: &mut Vec<u8>| r.take(limit).read_to_end(out).map(|_| ());
    let result = match model {
        0 => return Ok(data.to_vec()),
        1 => read(&mut flate2::read::ZlibDecoder::new(data), &mut out),
        // A raw LZ4 block carries no size: decode into the largest packet.
        2 | 3 => {
            return lz4_flex::block::decompress(data, MAX_PACKET).map_err(|e| format!("lz4: {e}"))
        }
        4 => return Err("lzo2 compression is not supported".into()),
        5 => {
            let mut sink = Bounded(Vec::new());
            let r = lzma_rs::xz_decompress(&mut &data[..], &mut sink)
                .map_err(|e| std::io::Error::other(format!("{e:?}")));
            out = sink.0;
            r
        }
        6 => read(&mut bzip2::read::BzDecoder::new(data), &mut out),
        7 => match ruzstd::decoding::StreamingDecoder::new(data) {
            Ok(mut d) => read(&mut d, &mut out),
            Err(e) => return Err(format!("zstd: {e}")),
        },
        m => return Err(format!("unknown compression model {m}")),
    };
    result.map_err(|e| format!("compression model {model}: {e}"))?;
    if out.len() > MAX_PACKET {
        return Err(format!(
            "compression model {model}: more than {MAX_PACKET} bytes"
        ));
    }
    Ok(out)
}

/// Key of one copy of one knet packet: the copy's addresses, the knet
/// sender and its seq. Copies to several hosts are reassembled separately
/// and deduplicated later (they carry the same totem message).
pub type CopyKey = (String, String, u16, u16);

#[derive(Default)]
pub struct Defragmenter {
    pending: HashMap<CopyKey, (u8, u8, Vec<Option<Vec<u8>>>)>,
    /// Recently completed copies: a capture on several interfaces (`-i any`
    /// on a bridge) sees every fragment twice, and the late twins must not
    /// start a new, never-finished reassembly. Bounded, oldest out.
    completed: std::collections::HashSet<CopyKey>,
    completed_order: std::collections::VecDeque<CopyKey>,
    pub reassembled: u64,
}

const COMPLETED_MEMORY: usize = 4096;

impl Defragmenter {
    /// Adds one fragment; returns the whole (still compressed) packet
    /// when it is complete.
    pub fn add(&mut self, key: CopyKey, h: &DataHeader, data: &[u8]) -> Option<Vec<u8>> {
        if h.frag_num <= 1 {
            return Some(data.to_vec());
        }
        if h.frag_seq == 0 || h.frag_seq > h.frag_num || self.completed.contains(&key) {
            return None;
        }
        let entry = self
            .pending
            .entry(key.clone())
            .or_insert_with(|| (h.frag_num, h.compress, vec![None; h.frag_num as usize]));
        if entry.0 != h.frag_num {
            // The seq was reused by a restarted sender: start again.
            *entry = (h.frag_num, h.compress, vec![None; h.frag_num as usize]);
        }
        entry.2[(h.frag_seq - 1) as usize] = Some(data.to_vec());
        if entry.2.iter().all(|s| s.is_some()) {
            let (_, _, slices) = self.pending.remove(&key)?;
            self.reassembled += 1;
            if self.completed_order.len() == COMPLETED_MEMORY {
                if let Some(old) = self.completed_order.pop_front() {
                    self.completed.remove(&old);
                }
            }
            self.completed.insert(key.clone());
            self.completed_order.push_back(key);
            Some(slices.into_iter().flatten().flatten().collect())
        } else {
            None
        }
    }

    /// A sender restarted (a PING with seq 0): its seqs start again at 1.
    pub fn forget_node(&mut self, node: u16) {
        self.pending.retain(|k, _| k.2 != node);
        self.completed.retain(|k| k.2 != node);
        self.completed_order.retain(|k| k.2 != node);
    }

    /// Fragments still waiting for their siblings (capture gaps).
    pub fn unfinished(&self) -> usize {
        self.pending.len()
    }
}

/// What one datagram of the capture is, layers 2 and 3 undone.
#[derive(Debug)]
pub enum Unwrapped {
    /// It does not authenticate with any key.
    NotAuthentic,
    /// A knet PING, PONG or PMTUD packet.
    Link {
        kind: u8,
        node: u16,
        seq: Option<u16>,
    },
    /// A knet version or packet type this decoder does not know.
    Unknown,
    /// One fragment of a knet packet whose other fragments are still to
    /// come (or a late twin of a completed one).
    Fragment(DataHeader),
    /// A whole knet data packet, defragmented and decompressed: exactly
    /// one totem message (knet-wire.md §5).
    Whole { header: DataHeader, totem: Vec<u8> },
    /// A whole packet that does not decompress.
    BadCompression(DataHeader, String),
}

/// Layers 2–3 as a stream: each datagram decrypted, knet fragments put
/// together, packets decompressed.
pub struct Unwrapper {
    pub opener: super::crypto::Opener,
    pub defrag: Defragmenter,
}

impl Unwrapper {
    pub fn new(keys: Vec<Vec<u8>>) -> Unwrapper {
        Unwrapper {
            opener: super::crypto::Opener::new(keys),
            defrag: Defragmenter::default(),
        }
    }

    pub fn unwrap(&mut self, d: &super::packets::Datagram) -> Unwrapped {
        let Some(plain) = self.opener.open(&d.payload) else {
            return Unwrapped::NotAuthentic;
        };
        let (header, data) = match parse(&plain) {
            Some(KnetPacket::Data(h, data)) => (h, data),
            Some(KnetPacket::Link { kind, node, seq }) => {
                if kind == TYPE_PING && seq == Some(0) {
                    self.defrag.forget_node(node);
                }
                return Unwrapped::Link { kind, node, seq };
            }
            _ => return Unwrapped::Unknown,
        };
        let key = (
            format!("{:?}", d.src),
            format!("{:?}", d.dst),
            header.node,
            header.seq,
        );
        let Some(whole) = self.defrag.add(key, &header, data) else {
            return Unwrapped::Fragment(header);
        };
        match decompress(header.compress, &whole) {
            Ok(totem) => Unwrapped::Whole { header, totem },
            Err(e) => Unwrapped::BadCompression(header, e),
        }
    }
}
