//! Layer 1: packet capture files (pcap, pcapng) down to UDP datagrams.
//!
//! Pure functions over the bytes of a capture file. Frames that are not UDP
//! on the knet ports are counted, never an error: a capture taken with
//! `-i any` holds plenty of foreign traffic.
//!
//! The file formats are read here rather than with pcap-file (which writes
//! and reads our own CPG event captures, `crate::capture`): pcap-file 2.0
//! takes every pcapng packet timestamp as nanoseconds whatever the
//! interface's `if_tsresol` says (tcpdump writes microseconds, so every
//! time would be off by a factor of 1000), refuses pcap records whose
//! original length exceeds the snapshot length, and ends a file at its
//! first damaged record with an error where an operator's capture that was
//! cut short should still decode up to the cut.

use std::collections::HashMap;
use std::io::Read;
use std::net::IpAddr;

/// One UDP datagram found in a capture.
#[derive(Clone, Debug)]
pub struct Datagram {
    /// Seconds since the epoch (fractional).
    pub time: f64,
    /// The same, exactly as the capture has it, in nanoseconds.
    pub time_ns: u64,
    pub src: (IpAddr, u16),
    pub dst: (IpAddr, u16),
    pub payload: Vec<u8>,
}

/// What reading a capture found besides the datagrams.
#[derive(Clone, Debug, Default)]
pub struct ReadStats {
    pub frames: u64,
    pub udp_on_ports: u64,
    pub foreign: u64,
    pub unknown_link_type: u64,
    pub malformed: u64,
    pub ip_fragments: u64,
    /// The file ended inside a record (a capture cut short).
    pub truncated: bool,
}

#[derive(Debug)]
pub enum CaptureFileError {
    NotACapture,
}

impl std::fmt::Display for CaptureFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a pcap or pcapng file (unknown magic number)")
    }
}

/// Reads every UDP datagram whose source or destination port lies in `ports`.
pub fn read_datagrams(
    file: &[u8],
    ports: std::ops::RangeInclusive<u16>,
) -> Result<(Vec<Datagram>, ReadStats), CaptureFileError> {
    let mut out = Vec::new();
    let mut stats = ReadStats::default();
    let mut reader = file;
    for_each_datagram(&mut reader, ports, &mut stats, &mut |d| {
        out.push(d);
        true
    })?;
    Ok((out, stats))
}

/// Streams the UDP datagrams of a capture on `ports` to `f`, in file
/// order, reading the capture as it goes (a capture of a day need not fit
/// in memory).
pub fn for_each_datagram(
    reader: &mut dyn Read,
    ports: std::ops::RangeInclusive<u16>,
    stats: &mut ReadStats,
    f: &mut dyn FnMut(Datagram) -> bool,
) -> Result<(), CaptureFileError> {
    let mut frags = IpReassembly::default();
    // False once `f` wants no more.
    let mut on_frame =
        |link: u32, (time, time_ns): (f64, u64), frame: &[u8], stats: &mut ReadStats| -> bool {
            stats.frames += 1;
            match link_payload(link, frame) {
                Err(()) => stats.unknown_link_type += 1,
                Ok(None) => stats.foreign += 1,
                Ok(Some(ip)) => match ip_to_udp(ip, &mut frags, stats) {
                    Some((src, dst, payload)) => {
                        if ports.contains(&src.1) || ports.contains(&dst.1) {
                            stats.udp_on_ports += 1;
                            return f(Datagram {
                                time,
                                time_ns,
                                src,
                                dst,
                                payload,
                            });
                        } else {
                            stats.foreign += 1;
                        }
                    }
                    None => stats.foreign += 1,
                },
            }
            true
        };
    let mut magic = [0u8; 4];
    if read_full(reader, &mut magic) != Full::Yes {
        return Err(CaptureFileError::NotACapture);
    }
    match u32::from_le_bytes(magic) {
        0x0a0d0d0a => read_pcapng(reader, magic, stats, &mut on_frame),
        _ => read_pcap(reader, magic, stats, &mut on_frame)?,
    }
    Ok(())
}

#[derive(PartialEq, Eq)]
enum Full {
    Yes,
    /// The input ended before the first byte.
    Empty,
    /// The input ended inside.
    Partial,
}

/// Fill `buf` from `r`.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> Full {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    match got {
        n if n == buf.len() => Full::Yes,
        0 => Full::Empty,
        _ => Full::Partial,
    }
}

type OnFrame<'a> = dyn FnMut(u32, (f64, u64), &[u8], &mut ReadStats) -> bool + 'a;

fn read_pcap(
    r: &mut dyn Read,
    magic: [u8; 4],
    stats: &mut ReadStats,
    on_frame: &mut OnFrame<'_>,
) -> Result<(), CaptureFileError> {
    let mut header = [0u8; 24];
    header[..4].copy_from_slice(&magic);
    if read_full(r, &mut header[4..]) != Full::Yes {
        return Err(CaptureFileError::NotACapture);
    }
    let (big_endian, nanos) = match u32::from_le_bytes(magic) {
        0xa1b2c3d4 => (false, false),
        0xa1b23c4d => (false, true),
        0xd4c3b2a1 => (true, false),
        0x4d3cb2a1 => (true, true),
        _ => return Err(CaptureFileError::NotACapture),
    };
    let rd = |b: &[u8]| -> u32 {
        let a: [u8; 4] = b.try_into().unwrap();
        if big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    };
    let link = rd(&header[20..24]) & 0x0fff_ffff;
    let mut record = [0u8; 16];
    let mut frame = Vec::new();
    loop {
        match read_full(r, &mut record) {
            Full::Yes => {}
            Full::Empty => break,
            Full::Partial => {
                stats.truncated = true;
                break;
            }
        }
        let sec = rd(&record[0..4]) as f64;
        let frac = rd(&record[4..8]) as f64;
        let incl = rd(&record[8..12]) as usize;
        // A snapshot length beyond any link's frame is damage, not a frame.
        if incl > MAX_FRAME {
            stats.truncated = true;
            break;
        }
        frame.resize(incl, 0);
        if read_full(r, &mut frame) != Full::Yes {
            stats.truncated = true;
            break;
        }
        let time = sec + if nanos { frac / 1e9 } else { frac / 1e6 };
        let time_ns = sec as u64 * 1_000_000_000 + frac as u64 * if nanos { 1 } else { 1000 };
        if !on_frame(link, (time, time_ns), &frame, stats) {
            break;
        }
    }
    Ok(())
}

/// Larger than any captured frame (pcap's snaplen is at most 256 KiB).
const MAX_FRAME: usize = 1 << 20;

fn read_pcapng(
    r: &mut dyn Read,
    magic: [u8; 4],
    stats: &mut ReadStats,
    on_frame: &mut OnFrame<'_>,
) {
    // Per section: byte order and the interfaces (link type, ts resolution).
    let mut big_endian = false;
    let mut interfaces: Vec<(u32, f64, u8)> = Vec::new();
    let mut pending_magic = Some(magic);
    let mut block = Vec::new();
    loop {
        // Every block starts with its type and length; a section header's
        // byte order mark follows, and decides how to read the length.
        let mut head = [0u8; 12];
        let first = match pending_magic.take() {
            Some(m) => {
                head[..4].copy_from_slice(&m);
                read_full(r, &mut head[4..8])
            }
            None => match read_full(r, &mut head[..4]) {
                Full::Yes => read_full(r, &mut head[4..8]),
                other => other,
            },
        };
        match first {
            Full::Yes => {}
            Full::Empty if block.is_empty() && interfaces.is_empty() => {
                stats.truncated = true;
                break;
            }
            Full::Empty => break,
            Full::Partial => {
                stats.truncated = true;
                break;
            }
        }
        let section = u32::from_le_bytes(head[..4].try_into().unwrap()) == 0x0a0d0d0a;
        let mut have = 8;
        if section {
            if read_full(r, &mut head[8..12]) != Full::Yes {
                stats.truncated = true;
                break;
            }
            big_endian = head[8..12] == [0x1a, 0x2b, 0x3c, 0x4d];
            interfaces.clear();
            have = 12;
        }
        let rd = |b: &[u8]| -> u32 {
            let a: [u8; 4] = b[..4].try_into().unwrap();
            if big_endian {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        };
        let rd16 = |b: &[u8]| -> u16 {
            let a: [u8; 2] = b[..2].try_into().unwrap();
            if big_endian {
                u16::from_be_bytes(a)
            } else {
                u16::from_le_bytes(a)
            }
        };
        let block_type = rd(&head);
        let len = rd(&head[4..]) as usize;
        if len < 12 || len % 4 != 0 || len > MAX_FRAME + 64 {
            stats.truncated = true;
            break;
        }
        block.clear();
        block.extend_from_slice(&head[..have]);
        block.resize(len, 0);
        if read_full(r, &mut block[have..]) != Full::Yes {
            stats.truncated = true;
            break;
        }
        let body = &block[8..len - 4];
        match block_type {
            // Interface Description Block: link type, then options.
            1 if body.len() >= 8 => {
                let link = rd16(body) as u32;
                let mut resolution = 1e-6;
                let mut tsresol = 6u8;
                let mut opts = &body[8..];
                while opts.len() >= 4 {
                    let code = rd16(opts);
                    let olen = rd16(&opts[2..]) as usize;
                    if code == 0 || opts.len() < 4 + olen {
                        break;
                    }
                    if code == 9 && olen >= 1 {
                        // if_tsresol: bit 7 = power of two, else power of ten.
                        let v = opts[4];
                        tsresol = v;
                        resolution = if v & 0x80 != 0 {
                            2f64.powi(-((v & 0x7f) as i32))
                        } else {
                            10f64.powi(-(v as i32))
                        };
                    }
                    opts = &opts[(4 + ((olen + 3) & !3)).min(opts.len())..];
                }
                interfaces.push((link, resolution, tsresol));
            }
            // Enhanced Packet Block.
            6 if body.len() >= 20 => {
                let iface = rd(body) as usize;
                let ts = ((rd(&body[4..]) as u64) << 32) | rd(&body[8..]) as u64;
                let caplen = rd(&body[12..]) as usize;
                match interfaces.get(iface) {
                    Some(&(link, res, tsresol)) if body.len() - 20 >= caplen => {
                        let time = (ts as f64 * res, units_to_ns(ts, tsresol));
                        if !on_frame(link, time, &body[20..20 + caplen], stats) {
                            break;
                        }
                    }
                    _ => stats.malformed += 1,
                }
            }
            // Simple Packet Block: interface 0, no timestamp.
            3 if body.len() >= 4 => match interfaces.first() {
                Some(&(link, _, _)) => {
                    if !on_frame(link, (0.0, 0), &body[4..], stats) {
                        break;
                    }
                }
                None => stats.malformed += 1,
            },
            _ => {}
        }
    }
}

/// A pcapng timestamp in units of `if_tsresol` (bit 7: a power of two,
/// else of ten), in nanoseconds.
fn units_to_ns(ts: u64, tsresol: u8) -> u64 {
    let exp = (tsresol & 0x7f) as u32;
    let ns = if tsresol & 0x80 != 0 {
        (ts as u128 * 1_000_000_000) >> exp.min(127)
    } else if exp <= 9 {
        ts as u128 * 10u128.pow(9 - exp)
    } else {
        ts as u128 / 10u128.pow((exp - 9).min(38))
    };
    ns.min(u64::MAX as u128) as u64
}

/// The IP packet inside a link-layer frame: `Err` for a link type this
/// reader does not know, `Ok(None)` for a frame that is not IP (ARP...).
fn link_payload(link: u32, frame: &[u8]) -> Result<Option<&[u8]>, ()> {
    if !matches!(link, 1 | 113 | 276 | 101 | 12 | 14 | 0 | 108) {
        return Err(());
    }
    Ok(ip_in_frame(link, frame))
}

fn ip_in_frame(link: u32, frame: &[u8]) -> Option<&[u8]> {
    let (ethertype, rest) = match link {
        // Ethernet, with any number of VLAN tags.
        1 => {
            let mut off = 12;
            loop {
                let et = u16::from_be_bytes(frame.get(off..off + 2)?.try_into().ok()?);
                if et == 0x8100 || et == 0x88a8 {
                    off += 4;
                    continue;
                }
                break (et, frame.get(off + 2..)?);
            }
        }
        // Linux cooked v1: protocol at 14, 16-byte header.
        113 => (
            u16::from_be_bytes(frame.get(14..16)?.try_into().ok()?),
            frame.get(16..)?,
        ),
        // Linux cooked v2: protocol first, 20-byte header.
        276 => (
            u16::from_be_bytes(frame.get(0..2)?.try_into().ok()?),
            frame.get(20..)?,
        ),
        // Raw IP.
        101 | 12 | 14 => return Some(frame),
        // BSD loopback / null: 4-byte family.
        0 | 108 => return frame.get(4..),
        _ => return None,
    };
    match ethertype {
        0x0800 | 0x86dd => Some(rest),
        _ => None,
    }
}

type Endpoint = (IpAddr, u16);

/// IPv4/IPv6 fragments, keyed by (src, dst, id, proto).
#[derive(Default)]
struct IpReassembly {
    pending: HashMap<(IpAddr, IpAddr, u32), Vec<(usize, Vec<u8>, bool)>>,
}

/// Datagrams being reassembled at once; beyond this the capture is not
/// knet traffic worth keeping (knet avoids IP fragmentation), and the
/// oldest are dropped so junk cannot exhaust memory.
const MAX_PENDING_IP_DATAGRAMS: usize = 1024;

impl IpReassembly {
    fn add(
        &mut self,
        key: (IpAddr, IpAddr, u32),
        offset: usize,
        data: &[u8],
        more: bool,
    ) -> Option<Vec<u8>> {
        if !self.pending.contains_key(&key) && self.pending.len() >= MAX_PENDING_IP_DATAGRAMS {
            self.pending.clear();
        }
        let parts = self.pending.entry(key).or_default();
        parts.push((offset, data.to_vec(), more));
        // The last fragment (more = false) fixes the length; the datagram is
        // complete when the fragments cover [0, length) without a hole.
        // Fragments beyond that length are bogus and ignored.
        let total = parts
            .iter()
            .filter(|p| !p.2)
            .map(|p| p.0 + p.1.len())
            .min()?;
        parts.sort_by_key(|p| p.0);
        let mut covered = 0;
        for (off, d, _) in parts.iter() {
            if *off > covered {
                break;
            }
            covered = covered.max(off + d.len());
        }
        if covered < total {
            return None;
        }
        let mut whole = vec![0u8; total];
        for (off, d, _) in parts.iter() {
            if *off < total {
                let n = d.len().min(total - off);
                whole[*off..off + n].copy_from_slice(&d[..n]);
            }
        }
        self.pending.remove(&key);
        Some(whole)
    }
}

fn ip_to_udp(
    ip: &[u8],
    frags: &mut IpReassembly,
    stats: &mut ReadStats,
) -> Option<(Endpoint, Endpoint, Vec<u8>)> {
    let version = ip.first()? >> 4;
    let (src, dst, proto, l4): (IpAddr, IpAddr, u8, std::borrow::Cow<[u8]>) = match version {
        4 => {
            let ihl = ((ip[0] & 0x0f) as usize) * 4;
            let total = u16::from_be_bytes(ip.get(2..4)?.try_into().ok()?) as usize;
            if ihl < 20 || total < ihl || ip.len() < ihl {
                stats.malformed += 1;
                return None;
            }
            let end = total.min(ip.len());
            let src = IpAddr::from(<[u8; 4]>::try_from(&ip[12..16]).ok()?);
            let dst = IpAddr::from(<[u8; 4]>::try_from(&ip[16..20]).ok()?);
            let proto = ip[9];
            let flags_off = u16::from_be_bytes(ip[6..8].try_into().ok()?);
            let more = flags_off & 0x2000 != 0;
            let offset = ((flags_off & 0x1fff) as usize) * 8;
            let data = &ip[ihl..end];
            if more || offset > 0 {
                stats.ip_fragments += 1;
                let id =
                    u16::from_be_bytes(ip[4..6].try_into().ok()?) as u32 | (proto as u32) << 16;
                let whole = frags.add((src, dst, id), offset, data, more)?;
                (src, dst, proto, std::borrow::Cow::Owned(whole))
            } else {
                (src, dst, proto, std::borrow::Cow::Borrowed(data))
            }
        }
        6 => {
            if ip.len() < 40 {
                stats.malformed += 1;
                return None;
            }
            let plen = u16::from_be_bytes(ip[4..6].try_into().ok()?) as usize;
            let src = IpAddr::from(<[u8; 16]>::try_from(&ip[8..24]).ok()?);
            let dst = IpAddr::from(<[u8; 16]>::try_from(&ip[24..40]).ok()?);
            let mut next = ip[6];
            let mut rest = &ip[40..(40 + plen).min(ip.len())];
            let mut fragment: Option<(usize, bool, u32)> = None;
            // Skip extension headers: hop-by-hop, routing, destination, fragment.
            loop {
                match next {
                    0 | 43 | 60 => {
                        let hlen = (*rest.get(1)? as usize + 1) * 8;
                        next = rest[0];
                        rest = rest.get(hlen..)?;
                    }
                    44 => {
                        let h = rest.get(0..8)?;
                        next = h[0];
                        let off_flags = u16::from_be_bytes([h[2], h[3]]);
                        let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                        fragment = Some(((off_flags >> 3) as usize * 8, off_flags & 1 != 0, id));
                        rest = &rest[8..];
                    }
                    _ => break,
                }
            }
            match fragment {
                Some((offset, more, id)) if more || offset > 0 => {
                    stats.ip_fragments += 1;
                    let whole = frags.add((src, dst, id), offset, rest, more)?;
                    (src, dst, next, std::borrow::Cow::Owned(whole))
                }
                _ => (src, dst, next, std::borrow::Cow::Borrowed(rest)),
            }
        }
        _ => return None,
    };
    if proto != 17 {
        return None;
    }
    if l4.len() < 8 {
        stats.malformed += 1;
        return None;
    }
    let sport = u16::from_be_bytes([l4[0], l4[1]]);
    let dport = u16::from_be_bytes([l4[2], l4[3]]);
    let ulen = u16::from_be_bytes([l4[4], l4[5]]) as usize;
    let end = if ulen >= 8 {
        ulen.min(l4.len())
    } else {
        l4.len()
    };
    Some(((src, sport), (dst, dport), l4[8..end].to_vec()))
}
