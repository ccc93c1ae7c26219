//! What `cluster create --secure` generates: a throwaway CA, a server certificate per node
//! signed by it, and a random password. For test clusters: the CA key is never written.

use std::io::Read;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use super::passfile::Secret;

/// A certificate authority held in memory only.
pub struct TestCa(CertifiedIssuer<'static, KeyPair>);

impl TestCa {
    /// A new self-signed CA named after the cluster.
    pub fn new(cluster: &str) -> Result<Self, String> {
        let key = KeyPair::generate().map_err(|e| format!("cannot make a CA key: {e}"))?;
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| format!("cannot make the CA certificate: {e}"))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            DnType::CommonName,
            format!("citus-recovery test CA {cluster}"),
        );
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        CertifiedIssuer::self_signed(params, key)
            .map(TestCa)
            .map_err(|e| format!("cannot sign the CA certificate: {e}"))
    }

    /// The CA certificate (PEM): the `sslrootcert` clients trust.
    pub fn pem(&self) -> String {
        self.0.pem()
    }

    /// A server certificate for `hostname` (and, for `localhost`, 127.0.0.1 and ::1) and its
    /// key, both PEM.
    pub fn server_cert(&self, hostname: &str) -> Result<(String, String), String> {
        let mut names = vec![hostname.to_string()];
        if hostname == "localhost" {
            names.extend(["127.0.0.1".to_string(), "::1".to_string()]);
        }
        let mut params = CertificateParams::new(names)
            .map_err(|e| format!("cannot make a certificate for {hostname}: {e}"))?;
        params.distinguished_name.push(DnType::CommonName, hostname);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(|e| format!("cannot make a key: {e}"))?;
        let cert = params
            .signed_by(&key, &self.0)
            .map_err(|e| format!("cannot sign the certificate of {hostname}: {e}"))?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// 32 hex digits from the kernel's random source: safe in a passfile and a conninfo unquoted.
pub fn random_password() -> std::io::Result<Secret> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(Secret::new(
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    ))
}
