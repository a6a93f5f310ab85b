//! The verdict: the rules that fold every view of the server into one health and a set of
//! reasons ([`rules`]), and the monitor that keeps those views current and re-assesses them
//! ([`monitor`]).
pub mod monitor;
pub mod rules;
