//! The safety matrix: does a deposed primary ever acknowledge a write? Writers (redis-py, in
//! Sentinel mode through the endpoint and on a direct connection to the first primary) write
//! through a fault and its healing; a role monitor dates every promotion; the checker counts what
//! was lost and who acknowledged what. Shared by the `safety` suite (vigil) and
//! `cargo xtask bench safety` (vigil and Redis Sentinel).
//!
//! Layout, in the order a run uses them:
//! - `nodes`: [`Nodes`], the three servers in the [`Topology`] a fault needs, and what is done to
//!   the primary.
//! - `system`: [`System`], what keeps them available; `vigil`: [`VigilSystem`].
//! - `fault`: [`Fault`], inject and heal.
//! - `writer`: [`Writer`], one writer process; `attempt`: [`Attempt`], one write it reported.
//! - `monitor`: [`RoleMonitor`], every node's ROLE every millisecond.
//! - `checker`: [`check`] and its definitions, pure.
//! - `run`: [`run`], one fault against one system, to a [`Report`].
//! - `clock`: the one clock all of them stamp with.
mod attempt;
mod checker;
mod clock;
mod fault;
mod monitor;
mod nodes;
mod run;
mod system;
mod vigil;
mod writer;

pub use attempt::{Attempt, Kind, Outcome};
pub use checker::{GAP_MS, Promotion, Tally, check, deposed, dual_primary_ms, promotions};
pub use clock::monotonic_ns;
pub use fault::{Fault, Injected};
pub use monitor::{Change, RoleMonitor, Seen};
pub use nodes::{Nodes, Role, Topology};
pub use run::{Plan, Report, run};
pub use system::{CoordinatorKill, System};
pub use vigil::{DATASTORE, VigilSystem};
pub use writer::{Mode, Writer};
