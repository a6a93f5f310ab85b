//! The epoch rule that guards the controller's commands: a command older than the newest epoch
//! this agent has seen (from commands and desired state alike) is refused.
use crate::error::{AgentError, Result};

/// The newest epoch seen, from commands and desired state alike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EpochGuard {
    newest: u64,
}

impl EpochGuard {
    pub fn newest(&self) -> u64 {
        self.newest
    }

    /// Notes an epoch from desired state.
    pub fn observe(&mut self, epoch: u64) {
        self.newest = self.newest.max(epoch);
    }

    /// Admits a command at `epoch` unless it is older than the newest seen.
    pub fn admit(&mut self, epoch: u64) -> Result<()> {
        if epoch < self.newest {
            return Err(AgentError::StaleEpoch {
                got: epoch,
                newest: self.newest,
            });
        }
        self.newest = epoch;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_epochs_are_refused_and_equal_or_newer_admitted() {
        let mut g = EpochGuard::default();
        assert!(g.admit(5).is_ok());
        assert!(g.admit(5).is_ok());
        assert!(matches!(
            g.admit(3),
            Err(AgentError::StaleEpoch { got: 3, newest: 5 })
        ));
        g.observe(9);
        assert!(matches!(
            g.admit(8),
            Err(AgentError::StaleEpoch { got: 8, newest: 9 })
        ));
        g.observe(2);
        assert_eq!(g.newest(), 9);
        assert!(g.admit(10).is_ok());
        assert_eq!(g.newest(), 10);
    }
}
