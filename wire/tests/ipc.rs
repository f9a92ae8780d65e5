//! IPC requests packed as PVE::Cluster packs them, their decoding, and the
//! errno the C server answers for each malformed form (spec §6.3–6.4).

use pmxcfs_wire::ipc::{
    name_field, Opcode, Request, RequestBody, Response, ECHRNG, EINVAL, REQUEST_HEADER_LEN,
};

/// A request as libqb delivers it: header (padding zero) + payload.
fn raw(id: i32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&((16 + payload.len()) as i32).to_le_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(payload);
    v
}

fn errno(bytes: &[u8]) -> i32 {
    Request::decode(bytes).unwrap_err().errno
}

fn round_trip(bytes: &[u8]) -> Request {
    let r = Request::decode(bytes).unwrap();
    assert_eq!(r.to_bytes(), bytes);
    r
}

#[test]
fn header_layout() {
    let r = Request::new(RequestBody::GetFsVersion);
    let bytes = r.to_bytes();
    assert_eq!(bytes, raw(1, &[]));
    assert_eq!(bytes.len(), REQUEST_HEADER_LEN);
    assert_eq!(round_trip(&bytes).opcode(), Opcode::GetFsVersion);
}

#[test]
fn padding_is_kept() {
    let mut bytes = raw(2, &[]);
    bytes[4..8].copy_from_slice(&[1, 2, 3, 4]);
    bytes[12..16].copy_from_slice(&[5, 6, 7, 8]);
    let r = round_trip(&bytes);
    assert_eq!(r.header.padding, [[1, 2, 3, 4], [5, 6, 7, 8]]);
}

#[test]
fn size_field_must_be_the_delivered_length() {
    let mut bytes = raw(1, &[]);
    bytes[8] = 17;
    let e = Request::decode(&bytes).unwrap_err();
    assert_eq!(e.errno, EINVAL);
    assert_eq!(e.error.field, "size");
    assert_eq!(e.error.offset, 8);
    assert_eq!(errno(&bytes[..12]), EINVAL);
}

#[test]
fn no_payload_opcodes_reject_a_stray_payload() {
    for id in [1, 2, 3, 10] {
        round_trip(&raw(id, &[]));
        assert_eq!(errno(&raw(id, b"x")), EINVAL, "opcode {id}");
    }
}

#[test]
fn set_status() {
    // pack "Z[256]Z*", name, value
    let mut payload = name_field(b"tasklist").to_vec();
    payload.extend_from_slice(b"{\"a\":1}\0");
    let r = round_trip(&raw(4, &payload));
    match &r.body {
        RequestBody::SetStatus { name, value } => {
            assert_eq!(RequestBody::status_name(name), b"tasklist");
            assert_eq!(value, b"{\"a\":1}\0");
        }
        other => panic!("{other:?}"),
    }
    // Only the name: a delete.
    let r = round_trip(&raw(4, &name_field(b"tasklist")));
    assert!(matches!(r.body, RequestBody::SetStatus { ref value, .. } if value.is_empty()));
    assert_eq!(errno(&raw(4, &[0; 255])), EINVAL);
    // Byte 271 (the name's last) is forced to NUL.
    let long = [b'k'; 256];
    assert_eq!(RequestBody::status_name(&long).len(), 255);
}

#[test]
fn get_status() {
    let mut payload = name_field(b"tasklist").to_vec();
    payload.extend_from_slice(&name_field(b"node2"));
    let r = round_trip(&raw(5, &payload));
    match &r.body {
        RequestBody::GetStatus {
            name,
            nodename,
            trailing,
        } => {
            assert_eq!(RequestBody::status_name(name), b"tasklist");
            assert_eq!(RequestBody::status_name(nodename), b"node2");
            assert!(trailing.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(errno(&raw(5, &payload[..511])), EINVAL);
}

#[test]
fn get_config() {
    let r = round_trip(&raw(6, b"/storage.cfg\0"));
    match &r.body {
        RequestBody::GetConfig { path } => {
            assert_eq!(RequestBody::config_path(path), b"/storage.cfg")
        }
        other => panic!("{other:?}"),
    }
    // Without the NUL the last character is lost, as in C.
    let r = round_trip(&raw(6, b"storage.cfg"));
    match &r.body {
        RequestBody::GetConfig { path } => {
            assert_eq!(RequestBody::config_path(path), b"storage.cf")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(errno(&raw(6, b"")), EINVAL);
}

#[test]
fn log_cluster_msg() {
    // pack "CCCZ*Z*Z*", priority, ident_len, tag_len, ident, tag, msg
    let mut payload = vec![6, 9, 8];
    payload.extend_from_slice(b"root@pam\0capwork\0hello\0");
    let r = round_trip(&raw(7, &payload));
    match &r.body {
        RequestBody::LogClusterMsg {
            priority,
            ident,
            tag,
            msg,
        } => {
            assert_eq!(*priority, 6);
            assert_eq!(ident, b"root@pam\0");
            assert_eq!(tag, b"capwork\0");
            assert_eq!(RequestBody::log_msg(msg), b"hello");
        }
        other => panic!("{other:?}"),
    }
    // No message byte left.
    let mut short = vec![6, 9, 8];
    short.extend_from_slice(b"root@pam\0capwork\0");
    assert_eq!(errno(&raw(7, &short)), EINVAL);
    // The ident not NUL-terminated at its length.
    let mut bad = vec![6, 8, 8];
    bad.extend_from_slice(b"root@pam\0capwork\0hello\0");
    assert_eq!(errno(&raw(7, &bad)), EINVAL);
    // Zero-length ident.
    let mut zero = vec![6, 0, 8];
    zero.extend_from_slice(b"capwork\0hello\0");
    assert_eq!(errno(&raw(7, &zero)), EINVAL);
    assert_eq!(errno(&raw(7, &[6, 1])), EINVAL);
}

#[test]
fn get_cluster_log() {
    // pack "VVVVZ*", max, 0, 0, 0, user
    let mut payload = Vec::new();
    for v in [50u32, 0, 0, 0] {
        payload.extend_from_slice(&v.to_le_bytes());
    }
    payload.extend_from_slice(b"root@pam\0");
    let r = round_trip(&raw(8, &payload));
    match &r.body {
        RequestBody::GetClusterLog {
            max_entries, user, ..
        } => {
            assert_eq!(*max_entries, 50);
            assert_eq!(RequestBody::cluster_log_user(user), b"root@pam");
        }
        other => panic!("{other:?}"),
    }
    // An empty user still sends its NUL; none at all is EINVAL.
    round_trip(&raw(8, &[&payload[..16], b"\0"].concat()));
    assert_eq!(errno(&raw(8, &payload[..16])), EINVAL);
}

#[test]
fn guest_config_property() {
    let mut payload = 100u32.to_le_bytes().to_vec();
    payload.extend_from_slice(b"memory\0");
    let r = round_trip(&raw(11, &payload));
    match &r.body {
        RequestBody::GetGuestConfigProperty { vmid, property } => {
            assert_eq!(*vmid, 100);
            assert_eq!(RequestBody::property(property), Ok(&b"memory"[..]));
        }
        other => panic!("{other:?}"),
    }
    // An empty property is accepted by the decoder: C checks the vmid
    // (EINVAL/ENOENT) first, then the property.
    let r = round_trip(&raw(11, &100u32.to_le_bytes()));
    match &r.body {
        RequestBody::GetGuestConfigProperty { property, .. } => {
            assert_eq!(RequestBody::property(property), Err(EINVAL))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(errno(&raw(11, &[1, 0, 0])), EINVAL);
}

#[test]
fn verify_token() {
    let r = round_trip(&raw(12, b"root@pam!t 1234\0"));
    assert!(matches!(&r.body, RequestBody::VerifyToken { token } if token == b"root@pam!t 1234"));
    assert_eq!(errno(&raw(12, b"\0")), EINVAL);
    assert_eq!(errno(&raw(12, b"abc")), EINVAL);
    assert_eq!(errno(&raw(12, b"a\nb\0")), EINVAL);
    assert_eq!(errno(&raw(12, b"a\0b\0")), EINVAL);
}

#[test]
fn guest_config_properties() {
    // pack "VC" + "Z*" x n
    let mut payload = 0u32.to_le_bytes().to_vec();
    payload.push(2);
    payload.extend_from_slice(b"name\0memory\0");
    let r = round_trip(&raw(13, &payload));
    match &r.body {
        RequestBody::GetGuestConfigProperties {
            vmid,
            num_props,
            names,
        } => {
            assert_eq!(*vmid, 0);
            let names = RequestBody::property_names(*num_props, names).unwrap();
            assert_eq!(names, vec![&b"name"[..], &b"memory"[..]]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(RequestBody::property_names(0, b"name\0"), Err(EINVAL));
    assert_eq!(RequestBody::property_names(1, b"\0"), Err(EINVAL));
    assert_eq!(RequestBody::property_names(1, b"Name\0"), Err(EINVAL));
    assert_eq!(RequestBody::property_names(1, b"name"), Err(EINVAL));
    assert_eq!(RequestBody::property_names(1, b"name\0x\0"), Err(EINVAL));
    assert_eq!(RequestBody::property_names(2, b"name\0\0"), Err(EINVAL));
    assert_eq!(errno(&raw(13, &[0, 0, 0, 0])), EINVAL);
}

#[test]
fn unknown_opcodes_are_kept_for_an_echrng_answer() {
    let bytes = raw(99, b"whatever");
    let r = round_trip(&bytes);
    assert_eq!(r.opcode(), Opcode::Unknown(99));
    round_trip(&raw(9, &[]));
    let response = Response::error(99, ECHRNG);
    assert_eq!(response.header.error, -44);
}

#[test]
fn responses() {
    let ok = Response::ok(1, b"{\n}\n".to_vec());
    let bytes = ok.to_bytes();
    assert_eq!(bytes.len(), 24 + 4);
    assert_eq!(&bytes[8..12], &28i32.to_le_bytes());
    assert_eq!(&bytes[16..20], &0i32.to_le_bytes());
    assert_eq!(Response::decode(&bytes).unwrap(), ok);

    // Empty successful replies are empty, not padded.
    let empty = Response::ok(4, Vec::new()).to_bytes();
    assert_eq!(empty.len(), 24);

    let err = Response::error(6, 2).to_bytes();
    assert_eq!(&err[16..20], &(-2i32).to_le_bytes());
    assert_eq!(Response::decode(&err).unwrap().payload, b"");

    assert!(Response::decode(&bytes[..27]).is_err());
    assert!(Response::decode(&bytes[..20]).is_err());
}
