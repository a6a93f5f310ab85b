//! `vigil certs`: a CA, and the certificates of one installation signed by it, in one folder:
//! the controllers', the operator's (the CLI's), and one per node of a data store, each naming its
//! holder in a `vigil://` SAN URI (see `vigil_proto::tls`). For a first installation, a demo or
//! tests; an organisation with its own CA signs certificates with the same SANs instead.
use std::{
    collections::HashSet,
    fs::{DirBuilder, OpenOptions, Permissions},
    io::Write,
    net::IpAddr,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use vigil_proto::tls::{CONTROLLER_SERVER_NAME, Identity};

/// The operator the CLI's certificate names unless told.
pub const DEFAULT_OPERATOR: &str = "admin";
/// How long the certificates are valid: a year, so that renewing them is a yearly chore rather
/// than a surprise.
pub const DEFAULT_DAYS: u32 = 365;
/// Longest validity accepted: ten years.
const MAX_DAYS: u32 = 3_650;
/// Certificates are valid from this long before they are made, for clocks a little behind.
const BACKDATE: time::Duration = time::Duration::hours(1);

#[derive(clap::Args)]
pub struct CertsArgs {
    /// The folder to write into (made mode 0700).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The data store whose nodes get certificates.
    #[arg(long, value_name = "NAME")]
    datastore: String,
    /// The node ids, comma-separated: each gets NODE.pem and NODE-key.pem.
    #[arg(
        long,
        value_name = "NODE[,NODE...]",
        value_delimiter = ',',
        required = true
    )]
    nodes: Vec<String>,
    /// More names or IP addresses the controllers' certificate carries, comma-separated (it
    /// always carries vigil-controller, localhost and 127.0.0.1).
    #[arg(long, value_name = "HOST[,HOST...]", value_delimiter = ',')]
    controller_hosts: Vec<String>,
    #[arg(long, value_name = "NAME",
          help = vigil_proto::cli::with_default("The operator the CLI's certificate names (vigil://operator/NAME)", DEFAULT_OPERATOR))]
    operator: Option<String>,
    #[arg(long, value_name = "N",
          help = vigil_proto::cli::with_default("Days the CA and the certificates are valid", DEFAULT_DAYS))]
    days: Option<u32>,
    /// Replace an existing CA in DIR (every certificate it signed stops being trusted).
    #[arg(long)]
    force: bool,
}

/// One file to write: its name in the folder, its PEM text, and whether it is a private key.
struct Pem {
    name: String,
    text: String,
    secret: bool,
}

pub fn run(args: CertsArgs) -> anyhow::Result<()> {
    let days = args.days.unwrap_or(DEFAULT_DAYS);
    if days == 0 || days > MAX_DAYS {
        bail!("--days: {days} is outside 1..={MAX_DAYS}");
    }
    let operator = args.operator.as_deref().unwrap_or(DEFAULT_OPERATOR);
    let operator = identity("--operator", format!("vigil://operator/{operator}"))?;
    let mut nodes = Vec::new();
    for node in &args.nodes {
        let uri = format!("vigil://node/{}/{}", args.datastore, node.trim());
        nodes.push((
            node.trim().to_string(),
            identity("--datastore/--nodes", uri)?,
        ));
    }
    let mut controller_sans = vec![
        CONTROLLER_SERVER_NAME.to_string(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    for host in &args.controller_hosts {
        let host = host.trim();
        if host.is_empty() || host.contains(char::is_whitespace) {
            bail!("--controller-hosts: {host:?} is not a host name or IP address");
        }
        if !controller_sans.iter().any(|h| h == host) {
            controller_sans.push(host.to_string());
        }
    }
    let ca_path = args.out.join("ca.pem");
    if ca_path.exists() && !args.force {
        bail!(
            "{} exists: refusing to replace the CA, which would untrust every certificate it \
             signed (pass --force to replace it)",
            ca_path.display()
        );
    }

    let now = time::OffsetDateTime::now_utc();
    let (not_before, not_after) = (now - BACKDATE, now + time::Duration::days(days.into()));
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "vigil CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (ca_params.not_before, ca_params.not_after) = (not_before, not_after);
    let ca_key = KeyPair::generate().context("generating the CA's key")?;
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .context("signing the CA's certificate")?;
    let mut files = vec![
        Pem {
            name: "ca.pem".into(),
            text: ca_cert.pem(),
            secret: false,
        },
        Pem {
            name: "ca-key.pem".into(),
            text: ca_key.serialize_pem(),
            secret: true,
        },
    ];
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |stem: &str, id: &Identity, dns: &[String]| -> anyhow::Result<[Pem; 2]> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, id.uri());
        params
            .subject_alt_names
            .push(SanType::URI(id.uri().try_into()?));
        for name in dns {
            params.subject_alt_names.push(match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    name.as_str()
                        .try_into()
                        .with_context(|| format!("{name:?} is not a DNS name"))?,
                ),
            });
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Only a controller's certificate serves; every certificate may be a client's.
        params.extended_key_usages = match id {
            Identity::Controller => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            _ => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.use_authority_key_identifier_extension = true;
        (params.not_before, params.not_after) = (not_before, not_after);
        let key = KeyPair::generate()?;
        let cert = params
            .signed_by(&key, &issuer)
            .with_context(|| format!("signing the certificate of {id}"))?;
        Ok([
            Pem {
                name: format!("{stem}.pem"),
                text: cert.pem(),
                secret: false,
            },
            Pem {
                name: format!("{stem}-key.pem"),
                text: key.serialize_pem(),
                secret: true,
            },
        ])
    };
    files.extend(leaf("controller", &Identity::Controller, &controller_sans)?);
    files.extend(leaf("cli", &operator, &[])?);
    for (node, id) in &nodes {
        files.extend(leaf(node, id, &[])?);
    }
    // A node named "ca" or "controller-key" would overwrite another file.
    let mut names = HashSet::new();
    for f in &files {
        if !names.insert(f.name.as_str()) {
            bail!(
                "--nodes: two files would be named {}: rename the node that clashes with \
                 ca, controller, cli or another node",
                f.name
            );
        }
    }
    write_all(&args.out, &files)?;
    println!(
        "wrote to {}: ca.pem (ca-key.pem), controller.pem (vigil://controller, DNS {}), \
         cli.pem ({operator}), and {} node certificates ({})",
        args.out.display(),
        controller_sans.join(", "),
        nodes.len(),
        nodes
            .iter()
            .map(|(n, _)| format!("{n}.pem"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// The identity `uri` names, or an error naming the flag it came from.
fn identity(flag: &str, uri: String) -> anyhow::Result<Identity> {
    uri.parse().with_context(|| flag.to_string())
}

/// Writes every file into `dir` (made, or kept, mode 0700): keys mode 0600, certificates 0644.
fn write_all(dir: &Path, files: &[Pem]) -> anyhow::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("making {}", dir.display()))?;
    std::fs::set_permissions(dir, Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", dir.display()))?;
    for f in files {
        let path = dir.join(&f.name);
        let mode = if f.secret { 0o600 } else { 0o644 };
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        // An existing file keeps its mode through open(): set it, before the key is written.
        file.set_permissions(Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
        file.write_all(f.text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
