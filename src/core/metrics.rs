//! The node's health as metrics in the Prometheus text format (0.0.4), for
//! node_exporter's textfile collector: what a person debugging a cluster
//! looks at first. Pure: [`Metrics`] renders, [`node_metrics`] reads the
//! node core; the daemon adds its edges' counters and writes the file.

use std::fmt::Write as _;

use super::dfsm::Mode;
use super::node::{Group, Node, Time};

/// The upper bounds (seconds) of every histogram's buckets: from a FUSE
/// reply (tens of µs) to a sync of a large tree (seconds).
pub const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Observations of a duration: how many fell in each bucket (not
/// cumulative; the last slot counts those above every bound), their sum.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub buckets: [u64; BUCKETS.len() + 1],
    pub sum: f64,
}

impl Histogram {
    /// The bucket a duration falls in.
    pub fn bucket(seconds: f64) -> usize {
        BUCKETS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(BUCKETS.len())
    }

    pub fn observe(&mut self, seconds: f64) {
        self.buckets[Self::bucket(seconds)] += 1;
        self.sum += seconds;
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

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

/// `{k="v",...}` with the values escaped, an extra label last; nothing
/// for no labels.
fn label_set(labels: &[(&'static str, String)], extra: Option<(&str, String)>) -> String {
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(extra.as_ref().map(|(k, v)| (*k, v.as_str())))
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    fn family(&mut self, name: &str, kind: &str, help: &str, samples: Vec<Sample>) {
        self.head(name, kind, help);
        for (labels, value) in samples {
            let _ = writeln!(self.out, "{name}{} {value}", label_set(&labels, None));
        }
    }

    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// A gauge family: its samples, each with its labels.
    pub fn gauge(&mut self, name: &str, help: &str, samples: Vec<Sample>) {
        self.family(name, "gauge", help, samples)
    }

    /// A counter family.
    pub fn counter(&mut self, name: &str, help: &str, samples: Vec<Sample>) {
        self.family(name, "counter", help, samples)
    }

    /// A histogram family: per label set, the cumulative buckets, `+Inf`,
    /// the sum and the count, as the text format wants them.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        samples: Vec<(Vec<(&'static str, String)>, Histogram)>,
    ) {
        self.head(name, "histogram", help);
        for (labels, h) in samples {
            let mut cumulative = 0;
            let le = |bound: String| Some(("le", bound));
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += h.buckets[i];
                let set = label_set(&labels, le(bound.to_string()));
                let _ = writeln!(self.out, "{name}_bucket{set} {cumulative}");
            }
            let count = h.count();
            let set = label_set(&labels, le("+Inf".into()));
            let _ = writeln!(self.out, "{name}_bucket{set} {count}");
            let set = label_set(&labels, None);
            let _ = writeln!(self.out, "{name}_sum{set} {}", h.sum);
            let _ = writeln!(self.out, "{name}_count{set} {count}");
        }
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
    counter_metrics(m, node);
}

/// What the core counted: messages, changes, sync rounds, connections,
/// errors, and what waits in the groups' queues.
fn counter_metrics(m: &mut Metrics, node: &Node) {
    let c = &node.counters;
    let per_kind = |maps: &[std::collections::BTreeMap<&'static str, u64>; 2]| {
        let mut out = Vec::new();
        for g in Group::ALL {
            for (kind, n) in &maps[g.index()] {
                let labels = vec![
                    ("group", group_name(g).to_string()),
                    ("kind", kind.to_string()),
                ];
                out.push((labels, *n as f64));
            }
        }
        out
    };
    m.counter(
        "pmxcfs_messages_sent_total",
        "Messages this node handed to corosync, by group and kind (normal: a change or a cluster log entry; update: a sync leader's entry for a node behind).",
        per_kind(&c.sent),
    );
    m.counter(
        "pmxcfs_messages_received_total",
        "Messages corosync delivered, by group and kind (this node's own included).",
        per_kind(&c.received),
    );
    m.counter(
        "pmxcfs_changes_applied_total",
        "Changes of /etc/pve delivered in the cluster's order: made on this node (local) or on another (remote).",
        vec![
            by("origin", "local", c.changes_local as f64),
            by("origin", "remote", c.changes_remote as f64),
        ],
    );
    m.counter(
        "pmxcfs_sync_rounds_total",
        "Sync rounds started (every membership change starts one).",
        Group::ALL
            .iter()
            .map(|&g| by("group", group_name(g), c.sync_rounds[g.index()] as f64))
            .collect(),
    );
    m.histogram(
        "pmxcfs_sync_duration_seconds",
        "How long the sync rounds that ended synced took, from the membership change.",
        Group::ALL
            .iter()
            .map(|&g| {
                (
                    vec![("group", group_name(g).to_string())],
                    c.sync_seconds[g.index()].clone(),
                )
            })
            .collect(),
    );
    let (mut queued, mut queued_bytes) = (Vec::new(), Vec::new());
    for g in Group::ALL {
        let (n, bytes) = node.queued(g);
        queued.push(by("group", group_name(g), n as f64));
        queued_bytes.push(by("group", group_name(g), bytes as f64));
    }
    m.gauge(
        "pmxcfs_queued_messages",
        "Messages delivered but not yet applied (held during a sync round).",
        queued,
    );
    m.gauge(
        "pmxcfs_queued_bytes",
        "Bytes of the messages delivered but not yet applied.",
        queued_bytes,
    );
    m.counter(
        "pmxcfs_corosync_reconnects_total",
        "Connections to corosync made again after a lost one.",
        Group::ALL
            .iter()
            .map(|&g| {
                let n = c.connections[g.index()].saturating_sub(1);
                by("group", group_name(g), n as f64)
            })
            .collect(),
    );
    m.counter(
        "pmxcfs_errors_total",
        "Errors by kind: send_failed (corosync refused a message), persist_failed (config.db took no write), group_left / group_error / group_version_error (a group's machine left or failed).",
        ["send_failed", "persist_failed", "group_left", "group_error", "group_version_error"]
            .iter()
            .map(|k| by("kind", *k, c.errors.get(k).copied().unwrap_or(0) as f64))
            .collect(),
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
        assert!(
            text.contains("pmxcfs_errors_total{kind=\"persist_failed\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("pmxcfs_sync_duration_seconds_count{group=\"dcdb\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn histograms_are_cumulative_with_inf_sum_and_count() {
        let mut h = Histogram::default();
        for s in [0.00005, 0.0003, 0.0003, 20.0] {
            h.observe(s);
        }
        let mut m = Metrics::new();
        m.histogram("x_seconds", "help", vec![(vec![("op", "read".into())], h)]);
        let text = m.finish();
        assert!(text.contains("# TYPE x_seconds histogram\n"));
        assert!(
            text.contains("x_seconds_bucket{op=\"read\",le=\"0.0001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{op=\"read\",le=\"0.00025\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{op=\"read\",le=\"0.0005\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{op=\"read\",le=\"10\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{op=\"read\",le=\"+Inf\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("x_seconds_count{op=\"read\"} 4\n"), "{text}");
        assert!(
            text.contains("x_seconds_sum{op=\"read\"} 20.0006"),
            "{text}"
        );
    }
}
