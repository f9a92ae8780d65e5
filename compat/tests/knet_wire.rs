//! The knet capture decoder, layer by layer and end to end: synthetic
//! captures built with `knet::forge`, and the real encrypted C capture w1.

use std::io::Write;
use std::path::PathBuf;

use pmxcfs_compat::knet::crypto::{self, Cipher, CryptoConfig, Hash, Opener};
use pmxcfs_compat::knet::forge;
use pmxcfs_compat::knet::link::{self, DataHeader, Defragmenter, KnetPacket};
use pmxcfs_compat::knet::packets;
use pmxcfs_compat::knet::totem::{self, RingId, TotemMessage};
use pmxcfs_compat::knet::totempg::{self, Assembler, ServiceMessage};
use pmxcfs_compat::knet::{decode, WireError, DEFAULT_PORTS};
use pmxcfs_wire::capture::{CpgAddress, EventBody, EventKind};

fn key() -> Vec<u8> {
    (0..256u32).map(|i| (i * 7 + 3) as u8).collect()
}

const CIPHERS: [Cipher; 4] = [Cipher::None, Cipher::Aes128, Cipher::Aes192, Cipher::Aes256];
const HASHES: [Hash; 6] = [
    Hash::None,
    Hash::Md5,
    Hash::Sha1,
    Hash::Sha256,
    Hash::Sha384,
    Hash::Sha512,
];

#[test]
fn crypto_opens_every_cipher_and_hash_and_detects_them() {
    let plain = forge::knet_data(2, 77, 0, true, 1, 0, b"totem bytes");
    for cipher in CIPHERS {
        for hash in HASHES {
            if cipher != Cipher::None && hash == Hash::None {
                continue;
            }
            let sealed = forge::seal(&key(), cipher, hash, [9; 16], &plain);
            let config = CryptoConfig {
                key_index: 0,
                cipher,
                hash,
            };
            assert_eq!(
                crypto::open(&[key()], &config, &sealed).as_deref(),
                Some(&plain[..]),
                "{config}"
            );
            // Auto-detection finds the same plaintext.
            let mut opener = Opener::new(vec![key()]);
            assert_eq!(
                opener.open(&sealed).as_deref(),
                Some(&plain[..]),
                "{config}"
            );
            // One flipped bit anywhere fails authentication (when hashed).
            if hash != Hash::None {
                let mut bad = sealed.clone();
                bad[sealed.len() / 2] ^= 0x10;
                assert_eq!(crypto::open(&[key()], &config, &bad), None, "{config}");
            }
        }
    }
}

#[test]
fn crypto_uses_the_right_key_of_several_and_refuses_a_wrong_one() {
    let plain = forge::knet_ping(1, 5);
    let other: Vec<u8> = vec![0x42; 128];
    let sealed = forge::seal(&other, Cipher::Aes128, Hash::Sha1, [1; 16], &plain);
    let mut only_wrong = Opener::new(vec![key()]);
    assert_eq!(only_wrong.open(&sealed), None);
    let mut both = Opener::new(vec![key(), other.clone()]);
    assert_eq!(both.open(&sealed).as_deref(), Some(&plain[..]));
    assert_eq!(both.used, vec![("aes128/sha1 (key 2)".to_string(), 1)]);
}

#[test]
fn knet_header_is_big_endian_and_fragments_reassemble_in_any_order() {
    let p = forge::knet_data(0x0102, 0xa0b0, 0, true, 3, 2, b"middle");
    match link::parse(&p) {
        Some(KnetPacket::Data(h, data)) => {
            assert_eq!(
                (h.node, h.seq, h.bcast, h.frag_num, h.frag_seq),
                (0x0102, 0xa0b0, 1, 3, 2)
            );
            assert_eq!(data, b"middle");
        }
        other => panic!("{other:?}"),
    }
    let mut d = Defragmenter::default();
    let key = ("a".to_string(), "b".to_string(), 1, 9);
    let h = |i| DataHeader {
        node: 1,
        seq: 9,
        compress: 0,
        bcast: 1,
        frag_num: 3,
        frag_seq: i,
        channel: 0,
    };
    assert_eq!(d.add(key.clone(), &h(3), b"cc"), None);
    assert_eq!(d.add(key.clone(), &h(1), b"aaaa"), None);
    assert_eq!(
        d.add(key.clone(), &h(2), b"bbbb").as_deref(),
        Some(&b"aaaabbbbcc"[..])
    );
    assert_eq!(d.unfinished(), 0);
    // The late twin of a fragment (a capture on two interfaces) is ignored.
    assert_eq!(d.add(key.clone(), &h(2), b"bbbb"), None);
    assert_eq!(d.unfinished(), 0);
    // A lone fragment stays pending and is counted.
    let other = ("a".to_string(), "b".to_string(), 1, 10);
    assert_eq!(d.add(other, &h(1), b"x"), None);
    assert_eq!(d.unfinished(), 1);
    // After the sender restarts, its seqs count again.
    d.forget_node(1);
    assert_eq!(d.unfinished(), 0);
    assert_eq!(d.add(key.clone(), &h(1), b"aaaa"), None);
    assert_eq!(d.add(key.clone(), &h(2), b"bbbb"), None);
    assert_eq!(
        d.add(key, &h(3), b"cc").as_deref(),
        Some(&b"aaaabbbbcc"[..])
    );
}

#[test]
fn every_supported_compression_model_decompresses() {
    let data: Vec<u8> = (0..5000u32)
        .flat_map(|i| format!("line {i} of pmxcfs\n").into_bytes())
        .collect();
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zlib.write_all(&data).unwrap();
    let lz4 = lz4_flex::block::compress(&data);
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::new(1));
    bz.write_all(&data).unwrap();
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut &data[..], &mut xz).unwrap();
    let zstd =
        ruzstd::encoding::compress_to_vec(&data[..], ruzstd::encoding::CompressionLevel::Fastest);
    for (model, bytes) in [
        (1, zlib.finish().unwrap()),
        (2, lz4.clone()),
        (3, lz4),
        (5, xz),
        (6, bz.finish().unwrap()),
        (7, zstd),
    ] {
        assert_eq!(
            link::decompress(model, &bytes).unwrap(),
            data,
            "model {model}"
        );
    }
    assert!(link::decompress(4, b"x")
        .unwrap_err()
        .contains("not supported"));
    assert!(link::decompress(1, b"not zlib").is_err());
}

#[test]
fn totem_messages_parse_in_both_byte_orders() {
    let ring = RingId { rep: 1, seq: 0xd };
    let m = forge::totem_mcast(2, 23, ring, 2, b"payload");
    match totem::parse(&m) {
        Some(TotemMessage::Mcast(mc)) => {
            assert_eq!(
                (mc.nodeid, mc.seq, mc.ring, mc.encapsulated),
                (2, 23, ring, 2)
            );
            assert_eq!(mc.payload, b"payload");
        }
        other => panic!("{other:?}"),
    }
    // The same mcast from a big-endian sender.
    let mut be = m.clone();
    be[0..2].copy_from_slice(&[0xc0, 0x70]);
    for (off, len) in [(5, 4), (9, 4), (13, 4), (17, 4), (21, 4), (25, 4), (29, 8)] {
        be[off..off + len].reverse();
    }
    assert_eq!(totem::parse(&be), totem::parse(&m));
    let c = forge::totem_commit(
        1,
        2,
        4,
        RingId { rep: 1, seq: 0x11 },
        &[(1, ring, 106), (2, ring, 106)],
    );
    match totem::parse(&c) {
        Some(TotemMessage::Commit(ct)) => {
            assert_eq!(ct.members.len(), 2);
            assert_eq!(
                (
                    ct.members[1].nodeid,
                    ct.members[1].old_ring,
                    ct.members[1].aru
                ),
                (2, ring, 106)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        totem::parse(b"\x00\x00\x03\x01not totem at all......................"),
        None
    );
}

#[test]
fn totempg_reassembles_a_message_across_three_mcasts_and_keeps_packing_order() {
    let big: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let mut asm = Assembler::default();
    let first = forge::totempg(1, 0, &[b"small", &big[..1000]]);
    let second = forge::totempg(2, 1, &[&big[1000..2000]]);
    let third = forge::totempg(0, 2, &[&big[2000..], b"after"]);
    assert_eq!(asm.feed(3, &first, false).unwrap(), vec![b"small".to_vec()]);
    assert_eq!(asm.feed(3, &second, false).unwrap(), Vec::<Vec<u8>>::new());
    assert_eq!(
        asm.feed(3, &third, false).unwrap(),
        vec![big.clone(), b"after".to_vec()]
    );
    // A continuation whose head was never captured is dropped and counted.
    let mut asm = Assembler::default();
    assert_eq!(asm.feed(3, &third, false).unwrap(), vec![b"after".to_vec()]);
    assert_eq!(asm.orphans, 1);
    // Lengths that do not add up are refused, as corosync does.
    let mut bad = forge::totempg(0, 0, &[b"abc"]);
    bad.push(0);
    assert!(totempg::split(&bad, false).is_none());
}

#[test]
fn cpg_service_messages_decode() {
    let g = b"pve_dcdb_v1\0";
    assert_eq!(
        totempg::decode(&forge::cpg_proc(false, g, 4242, 1), false),
        Some(ServiceMessage::CpgProcJoin {
            group: g.to_vec(),
            pid: 4242,
            reason: 1
        })
    );
    assert_eq!(
        totempg::decode(&forge::cpg_mcast(g, 3, 4242, b"hello"), false),
        Some(ServiceMessage::CpgMcast {
            group: g.to_vec(),
            pid: 4242,
            nodeid: 3,
            msg: b"hello".to_vec()
        })
    );
    assert_eq!(
        totempg::decode(&forge::cpg_joinlist(&[(7, g), (8, b"other")]), false),
        Some(ServiceMessage::CpgJoinList {
            entries: vec![(7, g.to_vec()), (8, b"other".to_vec())]
        })
    );
    let ring = RingId { rep: 1, seq: 0x10 };
    assert_eq!(
        totempg::decode(&forge::sync_barrier(ring), false),
        Some(ServiceMessage::SyncBarrier { ring })
    );
}

/// A two-node encrypted cluster: sync with joinlists, two clients join,
/// messages (one knet-fragmented and compressed, one totempg-fragmented,
/// duplicates on the wire), then node 2 dies and node 1's client sees it
/// leave with reason nodedown.
#[test]
fn synthetic_capture_decodes_into_each_nodes_client_view() {
    let k = key();
    let g: &[u8] = b"pve_dcdb_v1\0";
    let r1 = RingId { rep: 1, seq: 4 };
    let r2 = RingId { rep: 1, seq: 8 };
    let addr = |n: u32| [10, 0, 0, n as u8];
    let mut frames: Vec<(f64, Vec<u8>)> = Vec::new();
    let mut t = 1000.0;
    let mut knet_seq = [0u16; 4];
    let mut iv = 0u8;
    let mut send = |frames: &mut Vec<(f64, Vec<u8>)>,
                    from: u32,
                    to: &[u32],
                    totem: Vec<u8>,
                    compress: bool| {
        t += 0.001;
        knet_seq[from as usize] += 1;
        let (model, body) = if compress {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(&totem).unwrap();
            (1, z.finish().unwrap())
        } else {
            (0, totem)
        };
        let chunks: Vec<&[u8]> = body.chunks(1397).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let frag = if chunks.len() == 1 { 0 } else { i as u8 + 1 };
            let plain = forge::knet_data(
                from as u16,
                knet_seq[from as usize],
                model,
                to.len() > 1 || to.is_empty(),
                chunks.len() as u8,
                frag,
                chunk,
            );
            iv = iv.wrapping_add(1);
            let sealed = forge::seal(&k, Cipher::Aes256, Hash::Sha256, [iv; 16], &plain);
            // knet sends the same ciphertext to every destination.
            for &dst in to {
                frames.push((t, forge::udp_frame(addr(from), addr(dst), 5405, &sealed)));
            }
        }
    };
    let mcast = |from: u32, seq: u32, ring: RingId, pieces: &[&[u8]], frag: (u8, u8)| {
        forge::totem_mcast(from, seq, ring, 2, &forge::totempg(frag.0, frag.1, pieces))
    };
    // Ring r1 = {1, 2}: commit token, then the CPG sync (joinlist + barrier).
    send(
        &mut frames,
        1,
        &[2],
        forge::totem_commit(
            1,
            2,
            3,
            r1,
            &[
                (1, RingId { rep: 1, seq: 0 }, 0),
                (2, RingId { rep: 2, seq: 0 }, 0),
            ],
        ),
        false,
    );
    send(
        &mut frames,
        1,
        &[2],
        mcast(
            1,
            1,
            r1,
            &[&forge::cpg_downlist(), &forge::sync_barrier(r1)],
            (0, 0),
        ),
        false,
    );
    send(
        &mut frames,
        2,
        &[1],
        mcast(
            2,
            2,
            r1,
            &[&forge::cpg_downlist(), &forge::sync_barrier(r1)],
            (0, 0),
        ),
        false,
    );
    // Both clients join; node 1 says hello twice (the second one arrives
    // as a retransmission from node 2 as well).
    send(
        &mut frames,
        1,
        &[2],
        mcast(1, 3, r1, &[&forge::cpg_proc(false, g, 100, 1)], (0, 0)),
        false,
    );
    send(
        &mut frames,
        2,
        &[1],
        mcast(2, 4, r1, &[&forge::cpg_proc(false, g, 200, 1)], (0, 0)),
        false,
    );
    let hello = forge::cpg_mcast(g, 1, 100, b"hello from 1");
    send(
        &mut frames,
        1,
        &[2],
        mcast(1, 5, r1, &[&hello], (0, 0)),
        false,
    );
    send(
        &mut frames,
        2,
        &[1],
        mcast(1, 5, r1, &[&hello], (0, 0)),
        false,
    );
    // A 5000-byte message: knet fragments and compresses it.
    // Pseudo-random bytes: still several knet fragments after compression.
    let mut x = 0x9e3779b9u32;
    let big_payload: Vec<u8> = (0..5000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    send(
        &mut frames,
        2,
        &[1],
        mcast(
            2,
            6,
            r1,
            &[&forge::cpg_mcast(g, 2, 200, &big_payload)],
            (0, 0),
        ),
        true,
    );
    // A message split by totempg over two mcasts of node 1.
    let split = forge::cpg_mcast(g, 1, 100, &[7u8; 900]);
    send(
        &mut frames,
        1,
        &[2],
        mcast(1, 7, r1, &[&split[..500]], (1, 0)),
        false,
    );
    send(
        &mut frames,
        1,
        &[2],
        mcast(1, 8, r1, &[&split[500..]], (0, 1)),
        false,
    );
    // Node 2 dies. Node 1 forms ring r2 alone after its last mcast; its own
    // commit token never reaches the wire, the join does: we model the
    // view through a commit token seen on the wire to node 3 (a newcomer).
    send(
        &mut frames,
        1,
        &[3],
        forge::totem_commit(
            1,
            3,
            2,
            r2,
            &[(1, r1, 8), (3, RingId { rep: 3, seq: 0 }, 0)],
        ),
        false,
    );
    send(
        &mut frames,
        1,
        &[3],
        mcast(
            1,
            1,
            r2,
            &[
                &forge::cpg_downlist(),
                &forge::cpg_joinlist(&[(100, g)]),
                &forge::sync_barrier(r2),
            ],
            (0, 0),
        ),
        false,
    );
    send(
        &mut frames,
        3,
        &[1],
        mcast(
            3,
            2,
            r2,
            &[&forge::cpg_downlist(), &forge::sync_barrier(r2)],
            (0, 0),
        ),
        false,
    );
    // A UDP packet of something else on another port is ignored.
    frames.push((t + 1.0, forge::udp_frame(addr(1), addr(2), 53, b"dns")));

    let file = forge::pcap(&frames);
    let d = decode(&file, vec![k.clone()], DEFAULT_PORTS).expect("decodes");
    assert_eq!(d.read.foreign, 1);
    assert_eq!(d.totem.stats.failed_auth, 0);
    assert_eq!(d.totem.stats.duplicate_mcasts, 1);
    assert!(d.totem.stats.reassembled >= 1, "{:?}", d.totem.stats);
    assert_eq!(d.totem.rings.len(), 2);
    assert!(d.totem.rings.iter().all(|r| r.missing().is_empty()));

    let confchg = |members: &[(u32, u32)], left: &[(u32, u32, u32)], joined: &[(u32, u32, u32)]| {
        EventBody::Confchg {
            members: members
                .iter()
                .map(|&(nodeid, pid)| CpgAddress {
                    nodeid,
                    pid,
                    reason: 0,
                })
                .collect(),
            left: left
                .iter()
                .map(|&(nodeid, pid, reason)| CpgAddress {
                    nodeid,
                    pid,
                    reason,
                })
                .collect(),
            joined: joined
                .iter()
                .map(|&(nodeid, pid, reason)| CpgAddress {
                    nodeid,
                    pid,
                    reason,
                })
                .collect(),
        }
    };
    let deliver = |n, p, m: &[u8]| EventBody::Deliver {
        sender_nodeid: n,
        sender_pid: p,
        msg: m.to_vec(),
    };
    let node1: Vec<(EventKind, u32, EventBody)> = d.views.per_node[&1]
        .iter()
        .map(|v| (v.event.kind, v.event.local_pid, v.event.body.clone()))
        .collect();
    let split_msg = [7u8; 900];
    assert_eq!(
        node1,
        vec![
            (
                EventKind::Confchg,
                100,
                confchg(&[(1, 100)], &[], &[(1, 100, 1)])
            ),
            (
                EventKind::Confchg,
                100,
                confchg(&[(1, 100), (2, 200)], &[], &[(2, 200, 1)])
            ),
            (EventKind::Deliver, 100, deliver(1, 100, b"hello from 1")),
            (EventKind::Deliver, 100, deliver(2, 200, &big_payload)),
            (EventKind::Deliver, 100, deliver(1, 100, &split_msg)),
            (
                EventKind::Confchg,
                100,
                confchg(&[(1, 100)], &[(2, 200, 3)], &[])
            ),
        ]
    );
    let node2: Vec<EventKind> = d.views.per_node[&2].iter().map(|v| v.event.kind).collect();
    assert_eq!(
        node2,
        vec![
            EventKind::Confchg,
            EventKind::Deliver,
            EventKind::Deliver,
            EventKind::Deliver
        ]
    );
    // Node 3 joined in r2 and learns node 1's process from its joinlist.
    let node3: Vec<EventBody> = d
        .views
        .per_node
        .get(&3)
        .map(|v| v.iter().map(|e| e.event.body.clone()).collect())
        .unwrap_or_default();
    assert!(
        node3.is_empty(),
        "node 3 has no client in the group: {node3:?}"
    );

    // The wrong key is named as such.
    match decode(&file, vec![vec![1u8; 256]], DEFAULT_PORTS) {
        Err(e @ WireError::WrongKey { .. }) => assert!(e
            .to_string()
            .contains("no packet authenticates with the given key")),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("decoded with a wrong key"),
    }
    // Every truncation of the file decodes what it holds, without a panic.
    for cut in (0..file.len()).step_by(97) {
        let _ = decode(&file[..cut], vec![k.clone()], DEFAULT_PORTS);
    }
    // Ports outside the range hold nothing.
    assert!(matches!(
        decode(&file, vec![k], 6000..=6001),
        Err(WireError::NoKnetTraffic)
    ));
}

#[test]
fn pcapng_with_two_interfaces_and_cooked_frames_is_read() {
    let payload = b"knet?";
    let eth = forge::udp_frame([10, 0, 0, 1], [10, 0, 0, 2], 5405, payload);
    let ip = &eth[14..];
    let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6];
    sll2.extend_from_slice(&[0u8; 8]);
    sll2.extend_from_slice(ip);
    let block = |kind: u32, body: &[u8]| {
        let len = 12 + body.len().div_ceil(4) * 4;
        let mut b = kind.to_le_bytes().to_vec();
        b.extend_from_slice(&(len as u32).to_le_bytes());
        b.extend_from_slice(body);
        b.resize(len - 4, 0);
        b.extend_from_slice(&(len as u32).to_le_bytes());
        b
    };
    let mut f = block(
        0x0a0d0d0a,
        &[
            0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
    );
    f.extend(block(1, &[1, 0, 0, 0, 0, 0, 0, 0]));
    // Interface 1: SLL2, nanosecond resolution (if_tsresol = 9).
    f.extend(block(
        1,
        &[
            0x14, 0x01, 0, 0, 0, 0, 0, 0, 9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0,
        ],
    ));
    let epb = |iface: u32, ts: u64, frame: &[u8]| {
        let mut b = iface.to_le_bytes().to_vec();
        b.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(ts as u32).to_le_bytes());
        b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        b.extend_from_slice(frame);
        b
    };
    f.extend(block(6, &epb(0, 1_500_000, &eth)));
    f.extend(block(6, &epb(1, 2_000_000_000, &sll2)));
    let (datagrams, stats) = packets::read_datagrams(&f, DEFAULT_PORTS).unwrap();
    assert_eq!(stats.frames, 2);
    assert_eq!(datagrams.len(), 2);
    assert!((datagrams[0].time - 1.5).abs() < 1e-9);
    assert!((datagrams[1].time - 2.0).abs() < 1e-9);
    assert!(datagrams
        .iter()
        .all(|d| d.payload == payload && d.dst.1 == 5405));
    assert!(packets::read_datagrams(b"garbage!", DEFAULT_PORTS).is_err());
}

fn w1() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../captures/w1-encrypted-basic")
}

/// The real capture of an encrypted 3-node C cluster: every DELIVER and
/// CONFCHG each pmxcfs recorded is recovered, in order, byte for byte.
#[test]
fn w1_encrypted_capture_matches_every_node_recording() {
    let dir = w1();
    let file = std::fs::read(dir.join("wire.pcapng")).unwrap();
    let key = std::fs::read(dir.join("authkey")).unwrap();
    let d = decode(&file, vec![key], DEFAULT_PORTS).unwrap();
    assert_eq!(d.totem.stats.failed_auth, 0);
    assert_eq!(
        d.totem.stats.crypto,
        vec![("aes256/sha256 (key 1)".to_string(), 7650)]
    );
    let rings: Vec<String> = d
        .totem
        .rings
        .iter()
        .map(|r| r.id.unwrap().to_string())
        .collect();
    assert_eq!(rings, ["2.9", "1.d", "2.11", "3.15"]);
    let cmp = pmxcfs_compat::wire_check::compare(&d, &dir).unwrap();
    let totals: Vec<(u32, usize, usize, usize, usize, usize)> = cmp
        .iter()
        .map(|c| {
            (
                c.node,
                c.delivers_matched,
                c.delivers_expected,
                c.confchgs_matched,
                c.confchgs_expected,
                c.own_leaves.len(),
            )
        })
        .collect();
    assert_eq!(
        totals,
        vec![
            (1, 106, 106, 10, 10, 2),
            (2, 115, 115, 10, 10, 2),
            (3, 81, 81, 8, 8, 4)
        ]
    );
    assert!(cmp.iter().all(|c| c.ok()), "{cmp:?}");
}

/// The streaming decoder (reading the file as it goes, a bounded window of
/// undecided mcasts) hands every node exactly the callbacks the batch
/// decoder computes, and the same ring starts.
#[test]
fn w1_streamed_gives_the_batch_views() {
    let dir = w1();
    let file = std::fs::read(dir.join("wire.pcapng")).unwrap();
    let key = std::fs::read(dir.join("authkey")).unwrap();
    let batch = decode(&file, vec![key.clone()], DEFAULT_PORTS).unwrap();
    let mut per_node: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
    let mut rings = Vec::new();
    let mut reader = std::io::BufReader::new(std::fs::File::open(dir.join("wire.pcapng")).unwrap());
    let summary = pmxcfs_compat::knet::stream(
        &mut reader,
        vec![key.clone()],
        DEFAULT_PORTS,
        None,
        &mut |s| match s {
            pmxcfs_compat::knet::Streamed::RingStart(r) => rings.push(r.id.unwrap().to_string()),
            pmxcfs_compat::knet::Streamed::Emitted(pmxcfs_compat::knet::views::Emitted::View(
                n,
                v,
            )) => per_node
                .entry(n)
                .or_default()
                .push(format!("{:.6} {} {:?}", v.time, v.ring, v.event)),
            _ => {}
        },
    )
    .unwrap();
    assert_eq!(rings, ["2.9", "1.d", "2.11", "3.15"]);
    assert_eq!(summary.order.authenticated, 7650);
    let want: std::collections::BTreeMap<u32, Vec<String>> = batch
        .views
        .per_node
        .iter()
        .map(|(n, evs)| {
            (
                *n,
                evs.iter()
                    .map(|v| format!("{:.6} {} {:?}", v.time, v.ring, v.event))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(per_node.len(), 3);
    assert_eq!(per_node, want);
    // Only node 2's callbacks, when only node 2 is asked for.
    let mut only = 0;
    let mut reader = std::io::BufReader::new(std::fs::File::open(dir.join("wire.pcapng")).unwrap());
    pmxcfs_compat::knet::stream(
        &mut reader,
        vec![key],
        DEFAULT_PORTS,
        Some(vec![2]),
        &mut |s| {
            if let pmxcfs_compat::knet::Streamed::Emitted(
                pmxcfs_compat::knet::views::Emitted::View(n, _),
            ) = s
            {
                assert_eq!(n, 2);
                only += 1;
            }
        },
    )
    .unwrap();
    assert_eq!(only, want[&2].len());
}

#[test]
fn w1_with_a_wrong_key_says_so() {
    let file = std::fs::read(w1().join("wire.pcapng")).unwrap();
    let err = decode(&file, vec![vec![0x55; 256]], DEFAULT_PORTS)
        .err()
        .expect("must fail");
    assert_eq!(
        err.to_string(),
        "no packet authenticates with the given key (7650 knet datagrams tried)"
    );
}

/// Seals totem messages into knet packets of a pcap (no fragmentation).
fn capture_of(key: &[u8], packets: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let frames: Vec<(f64, Vec<u8>)> = packets
        .iter()
        .enumerate()
        .map(|(i, (from, totem))| {
            let plain = forge::knet_data(*from as u16, i as u16 + 1, 0, true, 1, 0, totem);
            let sealed = forge::seal(key, Cipher::Aes256, Hash::Sha256, [i as u8; 16], &plain);
            (
                2000.0 + i as f64 * 0.01,
                forge::udp_frame([10, 0, 0, *from as u8], [10, 0, 0, 9], 5405, &sealed),
            )
        })
        .collect();
    forge::pcap(&frames)
}

/// Node 3 dies with two messages in flight: #7 reached node 1 only (node 1
/// re-sends it, encapsulated, in the new ring's recovery; the original copy
/// was not captured), #8 reached no one. The survivors deliver #5 in the old
/// ring and never #6; the recovery seq of the new ring is not a gap.
#[test]
fn recovery_copies_are_unwrapped_and_undelivered_messages_flagged() {
    let k = key();
    let g: &[u8] = b"grp\0";
    let r1 = RingId { rep: 1, seq: 4 };
    let r2 = RingId { rep: 1, seq: 8 };
    let mc = |from: u32, seq: u32, ring: RingId, pieces: &[&[u8]]| {
        forge::totem_mcast(from, seq, ring, 2, &forge::totempg(0, 0, pieces))
    };
    let sync = |from: u32, seq: u32, ring: RingId, joinlist: &[(u32, &[u8])]| {
        let mut pieces = vec![forge::cpg_downlist()];
        if !joinlist.is_empty() {
            pieces.push(forge::cpg_joinlist(joinlist));
        }
        pieces.push(forge::sync_barrier(ring));
        let refs: Vec<&[u8]> = pieces.iter().map(|p| p.as_slice()).collect();
        forge::totem_mcast(from, seq, ring, 2, &forge::totempg(0, 0, &refs))
    };
    let zero = |n| RingId { rep: n, seq: 0 };
    let hello7 = mc(3, 7, r1, &[&forge::cpg_mcast(g, 3, 30, b"seven")]);
    let packets = vec![
        (
            1,
            forge::totem_commit(
                1,
                2,
                5,
                r1,
                &[(1, zero(1), 0), (2, zero(2), 0), (3, zero(3), 0)],
            ),
        ),
        (1, sync(1, 1, r1, &[])),
        (
            2,
            mc(
                2,
                2,
                r1,
                &[&forge::cpg_downlist(), &forge::sync_barrier(r1)],
            ),
        ),
        (
            3,
            mc(
                3,
                3,
                r1,
                &[&forge::cpg_downlist(), &forge::sync_barrier(r1)],
            ),
        ),
        (1, mc(1, 4, r1, &[&forge::cpg_proc(false, g, 10, 1)])),
        (2, mc(2, 5, r1, &[&forge::cpg_proc(false, g, 20, 1)])),
        (3, mc(3, 6, r1, &[&forge::cpg_proc(false, g, 30, 1)])),
        (3, mc(3, 8, r1, &[&forge::cpg_mcast(g, 3, 30, b"eight")])),
        (
            1,
            forge::totem_commit(1, 2, 3, r2, &[(1, r1, 7), (2, r1, 6)]),
        ),
        (1, forge::totem_mcast(1, 1, r2, 1, &hello7)),
        (1, sync(1, 2, r2, &[(10, g)])),
        (2, sync(2, 3, r2, &[(20, g)])),
        (2, mc(2, 4, r2, &[&forge::cpg_mcast(g, 2, 20, b"after")])),
    ];
    let d = decode(&capture_of(&k, &packets), vec![k.clone()], DEFAULT_PORTS).unwrap();
    assert_eq!(d.totem.stats.recovery_copies, 1);
    assert_eq!(d.totem.stats.not_delivered, 1);
    let rings: Vec<(String, Vec<u32>)> = d
        .totem
        .rings
        .iter()
        .map(|r| (r.id.unwrap().to_string(), r.missing()))
        .collect();
    assert_eq!(
        rings,
        vec![("1.4".to_string(), vec![]), ("1.8".to_string(), vec![])]
    );
    let flagged: Vec<(u32, bool)> = d
        .views
        .messages
        .iter()
        .filter(|m| matches!(m.message, ServiceMessage::CpgMcast { .. }))
        .map(|m| (m.seq, m.delivered))
        .collect();
    assert_eq!(flagged, vec![(7, true), (8, false), (4, true)]);
    for node in [1, 2] {
        let seen: Vec<String> = d.views.per_node[&node]
            .iter()
            .map(|v| match &v.event.body {
                EventBody::Deliver { msg, .. } => String::from_utf8_lossy(msg).into_owned(),
                EventBody::Confchg { members, left, .. } => format!(
                    "confchg {} left {:?}",
                    members.len(),
                    left.iter()
                        .map(|a| (a.nodeid, a.reason))
                        .collect::<Vec<_>>()
                ),
                _ => unreachable!(),
            })
            .collect();
        // Node 2's client joins second: it sees its own join (2 members) first.
        let expected = [
            "confchg 1 left []",
            "confchg 2 left []",
            "confchg 3 left []",
            "seven",
            "confchg 2 left [(3, 3)]",
            "after",
        ];
        assert_eq!(seen, expected[node as usize - 1..], "node {node}");
    }
}

/// The command line is a contract: its last line, its exit codes, its files.
#[test]
fn wire_command_line_contract() {
    let dir = w1();
    let out_dir = std::env::temp_dir().join(format!("pmxcfs-wire-out-{}", std::process::id()));
    let run = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pmxcfs-replay"))
            .args(args)
            .output()
            .unwrap()
    };
    let key = dir.join("authkey");
    let capture = dir.join("wire.pcapng");
    let ok = run(&[
        "wire".as_ref(),
        "--authkey".as_ref(),
        key.as_os_str(),
        "--out".as_ref(),
        out_dir.as_os_str(),
        "--expect".as_ref(),
        dir.as_os_str(),
        capture.as_os_str(),
    ]);
    let stdout = String::from_utf8(ok.stdout).unwrap();
    assert_eq!(ok.status.code(), Some(0), "{stdout}");
    assert_eq!(
        stdout.lines().last(),
        Some("nodes: 3, delivers matched: 302/302, confchgs matched: 28/28")
    );
    assert!(stdout.contains("ring 1.d: members [1, 2, 3]"), "{stdout}");
    // --out wrote what --expect compared: per group, the same DELIVERs as
    // node1's own recording (the interleaving of the two groups is the
    // daemon's dispatch order, which the wire does not fix).
    let written = pmxcfs_compat::capture::read_capture(&out_dir.join("node1.pcap")).unwrap();
    let recorded = pmxcfs_compat::capture::read_capture(&dir.join("node1.pcap")).unwrap();
    let delivers = |records: &[pmxcfs_compat::capture::Record]| {
        let mut per_group = std::collections::BTreeMap::<Vec<u8>, Vec<EventBody>>::new();
        for e in records.iter().map(|r| r.event().unwrap()) {
            if e.kind == EventKind::Deliver {
                per_group.entry(e.group).or_default().push(e.body);
            }
        }
        per_group
    };
    let (w, r) = (delivers(&written), delivers(&recorded));
    assert_eq!(w.len(), 2);
    assert!(
        w == r,
        "the written node1.pcap differs from node1's recording"
    );
    let _ = std::fs::remove_dir_all(&out_dir);

    let bad_key = std::env::temp_dir().join(format!("pmxcfs-wire-badkey-{}", std::process::id()));
    std::fs::write(&bad_key, [7u8; 256]).unwrap();
    let wrong = run(&[
        "wire".as_ref(),
        "--authkey".as_ref(),
        bad_key.as_os_str(),
        capture.as_os_str(),
    ]);
    let _ = std::fs::remove_file(&bad_key);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr)
        .contains("no packet authenticates with the given key"));
    // Without a key: a usage error.
    assert_eq!(
        run(&["wire".as_ref(), capture.as_os_str()]).status.code(),
        Some(2)
    );

    // --json: one object on standard output, the same figures.
    let json = run(&[
        "wire".as_ref(),
        "--json".as_ref(),
        "--authkey".as_ref(),
        key.as_os_str(),
        "--expect".as_ref(),
        dir.as_os_str(),
        capture.as_os_str(),
    ]);
    assert_eq!(json.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON object");
    assert_eq!(v["expect"]["ok"], true);
    let nodes = v["expect"]["nodes"].as_array().unwrap();
    let sum = |k: &str| nodes.iter().map(|n| n[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(
        (
            sum("delivers_matched"),
            sum("delivers_expected"),
            sum("confchgs_matched"),
            sum("confchgs_expected")
        ),
        (302, 302, 28, 28)
    );
    assert_eq!(v["nodes"].as_array().unwrap().len(), 3);
    assert!(!v["rings"].as_array().unwrap().is_empty());
}

/// IPv4 fragments that claim more than the datagram's final length (found
/// by libFuzzer): the stray fragment is ignored, nothing panics.
#[test]
fn ip_fragments_beyond_the_last_one_are_ignored() {
    let udp = forge::udp_frame([10, 0, 0, 1], [10, 0, 0, 2], 5405, &[0x42; 64]);
    let ip = &udp[14..];
    let fragment = |offset_units: u16, more: bool, data: &[u8]| {
        let mut f = udp[..14].to_vec();
        let mut h = ip[..20].to_vec();
        h[2..4].copy_from_slice(&((20 + data.len()) as u16).to_be_bytes());
        h[6..8].copy_from_slice(
            &((offset_units & 0x1fff) | if more { 0x2000 } else { 0 }).to_be_bytes(),
        );
        f.extend_from_slice(&h);
        f.extend_from_slice(data);
        f
    };
    let payload = &ip[20..]; // UDP header + 64 bytes = 72 bytes
    let frames = vec![
        (1.0, fragment(0, true, &payload[..40])),
        (1.1, fragment(3000, true, &[7u8; 16])), // far beyond the end
        (1.2, fragment(5, false, &payload[40..])),
    ];
    let (datagrams, stats) = packets::read_datagrams(&forge::pcap(&frames), DEFAULT_PORTS).unwrap();
    assert_eq!(stats.ip_fragments, 3);
    assert_eq!(datagrams.len(), 1);
    assert_eq!(datagrams[0].payload, vec![0x42; 64]);
}

/// Every seed and every regression input of the knet fuzz targets
/// (`fuzz/seeds/knet_*`) runs through its target without a panic.
#[test]
fn knet_fuzz_corpus_runs_clean() {
    use pmxcfs_compat::knet::fuzzing::{run, TARGETS};
    let seeds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let mut inputs = 0;
    for &target in TARGETS {
        for entry in std::fs::read_dir(seeds.join(target.name())).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            run(target, &data);
            inputs += 1;
        }
    }
    assert!(inputs >= 30, "{inputs} inputs");
}
