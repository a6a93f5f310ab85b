//! [`Log`]: the stderr of a child the harness started, captured line by line on a thread, for
//! tests to wait on and search.
use std::{
    io::{BufRead, BufReader},
    sync::{Arc, Mutex, MutexGuard},
};

use anyhow::Result;

use crate::{WAIT, echo, wait_until};

/// The captured stderr of a child process, line by line (echoed unless [`quiet`](crate::quiet)).
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    /// Reads `stderr` on a thread until it closes.
    /// `prefix` starts each echoed line (it tells three controllers apart).
    pub(crate) fn capture(stderr: std::process::ChildStderr, prefix: impl Into<String>) -> Self {
        let log = Self::default();
        let sink = log.clone();
        let prefix = prefix.into();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                echo(&prefix, &line);
                sink.lines_mut().push(line);
            }
        });
        log
    }

    fn lines_mut(&self) -> MutexGuard<'_, Vec<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits (bounded) for a line containing `needle`.
    pub fn wait_for(&self, needle: &str) -> Result<String> {
        wait_until(WAIT, &format!("a log line with {needle:?}"), || {
            self.lines_mut()
                .iter()
                .find(|l| l.contains(needle))
                .cloned()
        })
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.lines_mut().iter().any(|l| l.contains(needle))
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines_mut().clone()
    }
}
