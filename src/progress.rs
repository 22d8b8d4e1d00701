//! The engine's long operations (the recovery scan) shown to a person: a progress bar on a
//! terminal, nothing otherwise (the log has the summary line).

use std::io::IsTerminal;
use std::sync::Arc;

use hpkv_engine::{Progress, ProgressSink};
use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;

/// A [`ProgressSink`] drawing on stderr when it is a terminal; `None` otherwise.
pub fn on_terminal() -> Option<ProgressSink> {
    std::io::stderr()
        .is_terminal()
        .then(|| ProgressSink(Arc::new(Bar(Mutex::new(None)))))
}

struct Bar(Mutex<Option<ProgressBar>>);

impl Progress for Bar {
    fn start(&self, what: &str, total: u64) {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{what} {{bar:40}} {{pos}}/{{len}}, {{msg}} ({{eta}} left)"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        *self.0.lock() = Some(bar);
    }

    fn advance(&self, done: u64, note: &str) {
        if let Some(bar) = &*self.0.lock() {
            bar.set_position(done);
            bar.set_message(note.to_string());
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.0.lock().take() {
            bar.finish_and_clear();
        }
    }
}
