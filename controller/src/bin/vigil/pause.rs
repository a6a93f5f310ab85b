//! `vigil pause` and `vigil resume`: maintenance mode, in which the controller fails nothing over
//! by itself (an operator's `vigil failover` still runs). Both are idempotent and print the state.
use vigil_proto::v1;

use super::{Client, status_error};

pub async fn run(mut client: Client, datastore: String, pause: bool) -> anyhow::Result<()> {
    let request = v1::MaintenanceRequest { datastore };
    let reply = if pause {
        client.pause(request).await
    } else {
        client.resume(request).await
    }
    .map_err(status_error)?
    .into_inner();
    println!("{}", describe(&reply));
    Ok(())
}

fn describe(r: &v1::MaintenanceReply) -> String {
    let primary = if r.primary.is_empty() {
        "-"
    } else {
        &r.primary
    };
    let state = match (r.paused, r.changed) {
        (true, true) => format!(
            "paused: no automatic failover until `vigil resume {}`",
            r.datastore
        ),
        (true, false) => "was already paused: no automatic failover".to_string(),
        (false, true) => "resumed: automatic failover is on".to_string(),
        (false, false) => "was not paused: automatic failover is on".to_string(),
    };
    format!(
        "{}: {state} (primary {primary}, epoch {})",
        r.datastore, r.epoch
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_says_the_state_and_whether_it_changed() {
        let r = v1::MaintenanceReply {
            datastore: "cache".into(),
            paused: true,
            changed: true,
            epoch: 3,
            primary: "n0".into(),
        };
        assert_eq!(
            describe(&r),
            "cache: paused: no automatic failover until `vigil resume cache` (primary n0, epoch 3)"
        );
        let again = v1::MaintenanceReply {
            changed: false,
            ..r.clone()
        };
        assert!(describe(&again).contains("was already paused"));
        let resumed = v1::MaintenanceReply {
            paused: false,
            primary: String::new(),
            ..r
        };
        assert_eq!(
            describe(&resumed),
            "cache: resumed: automatic failover is on (primary -, epoch 3)"
        );
    }
}
