//! corosync.conf as pmxcfs reads it, parsed in one place: its version
//! (C's rule), its nodes, and the quorum votequorum computes from them; and
//! whether `corosync.conf` from /etc/pve should replace the host's
//! `/etc/corosync/corosync.conf` (spec §7.4). Pure; the corosync edge reads
//! and writes the files and reloads corosync.

use std::collections::BTreeMap;

/// One `node { }` of a corosync.conf's nodelist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfNode {
    pub nodeid: u32,
    /// `name`, else `ring0_addr` (as cmap's reader takes it).
    pub name: String,
    pub ring0_addr: String,
    pub quorum_votes: u32,
}

/// The `key: value` lines of a corosync.conf, each with the sections it
/// stands in (`["nodelist", "node"]`) and which block of that name it is
/// in (so two `node { }` blocks stay apart). Comments (`#`) are dropped.
fn entries(conf: &str) -> Vec<(Vec<String>, usize, String, String)> {
    let mut out = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    let mut blocks = 0usize;
    for line in conf.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(name) = line.strip_suffix('{') {
            stack.push(name.trim().to_string());
            blocks += 1;
        } else if line == "}" {
            stack.pop();
        } else if let Some((k, v)) = line.split_once(':') {
            out.push((
                stack.clone(),
                blocks,
                k.trim().to_string(),
                v.trim().to_string(),
            ));
        }
    }
    out
}

/// The nodes of a corosync.conf's nodelist, by nodeid (a node's name
/// defaults to its ring0 address, its votes to 1; one without a nodeid is
/// left out).
pub fn nodes(conf: &str) -> Vec<ConfNode> {
    let mut by_block: BTreeMap<usize, BTreeMap<String, String>> = BTreeMap::new();
    for (sections, block, key, value) in entries(conf) {
        if sections == ["nodelist", "node"] {
            by_block.entry(block).or_default().insert(key, value);
        }
    }
    let mut out: Vec<ConfNode> = by_block
        .into_values()
        .filter_map(|f| {
            let nodeid = f.get("nodeid")?.parse().ok()?;
            let ring0_addr = f.get("ring0_addr").cloned().unwrap_or_default();
            Some(ConfNode {
                nodeid,
                name: f.get("name").cloned().unwrap_or_else(|| ring0_addr.clone()),
                ring0_addr,
                quorum_votes: f
                    .get("quorum_votes")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
            })
        })
        .collect();
    out.sort_by_key(|n| n.nodeid);
    out
}

/// A `quorum { }` setting.
fn quorum_setting(conf: &str, key: &str) -> Option<u32> {
    entries(conf)
        .into_iter()
        .find(|(sections, _, k, _)| sections == &["quorum"] && k == key)
        .and_then(|(_, _, _, v)| v.parse().ok())
}

/// Whether a set of nodes is quorate, as votequorum decides it: more than
/// half of the expected votes (`expected_votes`, at least the nodelist's
/// total), or any one node of a `two_node` cluster of two.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumRule {
    votes: BTreeMap<u32, u32>,
    needed: u32,
}

impl QuorumRule {
    pub fn of(conf: &str) -> QuorumRule {
        let votes: BTreeMap<u32, u32> = nodes(conf)
            .iter()
            .map(|n| (n.nodeid, n.quorum_votes))
            .collect();
        let total: u32 = votes.values().sum();
        let expected = quorum_setting(conf, "expected_votes")
            .unwrap_or(0)
            .max(total);
        let needed = if quorum_setting(conf, "two_node") == Some(1) && total == 2 {
            1
        } else {
            expected / 2 + 1
        };
        QuorumRule { votes, needed }
    }

    /// `n` nodes (ids 1..=n) of one vote each.
    pub fn equal_votes(n: u32) -> QuorumRule {
        QuorumRule {
            votes: (1..=n).map(|id| (id, 1)).collect(),
            needed: n / 2 + 1,
        }
    }

    /// Whether the nodes `members` (nodeids) have quorum; a node the
    /// nodelist does not name counts one vote.
    pub fn quorate(&self, members: &[u32]) -> bool {
        let have: u32 = members
            .iter()
            .map(|m| self.votes.get(m).copied().unwrap_or(1))
            .sum();
        have >= self.needed
    }
}

/// The first `config_version\s*:\s*(\d+)` of a config; 0 if none.
pub fn config_version(conf: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(conf);
    let mut rest: &str = &text;
    while let Some(i) = rest.find("config_version") {
        let after = &rest[i + "config_version".len()..];
        let trimmed = after.trim_start();
        if let Some(v) = trimmed.strip_prefix(':') {
            let digits: String = v
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            if !digits.is_empty() {
                return digits.parse().unwrap_or(0);
            }
        }
        rest = after;
    }
    0
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do, and why.
    Keep(&'static str),
    /// Replace the host's file; reload corosync afterwards if `reload`.
    Write { reload: bool },
}

/// `new` is memdb's corosync.conf, `old` the host's (None if missing);
/// `reload_allowed` is true when we wrote the change (or at start).
pub fn decide(new: Option<&[u8]>, old: Option<&[u8]>, reload_allowed: bool) -> Decision {
    let Some(new) = new.filter(|n| !n.is_empty()) else {
        return Decision::Keep("no corosync.conf in /etc/pve");
    };
    let new_version = config_version(new);
    if new_version == 0 {
        return Decision::Keep("unable to parse cluster config_version");
    }
    let old_version = old.map_or(0, config_version);
    if old == Some(new) {
        return Decision::Keep("corosync.conf is up to date");
    }
    if new_version < old_version {
        return Decision::Keep("local corosync.conf is newer");
    }
    Decision::Write {
        reload: reload_allowed && old_version != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_and_quorum() {
        let conf = "nodelist {\n  node {\n    name: a\n    nodeid: 2\n    ring0_addr: 10.0.0.2 # x\n  }\n  node {\n    nodeid: 1\n    ring0_addr: 10.0.0.1\n    quorum_votes: 3\n  }\n  node {\n    name: noid\n  }\n}\nquorum {\n  provider: corosync_votequorum\n}\n";
        let n = nodes(conf);
        assert_eq!(n.len(), 2);
        assert_eq!(
            (n[0].nodeid, n[0].name.as_str(), n[0].quorum_votes),
            (1, "10.0.0.1", 3)
        );
        assert_eq!(
            (n[1].nodeid, n[1].name.as_str(), n[1].ring0_addr.as_str()),
            (2, "a", "10.0.0.2")
        );
        let rule = QuorumRule::of(conf);
        assert!(rule.quorate(&[1]), "3 of 4 votes");
        assert!(!rule.quorate(&[2]));
        let two = "nodelist {\n node {\n nodeid: 1\n }\n node {\n nodeid: 2\n }\n}\nquorum {\n two_node: 1\n}\n";
        assert!(QuorumRule::of(two).quorate(&[1]));
        let expected = "nodelist {\n node {\n nodeid: 1\n }\n}\nquorum {\n expected_votes: 3\n}\n";
        assert!(!QuorumRule::of(expected).quorate(&[1]));
        assert!(QuorumRule::equal_votes(3).quorate(&[1, 2]));
        assert!(!QuorumRule::equal_votes(4).quorate(&[1, 2]));
    }

    #[test]
    fn versions_and_decisions() {
        assert_eq!(config_version(b"totem {\n  config_version: 17\n}"), 17);
        assert_eq!(config_version(b"config_version:3"), 3);
        assert_eq!(config_version(b"no version"), 0);
        let v2 = b"config_version: 2\n".as_slice();
        let v3 = b"config_version: 3\n".as_slice();
        assert_eq!(
            decide(Some(v3), Some(v2), true),
            Decision::Write { reload: true }
        );
        assert_eq!(
            decide(Some(v3), None, true),
            Decision::Write { reload: false }
        );
        assert_eq!(
            decide(Some(v3), Some(v2), false),
            Decision::Write { reload: false }
        );
        assert_eq!(
            decide(Some(v2), Some(v3), true),
            Decision::Keep("local corosync.conf is newer")
        );
        assert_eq!(
            decide(Some(v2), Some(v2), true),
            Decision::Keep("corosync.conf is up to date")
        );
        assert_eq!(
            decide(None, Some(v2), true),
            Decision::Keep("no corosync.conf in /etc/pve")
        );
        assert_eq!(
            decide(Some(b"x"), Some(v2), true),
            Decision::Keep("unable to parse cluster config_version")
        );
    }
}
