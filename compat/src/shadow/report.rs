//! The shadow report: what was checked and matched, the divergences with
//! the events before them, and its rendering for people (text) and
//! machines (JSON); the capture's times as UTC.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

/// Matched out of checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub matched: u64,
    pub total: u64,
}

impl Tally {
    pub(super) fn add(&mut self, ok: bool) {
        self.total += 1;
        if ok {
            self.matched += 1;
        }
    }
}

#[derive(Clone, Debug)]
pub struct Divergence {
    /// Capture time of the event it showed at.
    pub time: f64,
    pub ring: String,
    pub what: String,
    /// Our core's message and C's, decoded, when messages differ.
    pub ours: Option<Value>,
    pub c: Option<Value>,
    /// The events of node N before it, one line each.
    pub before: Vec<String>,
}

/// What a shadow run found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub node: u32,
    pub node_name: String,
    /// (pid, capture time of its start, database it started on).
    pub processes: Vec<(u32, f64, String)>,
    pub first_time: Option<f64>,
    pub last_time: Option<f64>,
    /// Node N's messages by kind (`dcdb STATE`, `kvstore NORMAL/UPDATE`...).
    pub messages: BTreeMap<String, Tally>,
    /// The cluster's states against our database, by kind of check.
    pub states: BTreeMap<String, Tally>,
    /// The first divergences, in order (at most [`KEEP_DIVERGENCES`]).
    pub divergences: Vec<Divergence>,
    pub divergence_count: u64,
    /// What makes the capture unfit to judge by (cut short, lost packets,
    /// N's process not started in it); any of these fails the run.
    pub problems: Vec<String>,
    /// What was taken from outside the capture or inferred.
    pub notes: Vec<String>,
    /// Numbers of the capture's layers.
    pub capture: BTreeMap<String, u64>,
}

pub(super) fn sum(t: &BTreeMap<String, Tally>) -> Tally {
    t.values().fold(Tally::default(), |a, b| Tally {
        matched: a.matched + b.matched,
        total: a.total + b.total,
    })
}

impl Report {
    pub fn ok(&self) -> bool {
        self.divergence_count == 0
            && self.problems.is_empty()
            && sum(&self.messages).total > 0
            && !self.processes.is_empty()
    }

    /// The stable last line.
    pub fn last_line(&self) -> String {
        let m = sum(&self.messages);
        let s = sum(&self.states);
        let secs = match (self.first_time, self.last_time) {
            (Some(a), Some(b)) => (b - a).max(0.0),
            _ => 0.0,
        };
        format!(
            "shadow: node {}, messages matched {}/{}, states matched {}/{}, divergences {}, capture problems {}, period {:.0} s: {}",
            self.node,
            m.matched,
            m.total,
            s.matched,
            s.total,
            self.divergence_count,
            self.problems.len(),
            secs,
            if self.ok() { "MATCH" } else { "DIVERGED" }
        )
    }

    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "shadow of node {} ({})", self.node, self.node_name);
        if let (Some(a), Some(b)) = (self.first_time, self.last_time) {
            let _ = writeln!(o, "capture: {} to {} ({})", utc(a), utc(b), duration(b - a));
        }
        for (pid, t, db) in &self.processes {
            let _ = writeln!(o, "pmxcfs process {pid}: from {}, on {db}", utc(*t));
        }
        let c = &self.capture;
        let _ = writeln!(
            o,
            "packets: {} frames, {} knet datagrams, {} authenticated, {} CPG messages",
            c.get("frames").unwrap_or(&0),
            c.get("datagrams").unwrap_or(&0),
            c.get("authenticated").unwrap_or(&0),
            c.get("cpg_messages").unwrap_or(&0)
        );
        let _ = writeln!(
            o,
            "messages node {} sent, each against our core's decision:",
            self.node
        );
        for (k, t) in &self.messages {
            let _ = writeln!(o, "  {k:<32} {}/{}", t.matched, t.total);
        }
        let _ = writeln!(o, "the cluster's states against our database:");
        if self.states.is_empty() {
            let _ = writeln!(o, "  (none in the capture)");
        }
        for (k, t) in &self.states {
            let _ = writeln!(o, "  {k:<32} {}/{}", t.matched, t.total);
        }
        if !self.notes.is_empty() {
            let _ = writeln!(o, "taken from outside the capture, or inferred:");
            for n in &self.notes {
                let _ = writeln!(o, "  - {n}");
            }
        }
        for p in &self.problems {
            let _ = writeln!(o, "capture problem: {p}");
        }
        if let Some(d) = self.divergences.first() {
            let _ = writeln!(
                o,
                "first divergence, at {} (ring {}): {}",
                utc(d.time),
                d.ring,
                d.what
            );
            if let Some(v) = &d.ours {
                let _ = writeln!(o, "  ours: {v}");
            }
            if let Some(v) = &d.c {
                let _ = writeln!(o, "  C:    {v}");
            }
            let _ = writeln!(o, "  node {}'s events before it:", self.node);
            for l in &d.before {
                let _ = writeln!(o, "    {l}");
            }
            for d in self.divergences.iter().skip(1) {
                let _ = writeln!(o, "then, at {}: {}", utc(d.time), d.what);
            }
            if self.divergence_count > self.divergences.len() as u64 {
                let _ = writeln!(
                    o,
                    "... {} divergences in all (later ones may follow from the first)",
                    self.divergence_count
                );
            }
        }
        o.push_str(&self.last_line());
        o.push('\n');
        o
    }

    pub fn json(&self) -> Value {
        let tallies = |t: &BTreeMap<String, Tally>| -> Value {
            t.iter()
                .map(|(k, v)| (k.clone(), json!({"matched": v.matched, "total": v.total})))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let m = sum(&self.messages);
        let s = sum(&self.states);
        json!({
            "node": self.node,
            "node_name": self.node_name,
            "ok": self.ok(),
            "first_time": self.first_time,
            "last_time": self.last_time,
            "processes": self.processes.iter().map(|(pid, t, db)| json!({"pid": pid, "start": t, "database": db})).collect::<Vec<_>>(),
            "messages_matched": m.matched,
            "messages_total": m.total,
            "states_matched": s.matched,
            "states_total": s.total,
            "messages": tallies(&self.messages),
            "states": tallies(&self.states),
            "divergence_count": self.divergence_count,
            "divergences": self.divergences.iter().map(|d| json!({
                "time": d.time,
                "ring": d.ring,
                "what": d.what,
                "ours": d.ours,
                "c": d.c,
                "before": d.before,
            })).collect::<Vec<_>>(),
            "problems": self.problems,
            "notes": self.notes,
            "capture": self.capture,
        })
    }
}

/// `2026-12-01 10:00:00.123456 UTC`.
pub fn utc(t: f64) -> String {
    let secs = t.floor() as i64;
    let micros = ((t - t.floor()) * 1e6).round().min(999_999.0) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{micros:06} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

pub(super) fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    format!("{}h {:02}m {:02}s", s / 3600, s / 60 % 60, s % 60)
}
