//! A data store's persisted state: the epoch, the current primary, a failover in flight, the
//! failover history, and whether it is paused; and where it is kept. The embedded default is one JSON file per data store
//! in the data folder, written atomically (write a temporary file, fsync it, rename it over the
//! old one, fsync the folder) before any command that depends on it is sent.
use std::{
    fmt,
    fs::{self, File},
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    str::FromStr,
};

use serde::{Deserialize, Serialize};

use super::timeline::Timeline;
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
    /// While the target of the failover in flight is not settled: its candidates, asked for
    /// their offsets while the failover goes on. A failover resumed with them asks them again
    /// before it promotes (see `store::choice`). Empty when the target is settled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
    pub history: Vec<Failover>,
    /// Maintenance mode (`vigil pause`): no automatic failover until `vigil resume`. Kept here so
    /// that it holds across a controller's restart and a change of leader.
    #[serde(default)]
    pub paused: bool,
}

/// Why a failover began. Persisted by name, so the names never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The primary's agent said DOWN.
    Down,
    /// The primary's agent said UNHEALTHY.
    Unhealthy,
    /// The primary's agent was silent and most replicas could not reach the primary either.
    Unreachable,
    /// An operator forced a promotion of a replica while the primary was gone.
    Manual,
    /// An operator moved the primary role off a live primary.
    Switchover,
}

impl Cause {
    pub fn name(self) -> &'static str {
        match self {
            Self::Down => "down",
            Self::Unhealthy => "unhealthy",
            Self::Unreachable => "unreachable",
            Self::Manual => "manual",
            Self::Switchover => "switchover",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a failover ended. Persisted as the text `Display` gives, which `FromStr` reads back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Outcome {
    /// Promoted, and every other node re-pointed.
    Ok,
    /// Promoted, but these nodes (each with why) were not re-pointed.
    NotRepointed(Vec<String>),
    /// Not promoted.
    Failed(String),
}

const NOT_REPOINTED: &str = "promoted; not re-pointed: ";
const FAILED: &str = "failed: ";

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok => f.write_str("ok"),
            Self::NotRepointed(nodes) => write!(f, "{NOT_REPOINTED}{}", nodes.join("; ")),
            Self::Failed(why) => write!(f, "{FAILED}{why}"),
        }
    }
}

impl FromStr for Outcome {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "ok" {
            Ok(Self::Ok)
        } else if let Some(nodes) = s.strip_prefix(NOT_REPOINTED) {
            Ok(Self::NotRepointed(
                nodes.split("; ").map(str::to_string).collect(),
            ))
        } else if let Some(why) = s.strip_prefix(FAILED) {
            Ok(Self::Failed(why.to_string()))
        } else {
            Err(format!("{s:?} is not a failover outcome"))
        }
    }
}

impl From<Outcome> for String {
    fn from(o: Outcome) -> Self {
        o.to_string()
    }
}

impl TryFrom<String> for Outcome {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    pub epoch: u64,
    pub from: Option<String>,
    pub to: String,
    pub cause: Cause,
    pub started_unix_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failover {
    pub epoch: u64,
    pub from: Option<String>,
    pub to: String,
    pub cause: Cause,
    pub started_unix_ms: u64,
    pub duration_ms: u64,
    pub outcome: Outcome,
    /// The stages it reached; None for failovers recorded before timelines were kept.
    #[serde(default)]
    pub timeline: Option<Timeline>,
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

/// Where a data store's state is kept. A reconciler saves through it before it sends any command
/// that depends on what it saved.
pub trait Persist: Send + 'static {
    fn save(&mut self, state: &StoreState) -> Result<()>;
}

/// One data store's state file.
#[derive(Clone, Debug)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(dir: &Path, datastore: &str) -> Result<Self> {
        if !vigil_proto::limits::valid_name(datastore) {
            return Err(ControllerError::BadName(datastore.to_string()));
        }
        Ok(Self {
            path: dir.join(format!("{datastore}.json")),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, message: impl fmt::Display) -> ControllerError {
        ControllerError::State {
            path: self.path.clone(),
            message: message.to_string(),
        }
    }

    /// The saved state, or the default when none was saved yet.
    pub fn load(&self) -> Result<StoreState> {
        match fs::read_to_string(&self.path) {
            Ok(text) => {
                serde_json::from_str(&text).map_err(|e| self.error(format!("unreadable: {e}")))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StoreState::default()),
            Err(e) => Err(self.error(e)),
        }
    }
}

impl Persist for StateFile {
    /// Writes `state` so that a crash leaves either the old or the new file, never a torn one.
    /// Blocks this reconciler until the file is durable (two fsyncs): nothing that depends on
    /// the state may be sent before. On the multi-threaded runtime the fsyncs run with this
    /// thread handed over to the blocking pool: the tasks it would have run next (other data
    /// stores, the sessions carrying the commands sent just before) go on on another thread
    /// meanwhile, however long the disk takes.
    fn save(&mut self, state: &StoreState) -> Result<()> {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            tokio::task::block_in_place(|| self.write(state))
        } else {
            self.write(state)
        }
    }
}

impl StateFile {
    fn write(&self, state: &StoreState) -> Result<()> {
        let err = |e: std::io::Error| self.error(e);
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(err)?;
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(state).map_err(|e| self.error(e))?;
        // Only the controller's user reads the state (it names every node of every store).
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(super::data_dir::FILE_MODE)
            .open(&tmp)
            .map_err(err)?;
        // A temporary file left by a crash under an older, laxer mode is reused as it is.
        f.set_permissions(fs::Permissions::from_mode(super::data_dir::FILE_MODE))
            .map_err(err)?;
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
    use crate::store::timeline::{Clock, Origin, Stage};
    use vigil_proto::limits::valid_name;

    fn failover(epoch: u64, outcome: Outcome) -> Failover {
        Failover {
            epoch,
            from: Some("a".into()),
            to: "b".into(),
            cause: Cause::Down,
            started_unix_ms: 1,
            duration_ms: 2,
            outcome,
            timeline: None,
        }
    }

    #[test]
    fn state_survives_a_round_trip_and_missing_means_default() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = StateFile::new(dir.path(), "cache").unwrap();
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
            cause: Cause::Unreachable,
            started_unix_ms: 1,
        });
        s.record(failover(6, Outcome::NotRepointed(vec!["c: gone".into()])));
        s.paused = true;
        let mut clock = Clock::new(Origin::Failure, tokio::time::Instant::now());
        clock.mark(Stage::Decided, tokio::time::Instant::now());
        s.record(Failover {
            timeline: Some(clock.timeline().clone()),
            ..failover(7, Outcome::Ok)
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

    /// Files written before causes and outcomes were typed read back the same.
    #[test]
    fn causes_and_outcomes_keep_their_persisted_text() {
        let text = r#"{"epoch":3,"primary":"b","in_flight":null,"history":[
            {"epoch":2,"from":"a","to":"b","cause":"unhealthy","started_unix_ms":1,"duration_ms":9,"outcome":"ok"},
            {"epoch":3,"from":"b","to":"a","cause":"switchover","started_unix_ms":2,"duration_ms":9,"outcome":"promoted; not re-pointed: c: no answer; d: gone"},
            {"epoch":4,"from":null,"to":"a","cause":"manual","started_unix_ms":3,"duration_ms":9,"outcome":"failed: promoting a: refused"}]}"#;
        let s: StoreState = serde_json::from_str(text).unwrap();
        assert_eq!(s.history[0].cause, Cause::Unhealthy);
        assert_eq!(s.history[0].outcome, Outcome::Ok);
        assert_eq!(
            s.history[1].outcome,
            Outcome::NotRepointed(vec!["c: no answer".into(), "d: gone".into()])
        );
        assert_eq!(
            s.history[2].outcome,
            Outcome::Failed("promoting a: refused".into())
        );
        let again: StoreState = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(again, s);
        assert!(serde_json::from_str::<Outcome>(r#""maybe""#).is_err());
        // Written before pause and timelines: not paused, no timeline.
        assert!(!s.paused);
        assert!(s.history.iter().all(|f| f.timeline.is_none()));
        assert!(serde_json::from_str::<Cause>(r#""bored""#).is_err());
    }

    #[test]
    fn history_is_bounded_and_names_are_safe() {
        let mut s = StoreState::default();
        for epoch in 0..(HISTORY_LIMIT as u64 + 10) {
            s.record(failover(epoch, Outcome::Ok));
        }
        assert_eq!(s.history.len(), HISTORY_LIMIT);
        assert_eq!(s.history[0].epoch, 10);
        for bad in ["", "../etc", ".hidden", "a/b", "x y", &"n".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_name("cache-eu_1.prod"));
    }
}
