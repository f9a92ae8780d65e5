//! Log lines in the C daemon's style (`[main] notice: ...`) on standard
//! error, which systemd's journal collects. Debug lines only with `-d` or
//! after `1` was written to `/etc/pve/.debug`.

use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);

pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

fn line(level: &str, msg: &str) {
    eprintln!("[main] {level}: {msg}");
}

pub fn error(msg: &str) {
    line("crit", msg);
}

pub fn notice(msg: &str) {
    line("notice", msg);
}

pub fn debug(msg: &str) {
    if debug_enabled() {
        line("debug", msg);
    }
}
