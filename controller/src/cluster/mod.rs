//! Several controllers, one leading: the election on etcd, and what the leader keeps there.
//! Without `--etcd` the one controller leads by itself ([`Leadership::embedded`]) and none of
//! the etcd parts run.
//!
//! - [`leadership`]: whether this controller leads, in which term, and until when.
//! - [`etcd`]: the connection, the keys under the prefix, bounded requests.
//! - [`etcd_tls`]: TLS to etcd, its files and the check at start that etcd takes them.
//! - [`election`]: the lease, its renewals, the campaign, the observed leader, the members.
//! - [`views`]: the view clients are served, mirrored by the leader and watched by followers.
pub mod election;
pub mod etcd;
pub mod etcd_tls;
pub mod leadership;
pub mod views;

pub use leadership::{Leadership, Term};
