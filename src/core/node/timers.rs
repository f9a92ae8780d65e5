//! The node's timers: the hourly verify, rejoining a group it had to
//! leave, and probing a database that failed until it takes writes again.

use super::super::logline::{Level, Subsystem};
use super::super::memdb::{Memdb, Row};
use super::{
    Effect, Group, Node, Time, TreeChange, SERVICE_RESTART_US, STORAGE_PROBE_US, VERIFY_PERIOD,
};

impl Node {
    pub(super) fn schedule_rejoin(&mut self, group: Group, now: Time) {
        let earliest = self.last_join[group.index()]
            .map_or(now, |t| t.plus_micros(SERVICE_RESTART_US))
            .max(now);
        self.rejoin_at[group.index()] = Some(earliest);
    }

    pub(super) fn storage_recovered(&mut self, now: Time, rows: Vec<Row>) {
        if self.storage_probe_at.is_none() {
            return;
        }
        match Memdb::from_rows(rows, now.secs()) {
            Ok((mut memdb, _)) => {
                if let Some(secs) = self.config.lock_timeout {
                    memdb.locks.set_timeout(secs);
                }
                self.dcdb.app.memdb = memdb;
                self.effects.push_back(Effect::TreeChanged(TreeChange::All));
                self.storage_probe_at = None;
                if self.cluster_mode {
                    self.log(
                        Subsystem::Database,
                        Level::Notice,
                        "config.db takes writes again - reloaded it, rejoining the cluster to resync",
                    );
                    self.schedule_rejoin(Group::Dcdb, now);
                } else {
                    self.log(
                        Subsystem::Database,
                        Level::Notice,
                        "config.db takes writes again - reloaded it, changes are accepted again",
                    );
                }
            }
            Err(e) => self.log(
                Subsystem::Database,
                Level::Crit,
                format!("config.db takes writes again but does not load: {e}"),
            ),
        }
    }

    /// The next time `handle_timeout` has something to do.
    pub fn poll_timeout(&self) -> Option<Time> {
        let mut next: Option<Time> = None;
        let mut consider = |t: Option<Time>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        if self.cluster_mode {
            consider(Some(Time::from_secs(
                self.verify_last.saturating_add(VERIFY_PERIOD),
            )));
        }
        if self.storage_probe_at.is_none() {
            for g in Group::ALL {
                consider(self.rejoin_at[g.index()]);
            }
        }
        consider(self.storage_probe_at);
        next
    }

    /// Run the timers that are due at `now` (`Input::Timers`).
    pub(super) fn handle_timeout(&mut self, now: Time) {
        let secs = now.secs();
        if self.cluster_mode && secs.saturating_sub(self.verify_last) >= VERIFY_PERIOD {
            self.verify_last = secs;
            self.dcdb.verify_request(secs);
        }
        if self.storage_probe_at.is_none() {
            for g in Group::ALL {
                if self.rejoin_at[g.index()].is_some_and(|t| t <= now) {
                    self.rejoin_at[g.index()] = None;
                    self.last_join[g.index()] = Some(now);
                    self.effects.push_back(Effect::JoinGroup(g));
                }
            }
        }
        if self.storage_probe_at.is_some_and(|t| t <= now) {
            self.storage_probe_at = Some(now.plus_micros(STORAGE_PROBE_US));
            self.effects.push_back(Effect::ProbeStorage);
        }
    }
}
