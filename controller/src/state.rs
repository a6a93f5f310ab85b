//! The controller's persisted state: per data store, the epoch, the current primary, a failover
//! in flight, and the failover history. One JSON file per data store in the data folder, written
//! atomically (write a temporary file, fsync it, rename it over the old one, fsync the folder)
//! before any command that depends on it is sent.
use std::{
    fs::{self, File},
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::error::{ControllerError, Result};

/// At most this many failovers are remembered per data store.
pub const HISTORY_LIMIT: usize = 100;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreState {
    pub epoch: u64,
    /// Node id of the primary clients are sent to.
    pub primary: Option<String>,
    /// A failover that began and has not finished: resumed after a restart.
    pub in_flight: Option<InFlight>,
    pub history: Vec<Failover>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    pub epoch: u64,
    pub from: Option<String>,
    pub to: String,
    pub cause: String,
    pub started_unix_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failover {
    pub epoch: u64,
    pub from: Option<String>,
    pub to: String,
    pub cause: String,
    pub started_unix_ms: u64,
    pub duration_ms: u64,
    pub outcome: String,
}

impl StoreState {
    pub fn record(&mut self, f: Failover) {
        self.history.push(f);
        if self.history.len() > HISTORY_LIMIT {
            let extra = self.history.len() - HISTORY_LIMIT;
            self.history.drain(..extra);
        }
    }
}

/// Data store names become file names, so they are kept to a safe alphabet.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

/// Where one data store's state lives.
#[derive(Clone, Debug)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(dir: &Path, datastore: &str) -> Result<Self> {
        if !valid_name(datastore) {
            return Err(ControllerError::BadName(datastore.to_string()));
        }
        Ok(Self {
            path: dir.join(format!("{datastore}.json")),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state, or the default when none was saved yet.
    pub fn load(&self) -> Result<StoreState> {
        match fs::read_to_string(&self.path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| ControllerError::State {
                path: self.path.clone(),
                message: format!("unreadable: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StoreState::default()),
            Err(e) => Err(ControllerError::State {
                path: self.path.clone(),
                message: e.to_string(),
            }),
        }
    }

    /// Writes `state` so that a crash leaves either the old or the new file, never a torn one.
    pub fn save(&self, state: &StoreState) -> Result<()> {
        let err = |e: std::io::Error| ControllerError::State {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(err)?;
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(state).map_err(|e| ControllerError::State {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        let mut f = File::create(&tmp).map_err(err)?;
        f.write_all(&text).map_err(err)?;
        f.sync_all().map_err(err)?;
        fs::rename(&tmp, &self.path).map_err(err)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_a_round_trip_and_missing_means_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path(), "cache").unwrap();
        assert_eq!(file.load().unwrap(), StoreState::default());
        let mut s = StoreState {
            epoch: 7,
            primary: Some("b".into()),
            ..Default::default()
        };
        s.in_flight = Some(InFlight {
            epoch: 7,
            from: Some("a".into()),
            to: "b".into(),
            cause: "down".into(),
            started_unix_ms: 1,
        });
        file.save(&s).unwrap();
        assert_eq!(file.load().unwrap(), s);
        assert!(!file.path().with_extension("json.tmp").exists());
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path(), "cache").unwrap();
        fs::write(file.path(), b"{ not json").unwrap();
        assert!(
            file.load().is_err(),
            "starting over would forget the epoch and risk split brain"
        );
    }

    #[test]
    fn history_is_bounded_and_names_are_safe() {
        let mut s = StoreState::default();
        for epoch in 0..(HISTORY_LIMIT as u64 + 10) {
            s.record(Failover {
                epoch,
                from: None,
                to: "x".into(),
                cause: "c".into(),
                started_unix_ms: 0,
                duration_ms: 0,
                outcome: "ok".into(),
            });
        }
        assert_eq!(s.history.len(), HISTORY_LIMIT);
        assert_eq!(s.history[0].epoch, 10);
        for bad in ["", "../etc", ".hidden", "a/b", "x y", &"n".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_name("cache-eu_1.prod"));
    }
}
