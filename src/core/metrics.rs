//! The node's health as metrics in the Prometheus text format (0.0.4), for
//! node_exporter's textfile collector: what a person debugging a cluster
//! looks at first. Pure: [`Metrics`] renders, [`node_metrics`] reads the
//! node core; the daemon adds its edges' counters and writes the file.

use std::fmt::Write as _;

use super::dfsm::Mode;
use super::node::{Group, Node, Time};

/// A sample: its labels (name, value) and its value.
pub type Sample = (Vec<(&'static str, String)>, f64);

/// A sample with one label.
pub fn by(label: &'static str, value: impl Into<String>, v: f64) -> Sample {
    (vec![(label, value.into())], v)
}

/// A metrics text under construction: each family's HELP and TYPE once,
/// then its samples.
#[derive(Default)]
pub struct Metrics {
    out: String,
}

/// Label values escaped as the text format wants them.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    fn family(&mut self, name: &str, kind: &str, help: &str, samples: Vec<Sample>) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let labels = if labels.is_empty() {
                String::new()
            } else {
                let parts: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                format!("{{{}}}", parts.join(","))
            };
            let _ = writeln!(self.out, "{name}{labels} {value}");
        }
    }

    /// A gauge family: its samples, each with its labels.
    pub fn gauge(&mut self, name: &str, help: &str, samples: Vec<Sample>) {
        self.family(name, "gauge", help, samples)
    }

    /// A counter family.
    pub fn counter(&mut self, name: &str, help: &str, samples: Vec<Sample>) {
        self.family(name, "counter", help, samples)
    }

    /// One unlabelled gauge.
    pub fn value(&mut self, name: &str, help: &str, value: f64) {
        self.gauge(name, help, vec![(Vec::new(), value)])
    }

    /// One unlabelled counter.
    pub fn total(&mut self, name: &str, help: &str, value: f64) {
        self.counter(name, help, vec![(Vec::new(), value)])
    }

    pub fn finish(self) -> String {
        self.out
    }
}

const MODES: [(Mode, &str); 7] = [
    (Mode::Start, "start"),
    (Mode::StartSync, "start_sync"),
    (Mode::Synced, "synced"),
    (Mode::Update, "update"),
    (Mode::Leave, "leave"),
    (Mode::VersionError, "version_error"),
    (Mode::Error, "error"),
];

fn group_name(g: Group) -> &'static str {
    match g {
        Group::Dcdb => "dcdb",
        Group::Kvstore => "kvstore",
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The node core's part: quorum, the groups and their modes, members
/// online, the tree, locks, the age of every node's last status broadcast.
pub fn node_metrics(m: &mut Metrics, node: &Node, now: Time) {
    let seconds = |t: Time| now.0.saturating_sub(t.0) as f64 / 1e6;
    m.value(
        "pmxcfs_cluster_mode",
        "1 in cluster mode, 0 in local mode.",
        flag(node.is_cluster()),
    );
    m.value(
        "pmxcfs_quorate",
        "1 while the node has quorum (local mode counts as quorate); without it /etc/pve is read-only.",
        flag(node.quorate()),
    );
    m.value(
        "pmxcfs_storage_failed",
        "1 while config.db takes no writes (changes are refused until it does).",
        flag(node.storage_failed()),
    );
    let mut modes = Vec::new();
    let mut since = Vec::new();
    let mut members = Vec::new();
    for g in Group::ALL {
        let mode = match g {
            Group::Dcdb => node.dcdb_mode(),
            Group::Kvstore => node.kvstore_mode(),
        };
        for (m_, name) in MODES {
            let labels = vec![
                ("group", group_name(g).to_string()),
                ("mode", name.to_string()),
            ];
            modes.push((labels, flag(mode == m_)));
        }
        since.push(by("group", group_name(g), seconds(node.mode_since(g))));
        members.push(by("group", group_name(g), node.members(g).len() as f64));
    }
    m.gauge(
        "pmxcfs_group_mode",
        "The mode of each CPG group's state machine (1 for the current one): synced is normal, start_sync and update are a sync round, leave is waiting to rejoin, error modes are permanent.",
        modes,
    );
    m.gauge(
        "pmxcfs_group_mode_seconds",
        "How long each group has been in its current mode.",
        since,
    );
    m.gauge(
        "pmxcfs_group_members",
        "Processes in each group's current membership.",
        members,
    );
    // Nodes of the cluster (corosync's nodelist) and whether they are in
    // the quorum's view; the age of each one's last status broadcast.
    let kv = node.kv();
    let online = kv
        .nodes
        .iter()
        .map(|(id, name)| {
            let labels = vec![("nodeid", id.to_string()), ("node", name.clone())];
            (labels, flag(kv.online.contains(id)))
        })
        .collect();
    m.gauge(
        "pmxcfs_node_online",
        "Every node of corosync's nodelist: 1 when it is online.",
        online,
    );
    let mut ages: Vec<(String, f64)> = Vec::new();
    for (key, (_, time)) in &kv.status.rrd {
        let Some((prefix, name)) = key.split_once('/') else {
            continue;
        };
        if prefix == "pve2-node" || prefix.starts_with("pve-node-") {
            let age = now.secs().saturating_sub(*time) as f64;
            match ages.iter_mut().find(|(n, _)| n == name) {
                Some((_, a)) => *a = a.min(age),
                None => ages.push((name.to_string(), age)),
            }
        }
    }
    m.gauge(
        "pmxcfs_node_status_age_seconds",
        "Seconds since each node's last status (RRD) broadcast arrived; pvestatd sends one every 10 s, so more than 30 means the node's status is stale.",
        ages.into_iter().map(|(n, a)| by("node", n, a)).collect(),
    );
    let memdb = node.memdb();
    let (bytes, entries) = memdb.usage();
    m.value(
        "pmxcfs_tree_version",
        "The version of /etc/pve's tree (every change raises it).",
        memdb.version() as f64,
    );
    m.value(
        "pmxcfs_tree_entries",
        "Entries of /etc/pve's tree.",
        entries as f64,
    );
    m.value(
        "pmxcfs_tree_bytes",
        "Bytes of file data in /etc/pve's tree.",
        bytes as f64,
    );
    let (locks, oldest) = memdb.locks.held();
    m.value(
        "pmxcfs_locks_held",
        "Lock directories in priv/lock (cluster-wide locks of PVE's tools).",
        locks as f64,
    );
    m.value(
        "pmxcfs_lock_oldest_age_seconds",
        "Age of the oldest lock in its current state (a lock is free to break after 120 s).",
        oldest.map_or(0.0, |t| now.secs().saturating_sub(t) as f64),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::node::NodeConfig;

    #[test]
    fn a_local_node_in_the_text_format() {
        let config = NodeConfig {
            nodename: "n1".into(),
            node_ip: "10.0.0.1".into(),
            pid: 1,
            force_local: true,
            ..NodeConfig::default()
        };
        let node = Node::boot(config, None, None, Time::from_secs(1000)).unwrap();
        let mut m = Metrics::new();
        node_metrics(&mut m, &node, Time::from_secs(1010));
        let text = m.finish();
        assert!(text.contains("pmxcfs_quorate 1\n"), "{text}");
        assert!(text.contains("pmxcfs_cluster_mode 0\n"));
        assert!(text.contains("pmxcfs_group_mode{group=\"dcdb\",mode=\"start\"} 1\n"));
        assert!(text.contains("pmxcfs_group_mode_seconds{group=\"dcdb\"} 10\n"));
        // Every family has its HELP and TYPE, every sample a number.
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# ") {
                assert!(rest.starts_with("HELP pmxcfs_") || rest.starts_with("TYPE pmxcfs_"));
                continue;
            }
            let (_, value) = line.rsplit_once(' ').expect("name and value");
            value.parse::<f64>().expect("a number");
        }
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
