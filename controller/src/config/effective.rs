//! The effective settings `vigil-controller --print-config` shows: every default as settings
//! (some follow from the validated configuration: the name from the host, the advertised
//! addresses from the listen addresses), under what flags, environment and file gave.

use super::{
    ControllerConfig, ControllerSettings, DEFAULT_DATA_DIR, DEFAULT_ETCD_PREFIX,
    DEFAULT_GRPC_LISTEN, DEFAULT_MAX_DATASTORES, DEFAULT_METRICS_LISTEN,
    DEFAULT_SENTINEL_IDLE_TIMEOUT_SECS, DEFAULT_SENTINEL_LISTEN, DEFAULT_SENTINEL_MAX_CLIENTS,
    DEFAULT_SENTINEL_USER, bad,
};
use crate::{
    cluster::election::DEFAULT_LEADER_LEASE_SECS,
    error::Result,
    store::settings::{
        DEFAULT_DESIRED_REFRESH_MS, DEFAULT_FENCE_DEADLINE_MS, DEFAULT_GRACE_MS,
        DEFAULT_HEARTBEAT_MS, DEFAULT_LEASE_MARGIN_MS, DEFAULT_LEASE_MS, DEFAULT_LINK_BOUND_MS,
        DEFAULT_MIN_FAILOVER_INTERVAL_MS, DEFAULT_QUIET_HEARTBEAT_MS, DEFAULT_SILENCE_MS,
    },
};

impl ControllerSettings {
    /// Every setting's default as settings: what a controller given nothing would use, with
    /// `name`, `advertise_grpc` and `advertise_sentinel` as `config` works them out.
    pub fn defaults(config: &ControllerConfig) -> Self {
        Self {
            grpc_listen: Some(DEFAULT_GRPC_LISTEN.to_string()),
            sentinel_listen: Some(DEFAULT_SENTINEL_LISTEN.to_string()),
            metrics_listen: Some(DEFAULT_METRICS_LISTEN.to_string()),
            data_dir: Some(DEFAULT_DATA_DIR.into()),
            silence_ms: Some(DEFAULT_SILENCE_MS),
            grace_ms: Some(DEFAULT_GRACE_MS),
            min_failover_interval_ms: Some(DEFAULT_MIN_FAILOVER_INTERVAL_MS),
            link_bound_ms: Some(DEFAULT_LINK_BOUND_MS),
            heartbeat_ms: Some(DEFAULT_HEARTBEAT_MS),
            desired_refresh_ms: Some(DEFAULT_DESIRED_REFRESH_MS),
            quiet_heartbeat_ms: Some(DEFAULT_QUIET_HEARTBEAT_MS),
            lease_ms: Some(DEFAULT_LEASE_MS),
            lease_margin_ms: Some(DEFAULT_LEASE_MARGIN_MS),
            fence_deadline_ms: Some(DEFAULT_FENCE_DEADLINE_MS),
            etcd_prefix: Some(DEFAULT_ETCD_PREFIX.to_string()),
            name: Some(config.me.name.clone()),
            leader_lease_secs: Some(DEFAULT_LEADER_LEASE_SECS),
            advertise_grpc: Some(config.me.grpc.clone()),
            advertise_sentinel: Some(config.me.sentinel.clone()),
            max_datastores: Some(DEFAULT_MAX_DATASTORES),
            sentinel_user: Some(DEFAULT_SENTINEL_USER.to_string()),
            sentinel_max_clients: Some(DEFAULT_SENTINEL_MAX_CLIENTS),
            sentinel_idle_timeout_secs: Some(DEFAULT_SENTINEL_IDLE_TIMEOUT_SECS),
            hook_timeout_secs: Some(crate::hooks::DEFAULT_HOOK_TIMEOUT_SECS),
            ..Self::default()
        }
    }

    /// The effective settings as TOML values, defaults filled in, for `--print-config`.
    pub fn effective(self, config: &ControllerConfig) -> Result<toml::Table> {
        toml::Table::try_from(self.over(Self::defaults(config)))
            .map_err(|e| bad("print_config", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use clap::{Args, Command};

    use super::*;

    #[test]
    fn every_setting_with_a_default_is_in_the_defaults_print_config_shows() {
        let config = ControllerConfig::try_from(ControllerSettings {
            grpc_listen: Some("127.0.0.1:7500".into()),
            ..ControllerSettings::default()
        })
        .unwrap();
        let defaults = toml::Table::try_from(ControllerSettings::defaults(&config)).unwrap();
        // Off unless given.
        let without = [
            "etcd",
            "etcd_ca",
            "etcd_cert",
            "etcd_key",
            "sentinel_password_file",
            "sentinel_tls_cert",
            "sentinel_tls_key",
            "sentinel_tls_client_ca",
            "tls_cert",
            "tls_key",
            "tls_client_ca",
            "notify_command",
            "client_reconfig_command",
        ];
        let command = ControllerSettings::augment_args(Command::new("vigil-controller"));
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            assert_eq!(
                defaults.contains_key(id),
                !without.contains(&id),
                "{id}: a default must be listed in ControllerSettings::defaults, or the setting here"
            );
        }
        assert_eq!(
            defaults["advertise_grpc"].as_str(),
            Some("http://127.0.0.1:7500"),
            "follows grpc_listen"
        );
        let effective = ControllerSettings {
            grpc_listen: Some("127.0.0.1:7500".into()),
            ..ControllerSettings::default()
        }
        .effective(&config)
        .unwrap();
        assert_eq!(effective["grpc_listen"].as_str(), Some("127.0.0.1:7500"));
        assert_eq!(effective["refuse_unknown"].as_bool(), Some(false));
        assert!(!effective.contains_key("datastore"), "no data store listed");
    }
}
