//! Certificates, tokens and the admin kubeconfig.
//!
//! On first start a CA is generated under `<data-dir>/pki`; every start
//! issues a fresh serving certificate from it for the server's names and
//! addresses, so kubeconfigs written before stay valid. A static token file
//! (`token,user,uid,"group1,group2"` as upstream's `--token-auth-file`)
//! authenticates requests.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use tokio_rustls::rustls;

/// Errors setting up TLS and credentials.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn write_private(path: &Path, data: &str) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(data.as_bytes()).map_err(io(path))
}

/// PEM files of the CA and the serving certificate.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_cert_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Loads or creates the CA in `dir` and issues a serving certificate for `names`.
pub fn ensure_pki(dir: &Path, names: &[String]) -> Result<Pki, TlsError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let ca_crt = dir.join("ca.crt");
    let ca_key = dir.join("ca.key");
    let (ca_pem, ca_key_pair) = if ca_crt.exists() && ca_key.exists() {
        let pem = fs::read_to_string(&ca_crt).map_err(io(&ca_crt))?;
        let key_pem = fs::read_to_string(&ca_key).map_err(io(&ca_key))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::Invalid {
            path: ca_key.display().to_string(),
            reason: e.to_string(),
        })?;
        (pem, key)
    } else {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "svcnet-ca");
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let cert = p.self_signed(&key)?;
        fs::write(&ca_crt, cert.pem()).map_err(io(&ca_crt))?;
        write_private(&ca_key, &key.serialize_pem())?;
        (cert.pem(), key)
    };
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key_pair).map_err(|e| TlsError::Invalid {
        path: ca_crt.display().to_string(),
        reason: e.to_string(),
    })?;
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    for n in names {
        match n.parse::<std::net::IpAddr>() {
            Ok(ip) => p.subject_alt_names.push(SanType::IpAddress(ip)),
            Err(_) => p
                .subject_alt_names
                .push(SanType::DnsName(n.clone().try_into()?)),
        }
    }
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    p.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let cert = p.signed_by(&key, &issuer)?;
    let crt = dir.join("apiserver.crt");
    let kf = dir.join("apiserver.key");
    fs::write(&crt, cert.pem()).map_err(io(&crt))?;
    write_private(&kf, &key.serialize_pem())?;
    Ok(Pki {
        ca_cert_pem: ca_pem,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Reads a supplied certificate and key.
pub fn load_pki(cert: &Path, key: &Path, ca: Option<&Path>) -> Result<Pki, TlsError> {
    let cert_pem = fs::read_to_string(cert).map_err(io(cert))?;
    let key_pem = fs::read_to_string(key).map_err(io(key))?;
    let ca_cert_pem = match ca {
        Some(p) => fs::read_to_string(p).map_err(io(p))?,
        None => cert_pem.clone(),
    };
    Ok(Pki {
        ca_cert_pem,
        cert_pem,
        key_pem,
    })
}

/// The rustls server configuration for `pki` (HTTP/1.1 and h2).
pub fn server_config(pki: &Pki) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut pki.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid {
            path: "serving certificate".into(),
            reason: e.to_string(),
        })?;
    let key = rustls_pemfile::private_key(&mut pki.key_pem.as_bytes())
        .map_err(|e| TlsError::Invalid {
            path: "serving key".into(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| TlsError::Invalid {
            path: "serving key".into(),
            reason: "no private key found".into(),
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A user known from the token file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// Parses a static token file: `token,user,uid[,"group1,group2"]` per line.
pub fn parse_tokens(text: &str) -> Result<Vec<(String, User)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, groups) = match line.split_once(",\"") {
            Some((h, g)) => (
                h,
                g.trim_end_matches('"')
                    .split(',')
                    .map(str::to_string)
                    .collect(),
            ),
            None => (line, Vec::new()),
        };
        let cols: Vec<&str> = head.split(',').collect();
        if cols.len() < 3 || cols[0].is_empty() {
            return Err(format!("line {}: want token,user,uid[,\"groups\"]", i + 1));
        }
        let groups = if groups.is_empty() && cols.len() > 3 {
            vec![cols[3].to_string()]
        } else {
            groups
        };
        out.push((
            cols[0].to_string(),
            User {
                name: cols[1].to_string(),
                uid: cols[2].to_string(),
                groups,
            },
        ));
    }
    Ok(out)
}

/// Creates `<dir>/tokens.csv` with an admin token if missing; returns the admin token.
pub fn ensure_token_file(path: &Path) -> Result<String, TlsError> {
    if let Ok(text) = fs::read_to_string(path) {
        let tokens = parse_tokens(&text).map_err(|reason| TlsError::Invalid {
            path: path.display().to_string(),
            reason,
        })?;
        if let Some((t, _)) = tokens
            .into_iter()
            .find(|(_, u)| u.groups.iter().any(|g| g == "system:masters"))
        {
            return Ok(t);
        }
    }
    let mut raw = [0u8; 24];
    for b in raw.iter_mut() {
        *b = rand::random();
    }
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    write_private(path, &format!("{token},admin,admin,\"system:masters\"\n"))?;
    Ok(token)
}

/// Writes an admin kubeconfig for `server` (an https URL).
pub fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca_pem: &str,
    token: &str,
) -> Result<PathBuf, TlsError> {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: svcnet\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: svcnet\n  context:\n    cluster: svcnet\n    user: admin\n    namespace: default\ncurrent-context: svcnet\n"
    );
    write_private(path, &text)?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file() {
        let t = parse_tokens("abc,admin,1,\"system:masters,dev\"\n# c\n\ndef,bob,2\n").unwrap();
        assert_eq!(t[0].1.groups, vec!["system:masters", "dev"]);
        assert_eq!(t[1].1.name, "bob");
        assert!(parse_tokens("onlytoken\n").is_err());
    }

    #[test]
    fn pki_is_reused() {
        let d = tempfile::tempdir().unwrap();
        let a = ensure_pki(d.path(), &["localhost".into(), "127.0.0.1".into()]).unwrap();
        let b = ensure_pki(d.path(), &["localhost".into()]).unwrap();
        assert_eq!(a.ca_cert_pem, b.ca_cert_pem);
        assert_ne!(a.cert_pem, b.cert_pem);
        server_config(&b).unwrap();
    }
}
