//! Path rules of memdb (spec §2.5, §2.12, §5.3): GLib-style dirname and
//! basename, and the path classes that trigger behaviour (VM configs, lock
//! directories, private paths). Paths are byte strings relative to the
//! mount root, without a leading slash, as they travel on the wire.

/// Strip trailing slashes (but keep a lone "/").
fn strip_trailing(path: &[u8]) -> &[u8] {
    let mut end = path.len();
    while end > 1 && path[end - 1] == b'/' {
        end -= 1;
    }
    &path[..end]
}

/// `g_path_get_dirname` of the path with trailing slashes removed.
pub fn dirname(path: &[u8]) -> &[u8] {
    let path = strip_trailing(path);
    match path.iter().rposition(|&b| b == b'/') {
        None => b".",
        Some(mut i) => {
            while i > 0 && path[i - 1] == b'/' {
                i -= 1;
            }
            if i == 0 {
                b"/"
            } else {
                &path[..i]
            }
        }
    }
}

/// `g_path_get_basename` of the path with trailing slashes removed.
pub fn basename(path: &[u8]) -> &[u8] {
    let path = strip_trailing(path);
    if path.is_empty() {
        return b".";
    }
    if path == b"/" {
        return b"/";
    }
    match path.iter().rposition(|&b| b == b'/') {
        None => path,
        Some(i) => &path[i + 1..],
    }
}

/// `name` in the directory `dir` ("" for the root).
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

/// The components a lookup walks: split on '/', empty ones skipped. The
/// paths "", "." and "/" are the root.
pub fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    let root_dot = path == b".";
    path.split(|&b| b == b'/')
        .filter(move |c| !c.is_empty() && !root_dot)
}

/// A basename that names nothing creatable.
pub fn is_bad_basename(name: &[u8]) -> bool {
    name.is_empty() || name == b"." || name == b".." || name == b"/"
}

fn strip_leading(path: &[u8]) -> &[u8] {
    let n = path.iter().take_while(|&&b| b == b'/').count();
    &path[n..]
}

/// The parent directory of every lock.
pub const LOCK_DIR: &[u8] = b"priv/lock";

/// `priv/lock/<name>` (leading slashes ignored).
pub fn is_lock_path(path: &[u8]) -> bool {
    let path = strip_leading(path);
    match path.strip_prefix(b"priv/lock/") {
        Some(rest) => !rest.is_empty() && !rest.contains(&b'/'),
        None => false,
    }
}

/// `priv`, `priv/…`, `nodes/<any>/priv`, `nodes/<any>/priv/…`, however
/// spelled: empty components (`nodes//n1/priv`, leading slashes) do not
/// count, as the lookup skips them.
pub fn is_private(path: &[u8]) -> bool {
    let mut c = components(path);
    match (c.next(), c.next(), c.next()) {
        (Some(b"priv"), _, _) => true,
        (Some(b"nodes"), Some(_), Some(b"priv")) => true,
        _ => false,
    }
}

/// Guest types of the vmlist (spec §2.5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VmType {
    Qemu,
    OpenVz,
    Lxc,
}

impl VmType {
    pub fn name(self) -> &'static str {
        match self {
            VmType::Qemu => "qemu",
            VmType::OpenVz => "openvz",
            VmType::Lxc => "lxc",
        }
    }

    fn from_dir(dir: &[u8]) -> Option<VmType> {
        match dir {
            b"qemu-server" => Some(VmType::Qemu),
            b"lxc" => Some(VmType::Lxc),
            b"openvz" => Some(VmType::OpenVz),
            _ => None,
        }
    }
}

/// Letters, digits and '-', not starting or ending with '-'.
pub fn is_valid_nodename(name: &[u8]) -> bool {
    !name.is_empty()
        && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && name[0] != b'-'
        && name[name.len() - 1] != b'-'
}

/// A decimal VMID: first digit 1-9, no sign, at most 4294967295.
pub fn parse_vmid(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) || s[0] == b'0' {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// What a VM config path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfigPath {
    pub vmid: u32,
    pub node: Vec<u8>,
    pub vmtype: VmType,
}

/// `nodes/<node>/{qemu-server,lxc,openvz}/<vmid>.conf`, by exact dirname.
pub fn vm_config(path: &[u8]) -> Option<VmConfigPath> {
    let dir = dirname(path);
    let base = basename(path);
    let vmid = parse_vmid(base.strip_suffix(b".conf")?)?;
    let rest = dir.strip_prefix(b"nodes/")?;
    let slash = rest.iter().position(|&b| b == b'/')?;
    let (node, typedir) = (&rest[..slash], &rest[slash + 1..]);
    if !is_valid_nodename(node) {
        return None;
    }
    Some(VmConfigPath {
        vmid,
        node: node.to_vec(),
        vmtype: VmType::from_dir(typedir)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glib_dirname_and_basename() {
        assert_eq!(dirname(b"a/b/c"), b"a/b");
        assert_eq!(dirname(b"a"), b".");
        assert_eq!(dirname(b"a/b/"), b"a");
        assert_eq!(dirname(b"a//b"), b"a");
        assert_eq!(dirname(b"/a"), b"/");
        assert_eq!(basename(b"a/b/c"), b"c");
        assert_eq!(basename(b"a/b/"), b"b");
        assert_eq!(basename(b""), b".");
        assert_eq!(basename(b"x"), b"x");
    }

    #[test]
    fn lookup_components() {
        let c: Vec<&[u8]> = components(b"/nodes//n1/").collect();
        assert_eq!(c, vec![&b"nodes"[..], b"n1"]);
        assert_eq!(components(b".").count(), 0);
        assert_eq!(components(b"").count(), 0);
    }

    #[test]
    fn path_classes() {
        assert!(is_lock_path(b"priv/lock/foo"));
        assert!(is_lock_path(b"/priv/lock/foo"));
        assert!(!is_lock_path(b"priv/lock/"));
        assert!(!is_lock_path(b"priv/lock"));
        assert!(is_private(b"priv"));
        assert!(is_private(b"priv/x"));
        assert!(is_private(b"nodes/n1/priv"));
        assert!(is_private(b"nodes/n1/priv/key.pem"));
        assert!(!is_private(b"private"));
        assert!(!is_private(b"nodes/n1/privx"));
        assert!(!is_private(b"nodes/priv"));
    }

    #[test]
    fn vm_configs() {
        let v = vm_config(b"nodes/pve1/qemu-server/100.conf").unwrap();
        assert_eq!(
            (v.vmid, v.node.as_slice(), v.vmtype),
            (100, &b"pve1"[..], VmType::Qemu)
        );
        assert_eq!(
            vm_config(b"nodes/pve1/lxc/7.conf").unwrap().vmtype,
            VmType::Lxc
        );
        assert!(vm_config(b"nodes/pve1/qemu-server/0100.conf").is_none());
        assert!(vm_config(b"nodes/-pve/qemu-server/100.conf").is_none());
        assert!(vm_config(b"nodes/pve1/qemu-server/100.conf.tmp").is_none());
        assert!(vm_config(b"nodes/pve1/other/100.conf").is_none());
        assert!(vm_config(b"nodes/pve1/qemu-server/4294967296.conf").is_none());
        assert!(vm_config(b"/nodes/pve1/qemu-server/100.conf").is_none());
    }
}
