//! `vigil failover`: move the primary role, by a planned switchover of a live primary or a forced
//! promotion when the primary is already gone; prints the new primary and its epoch.
use vigil_proto::v1;

use super::{Client, status_error};

pub async fn run(mut client: Client, datastore: String, to: Option<String>) -> anyhow::Result<()> {
    let reply = client
        .failover(v1::FailoverRequest {
            datastore: datastore.clone(),
            to_node: to.unwrap_or_default(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    println!(
        "{datastore}: primary is now {} (epoch {})",
        reply.new_primary, reply.epoch
    );
    Ok(())
}
