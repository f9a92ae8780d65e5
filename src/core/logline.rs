//! The log lines the core decides on, in the shape of the C daemon's log:
//! `[SUBSYSTEM] LEVEL: MESSAGE`. The core only says what to log; the log
//! edge prints it (standard error or syslog).

use std::panic::Location;

/// The subsystem tags of C's log (log-lines.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subsystem {
    Main,
    /// The `pve_dcdb_v1` group.
    Dcdb,
    /// The `pve_kvstore_v1` group, quorum and cmap status.
    Status,
    Quorum,
    /// cmap.
    Confdb,
    /// SQLite.
    Database,
    Libqb,
    Ipcs,
}

impl Subsystem {
    pub fn tag(self) -> &'static str {
        match self {
            Subsystem::Main => "main",
            Subsystem::Dcdb => "dcdb",
            Subsystem::Status => "status",
            Subsystem::Quorum => "quorum",
            Subsystem::Confdb => "confdb",
            Subsystem::Database => "database",
            Subsystem::Libqb => "libqb",
            Subsystem::Ipcs => "ipcs",
        }
    }
}

/// Syslog levels C uses, most severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Crit,
    Warning,
    Notice,
    Info,
    Debug,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Crit => "crit",
            Level::Warning => "warning",
            Level::Notice => "notice",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    /// The syslog priority (RFC 5424 severity).
    pub fn priority(self) -> u8 {
        match self {
            Level::Crit => 2,
            Level::Warning => 4,
            Level::Notice => 5,
            Level::Info => 6,
            Level::Debug => 7,
        }
    }
}

/// One line to log, with the place in our code that decided on it (C's
/// debug mode shows the source location of every line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub subsystem: Subsystem,
    pub level: Level,
    pub text: String,
    pub location: &'static Location<'static>,
}

impl LogLine {
    #[track_caller]
    pub fn new(subsystem: Subsystem, level: Level, text: impl Into<String>) -> LogLine {
        LogLine {
            subsystem,
            level,
            text: text.into(),
            location: Location::caller(),
        }
    }

    /// `[dcdb] notice: members: 1/127` (without the debug location).
    pub fn render(&self) -> String {
        format!(
            "[{}] {}: {}",
            self.subsystem.tag(),
            self.level.name(),
            self.text
        )
    }
}
