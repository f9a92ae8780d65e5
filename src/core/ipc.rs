//! The `pve2` IPC requests (spec §6.4, observed-behaviour §5): what each of
//! the 12 opcodes answers, with C's checks in C's order. Pure: a request's
//! bytes and the node's state in, the response's bytes out; broadcasts of
//! the kvstore go out through the `Env` like any other kvstore send.

use pmxcfs_wire::ipc::REQUEST_HEADER_LEN;
use pmxcfs_wire::ipc::{
    Opcode, Request, RequestBody, RequestHeader, Response, ECHRNG, EFBIG, EINVAL, EIO, ENOENT,
    EPERM,
};

use super::dfsm::Env;
use super::kvstore::Kvstore;
use super::memdb::Memdb;
use super::paths::{self, VmType};
use super::status::Status;

/// Who is asking, from the connection's peer credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    /// gid www-data without root: may read non-private data only.
    pub readonly: bool,
    pub pid: u32,
}

/// Access from the peer credentials (spec §6.2): root with gid 0 may do
/// everything, the www-data group may read; anyone else is refused.
pub fn access(uid: u32, gid: u32, www_data_gid: u32) -> Option<bool> {
    if uid == 0 && gid == 0 {
        Some(false)
    } else if gid == www_data_gid {
        Some(true)
    } else {
        None
    }
}

/// Whether a request only reads: every opcode but the two that change the
/// status store and broadcast (SET_STATUS, LOG_CLUSTER_MSG). A request
/// without a readable header is answered like any other (EINVAL).
pub fn is_query(bytes: &[u8]) -> bool {
    match RequestHeader::parse(bytes) {
        Ok((_, h)) => !matches!(h.opcode(), Opcode::SetStatus | Opcode::LogClusterMsg),
        Err(_) => true,
    }
}

/// How long a GET_RRD_DUMP answer is reused.
const RRD_DUMP_CACHE: u32 = 2;

/// Answer one request.
/// The largest request a client may send: PVE::IPCC's own buffer (1 MiB,
/// `8192 * 128`, request header included). Every valid request is far
/// smaller (SET_STATUS, the largest, is 16 + 256 + 32 768 bytes).
pub const MAX_REQUEST: usize = 8192 * 128;

/// The answer to a request larger than [`MAX_REQUEST`] (EFBIG, with the
/// request's id), read from its header only; `None` for one that is not.
/// C would copy and decode it.
pub fn refuse_oversized(request: &[u8]) -> Option<Vec<u8>> {
    if request.len() <= MAX_REQUEST {
        return None;
    }
    let id = pmxcfs_wire::ipc::RequestHeader::parse(&request[..REQUEST_HEADER_LEN])
        .map(|(_, h)| h.id)
        .unwrap_or(0);
    Some(pmxcfs_wire::ipc::Response::error(id, libc::EFBIG).to_bytes())
}

pub fn handle(
    memdb: &Memdb,
    kv: &mut Kvstore,
    env: &mut Env,
    client: Client,
    bytes: &[u8],
) -> Vec<u8> {
    let id = RequestHeader::parse(bytes).map(|(_, h)| h.id).unwrap_or(0);
    let result = answer(memdb, kv, env, client, bytes);
    match result {
        Ok(payload) => Response::ok(id, payload).to_bytes(),
        Err(errno) => Response::error(id, errno).to_bytes(),
    }
}

fn answer(
    memdb: &Memdb,
    kv: &mut Kvstore,
    env: &mut Env,
    client: Client,
    bytes: &[u8],
) -> Result<Vec<u8>, i32> {
    let (_, header) = RequestHeader::parse(bytes).map_err(|_| EINVAL)?;
    // Writes from read-only clients are refused before anything else.
    if client.readonly && matches!(header.opcode(), Opcode::SetStatus | Opcode::LogClusterMsg) {
        return Err(EPERM);
    }
    let request = Request::decode(bytes).map_err(|e| e.errno)?;
    match request.body {
        RequestBody::GetFsVersion => Ok(kv
            .status
            .version_json(&memdb.vmlist, &memdb.changes)
            .into_bytes()),
        RequestBody::GetClusterInfo => Ok(kv.members_json().into_bytes()),
        RequestBody::GetGuestList => Ok(Status::vmlist_json(&memdb.vmlist).into_bytes()),
        RequestBody::SetStatus { name, value } => {
            if value.len() > pmxcfs_wire::kvstore::MAX_STATUS_SIZE {
                return Err(EFBIG);
            }
            kv.set_local(env, RequestBody::status_name(&name), &value)
                .map(|_| Vec::new())
        }
        RequestBody::GetStatus { name, nodename, .. } => {
            let key = String::from_utf8_lossy(RequestBody::status_name(&name)).into_owned();
            let node = String::from_utf8_lossy(RequestBody::status_name(&nodename)).into_owned();
            let node = if node.is_empty() {
                kv.status.nodename.clone()
            } else {
                node
            };
            kv.status
                .kvstore
                .get(&node)
                .and_then(|m| m.get(&key))
                .map(|e| e.data.clone())
                .ok_or(libc::ENOENT)
        }
        RequestBody::GetConfig { path } => {
            let path = RequestBody::config_path(&path);
            if client.readonly && paths::is_private(path) {
                return Err(EPERM);
            }
            match memdb.lookup(path) {
                Some(e) if !e.is_dir() => {
                    // Access is decided on the entry found, not on how
                    // its path was spelled (C 9.1.6 returns private files
                    // to www-data for `nodes//<node>/priv/...`).
                    let private = memdb.path_of(e.inode).is_none_or(|p| paths::is_private(&p));
                    if client.readonly && private {
                        return Err(EPERM);
                    }
                    Ok(file_content(e))
                }
                _ => Err(ENOENT),
            }
        }
        RequestBody::LogClusterMsg {
            priority,
            ident,
            tag,
            msg,
        } => {
            let c = pmxcfs_wire::codec::c_str;
            kv.log_local(
                env,
                c(&ident),
                c(&tag),
                client.pid,
                priority,
                RequestBody::log_msg(&msg),
            );
            Ok(Vec::new())
        }
        RequestBody::GetClusterLog {
            max_entries, user, ..
        } => {
            let user = RequestBody::cluster_log_user(&user);
            Ok(kv
                .status
                .clog
                .dump_json(max_entries as usize, Some(user))
                .into_bytes())
        }
        RequestBody::GetRrdDump => Ok(rrd_dump(kv, env.now)),
        RequestBody::GetGuestConfigProperty { vmid, property } => {
            check_vmid(memdb, vmid)?;
            let property = RequestBody::property(&property)?;
            guest_properties(memdb, vmid, &[property])
        }
        RequestBody::GetGuestConfigProperties {
            vmid,
            num_props,
            names,
        } => {
            check_vmid(memdb, vmid)?;
            let names = RequestBody::property_names(num_props, &names)?;
            guest_properties(memdb, vmid, &names)
        }
        RequestBody::VerifyToken { token } => verify_token(memdb, &token).map(|_| Vec::new()),
        RequestBody::Unknown { .. } => Err(ECHRNG),
    }
}

/// A file's content, borrowed unless it must be padded with zeros (a size
/// without data).
fn content_of(e: &super::memdb::Entry) -> std::borrow::Cow<'_, [u8]> {
    let data = e.data();
    if data.len() >= e.size as usize {
        std::borrow::Cow::Borrowed(&data[..e.size as usize])
    } else {
        std::borrow::Cow::Owned(file_content(e))
    }
}

fn file_content(e: &super::memdb::Entry) -> Vec<u8> {
    let mut data = e.data().to_vec();
    data.resize(e.size as usize, 0);
    data
}

/// The dump with its NUL; reused for 2 s, and then, as in C, served from
/// the cached C string, i.e. without the NUL (spec §3.6.5).
fn rrd_dump(kv: &mut Kvstore, now: u32) -> Vec<u8> {
    if let Some((at, text)) = &kv.rrd_dump_cache {
        if now.saturating_sub(*at) < RRD_DUMP_CACHE {
            return text.clone();
        }
    }
    let text = kv.status.rrd_dump(now).into_bytes();
    kv.rrd_dump_cache = Some((now, text.clone()));
    let mut reply = text;
    reply.push(0);
    reply
}

/// 0 is every guest; 1..99 is invalid; others must be in the vmlist.
fn check_vmid(memdb: &Memdb, vmid: u32) -> Result<(), i32> {
    if vmid > 0 && vmid < 100 {
        return Err(EINVAL);
    }
    if vmid >= 100 && memdb.vmlist.get(vmid).is_none() {
        return Err(ENOENT);
    }
    Ok(())
}

fn config_path(node: &[u8], vmtype: VmType, vmid: u32) -> Vec<u8> {
    let dir = match vmtype {
        VmType::Qemu => "qemu-server",
        VmType::Lxc => "lxc",
        VmType::OpenVz => "openvz",
    };
    [b"nodes/", node, format!("/{dir}/{vmid}.conf").as_bytes()].concat()
}

/// C's `isspace` in the "C" locale (Rust's ASCII whitespace lacks `\v`).
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The value of a property line after its `name:`, as C cuts it: leading
/// blanks skipped and trailing blanks trimmed, but never below one
/// character, so a value of only blanks (`name:   `) is one blank
/// (observed: `" "`). An empty value (`name:`) never gets here.
fn property_value(rest: &[u8]) -> &[u8] {
    let last = rest.len() - 1;
    let start = rest
        .iter()
        .position(|&b| !is_c_space(b))
        .unwrap_or(last)
        .min(last);
    let end = rest
        .iter()
        .rposition(|&b| !is_c_space(b))
        .map_or(start + 1, |e| e + 1)
        .max(start + 1);
    &rest[start..end]
}

/// `_get_property_values` (spec §6.5), C's early stop included. `config`
/// is the whole file; a last line without its newline counts (observed,
/// also for a file of a single line without any newline).
pub fn scan_properties(config: &[u8], props: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
    let mut values: Vec<Option<Vec<u8>>> = vec![None; props.len()];
    if props.is_empty() {
        return values;
    }
    let min = props
        .iter()
        .filter_map(|p| p.first())
        .min()
        .copied()
        .unwrap_or(0);
    let max = props
        .iter()
        .filter_map(|p| p.first())
        .max()
        .copied()
        .unwrap_or(0);
    let mut refound = 0;
    'lines: for line in config.split(|&b| b == b'\n') {
        let Some(&first) = line.first() else { continue };
        if first == b'[' {
            break;
        }
        if first < min || first > max {
            continue;
        }
        for (i, p) in props.iter().enumerate() {
            if line.len() <= p.len() + 1 || !line.starts_with(p) || line[p.len()] != b':' {
                continue;
            }
            if values[i].is_some() {
                refound += 1;
            }
            values[i] = Some(property_value(&line[p.len() + 1..]).to_vec());
            if refound == props.len() {
                break 'lines;
            }
        }
    }
    values
}

fn json_escape(v: &[u8]) -> String {
    let mut s = String::new();
    for c in String::from_utf8_lossy(v).chars() {
        if c == '\\' || c == '"' {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

fn guest_properties(memdb: &Memdb, vmid: u32, props: &[&[u8]]) -> Result<Vec<u8>, i32> {
    let mut vms: Vec<(u32, std::sync::Arc<[u8]>, VmType)> = memdb
        .vmlist
        .iter()
        .filter(|(id, _)| vmid == 0 || **id == vmid)
        .map(|(id, vm)| (*id, vm.node.clone(), vm.vmtype))
        .collect();
    vms.sort_by_key(|v| v.0);
    let mut objects = Vec::new();
    for (id, node, vmtype) in vms {
        // A config C cannot read (missing, a directory, or empty: C's
        // read of 0 bytes fails) is EIO when asked for by vmid, and
        // skipped in a scan of all guests.
        // Scanned in place: a scan of every guest must not copy every
        // config while the node is locked.
        let config = match memdb.lookup(&config_path(&node, vmtype, id)) {
            Some(e) if !e.is_dir() && e.size > 0 => content_of(e),
            _ if vmid != 0 => return Err(EIO),
            _ => continue,
        };
        let values = scan_properties(&config, props);
        let found: Vec<String> = props
            .iter()
            .zip(&values)
            .filter_map(|(p, v)| {
                v.as_ref()
                    .map(|v| format!("\"{}\": \"{}\"", String::from_utf8_lossy(p), json_escape(v)))
            })
            .collect();
        if !found.is_empty() {
            objects.push(format!("\"{id}\":{{{}}}", found.join(",")));
        }
    }
    Ok(format!("{{\n{}\n}}\n", objects.join(",\n")).into_bytes())
}

/// A token is valid if a line of `priv/token.cfg` equals it exactly.
fn verify_token(memdb: &Memdb, token: &[u8]) -> Result<(), i32> {
    let file = memdb
        .lookup(b"priv/token.cfg")
        .filter(|e| !e.is_dir())
        .ok_or(ENOENT)?;
    let data = file_content(file);
    if data.len() < token.len() {
        return Err(ENOENT);
    }
    if data.split(|&b| b == b'\n').any(|line| line == token) {
        Ok(())
    } else {
        Err(ENOENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_spelling_of_a_private_path_reaches_a_readonly_client() {
        let (mut memdb, _) = Memdb::new_empty(1000);
        for d in ["priv", "nodes", "nodes/n1", "nodes/n1/priv"] {
            memdb.mkdir(d.as_bytes(), 0, 1000, 1000).unwrap();
        }
        for f in ["priv/authkey.key", "nodes/n1/priv/x", "nodes/n1/pub.cfg"] {
            memdb.create(f.as_bytes(), 0, 1000).unwrap();
            memdb
                .write(f.as_bytes(), 0, 1000, b"secret", 0, false)
                .unwrap();
        }
        let mut kv = Kvstore::new(super::super::status::Status::new("n1", 1000), "10.0.0.1");
        let get = |kv: &mut Kvstore, readonly: bool, path: &str| {
            let mut env = Env::detached(1000);
            let mut p = path.as_bytes().to_vec();
            p.push(0);
            let request = pmxcfs_wire::ipc::Request::new(RequestBody::GetConfig { path: p });
            let answer = handle(
                &memdb,
                kv,
                &mut env,
                Client { readonly, pid: 1 },
                &request.to_bytes(),
            );
            pmxcfs_wire::ipc::Response::decode(&answer)
                .unwrap()
                .header
                .error
        };
        for path in [
            "priv/authkey.key",
            "/priv/authkey.key",
            "//priv//authkey.key",
            "nodes/n1/priv/x",
            "nodes//n1/priv/x",
            "nodes/n1//priv/x",
            "nodes///n1/priv/x",
            "/nodes/n1/priv//x",
        ] {
            assert_eq!(get(&mut kv, true, path), -EPERM, "www-data: {path}");
            assert_eq!(get(&mut kv, false, path), 0, "root: {path}");
        }
        // Spellings the lookup does not resolve find nothing.
        for path in [
            "nodes/n1/./priv/x",
            "nodes/n1/../n1/priv/x",
            "priv/../priv/authkey.key",
        ] {
            assert_ne!(get(&mut kv, true, path), 0, "www-data: {path}");
        }
        assert_eq!(get(&mut kv, true, "nodes//n1/pub.cfg"), 0);
    }

    #[test]
    fn property_scan_rules() {
        let conf = b"name: vm1\nmemory:   512  \n\ncores: 2\n[snap]\nname: old\n";
        let v = scan_properties(conf, &[b"name", b"memory", b"cores"]);
        assert_eq!(v[0].as_deref(), Some(&b"vm1"[..]));
        assert_eq!(v[1].as_deref(), Some(&b"512"[..]));
        assert_eq!(
            v[2].as_deref(),
            Some(&b"2"[..]),
            "the snapshot section is not read"
        );
        // Empty values do not match; a prefix is not the property.
        let v = scan_properties(b"name:\nnamex: y\n", &[b"name"]);
        assert_eq!(v[0], None);
        // C's early stop: with one property found twice, the second wins
        // and the scan ends there.
        let v = scan_properties(b"name: a\nname: b\nname: c\n", &[b"name"]);
        assert_eq!(v[0].as_deref(), Some(&b"b"[..]));
        assert_eq!(scan_properties(b"no newline", &[b"no"])[0], None);
    }

    #[test]
    fn property_scan_edges_seen_with_c() {
        // The last line counts without its newline, also as the only line.
        let v = scan_properties(b"name: nonl", &[b"name"]);
        assert_eq!(v[0].as_deref(), Some(&b"nonl"[..]));
        let v = scan_properties(b"cores: 1\nname: nonl", &[b"name"]);
        assert_eq!(v[0].as_deref(), Some(&b"nonl"[..]));
        // A value of only blanks is one blank; an empty value is skipped.
        let v = scan_properties(b"name:   \nmemory:\n", &[b"name", b"memory"]);
        assert_eq!(v[0].as_deref(), Some(&b" "[..]));
        assert_eq!(v[1], None);
        // C's isspace includes the vertical tab.
        let v = scan_properties(b"name: \x0bx\x0b\n", &[b"name"]);
        assert_eq!(v[0].as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn access_matrix() {
        assert_eq!(access(0, 0, 33), Some(false));
        assert_eq!(access(33, 33, 33), Some(true));
        assert_eq!(access(0, 33, 33), Some(true));
        assert_eq!(access(1000, 1000, 33), None);
        assert_eq!(access(0, 5, 33), None);
    }
}
