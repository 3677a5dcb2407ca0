//! The sidecar's log: one line per record on stderr, which systemd's journal keeps.

use log::{LevelFilter, Log, Metadata, Record};

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, m: &Metadata) -> bool {
        // Our own records at the chosen level; dependencies only when they warn.
        m.target().starts_with("ballast") || m.level() <= log::Level::Warn
    }

    fn log(&self, r: &Record) {
        if self.enabled(r.metadata()) {
            eprintln!("{} {}: {}", r.level(), r.target(), r.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: Stderr = Stderr;

pub fn init(level: LevelFilter) {
    // Only fails when a logger is already set (a second init in tests): keep that one.
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
