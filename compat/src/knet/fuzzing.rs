//! One fuzz entry point per layer of the capture decoder (the cargo-fuzz
//! targets in `fuzz/` and the bounded run in CI, `examples/fuzz_knet.rs`,
//! call these), with seeds built by `forge`. Arbitrary bytes must never
//! panic a layer; where a layer has a writer, a decoded value must match it.

use super::crypto::{self, Cipher, CryptoConfig, Hash, Opener};
use super::forge;
use super::link::{self, Defragmenter, KnetPacket};
use super::totem::{self, RingId};
use super::totempg::{self, Assembler};
use super::{decode, DEFAULT_PORTS};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    CaptureFile,
    KnetCrypto,
    KnetPacket,
    TotemMessage,
    TotempgPayload,
    ServiceMessage,
    WholeCapture,
}

pub const TARGETS: &[Target] = &[
    Target::CaptureFile,
    Target::KnetCrypto,
    Target::KnetPacket,
    Target::TotemMessage,
    Target::TotempgPayload,
    Target::ServiceMessage,
    Target::WholeCapture,
];

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::CaptureFile => "knet_capture_file",
            Target::KnetCrypto => "knet_crypto",
            Target::KnetPacket => "knet_packet",
            Target::TotemMessage => "knet_totem_message",
            Target::TotempgPayload => "knet_totempg_payload",
            Target::ServiceMessage => "knet_service_message",
            Target::WholeCapture => "knet_whole_capture",
        }
    }
}

/// The key every fuzz input is sealed with.
pub fn fuzz_key() -> Vec<u8> {
    (0..256u32).map(|i| (i * 31 + 7) as u8).collect()
}

pub fn run(target: Target, data: &[u8]) {
    match target {
        Target::CaptureFile => {
            if let Ok((datagrams, _)) = super::packets::read_datagrams(data, 0..=u16::MAX) {
                assert!(datagrams
                    .iter()
                    .all(|d| d.payload.len() <= data.len() + 65536));
            }
        }
        Target::KnetCrypto => {
            // Seal the input with every configuration: opening must give it back.
            let key = fuzz_key();
            let config = CryptoConfig {
                key_index: 0,
                cipher: Cipher::Aes192,
                hash: Hash::Sha1,
            };
            let sealed = forge::seal(&key, config.cipher, config.hash, [3; 16], data);
            assert_eq!(
                crypto::open(&[key.clone()], &config, &sealed).as_deref(),
                Some(data)
            );
            // And the raw input is just another packet to try.
            let _ = Opener::new(vec![key]).open(data);
        }
        Target::KnetPacket => {
            if let Some(KnetPacket::Data(h, payload)) = link::parse(data) {
                let mut d = Defragmenter::default();
                if let Some(whole) = d.add(("a".into(), "b".into(), h.node, h.seq), &h, payload) {
                    for model in 0..=8 {
                        let _ = link::decompress(model, &whole);
                    }
                }
            }
        }
        Target::TotemMessage => {
            if let Some(totem::TotemMessage::Mcast(m)) = totem::parse(data) {
                if !totem::is_big_endian(data) {
                    let again =
                        forge::totem_mcast(m.nodeid, m.seq, m.ring, m.encapsulated, &m.payload);
                    assert_eq!(totem::parse(&again), totem::parse(data));
                }
            }
        }
        Target::TotempgPayload => {
            let mut asm = Assembler::default();
            for sender in [1, 2] {
                if let Some(messages) = asm.feed(sender, data, false) {
                    for m in messages {
                        let _ = totempg::decode(&m, false);
                    }
                }
            }
        }
        Target::ServiceMessage => {
            let _ = totempg::decode(data, false);
            let _ = totempg::decode(data, true);
        }
        Target::WholeCapture => {
            let _ = decode(data, vec![fuzz_key()], DEFAULT_PORTS);
        }
    }
}

/// Seeds for every target, built with `forge`.
pub fn seeds(target: Target) -> Vec<Vec<u8>> {
    let g: &[u8] = b"pve_dcdb_v1\0";
    let ring = RingId { rep: 1, seq: 0xd };
    let services = vec![
        forge::cpg_proc(false, g, 100, 1),
        forge::cpg_proc(true, g, 100, 2),
        forge::cpg_mcast(g, 1, 100, b"hello"),
        forge::cpg_joinlist(&[(100, g)]),
        forge::sync_barrier(ring),
    ];
    let refs: Vec<&[u8]> = services.iter().map(|s| s.as_slice()).collect();
    let payloads = vec![
        forge::totempg(0, 0, &refs),
        forge::totempg(1, 0, &refs[..2]),
        forge::totempg(0, 1, &refs[2..]),
    ];
    let totems: Vec<Vec<u8>> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| forge::totem_mcast(1, i as u32 + 1, ring, 2, p))
        .chain([forge::totem_commit(
            1,
            2,
            3,
            ring,
            &[(1, ring, 5), (2, ring, 5)],
        )])
        .collect();
    let knet: Vec<Vec<u8>> = totems
        .iter()
        .enumerate()
        .map(|(i, t)| forge::knet_data(1, i as u16 + 1, 0, true, 1, 0, t))
        .chain([forge::knet_ping(2, 9)])
        .collect();
    let key = fuzz_key();
    let sealed: Vec<Vec<u8>> = knet
        .iter()
        .map(|k| forge::seal(&key, Cipher::Aes256, Hash::Sha256, [5; 16], k))
        .collect();
    let capture = forge::pcap(
        &sealed
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    i as f64,
                    forge::udp_frame([10, 0, 0, 1], [10, 0, 0, 2], 5405, s),
                )
            })
            .collect::<Vec<_>>(),
    );
    match target {
        Target::CaptureFile | Target::WholeCapture => vec![capture],
        Target::KnetCrypto => sealed.into_iter().chain(knet).collect(),
        Target::KnetPacket => knet,
        Target::TotemMessage => totems,
        Target::TotempgPayload => payloads,
        Target::ServiceMessage => services,
    }
}
