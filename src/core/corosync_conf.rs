//! Whether `corosync.conf` from /etc/pve should replace the host's
//! `/etc/corosync/corosync.conf` (spec §7.4). Pure; the corosync edge reads
//! and writes the files and reloads corosync.

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
