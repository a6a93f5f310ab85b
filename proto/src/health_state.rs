//! A node's health as Prometheus sees it: one series per state, labelled `state`, 1 for the
//! current state and 0 for the others. Both daemons export it so (`vigil_agent_health`,
//! `vigil_controller_node_health`), with the same state names, so one alert rule or dashboard
//! query reads either: `max by (node) (x{state="down"})` rather than comparing magic numbers.
use crate::v1::Health;

/// Every state, in order of severity, with `unknown` (no verdict yet) last.
pub const STATES: [Health; 5] = [
    Health::Healthy,
    Health::Degraded,
    Health::Unhealthy,
    Health::Down,
    Health::Unspecified,
];

/// The `state` label of `health`.
pub fn name(health: Health) -> &'static str {
    match health {
        Health::Healthy => "healthy",
        Health::Degraded => "degraded",
        Health::Unhealthy => "unhealthy",
        Health::Down => "down",
        Health::Unspecified => "unknown",
    }
}

/// Each state's label and its value when the health is `current`: 1 for it, 0 for the others.
pub fn values(current: Health) -> impl Iterator<Item = (&'static str, i64)> {
    STATES
        .into_iter()
        .map(move |s| (name(s), i64::from(s == current)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_the_current_state_is_one_and_names_are_distinct() {
        for current in STATES {
            let values: Vec<_> = values(current).collect();
            assert_eq!(values.len(), 5);
            assert_eq!(
                values.iter().filter(|(_, v)| *v == 1).collect::<Vec<_>>(),
                vec![&(name(current), 1)]
            );
        }
        let mut names: Vec<_> = STATES.into_iter().map(name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names,
            ["degraded", "down", "healthy", "unhealthy", "unknown"]
        );
    }
}
