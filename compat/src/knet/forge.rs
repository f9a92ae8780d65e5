//! The layers in reverse: builds valid knet/totem/CPG packets and capture
//! files. Used by the tests, the fuzz seeds and the benchmark; a decoder
//! that reads what this writes, and real captures, checks both directions.

use aes::cipher::{block_padding::Pkcs7, BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};

use super::crypto::{Cipher, Hash};
use super::totem::RingId;

/// Seals a knet packet: `[iv][AES-CBC(plain)][HMAC]` (or the hash-only and
/// clear variants).
pub fn seal(key: &[u8], cipher: Cipher, hash: Hash, iv: [u8; 16], plain: &[u8]) -> Vec<u8> {
    let mut out = match cipher {
        Cipher::None => plain.to_vec(),
        c => {
            let ct = match c {
                Cipher::Aes128 => cbc::Encryptor::<aes::Aes128>::new_from_slices(&key[..16], &iv)
                    .unwrap()
                    .encrypt_padded_vec_mut::<Pkcs7>(plain),
                Cipher::Aes192 => cbc::Encryptor::<aes::Aes192>::new_from_slices(&key[..24], &iv)
                    .unwrap()
                    .encrypt_padded_vec_mut::<Pkcs7>(plain),
                _ => cbc::Encryptor::<aes::Aes256>::new_from_slices(&key[..32], &iv)
                    .unwrap()
                    .encrypt_padded_vec_mut::<Pkcs7>(plain),
            };
            let mut v = iv.to_vec();
            v.extend_from_slice(&ct);
            v
        }
    };
    fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut m = <M as Mac>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
    let tag = match hash {
        Hash::None => Vec::new(),
        Hash::Md5 => mac::<Hmac<md5::Md5>>(key, &out),
        Hash::Sha1 => mac::<Hmac<sha1::Sha1>>(key, &out),
        Hash::Sha256 => mac::<Hmac<sha2::Sha256>>(key, &out),
        Hash::Sha384 => mac::<Hmac<sha2::Sha384>>(key, &out),
        Hash::Sha512 => mac::<Hmac<sha2::Sha512>>(key, &out),
    };
    out.extend_from_slice(&tag);
    out
}

/// A knet DATA packet (one fragment).
#[allow(clippy::too_many_arguments)]
pub fn knet_data(
    node: u16,
    seq: u16,
    compress: u8,
    bcast: bool,
    frag_num: u8,
    frag_seq: u8,
    data: &[u8],
) -> Vec<u8> {
    let mut v = vec![1, 0];
    v.extend_from_slice(&node.to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&[compress, 0, bcast as u8, frag_num, frag_seq, 0]);
    v.extend_from_slice(data);
    v
}

/// A knet PING (26 bytes).
pub fn knet_ping(node: u16, seq: u16) -> Vec<u8> {
    let mut v = vec![1, 0x81];
    v.extend_from_slice(&node.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0]);
    v.extend_from_slice(&[0u8; 16]);
    v.extend_from_slice(&seq.to_be_bytes());
    v.push(1);
    v
}

fn header(kind: u8, encapsulated: u8, nodeid: u32, target: u32) -> Vec<u8> {
    let mut v = vec![0x70, 0xc0, 3, kind, encapsulated];
    v.extend_from_slice(&nodeid.to_le_bytes());
    v.extend_from_slice(&target.to_le_bytes());
    v
}

fn ring_bytes(v: &mut Vec<u8>, r: RingId) {
    v.extend_from_slice(&r.rep.to_le_bytes());
    v.extend_from_slice(&r.seq.to_le_bytes());
}

/// A totem mcast (little-endian sender).
pub fn totem_mcast(
    nodeid: u32,
    seq: u32,
    ring: RingId,
    encapsulated: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut v = header(1, encapsulated, nodeid, 0);
    v.extend_from_slice(&nodeid.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    ring_bytes(&mut v, ring);
    v.extend_from_slice(&[0u8; 8]);
    v.extend_from_slice(payload);
    v
}

/// A totem commit token with every member's entry filled in:
/// (nodeid, old ring, aru).
pub fn totem_commit(
    from: u32,
    to: u32,
    token_seq: u32,
    ring: RingId,
    members: &[(u32, RingId, u32)],
) -> Vec<u8> {
    let mut v = header(4, 0, from, to);
    v.extend_from_slice(&token_seq.to_le_bytes());
    ring_bytes(&mut v, ring);
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&(members.len() as u32).to_le_bytes());
    v.extend_from_slice(&(members.len() as u32).to_le_bytes());
    for m in members {
        v.extend_from_slice(&m.0.to_le_bytes());
    }
    for m in members {
        ring_bytes(&mut v, m.1);
        v.extend_from_slice(&m.2.to_le_bytes());
        v.extend_from_slice(&m.2.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
    }
    v
}

/// A totempg payload: fragmented/continuation flags and the packed pieces.
pub fn totempg(fragmented: u8, continuation: u8, pieces: &[&[u8]]) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 0, fragmented, continuation];
    v.extend_from_slice(&(pieces.len() as u16).to_le_bytes());
    for p in pieces {
        v.extend_from_slice(&(p.len() as u16).to_le_bytes());
    }
    for p in pieces {
        v.extend_from_slice(p);
    }
    v
}

fn group_a(service_message: Vec<u8>) -> Vec<u8> {
    let mut v = vec![1, 0, 1, 0, b'a'];
    v.extend_from_slice(&service_message);
    v
}

fn request_header(service: u32, function: u32, size: usize) -> Vec<u8> {
    let mut v = ((service << 16) | function).to_le_bytes().to_vec();
    v.extend_from_slice(&[0u8; 4]);
    v.extend_from_slice(&(size as u32).to_le_bytes());
    v.extend_from_slice(&[0u8; 4]);
    v
}

fn cpg_name(v: &mut Vec<u8>, group: &[u8]) {
    v.extend_from_slice(&(group.len() as u32).to_le_bytes());
    v.extend_from_slice(&[0u8; 4]);
    let mut value = [0u8; 128];
    value[..group.len()].copy_from_slice(group);
    v.extend_from_slice(&value);
}

/// A CPG procjoin (fn 0) or procleave (fn 1), group header included.
pub fn cpg_proc(leave: bool, group: &[u8], pid: u32, reason: u32) -> Vec<u8> {
    let mut v = request_header(2, leave as u32, 168);
    cpg_name(&mut v, group);
    v.extend_from_slice(&pid.to_le_bytes());
    v.extend_from_slice(&[0u8; 4]);
    v.extend_from_slice(&reason.to_le_bytes());
    v.extend_from_slice(&[0u8; 4]);
    group_a(v)
}

/// A CPG mcast (fn 3), group header included.
pub fn cpg_mcast(group: &[u8], nodeid: u32, pid: u32, msg: &[u8]) -> Vec<u8> {
    let mut v = request_header(2, 3, 184 + msg.len());
    cpg_name(&mut v, group);
    v.extend_from_slice(&(msg.len() as u32).to_le_bytes());
    v.extend_from_slice(&[0u8; 4]);
    v.extend_from_slice(&pid.to_le_bytes());
    v.extend_from_slice(&[0u8; 4]);
    v.extend_from_slice(&nodeid.to_le_bytes());
    v.extend_from_slice(&[0u8; 4]);
    v.extend_from_slice(&[0u8; 8]);
    v.extend_from_slice(msg);
    group_a(v)
}

/// A CPG downlist (fn 5): every member sends one in the CPG sync round.
pub fn cpg_downlist() -> Vec<u8> {
    let mut v = request_header(2, 5, 1568);
    v.resize(1568, 0);
    group_a(v)
}

/// A CPG joinlist (fn 2): this node's local processes.
pub fn cpg_joinlist(entries: &[(u32, &[u8])]) -> Vec<u8> {
    let size = 24 + 144 * entries.len();
    let mut v = ((2u32 << 16) | 2).to_le_bytes().to_vec();
    v.extend_from_slice(&[0u8; 4]);
    v.extend_from_slice(&(size as u64).to_le_bytes());
    v.extend_from_slice(&[0u8; 8]);
    for (pid, group) in entries {
        v.extend_from_slice(&pid.to_le_bytes());
        v.extend_from_slice(&[0u8; 4]);
        cpg_name(&mut v, group);
    }
    group_a(v)
}

/// A sync barrier for `ring` (group "sync").
pub fn sync_barrier(ring: RingId) -> Vec<u8> {
    let mut v = vec![1, 0, 4, 0];
    v.extend_from_slice(b"sync");
    let mut m = request_header(0, 0, 32);
    m.extend_from_slice(&ring.rep.to_le_bytes());
    m.extend_from_slice(&ring.seq.to_le_bytes());
    m.extend_from_slice(&[0u8; 4]);
    v.extend_from_slice(&m);
    v
}

/// An Ethernet + IPv4 + UDP frame.
pub fn udp_frame(src: [u8; 4], dst: [u8; 4], port: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = 20 + 8 + payload.len();
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&(total as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&port.to_be_bytes());
    f.extend_from_slice(&port.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// A classic pcap file (microseconds, Ethernet) of (time, frame).
pub fn pcap(frames: &[(f64, Vec<u8>)]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    v.extend_from_slice(&[0u8; 8]);
    v.extend_from_slice(&65535u32.to_le_bytes());
    v.extend_from_slice(&1u32.to_le_bytes());
    for (t, f) in frames {
        v.extend_from_slice(&(t.floor() as u32).to_le_bytes());
        v.extend_from_slice(&(((t - t.floor()) * 1e6).round() as u32).to_le_bytes());
        v.extend_from_slice(&(f.len() as u32).to_le_bytes());
        v.extend_from_slice(&(f.len() as u32).to_le_bytes());
        v.extend_from_slice(f);
    }
    v
}
