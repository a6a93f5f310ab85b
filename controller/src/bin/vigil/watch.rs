//! `vigil watch`: topology events (+switch-master, +sdown, -sdown, +odown) as they happen, one
//! line each.
use tokio_stream::StreamExt;
use vigil_proto::v1;

use super::{Client, status_error};

pub async fn run(mut client: Client, datastore: Option<String>) -> anyhow::Result<()> {
    let mut events = client
        .watch(v1::WatchRequest {
            datastore: datastore.unwrap_or_default(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    while let Some(e) = events.next().await {
        let e = e.map_err(status_error)?;
        println!(
            "{} {} epoch={} node={} {}",
            e.datastore, e.kind, e.epoch, e.node_id, e.detail
        );
    }
    Ok(())
}
