//! The epoch that starts every failover and switchover: bumped, persisted with the failover in
//! flight before anything is promoted at it, and counted once. A failover of a failed primary
//! sends the old primary its Fence at the new epoch first, so that its agent puts the fence up
//! while the epoch is written (a planned switchover fences after, keeping its replicas' links).
use tokio::{sync::oneshot, time::Instant};
use vigil_proto::v1::{self, command::Action};

use super::{
    actor::{Active, Reconciler, unix_ms},
    commands::PendingAck,
    state::{Cause, InFlight},
    timeline::{Clock, Stage},
};
use crate::{error::ControllerError, sentinel::topology::Channel};

impl Reconciler {
    /// Persists the new epoch and the failover in flight (with `candidates` when its target `to`
    /// is not settled yet), before any command at that epoch is sent; on success the failover becomes
    /// active, its timeline kept on `clock`, and is counted. On failure the state is as it was,
    /// and nothing is counted: a failover is counted once, here, whatever led to it (a choice of
    /// replica, `vigil failover`), and never again when it is resumed.
    pub(super) fn begin(
        &mut self,
        from: Option<String>,
        to: &str,
        cause: Cause,
        clock: Clock,
        candidates: Vec<String>,
    ) -> Result<u64, ControllerError> {
        self.begin_fencing(from, to, cause, clock, candidates, false)
            .map(|(epoch, _)| epoch)
    }

    /// As [`Self::begin`]; with `fence_first`, the old primary is sent its Fence at the new
    /// epoch before the epoch is persisted, so that its agent puts the fence up while the
    /// controller waits for the disk (or etcd), and the acknowledgement is returned for the
    /// failover's task to await. Nothing is promoted before the epoch is durable, so a
    /// controller that dies in between leaves the old primary fenced and nothing promoted at an
    /// epoch it could reuse; the next leader judges the primary again.
    pub(super) fn begin_fencing(
        &mut self,
        from: Option<String>,
        to: &str,
        cause: Cause,
        mut clock: Clock,
        candidates: Vec<String>,
        fence_first: bool,
    ) -> Result<(u64, Option<PendingAck>), ControllerError> {
        let epoch = self.state.epoch + 1;
        let started_unix_ms = unix_ms();
        let settled = candidates.is_empty();
        self.state.epoch = epoch;
        self.state.in_flight = Some(InFlight {
            epoch,
            from: from.clone(),
            to: to.to_string(),
            cause,
            started_unix_ms,
        });
        self.state.candidates = candidates;
        let fence_sent = match (&from, fence_first) {
            (Some(old), true) => {
                let (reply, ack) = oneshot::channel();
                let fence = Action::Fence(v1::Fence {
                    keep_replicas: false,
                });
                self.send_command(old, fence, epoch, reply);
                Some(ack)
            }
            _ => None,
        };
        if let Err(e) = self.save("the new epoch") {
            // Without a durable epoch a restart could reuse it: refuse to go on, and lift the
            // fence already sent, as a failed promotion does. Sent now, on the same session,
            // so it reaches the agent after that Fence and before any later try's.
            self.state.epoch -= 1;
            self.state.in_flight = None;
            self.state.candidates.clear();
            if let (Some(old), Some(_)) = (&from, &fence_sent) {
                // Nobody awaits the answer: an agent that does not lift it keeps a fence on a
                // primary that was judged failed, which is the safe side.
                let (reply, _) = oneshot::channel();
                self.send_command(old, Action::Unfence(v1::Unfence {}), epoch, reply);
            }
            return Err(ControllerError::EpochNotPersisted(Box::new(e)));
        }
        self.metrics.failover(&self.name, cause.name());
        self.announce(Channel::NewEpoch, to, epoch.to_string());
        if let Some(old) = &from {
            self.announce(Channel::TryFailover, old, self.master_words(old));
            // A target not settled yet is announced once it is (`choice`).
            if settled {
                self.announce(Channel::SelectedSlave, to, self.replica_words(to, old));
            }
        }
        let started = Instant::now();
        clock.mark(Stage::Decided, started);
        self.active = Some(Active {
            epoch,
            from,
            to: to.to_string(),
            cause,
            started,
            started_unix_ms,
            promoted: false,
            clock,
        });
        // Status and the views shared with other controllers say a failover is under way.
        self.publish();
        Ok((epoch, fence_sent))
    }
}
