//! Certificates made at run time: a throwaway CA and a leaf for `localhost` and `127.0.0.1`.

use std::io;
use std::sync::Arc;

#[cfg(feature = "tls")]
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
#[cfg(feature = "tls")]
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A fresh CA, and a rustls server config whose certificate it signed.
pub struct TlsMaterial {
    /// The CA certificate, PEM, for a client's extra roots.
    pub ca_pem: String,
    /// The same CA certificate, DER.
    pub ca_der: Vec<u8>,
    /// A server config presenting the leaf (and the CA) for `localhost` and `127.0.0.1`.
    pub config: Arc<rustls::ServerConfig>,
}

#[cfg(feature = "tls")]
fn tls_error(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!(
        "making the test server's TLS certificates: {what}: {e}"
    ))
}

/// Without the `tls` feature there is no certificate generator: serving TLS is unsupported.
#[cfg(not(feature = "tls"))]
pub fn generate() -> io::Result<TlsMaterial> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "sitebucket-testserver was built without its `tls` feature: it serves plain TCP only",
    ))
}

/// Makes a new CA and leaf certificate (ECDSA P-256) and the server config that presents them.
#[cfg(feature = "tls")]
pub fn generate() -> io::Result<TlsMaterial> {
    let mut ca_params = CertificateParams::new(Vec::new()).map_err(|e| tls_error("CA", e))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sitebucket-testserver CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(|e| tls_error("CA key", e))?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(|e| tls_error("CA", e))?;

    let mut leaf_params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(|e| tls_error("leaf", e))?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.use_authority_key_identifier_extension = true;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().map_err(|e| tls_error("leaf key", e))?;
    let leaf = leaf_params
        .signed_by(&leaf_key, &ca)
        .map_err(|e| tls_error("leaf", e))?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", e))?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), ca.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .map_err(|e| tls_error("server config", e))?;
    let ca_der: CertificateDer<'static> = ca.der().clone();
    Ok(TlsMaterial {
        ca_pem: ca.pem(),
        ca_der: ca_der.to_vec(),
        config: Arc::new(config),
    })
}
