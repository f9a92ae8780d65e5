//! Node status as the special files and IPC replies show it (spec §3.6):
//! the `.version` change counters, `.members`, `.vmlist`, `.clusterlog`,
//! `.rrd`. Byte templates exactly as C prints them; objects that come from
//! hash tables in C are printed in a stable order here (clients parse JSON).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::clog::ClusterLog;
use super::vmlist::VmList;

/// The paths whose changes `.version` counts, in C's order.
pub const OBSERVED_PATHS: [&str; 43] = [
    "corosync.conf",
    "corosync.conf.new",
    "storage.cfg",
    "user.cfg",
    "domains.cfg",
    "notifications.cfg",
    "priv/notifications.cfg",
    "priv/shadow.cfg",
    "priv/acme/plugins.cfg",
    "priv/tfa.cfg",
    "priv/token.cfg",
    "priv/wg-keys.cfg",
    "datacenter.cfg",
    "vzdump.cron",
    "vzdump.conf",
    "jobs.cfg",
    "ha/crm_commands",
    "ha/manager_status",
    "ha/resources.cfg",
    "ha/rules.cfg",
    "ha/groups.cfg",
    "ha/fence.cfg",
    "status.cfg",
    "replication.cfg",
    "ceph.conf",
    "sdn/vnets.cfg",
    "sdn/zones.cfg",
    "sdn/controllers.cfg",
    "sdn/subnets.cfg",
    "sdn/ipams.cfg",
    "sdn/mac-cache.json",
    "sdn/pve-ipam-state.json",
    "sdn/dns.cfg",
    "sdn/fabrics.cfg",
    "sdn/route-maps.cfg",
    "sdn/prefix-lists.cfg",
    "sdn/.running-config",
    "virtual-guest/cpu-models.conf",
    "virtual-guest/profiles.cfg",
    "firewall/cluster.fw",
    "mapping/directory.cfg",
    "mapping/pci.cfg",
    "mapping/usb.cfg",
];

/// Local change counters of the observed paths (not replicated).
#[derive(Clone, Debug)]
pub struct ChangeCounters {
    counts: [u32; 43],
}

impl Default for ChangeCounters {
    fn default() -> Self {
        ChangeCounters { counts: [0; 43] }
    }
}

impl ChangeCounters {
    /// A change of exactly this path (no leading slash).
    pub fn record(&mut self, path: &[u8]) {
        if let Some(i) = OBSERVED_PATHS.iter().position(|p| p.as_bytes() == path) {
            self.counts[i] = self.counts[i].wrapping_add(1);
        }
    }

    /// The tree was (re)loaded: every counter moves.
    pub fn record_reload(&mut self) {
        for c in &mut self.counts {
            *c = c.wrapping_add(1);
        }
    }

    pub fn get(&self, path: &str) -> Option<u32> {
        OBSERVED_PATHS
            .iter()
            .position(|p| *p == path)
            .map(|i| self.counts[i])
    }
}

/// A generic kvstore value of one node (SET_STATUS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvEntry {
    pub data: Vec<u8>,
    pub version: u32,
}

/// What corosync's cmap and quorum say about the cluster (absent in local
/// mode).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterInfo {
    pub name: String,
    pub config_version: u32,
    pub quorate: bool,
    /// By node name: (nodeid, online, ip).
    pub nodes: BTreeMap<String, (u32, bool, Option<String>)>,
}

/// The status store of one node.
#[derive(Clone, Debug)]
pub struct Status {
    pub nodename: String,
    pub starttime: u32,
    pub clinfo_version: u32,
    /// Generic keys by node name; our own node is always listed.
    pub kvstore: BTreeMap<String, BTreeMap<String, KvEntry>>,
    pub cluster: Option<ClusterInfo>,
    pub clog: ClusterLog,
    /// `rrd/` keys: value (NUL-terminated) and the receive time.
    pub rrd: BTreeMap<String, (Vec<u8>, u32)>,
    pub debug: bool,
}

fn push_c_str(out: &mut String, bytes: &[u8]) {
    out.push_str(&String::from_utf8_lossy(pmxcfs_wire::codec::c_str(bytes)));
}

impl Status {
    pub fn new(nodename: &str, starttime: u32) -> Status {
        let mut kvstore = BTreeMap::new();
        kvstore.insert(nodename.to_string(), BTreeMap::new());
        Status {
            nodename: nodename.to_string(),
            starttime,
            clinfo_version: 0,
            kvstore,
            cluster: None,
            clog: ClusterLog::new(),
            rrd: BTreeMap::new(),
            debug: false,
        }
    }

    /// `.version` and IPC GET_FS_VERSION (spec §3.6.1).
    pub fn version_json(&self, vmlist: &VmList, changes: &ChangeCounters) -> String {
        let mut s = String::with_capacity(1200);
        let _ = write!(
            s,
            "{{\n\"starttime\": {},\n\"clinfo\": {},\n\"vmlist\": {},\n",
            self.starttime,
            self.clinfo_version,
            vmlist.version()
        );
        for (path, count) in OBSERVED_PATHS.iter().zip(changes.counts.iter()) {
            let _ = writeln!(s, "\"{path}\": {count},");
        }
        s.push_str("\"kvstore\": {\n");
        // Our own node first, as C prints it; then the others.
        let own = self.kvstore.get(&self.nodename);
        let others = self.kvstore.iter().filter(|(n, _)| **n != self.nodename);
        let mut first = true;
        for (node, entries) in
            std::iter::once((&self.nodename, own)).chain(others.map(|(n, e)| (n, Some(e))))
        {
            if !first {
                s.push_str(",\n");
            }
            first = false;
            let _ = write!(s, "\"{node}\": {{\n");
            let items: Vec<String> = entries
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("\"{k}\": {}", v.version))
                .collect();
            s.push_str(&items.join(",\n"));
            s.push_str("}\n");
        }
        s.push_str("}\n}\n");
        s
    }

    /// `.members` and IPC GET_CLUSTER_INFO (spec §3.6.2).
    pub fn members_json(&self) -> String {
        let Some(c) = self.cluster.as_ref().filter(|c| !c.nodes.is_empty()) else {
            return format!(
                "{{\n\"nodename\": \"{}\",\n\"version\": {}\n}}\n",
                self.nodename, self.clinfo_version
            );
        };
        let mut s = format!(
            "{{\n\"nodename\": \"{}\",\n\"version\": {},\n\"cluster\": {{ \"name\": \"{}\", \"version\": {}, \"nodes\": {}, \"quorate\": {} }},\n\"nodelist\": {{\n",
            self.nodename,
            self.clinfo_version,
            c.name,
            c.config_version,
            c.nodes.len(),
            u8::from(c.quorate)
        );
        let items: Vec<String> = c
            .nodes
            .iter()
            .map(|(name, (id, online, ip))| {
                let ip = ip
                    .as_ref()
                    .map(|ip| format!(", \"ip\": \"{ip}\""))
                    .unwrap_or_default();
                format!(
                    "  \"{name}\": {{ \"id\": {id}, \"online\": {}{ip}}}",
                    u8::from(*online)
                )
            })
            .collect();
        s.push_str(&items.join(",\n"));
        s.push_str("\n  }\n}\n");
        s
    }

    /// `.vmlist` and IPC GET_GUEST_LIST (spec §3.6.3).
    pub fn vmlist_json(vmlist: &VmList) -> String {
        if vmlist.is_empty() {
            return format!("{{\n\"version\": {}\n\n}}\n", vmlist.version());
        }
        let mut s = format!("{{\n\"version\": {},\n\"ids\": {{\n", vmlist.version());
        let mut vms: Vec<_> = vmlist.iter().collect();
        vms.sort_by_key(|(vmid, _)| **vmid);
        let items: Vec<String> = vms
            .into_iter()
            .map(|(vmid, vm)| {
                let mut node = String::new();
                push_c_str(&mut node, &vm.node);
                format!(
                    "\"{vmid}\": {{ \"node\": \"{node}\", \"type\": \"{}\", \"version\": {} }}",
                    vm.vmtype.name(),
                    vm.version
                )
            })
            .collect();
        s.push_str(&items.join(",\n"));
        s.push_str("}\n\n}\n");
        s
    }

    /// `.rrd` and IPC GET_RRD_DUMP (spec §3.6.5), without the trailing NUL
    /// the IPC reply adds: entries older than 300 s are left out.
    pub fn rrd_dump(&self, now: u32) -> String {
        let mut s = String::new();
        for (key, (value, time)) in &self.rrd {
            if now.saturating_sub(*time) > 300 {
                continue;
            }
            s.push_str(key);
            s.push(':');
            push_c_str(&mut s, value);
            s.push('\n');
        }
        s
    }

    /// `.debug`.
    pub fn debug_text(&self) -> &'static str {
        if self.debug {
            "1\n"
        } else {
            "0\n"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_version_file_is_1049_bytes_as_observed() {
        let status = Status::new("refnode1", 1_795_234_429);
        let mut changes = ChangeCounters::default();
        changes.record_reload();
        let text = status.version_json(&VmList::default(), &changes);
        assert_eq!(text.len(), 1049, "{text}");
        assert!(text.ends_with("\"kvstore\": {\n\"refnode1\": {\n}\n}\n}\n"));
        assert!(text.contains("\n\"mapping/usb.cfg\": 1,\n"));
    }

    #[test]
    fn version_kvstore_section_matches_the_recording() {
        // captures/s4-status-and-log/expected/node1.version.txt
        let mut status = Status::new("capnode1", 1);
        let kv = |v| KvEntry {
            data: vec![],
            version: v,
        };
        status
            .kvstore
            .get_mut("capnode1")
            .unwrap()
            .insert("tasklist".into(), kv(0));
        status
            .kvstore
            .entry("capnode2".into())
            .or_default()
            .insert("tasklist".into(), kv(1));
        let text = status.version_json(&VmList::default(), &ChangeCounters::default());
        assert!(text.ends_with(
            "\"kvstore\": {\n\"capnode1\": {\n\"tasklist\": 0}\n,\n\"capnode2\": {\n\"tasklist\": 1}\n}\n}\n"
        ));
    }

    #[test]
    fn local_members_and_empty_vmlist() {
        let status = Status::new("refnode1", 1);
        assert_eq!(
            status.members_json(),
            "{\n\"nodename\": \"refnode1\",\n\"version\": 0\n}\n"
        );
        assert_eq!(status.members_json().len(), 41);
        assert_eq!(
            Status::vmlist_json(&VmList::default()),
            "{\n\"version\": 0\n\n}\n"
        );
    }

    #[test]
    fn cluster_members_template() {
        // captures/s1-formation-and-writes/expected/node1.members.txt
        let mut status = Status::new("capnode1", 1);
        status.clinfo_version = 7;
        let mut c = ClusterInfo {
            name: "capclu".into(),
            config_version: 3,
            quorate: true,
            nodes: BTreeMap::new(),
        };
        for i in 1..=3u32 {
            c.nodes.insert(
                format!("capnode{i}"),
                (i, true, Some(format!("10.77.0.{i}"))),
            );
        }
        status.cluster = Some(c);
        let expected = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/captures/s1-formation-and-writes/expected/node1.members.txt"
        ))
        .unwrap();
        assert_eq!(status.members_json(), expected);
    }

    #[test]
    fn vmlist_template() {
        use crate::core::paths::VmType;
        let mut vmlist = VmList::default();
        vmlist.register(100, b"refnode1".to_vec(), VmType::Qemu);
        vmlist.register(101, b"refnode1".to_vec(), VmType::Lxc);
        assert_eq!(
            Status::vmlist_json(&vmlist),
            "{\n\"version\": 2,\n\"ids\": {\n\"100\": { \"node\": \"refnode1\", \"type\": \"qemu\", \"version\": 1 },\n\"101\": { \"node\": \"refnode1\", \"type\": \"lxc\", \"version\": 2 }}\n\n}\n"
        );
    }
}
