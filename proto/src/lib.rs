//! vigil.v1: the protocol between agents, the controller and the `vigil` CLI, generated from
//! `proto/vigil/v1/vigil.proto` by tonic and prost, and the verdict reason bits.
pub mod reason;

pub use reason::Reason;

pub mod v1 {
    tonic::include_proto!("vigil.v1");
}

/// The protocol version agents and controller exchange in Hello and Welcome. Both refuse a peer
/// with another version, with a message naming both.
pub const PROTOCOL_VERSION: u32 = 1;
