//! The simulation's events: counted always, written as JSON lines when a writer is given.

use std::io::Write;

/// Sink for events: counted always, written as JSON lines when a writer is given.
pub(super) struct Events<'a> {
    pub(super) out: Option<&'a mut (dyn Write + 'a)>,
    pub(super) count: u64,
    pub(super) error: Option<std::io::Error>,
}

impl Events<'_> {
    pub(super) fn emit(&mut self, v: serde_json::Value) {
        self.count += 1;
        if let Some(w) = self.out.as_deref_mut() {
            if self.error.is_none() {
                if let Err(e) = serde_json::to_writer(&mut *w, &v)
                    .map_err(std::io::Error::other)
                    .and_then(|_| w.write_all(b"\n"))
                {
                    self.error = Some(e);
                }
            }
        }
    }
}
