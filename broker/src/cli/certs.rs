//! `txmq certs create DIR`: a local CA and certificates signed by it, for trying TLS (used by
//! `txmq dev --secure` and the tests). Production clusters take their certificates from their
//! own CA or cert-manager (docs/security.md).

use std::path::{Path, PathBuf};

use clap::Args;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// Arguments of `txmq certs create`.
#[derive(Debug, Clone, Args)]
pub struct CreateCertsArgs {
    /// Folder to write into: ca.pem/ca.key (kept and reused if present), node.pem/node.key
    /// (server and peer certificate) and client.pem/client.key (a client certificate).
    pub dir: PathBuf,
    /// Extra names or addresses the node certificate is valid for (besides localhost,
    /// 127.0.0.1 and ::1).
    #[arg(long = "host")]
    pub hosts: Vec<String>,
}

/// The files `create` wrote.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub ca: PathBuf,
    pub node_cert: PathBuf,
    pub node_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Writes a CA (unless `dir` holds one) and a fresh node and client certificate signed by it.
pub fn create(dir: &Path, hosts: &[String]) -> Result<CertFiles, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let failed = |e: rcgen::Error| format!("cannot make a certificate: {e}");
    let (ca_cert, ca_key) = ca(dir)?;
    let issuer = (&ca_cert, &ca_key);
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    names.extend(hosts.iter().cloned());
    let files = CertFiles {
        ca: dir.join("ca.pem"),
        node_cert: dir.join("node.pem"),
        node_key: dir.join("node.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    };
    let both = [
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let (cert, key) = leaf("txmq node", names, &both, issuer).map_err(failed)?;
    write(&files.node_cert, &cert)?;
    write(&files.node_key, &key)?;
    let (cert, key) = leaf("txmq client", Vec::new(), &both[1..], issuer).map_err(failed)?;
    write(&files.client_cert, &cert)?;
    write(&files.client_key, &key)?;
    Ok(files)
}

/// The CA in `dir`, made first if missing. An existing CA is rebuilt from its key and the
/// same parameters: certificates it signs then name the same issuer and verify against the
/// `ca.pem` already handed out.
fn ca(dir: &Path) -> Result<(Certificate, KeyPair), String> {
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    let failed = |e: rcgen::Error| format!("cannot make the CA: {e}");
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "txmq local CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    if cert_path.exists() && key_path.exists() {
        let text = std::fs::read_to_string(&key_path)
            .map_err(|e| format!("cannot read {}: {e}", key_path.display()))?;
        let key = KeyPair::from_pem(&text)
            .map_err(|e| format!("{} is not a usable key: {e}", key_path.display()))?;
        let cert = params.self_signed(&key).map_err(failed)?;
        return Ok((cert, key));
    }
    let key = KeyPair::generate().map_err(failed)?;
    let cert = params.self_signed(&key).map_err(failed)?;
    write(&cert_path, &cert.pem())?;
    write(&key_path, &key.serialize_pem())?;
    Ok((cert, key))
}

fn leaf(
    name: &str,
    sans: Vec<String>,
    usages: &[ExtendedKeyUsagePurpose],
    (ca_cert, ca_key): (&Certificate, &KeyPair),
) -> Result<(String, String), rcgen::Error> {
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = usages.to_vec();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca_cert, ca_key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The administrator of a `txmq dev --secure` cluster: `dir/admin` holds `admin:PASSWORD`
/// (made once with a random password, then reused). Returns the file and the password.
pub fn dev_admin(dir: &Path) -> Result<(PathBuf, String), String> {
    let path = dir.join("admin");
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Some((_, password)) = text.trim().split_once(':')
    {
        return Ok((path, password.to_string()));
    }
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let password: String = (0..20)
        .map(|_| ALPHABET[(OsRng.next_u32() as usize) % ALPHABET.len()] as char)
        .collect();
    write(&path, &format!("admin:{password}\n"))?;
    Ok((path, password))
}

/// Writes a file readable by its owner only (keys are secrets), replacing it atomically so a
/// node watching it never reads half a file.
fn write(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&temporary, path));
    written.map_err(|e| format!("cannot write {}: {e}", path.display()))
}
