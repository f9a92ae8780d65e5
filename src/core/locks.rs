//! The local lock table (spec §2.12): for each lock directory the entry
//! checksum last seen and the local time it was first seen in that state.
//! Lock age is measured on this node's clock, never from the replicated
//! mtime, because clocks drift.

use std::collections::HashMap;

/// `CFS_LOCK_TIMEOUT`: a lock unchanged for longer than this may be removed.
pub const LOCK_TIMEOUT: u32 = 120;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockRecord {
    pub csum: [u8; 32],
    pub ltime: u32,
}

#[derive(Clone, Debug, Default)]
pub struct LockTable {
    records: HashMap<Vec<u8>, LockRecord>,
    /// Seconds a lock must stay unchanged; `LOCK_TIMEOUT` unless a test
    /// asks for a faster clock explicitly.
    timeout: Option<u32>,
}

impl LockTable {
    /// How many locks are held, and the local time the oldest was first
    /// seen in its state.
    pub fn held(&self) -> (usize, Option<u32>) {
        (
            self.records.len(),
            self.records.values().map(|r| r.ltime).min(),
        )
    }

    pub fn timeout(&self) -> u32 {
        self.timeout.unwrap_or(LOCK_TIMEOUT)
    }

    /// Shorten the expiry (test option only; the default is C's 120 s).
    pub fn set_timeout(&mut self, seconds: u32) {
        self.timeout = Some(seconds);
    }

    /// After mkdir under `priv/lock` or a successful refresh: a fresh record.
    pub fn register(&mut self, path: &[u8], csum: [u8; 32], now: u32) {
        self.records
            .insert(path.to_vec(), LockRecord { csum, ltime: now });
    }

    pub fn remove(&mut self, path: &[u8]) {
        self.records.remove(path);
    }

    pub fn get(&self, path: &[u8]) -> Option<&LockRecord> {
        self.records.get(path)
    }

    /// Rebuilt at open and after every sync commit. Every lock restarts its
    /// clock at `now`: C's rebuild looks up the old records in the wrong
    /// table and never finds them (spec §9.7). Replicated, so lock lifetimes
    /// stay the same whichever implementation is the lowest node.
    pub fn rebuild(&mut self, locks: Vec<(Vec<u8>, [u8; 32])>, now: u32) {
        self.records = locks
            .into_iter()
            .map(|(path, csum)| (path, LockRecord { csum, ltime: now }))
            .collect();
    }

    /// `memdb_lock_expired`: true once the same lock state has been seen for
    /// more than the timeout; an unknown or changed lock (re)starts its clock.
    pub fn expired(&mut self, path: &[u8], csum: &[u8; 32], now: u32) -> bool {
        let timeout = self.timeout();
        match self.records.get_mut(path) {
            None => {
                self.register(path, *csum, now);
                false
            }
            Some(r) if &r.csum != csum => {
                r.csum = *csum;
                r.ltime = now;
                false
            }
            Some(r) => now > r.ltime && now - r.ltime > timeout,
        }
    }
}
