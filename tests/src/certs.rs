//! [`Certs`]: one installation's certificates, made by the real `vigil certs` in a temporary
//! folder: the CA, the controllers', the operator's (the CLI's) and one per node, and the flags
//! that hand them to each part.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Result, bail};

use crate::{WAIT, output_within, workspace_bin};

/// The output of `vigil certs` for data store `datastore` and its nodes, removed on drop.
pub struct Certs {
    pub datastore: String,
    dir: tempfile::TempDir,
}

impl Certs {
    /// Runs `vigil certs --datastore DATASTORE --nodes NODES` into a fresh temporary folder.
    pub fn make(datastore: &str, nodes: &[&str]) -> Result<Self> {
        Self::make_for(datastore, nodes, &[])
    }

    /// As [`Certs::make`], the controllers' certificate also naming `controller_hosts` (the
    /// addresses agents on other hosts, or in network namespaces, reach it at).
    pub fn make_for(datastore: &str, nodes: &[&str], controller_hosts: &[&str]) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("vigil-certs-").tempdir()?;
        let mut cmd = Command::new(workspace_bin("vigil")?);
        cmd.args(["certs", "--out"])
            .arg(dir.path().join("pki"))
            .args(["--datastore", datastore, "--nodes", &nodes.join(",")]);
        if !controller_hosts.is_empty() {
            cmd.args(["--controller-hosts", &controller_hosts.join(",")]);
        }
        let out = output_within(&mut cmd, WAIT)?;
        if !out.status.success() {
            bail!(
                "vigil certs failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Self {
            datastore: datastore.to_string(),
            dir,
        })
    }

    /// The folder the files are in.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    /// `NAME.pem`: `ca`, `controller`, `cli`, or a node id.
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir().join(format!("{name}.pem"))
    }

    /// `NAME-key.pem`.
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir().join(format!("{name}-key.pem"))
    }

    /// The controller's flags: its certificate, and the CA its clients' certificates come from.
    pub fn controller_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            path(&self.cert("controller")),
            "--tls-key".into(),
            path(&self.key("controller")),
            "--tls-client-ca".into(),
            path(&self.cert("ca")),
        ]
    }

    /// An agent's or the CLI's flags, presenting certificate `name` (a node id, or `cli`).
    pub fn client_args(&self, name: &str) -> Vec<String> {
        vec![
            "--tls-ca".into(),
            path(&self.cert("ca")),
            "--tls-cert".into(),
            path(&self.cert(name)),
            "--tls-key".into(),
            path(&self.key(name)),
        ]
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}
