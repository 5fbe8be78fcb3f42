//! A private CA and a server certificate for development and tests.
//!
//! `make run` and the integration tests use this so that clients can verify
//! the server for real (trusting `ca.pem`) instead of turning verification off.
//! Production uses certificates from a real CA (e.g. ACME) via `[tls]`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};

/// Paths of a generated certificate set.
#[derive(Debug, Clone)]
pub struct DevCert {
    /// The CA certificate clients should trust.
    pub ca_file: PathBuf,
    /// Server chain (leaf, then CA).
    pub cert_file: PathBuf,
    /// Server private key.
    pub key_file: PathBuf,
}

/// Create `ca.pem`, `cert.pem` and `key.pem` in `dir` unless they exist.
/// The server certificate covers `names` (DNS names) plus 127.0.0.1 and ::1.
pub fn ensure(dir: &Path, names: &[&str]) -> anyhow::Result<DevCert> {
    let set = DevCert {
        ca_file: dir.join("ca.pem"),
        cert_file: dir.join("cert.pem"),
        key_file: dir.join("key.pem"),
    };
    if set.ca_file.exists() && set.cert_file.exists() && set.key_file.exists() {
        return Ok(set);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "postern development CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;

    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("localhost"),
    );
    for ip in ["127.0.0.1", "::1"] {
        let ip: IpAddr = ip.parse()?;
        params.subject_alt_names.push(SanType::IpAddress(ip));
    }
    let key = KeyPair::generate()?;
    let leaf = params.signed_by(&key, &ca, &ca_key)?;

    write_private(&set.key_file, key.serialize_pem().as_bytes())?;
    std::fs::write(&set.cert_file, format!("{}{}", leaf.pem(), ca.pem()))?;
    std::fs::write(&set.ca_file, ca.pem())?;
    Ok(set)
}

fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(data)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_pair_loads_into_rustls() {
        let dir = tempfile::tempdir().unwrap();
        let set = super::ensure(dir.path(), &["mail.example.test", "localhost"]).unwrap();
        crate::tls::server_config(&set.cert_file, &set.key_file).unwrap();
        // A second call keeps the existing files.
        let before = std::fs::read(&set.cert_file).unwrap();
        super::ensure(dir.path(), &["other"]).unwrap();
        assert_eq!(before, std::fs::read(&set.cert_file).unwrap());
    }
}
