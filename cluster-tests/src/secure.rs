//! A secured cluster's setup for tests: a local CA and certificates (`txmq certs create`), TLS
//! on both ports, and authentication with an administrator.

use std::path::Path;

use anyhow::{Result, ensure};
use txmq_client::{ClientOptions, ClientTls, Credentials};

use crate::txmq_binary;

/// The bootstrap administrator of a secured test cluster.
pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-password-1";

/// What a secured cluster's nodes and clients need.
pub struct Secured {
    /// `txmq serve` flags: TLS on the client port, mutual TLS on the peer port, auth on.
    pub serve_flags: Vec<String>,
    /// TLS trusting the CA, as the administrator.
    pub admin_client: ClientOptions,
}

/// Runs `txmq certs create DIR`: a CA (kept if present) and fresh node and client certificates.
pub fn create_certs(dir: &Path) -> Result<()> {
    let out = std::process::Command::new(txmq_binary()?)
        .args(["certs", "create"])
        .arg(dir)
        .output()?;
    ensure!(
        out.status.success(),
        "txmq certs create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Client options trusting the CA in `certs`, with `user` and `password` (none if `user` is
/// empty).
pub fn client_options(certs: &Path, user: &str, password: &str) -> Result<ClientOptions> {
    Ok(ClientOptions {
        tls: Some(ClientTls {
            ca_pem: std::fs::read(certs.join("ca.pem"))?,
            ..Default::default()
        }),
        credentials: (!user.is_empty()).then(|| Credentials {
            user: user.into(),
            password: password.into(),
        }),
        ..Default::default()
    })
}

/// Writes certificates (under `dir/certs`) and the admin file (`dir/admin`).
pub fn secure(dir: &Path) -> Result<Secured> {
    let certs = dir.join("certs");
    create_certs(&certs)?;
    let admin_file = dir.join("admin");
    std::fs::write(&admin_file, format!("{ADMIN}:{ADMIN_PASSWORD}\n"))?;
    let path = |name: &str| certs.join(name).display().to_string();
    let serve_flags = vec![
        "--tls-cert".into(),
        path("node.pem"),
        "--tls-key".into(),
        path("node.key"),
        "--peer-tls-cert".into(),
        path("node.pem"),
        "--peer-tls-key".into(),
        path("node.key"),
        "--peer-tls-ca".into(),
        path("ca.pem"),
        "--auth-admin-file".into(),
        admin_file.display().to_string(),
    ];
    Ok(Secured {
        serve_flags,
        admin_client: client_options(&certs, ADMIN, ADMIN_PASSWORD)?,
    })
}
