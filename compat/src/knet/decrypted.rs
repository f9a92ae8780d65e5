//! `pmxcfs-replay wire --decrypted-out`: the capture again, with the knet
//! layer undone, for Wireshark.
//!
//! Every knet data packet that authenticates is written once it is whole
//! (at its last fragment), decrypted, defragmented and decompressed, as a
//! raw IP datagram (link type 101) with the original addresses, ports and
//! timestamp (nanoseconds): its UDP payload is exactly one totem message,
//! which the dissector in `wireshark/pmxcfs.lua` reads. A comment on each
//! packet names the knet sender and seq, the fragments and the compression.
//! knet's own packets (pings, pongs, MTU probes), fragments that are not
//! the last, and what does not authenticate are left out and counted.
//!
//! The pcapng container is written with pcap-file.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::time::Duration;

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::{PcapNgBlock, PcapNgWriter};
use pcap_file::DataLink;

use super::link::{Unwrapped, Unwrapper};
use super::packets::{self, Datagram};
use super::WireError;

/// What was written and what was left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecryptedStats {
    pub datagrams: u64,
    pub written: u64,
    pub link_level: u64,
    pub fragments: u64,
    pub not_authentic: u64,
    pub unknown: u64,
    pub bad_compression: u64,
}

impl DecryptedStats {
    pub fn line(&self) -> String {
        format!(
            "decrypted: {} totem messages written; left out: {} knet pings/pongs/MTU probes, {} fragments (folded into their packet), {} not authentic, {} unknown knet packets, {} that do not decompress",
            self.written,
            self.link_level,
            self.fragments,
            self.not_authentic,
            self.unknown,
            self.bad_compression
        )
    }
}

const COMPRESSION: [&str; 8] = [
    "none", "zlib", "lz4", "lz4hc", "lzo2", "lzma", "bzip2", "zstd",
];

/// A raw IPv4 or IPv6 datagram carrying `payload` in UDP.
pub fn ip_udp(src: (IpAddr, u16), dst: (IpAddr, u16), payload: &[u8]) -> Vec<u8> {
    let udp_len = (8 + payload.len()).min(u16::MAX as usize) as u16;
    let mut udp = Vec::with_capacity(8 + payload.len());
    udp.extend_from_slice(&src.1.to_be_bytes());
    udp.extend_from_slice(&dst.1.to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    match (src.0, dst.0) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (20 + udp.len()).min(u16::MAX as usize) as u16;
            let mut h = vec![0x45, 0];
            h.extend_from_slice(&total.to_be_bytes());
            h.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let sum = checksum(&h, 0);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            // UDP over IPv4 may go without a checksum (0).
            h.extend_from_slice(&udp);
            h
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            let (s, d) = (v6(s), v6(d));
            // UDP over IPv6 needs its checksum, over a pseudo-header.
            let mut pseudo = Vec::with_capacity(40);
            pseudo.extend_from_slice(&s);
            pseudo.extend_from_slice(&d);
            pseudo.extend_from_slice(&(udp.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 17]);
            let mut sum = checksum(&udp, sum_of(&pseudo));
            if sum == 0 {
                sum = 0xffff;
            }
            udp[6..8].copy_from_slice(&sum.to_be_bytes());
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&(udp.len() as u16).to_be_bytes());
            h.extend_from_slice(&[17, 64]);
            h.extend_from_slice(&s);
            h.extend_from_slice(&d);
            h.extend_from_slice(&udp);
            h
        }
    }
}

fn sum_of(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0)))
        .fold(0u32, |a, b| a.wrapping_add(b))
}

/// The Internet checksum of `bytes`, starting from a partial `sum`.
fn checksum(bytes: &[u8], sum: u32) -> u16 {
    let mut s = sum.wrapping_add(sum_of(bytes));
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Reads a capture and writes its decrypted totem messages to `out`.
pub fn write_decrypted(
    reader: &mut dyn Read,
    keys: Vec<Vec<u8>>,
    ports: std::ops::RangeInclusive<u16>,
    out: &mut dyn Write,
) -> Result<DecryptedStats, WireError> {
    let mut writer = PcapNgWriter::new(out).map_err(|e| WireError::Write(e.to_string()))?;
    let interface = InterfaceDescriptionBlock {
        linktype: DataLink::RAW,
        snaplen: 0,
        options: vec![
            InterfaceDescriptionOption::IfName(Cow::Borrowed("knet (decrypted)")),
            InterfaceDescriptionOption::IfTsResol(9),
        ],
    };
    writer
        .write_block(&interface.into_block())
        .map_err(|e| WireError::Write(e.to_string()))?;
    let mut unwrapper = Unwrapper::new(keys);
    let mut stats = DecryptedStats::default();
    let mut read = packets::ReadStats::default();
    let mut failure: Option<String> = None;
    let mut on_datagram = |d: Datagram| -> bool {
        stats.datagrams += 1;
        let (header, totem) = match unwrapper.unwrap(&d) {
            Unwrapped::Whole { header, totem } => (header, totem),
            Unwrapped::NotAuthentic => {
                stats.not_authentic += 1;
                return true;
            }
            Unwrapped::Link { .. } => {
                stats.link_level += 1;
                return true;
            }
            Unwrapped::Unknown => {
                stats.unknown += 1;
                return true;
            }
            Unwrapped::Fragment(_) => {
                stats.fragments += 1;
                return true;
            }
            Unwrapped::BadCompression(..) => {
                stats.bad_compression += 1;
                return true;
            }
        };
        let mut comment = format!("knet: from node {}, seq {}", header.node, header.seq);
        if header.frag_num > 1 {
            comment.push_str(&format!(", {} fragments", header.frag_num));
        }
        if header.compress != 0 {
            let name = COMPRESSION
                .get(header.compress as usize)
                .copied()
                .unwrap_or("unknown");
            comment.push_str(&format!(", compressed ({name})"));
        }
        let frame = ip_udp(d.src, d.dst, &totem);
        let packet = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(d.time_ns),
            original_len: frame.len() as u32,
            data: Cow::Borrowed(&frame),
            options: vec![EnhancedPacketOption::Comment(Cow::Owned(comment))],
        };
        if let Err(e) = writer.write_block(&packet.into_block()) {
            failure = Some(e.to_string());
            return false;
        }
        stats.written += 1;
        true
    };
    packets::for_each_datagram(reader, ports, &mut read, &mut on_datagram)
        .map_err(WireError::File)?;
    if let Some(e) = failure {
        return Err(WireError::Write(e));
    }
    if read.udp_on_ports == 0 {
        return Err(WireError::NoKnetTraffic);
    }
    if stats.datagrams == stats.not_authentic {
        return Err(WireError::WrongKey {
            datagrams: stats.datagrams,
        });
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_verifies() {
        let f = ip_udp(
            ("10.0.0.1".parse().unwrap(), 5405),
            ("10.0.0.2".parse().unwrap(), 5405),
            b"abc",
        );
        assert_eq!(f.len(), 20 + 8 + 3);
        assert_eq!(checksum(&f[..20], 0), 0);
        assert_eq!(u16::from_be_bytes([f[2], f[3]]), 31);
    }

    #[test]
    fn ipv6_udp_checksum_verifies() {
        let src: IpAddr = "fd00::1".parse().unwrap();
        let dst: IpAddr = "fd00::2".parse().unwrap();
        let f = ip_udp((src, 5405), (dst, 5406), b"hello");
        let udp = &f[40..];
        let mut pseudo = Vec::new();
        if let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
        }
        pseudo.extend_from_slice(&(udp.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 17]);
        assert_eq!(checksum(udp, sum_of(&pseudo)), 0);
    }
}
