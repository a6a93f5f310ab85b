//! Who a controller is among several: its name and where agents and clients reach it, as it
//! announces itself in etcd (its member key, and its value in the election).
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerInfo {
    pub name: String,
    /// The gRPC URL agents are redirected to while this controller leads.
    pub grpc: String,
    /// HOST:PORT of its Sentinel-compatible endpoint.
    pub sentinel: String,
}

impl ControllerInfo {
    /// As etcd keeps it.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// As etcd keeps it; None for a value this version cannot read.
    pub fn from_json(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_round_trips_through_json_and_garbage_is_none() {
        let c = ControllerInfo {
            name: "c1".into(),
            grpc: "http://10.0.0.1:7420".into(),
            sentinel: "10.0.0.1:26379".into(),
        };
        assert_eq!(ControllerInfo::from_json(&c.to_json()), Some(c.clone()));
        assert_eq!(ControllerInfo::from_json(b"{\"name\":1}"), None);
    }
}
