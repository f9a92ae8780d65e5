//! Layer 2: the knet crypto envelope `[salt/IV 16][AES-CBC ciphertext][HMAC]`.
//!
//! The AES key is the first 16/24/32 bytes of the authkey, the HMAC key the
//! whole authkey (knet-wire.md §3.2). Cipher and hash are found by trial.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cipher {
    None,
    Aes128,
    Aes192,
    Aes256,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    None,
    Md5,
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    pub fn tag_len(self) -> usize {
        match self {
            Hash::None => 0,
            Hash::Md5 => 16,
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    fn mac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut m = <M as Mac>::new_from_slice(key).expect("HMAC takes any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Hash::None => Vec::new(),
            Hash::Md5 => run::<Hmac<md5::Md5>>(key, data),
            Hash::Sha1 => run::<Hmac<sha1::Sha1>>(key, data),
            Hash::Sha256 => run::<Hmac<sha2::Sha256>>(key, data),
            Hash::Sha384 => run::<Hmac<sha2::Sha384>>(key, data),
            Hash::Sha512 => run::<Hmac<sha2::Sha512>>(key, data),
        }
    }
}

/// One crypto configuration: the key, cipher and hash.
#[derive(Clone, Debug)]
pub struct CryptoConfig {
    pub key_index: usize,
    pub cipher: Cipher,
    pub hash: Hash,
}

impl std::fmt::Display for CryptoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = match self.cipher {
            Cipher::None => "none",
            Cipher::Aes128 => "aes128",
            Cipher::Aes192 => "aes192",
            Cipher::Aes256 => "aes256",
        };
        let h = match self.hash {
            Hash::None => "none",
            Hash::Md5 => "md5",
            Hash::Sha1 => "sha1",
            Hash::Sha256 => "sha256",
            Hash::Sha384 => "sha384",
            Hash::Sha512 => "sha512",
        };
        write!(f, "{c}/{h} (key {})", self.key_index + 1)
    }
}

/// Opens one packet with one configuration. `None` when the HMAC does not
/// match, the ciphertext is malformed or the padding is wrong.
pub fn open(keys: &[Vec<u8>], config: &CryptoConfig, packet: &[u8]) -> Option<Vec<u8>> {
    let key = keys.get(config.key_index)?;
    let h = config.hash.tag_len();
    if packet.len() < h {
        return None;
    }
    let (body, tag) = packet.split_at(packet.len() - h);
    if h > 0 {
        let expected = config.hash.mac(key, body);
        if !bool::from(expected.as_slice().ct_eq(tag)) {
            return None;
        }
    }
    if config.cipher == Cipher::None {
        return Some(body.to_vec());
    }
    if body.len() < 32 || (body.len() - 16) % 16 != 0 {
        return None;
    }
    let (iv, ciphertext) = body.split_at(16);
    let mut buf = ciphertext.to_vec();
    let plain_len = match config.cipher {
        Cipher::Aes128 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key.get(..16)?, iv)
            .ok()?
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .ok()?
            .len(),
        Cipher::Aes192 => cbc::Decryptor::<aes::Aes192>::new_from_slices(key.get(..24)?, iv)
            .ok()?
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .ok()?
            .len(),
        Cipher::Aes256 => cbc::Decryptor::<aes::Aes256>::new_from_slices(key.get(..32)?, iv)
            .ok()?
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .ok()?
            .len(),
        Cipher::None => unreachable!(),
    };
    buf.truncate(plain_len);
    Some(buf)
}

/// Does this look like a knet 1.x packet? Version 1, a known type, zero
/// padding and a size that fits the type. Strict on purpose: with cipher and
/// hash "none" this is the only thing that tells knet from random bytes.
pub fn plausible_knet(p: &[u8]) -> bool {
    if p.len() < 6 || p[0] != 1 || p[5] != 0 {
        return false;
    }
    match p[1] {
        0x00 => p.len() > 14 && p[9] == 0 && p[10] <= 1 && p[11] >= 1 && p[12] <= p[11],
        0x81 | 0x82 => p.len() == 26,
        0x83 => p.len() >= 9,
        0x84 => p.len() == 9,
        _ => false,
    }
}

/// Every configuration worth trying, most likely (PVE's default) first.
pub fn candidates(keys: &[Vec<u8>]) -> Vec<CryptoConfig> {
    let mut out = Vec::new();
    for key_index in 0..keys.len() {
        for cipher in [Cipher::Aes256, Cipher::Aes128, Cipher::Aes192, Cipher::None] {
            for hash in [
                Hash::Sha256,
                Hash::Sha1,
                Hash::Sha384,
                Hash::Sha512,
                Hash::Md5,
                Hash::None,
            ] {
                // A cipher without a hash is refused by corosync.
                if cipher != Cipher::None && hash == Hash::None {
                    continue;
                }
                out.push(CryptoConfig {
                    key_index,
                    cipher,
                    hash,
                });
            }
        }
    }
    out
}

/// Opens packets like knet does: the configuration that worked last first,
/// then every other candidate.
pub struct Opener {
    keys: Vec<Vec<u8>>,
    candidates: Vec<CryptoConfig>,
    last: Option<usize>,
    pub used: Vec<(String, u64)>,
}

impl Opener {
    pub fn new(keys: Vec<Vec<u8>>) -> Opener {
        let candidates = candidates(&keys);
        Opener {
            keys,
            candidates,
            last: None,
            used: Vec::new(),
        }
    }

    pub fn open(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        if let Some(i) = self.last {
            if let Some(p) = open(&self.keys, &self.candidates[i], packet) {
                if plausible_knet(&p) {
                    self.count(i);
                    return Some(p);
                }
            }
        }
        for i in 0..self.candidates.len() {
            if Some(i) == self.last {
                continue;
            }
            // Clear traffic also "opens" with none/none: accept it only
            // when it looks like knet.
            if let Some(p) = open(&self.keys, &self.candidates[i], packet) {
                if plausible_knet(&p) {
                    self.last = Some(i);
                    self.count(i);
                    return Some(p);
                }
            }
        }
        None
    }

    fn count(&mut self, i: usize) {
        let name = self.candidates[i].to_string();
        match self.used.iter_mut().find(|(n, _)| *n == name) {
            Some(e) => e.1 += 1,
            None => self.used.push((name, 1)),
        }
    }
}
