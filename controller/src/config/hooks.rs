//! The hooks' settings: the notify and client-reconfig commands, each checked at start to be an
//! executable file (a typo found when the controller starts, not at the first failover), and
//! their timeout.
use std::time::Duration;

use super::{ControllerSettings, bad};
use crate::{
    error::Result,
    hooks::{DEFAULT_HOOK_TIMEOUT_SECS, Hook, HookConfig, MAX_HOOK_TIMEOUT_SECS, unrunnable},
};

pub(super) fn from_settings(s: &ControllerSettings) -> Result<HookConfig> {
    let command = |hook: Hook, path: &Option<std::path::PathBuf>| match path {
        Some(p) => match unrunnable(p) {
            Some(why) => Err(bad(hook.setting(), why)),
            None => Ok(Some(p.clone())),
        },
        None => Ok(None),
    };
    let timeout = match s.hook_timeout_secs.unwrap_or(DEFAULT_HOOK_TIMEOUT_SECS) {
        n @ 1..=MAX_HOOK_TIMEOUT_SECS => Duration::from_secs(n),
        n => {
            return Err(bad(
                "hook_timeout_secs",
                format!("{n} s is outside 1..={MAX_HOOK_TIMEOUT_SECS} s"),
            ));
        }
    };
    Ok(HookConfig {
        notify: command(Hook::Notify, &s.notify_command)?,
        client_reconfig: command(Hook::ClientReconfig, &s.client_reconfig_command)?,
        timeout,
    })
}
