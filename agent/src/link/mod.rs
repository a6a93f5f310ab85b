//! The agent's link to the controller: the gRPC session that carries verdicts up and commands
//! down ([`stream`]), and the conversions between the agent's types and the protocol's
//! ([`wire`]).
pub mod stream;
pub mod wire;
