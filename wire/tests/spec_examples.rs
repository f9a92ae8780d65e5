//! The worked examples and test vectors of the protocol specification
//! (`pmxcfs-protocol.md`), reproduced byte for byte.

use pmxcfs_wire::clog::{fnv1a64, utf8_to_ascii, ClogEntry, LogRecord};
use pmxcfs_wire::dcdb::{self, EntryType, FuseMessage, Payload, Subtype, TreeEntry};
use pmxcfs_wire::dfsm::{Epoch, Framing, MessageType};
use pmxcfs_wire::digest::{entry_checksum, index_digest, memdb_index, root_entry, tree_checksum};
use pmxcfs_wire::Codec;
use sha2::{Digest, Sha256};

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// §2.3: WRITE "cores: 2\n" to nodes/pve1/qemu-server/100.conf, count 7,
/// time 1700000000: 85 bytes.
#[test]
fn write_message_worked_example() {
    let expected = unhex(
        "00000100 01000000 00f15365 00000000 07000000 00000000
         09000000 00000000 20000000 00000000 00000000
         6e6f6465 732f7076 65312f71 656d752d 73657276 65722f31 30302e63 6f6e6600
         636f7265 733a2032 0a",
    );
    assert_eq!(expected.len(), 85);

    let message = dcdb::Message {
        framing: Framing::normal(
            Subtype::Write.into(),
            dcdb::PROTOCOL_VERSION,
            1_700_000_000,
            7,
        ),
        payload: Payload::Fuse(FuseMessage {
            data: b"cores: 2\n".to_vec(),
            ..FuseMessage::new("nodes/pve1/qemu-server/100.conf")
        }),
    };
    assert_eq!(message.to_bytes(), expected);

    let decoded = dcdb::Message::decode(&expected).unwrap();
    assert_eq!(decoded, message);
    assert_eq!(decoded.subtype(), Some(Subtype::Write));
    assert_eq!(decoded.framing.count(), Some(7));
}

/// §2.9: the root UPDATE for version 201, writer 2, mtime 1234, epoch
/// {3, 1699999990, node 1, pid 4242}: 74 bytes.
#[test]
fn root_update_worked_example() {
    let epoch = Epoch {
        epoch: 3,
        time: 1_699_999_990,
        nodeid: 1,
        pid: 4242,
    };
    let message = dcdb::Message {
        framing: Framing::state(MessageType::Update, 1, 1_699_999_990, epoch),
        payload: Payload::Update(root_entry(201, 2, 1234)),
    };
    let bytes = message.to_bytes();
    assert_eq!(bytes.len(), 74);
    let payload = unhex(
        "00000000 00000000 00000000 00000000 c9000000 00000000 02000000 d2040000 00000000 01000000 04 00",
    );
    assert_eq!(&bytes[32..], &payload[..]);
    assert_eq!(&bytes[16..32], &epoch.to_bytes());
    assert_eq!(dcdb::Message::decode(&bytes).unwrap(), message);
}

/// §2.7.2: the golden value of check_memdb: 100 files of 32768 zero bytes,
/// created and written with writer 0 and mtime 1234 in a fresh database.
#[test]
fn check_memdb_index_digest_vector() {
    let mut entries = vec![root_entry(201, 0, 1234)];
    for n in 0..100u64 {
        let inode = 2 + 2 * n;
        entries.push(TreeEntry {
            parent: 0,
            inode,
            version: inode + 1,
            writer: 0,
            mtime: 1234,
            size: 32768,
            entry_type: EntryType::Reg,
            name: format!("testfile{n}").into_bytes(),
            data: vec![0; 32768],
        });
    }
    let index = memdb_index(&entries);
    assert_eq!(index.version, 201);
    assert_eq!(index.last_inode, 200);
    assert_eq!(index.size, 101);
    assert_eq!(index.bytes, 4072);
    assert!(index.is_consistent());
    let bytes = index.to_bytes();
    assert_eq!(bytes.len(), 4072);
    assert_eq!(
        hex(&Sha256::digest(&bytes)),
        "913fd95015af9d93f10dd51ba2a7bb11351bcfe040be21e95fcba834adc3ec10"
    );
}

/// §2.7.3: the entry checksum is the index digest's fields with the inode
/// in front, and the tree checksum runs over all entries in that form.
#[test]
fn entry_and_tree_checksums_put_the_inode_first() {
    let root = root_entry(5, 0, 99);
    let file = TreeEntry {
        parent: 0,
        inode: 4,
        version: 5,
        writer: 2,
        mtime: 100,
        size: 3,
        entry_type: EntryType::Reg,
        name: b"a.cfg".to_vec(),
        data: b"abc".to_vec(),
    };
    let mut fields = Vec::new();
    fields.extend_from_slice(&5u64.to_le_bytes());
    fields.extend_from_slice(&2u32.to_le_bytes());
    fields.extend_from_slice(&100u32.to_le_bytes());
    fields.extend_from_slice(&3u32.to_le_bytes());
    fields.push(8);
    fields.extend_from_slice(&0u64.to_le_bytes());
    fields.extend_from_slice(b"a.cfg");
    fields.extend_from_slice(b"abc");
    assert_eq!(
        index_digest(&file),
        <[u8; 32]>::from(Sha256::digest(&fields))
    );

    let mut with_inode = 4u64.to_le_bytes().to_vec();
    with_inode.extend_from_slice(&fields);
    assert_eq!(
        entry_checksum(&file),
        <[u8; 32]>::from(Sha256::digest(&with_inode))
    );

    let mut running = Sha256::new();
    let mut root_fields = 0u64.to_le_bytes().to_vec();
    root_fields.extend_from_slice(&5u64.to_le_bytes());
    root_fields.extend_from_slice(&0u32.to_le_bytes());
    root_fields.extend_from_slice(&99u32.to_le_bytes());
    root_fields.extend_from_slice(&0u32.to_le_bytes());
    root_fields.push(4);
    root_fields.extend_from_slice(&0u64.to_le_bytes());
    running.update(&root_fields);
    running.update(&with_inode);
    assert_eq!(
        tree_checksum([&root, &file]),
        <[u8; 32]>::from(running.finalize())
    );
}

/// §3.5.1: FNV-1a of "node1" with its NUL.
#[test]
fn fnv_vector() {
    assert_eq!(fnv1a64(b"node1\0"), 0xe6f5e3c220c8fefc);
    assert_eq!(fnv1a64(b"root@pam\0"), 0x0bf69a5dbf95bb61);
    assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
}

/// §3.5.1: the packed cluster-log entry of the specification.
#[test]
fn clog_pack_vector() {
    let record = LogRecord {
        node: b"node1",
        ident: b"root@pam",
        tag: b"cluster",
        pid: 1234,
        time: 1_700_000_000,
        priority: 6,
        msg: "hello \"world\"\n\u{e4}".as_bytes(),
    };
    let entry = ClogEntry::pack(&record, 1).unwrap();
    assert_eq!(entry.size(), 97);
    assert_eq!(entry.msg.len(), 26);
    assert_eq!(entry.node_digest, 0xe6f5e3c220c8fefc);
    assert_eq!(entry.ident_digest, 0x0bf69a5dbf95bb61);
    assert_eq!(entry.msg_str(), r##"hello \"world\"#010\u00e4"##);

    let expected_head = unhex(
        "00000000 00000000 01000000 00f15365 fcfec820 c2e3f5e6 61bb95bf 5d9af60b
         d2040000 06060908 1a000000 6e6f6465 3100726f 6f744070 616d0063 6c757374
         65720068 656c6c6f 205c2277 6f726c64 5c222330 31305c75 30306534 00",
    );
    let bytes = entry.to_bytes();
    assert_eq!(bytes.len(), 97);
    assert_eq!(&bytes[..93], &expected_head[..]);
    // The 4 trailing bytes are uninitialised in C; ours are zero.
    assert_eq!(&bytes[93..], &[0, 0, 0, 0]);

    let (rest, parsed) = ClogEntry::parse(&bytes).unwrap();
    assert!(rest.is_empty());
    assert_eq!(parsed, entry);
}

#[test]
fn clog_pack_refuses_priority_8() {
    let record = LogRecord {
        node: b"n",
        ident: b"i",
        tag: b"t",
        pid: 1,
        time: 1,
        priority: 8,
        msg: b"m",
    };
    assert!(ClogEntry::pack(&record, 1).is_none());
}

/// §3.5.1: node/ident/tag are cut at 255 bytes including the NUL; the
/// digest covers 255 bytes of the original string.
#[test]
fn clog_pack_cuts_long_names() {
    let long = vec![b'x'; 300];
    let record = LogRecord {
        node: &long,
        ident: b"root",
        tag: b"t",
        pid: 1,
        time: 1,
        priority: 1,
        msg: b"m",
    };
    let entry = ClogEntry::pack(&record, 1).unwrap();
    assert_eq!(entry.node.len(), 255);
    assert_eq!(entry.node[254], 0);
    assert_eq!(entry.node_digest, fnv1a64(&long[..255]));
}

/// §3.5.1: the message is sanitised into the 4096 - 44 - strings bytes left
/// after the strings' offset, but the size counts a 48-byte fixed part, so
/// a long message whose last character expands to an escape overflows 4096;
/// it is cut and loses its NUL, and C receivers reject such a LOG message.
#[test]
fn clog_pack_overlong_message_loses_its_nul() {
    // 4096 - 44 - 15 = 4037 bytes of room; output continues while shorter
    // than 4030, so 4029 plain bytes are followed by one 6-byte escape.
    let mut msg = vec![b'a'; 4029];
    msg.extend_from_slice("\u{e4}\u{e4}".as_bytes());
    let record = LogRecord {
        node: b"node1",
        ident: b"root",
        tag: b"tag",
        pid: 1,
        time: 1,
        priority: 1,
        msg: &msg,
    };
    let entry = ClogEntry::pack(&record, 1).unwrap();
    assert_eq!(entry.size(), 4096);
    assert_eq!(entry.msg.len(), 4096 - 48 - 15);
    assert_ne!(entry.msg.last(), Some(&0));

    let bytes = entry.to_bytes();
    let err = pmxcfs_wire::codec::decode_frame("log", &bytes, ClogEntry::parse).unwrap_err();
    assert_eq!(err.field, "msg");
    assert_eq!(err.kind, pmxcfs_wire::ErrorKind::MissingNul);
    // Short of the limit, nothing is cut.
    let plain = vec![b'a'; 10_000];
    let entry = ClogEntry::pack(
        &LogRecord {
            msg: &plain,
            ..record.clone()
        },
        1,
    )
    .unwrap();
    assert_eq!(entry.msg.len(), 4031);
    assert_eq!(entry.msg.last(), Some(&0));
}

/// §3.5.2 sanitising rules.
#[test]
fn utf8_to_ascii_rules() {
    let s = |input: &[u8]| String::from_utf8(utf8_to_ascii(input, 4096, true)).unwrap();
    assert_eq!(s(b"plain text"), "plain text");
    assert_eq!(s(b"back\\slash"), "back\\slash");
    assert_eq!(s(b"tab\there"), "tab#009here");
    assert_eq!(s(b"del\x7f"), "del#127");
    assert_eq!(s("\u{20ac}".as_bytes()), "\\u20ac");
    assert_eq!(s("emoji\u{1f600}!".as_bytes()), "emoji!");
    assert_eq!(s(b"quote\"d"), "quote\\\"d");
    assert_eq!(
        String::from_utf8(utf8_to_ascii(b"q\"", 4096, false)).unwrap(),
        "q\""
    );
    // Invalid UTF-8: byte-wise, high bytes become '?'.
    assert_eq!(s(b"bad\xff\x01\"x"), "bad?#001\\\"x");
    // Stops at the first NUL.
    assert_eq!(s(b"ab\0cd"), "ab");
    // Writes while the output is shorter than bufsize - 7.
    assert_eq!(utf8_to_ascii(&[b'a'; 100], 17, true).len(), 10);
    assert_eq!(
        utf8_to_ascii("\u{e4}\u{e4}\u{e4}".as_bytes(), 14, true).len(),
        12
    );
}

/// §1.2: header sizes, and the checks a receiving C node makes first.
#[test]
fn dfsm_header_lengths() {
    let normal = Framing::normal(1, 1, 2, 3);
    let mut bytes = Vec::new();
    normal.encode(&mut bytes);
    assert_eq!(bytes.len(), 24);
    let state = Framing::state(MessageType::State, 0, 2, Epoch::default());
    let mut bytes = Vec::new();
    state.encode(&mut bytes);
    assert_eq!(bytes.len(), 32);

    use pmxcfs_wire::dfsm::RawMessage;
    let short = RawMessage::decode(&[0u8; 15]).unwrap_err();
    assert_eq!(short.field, "dfsm header");
    // A NORMAL message needs 24 bytes.
    let err = RawMessage::decode(&[0u8; 20]).unwrap_err();
    assert_eq!(err.field, "normal header");
    // Any other type, known or not, needs 32.
    let mut unknown = vec![0u8; 31];
    unknown[0] = 9;
    let err = RawMessage::decode(&unknown).unwrap_err();
    assert_eq!(err.field, "state header");
    unknown.push(0);
    let m = RawMessage::decode(&unknown).unwrap();
    assert_eq!(m.framing.header.msg_type, MessageType::Unknown(9));
    assert_eq!(m.to_bytes(), unknown);
}
