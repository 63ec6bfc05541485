//! TLS inside the byte pipeline, with rustls (itself sans-IO).
//!
//! Drivers never see TLS: the core turns ciphertext from the socket into plaintext for the
//! HTTP reader, and plaintext requests into ciphertext to transmit. Verification is always
//! on: Mozilla's roots (`webpki-roots`) plus any extra PEM roots from the config. The clock
//! rustls checks certificates against is the wall-clock time the driver passed in, through
//! rustls's time-provider hook, so this module reads no clock either. The handshake's own
//! cryptographic randomness is the one use of OS randomness in the core.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::time_provider::TimeProvider;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// Plaintext is read out of rustls into blocks of this size, which the messages sliced from
/// them share (one TLS record holds at most 16 KiB).
const PLAIN_BLOCK: usize = 32 * 1024;
/// A block for a little plaintext (a keep-alive, a head): an idle stream holds no more.
const PLAIN_SMALL: usize = 1024;

/// A TLS setup error: the extra root certificates could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfigError(pub String);

impl std::fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsConfigError {}

/// Parses PEM text into root certificates; an input with no certificate is an error.
pub fn parse_pem_roots(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let mut roots = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| TlsConfigError(format!("invalid PEM certificate: {e}")))?;
        roots.push(cert);
    }
    if roots.is_empty() {
        return Err(TlsConfigError(
            "no PEM certificate (-----BEGIN CERTIFICATE-----) found in the extra roots".into(),
        ));
    }
    Ok(roots)
}

/// Wall-clock seconds handed in by the driver, read by rustls when it checks certificates.
#[derive(Debug, Default)]
struct HandedTime(AtomicU64);

impl TimeProvider for HandedTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            self.0.load(Ordering::Relaxed),
        )))
    }
}

/// The crypto provider the client uses, chosen at build time by this crate's features:
/// `aws-lc-rs` (the default: its key exchange prefers the post-quantum hybrid X25519MLKEM768),
/// else `ring` (for platforms that cannot build aws-lc; classical key exchange only), else the
/// provider the process installed with `CryptoProvider::install_default`.
pub(crate) fn crypto_provider() -> Result<Arc<rustls::crypto::CryptoProvider>, TlsConfigError> {
    #[cfg(feature = "aws-lc-rs")]
    {
        Ok(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
    }
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    {
        // rustls 0.23.48 deprecates this provider because it has no post-quantum key
        // exchange. Whoever turns on `ring` instead of `aws-lc-rs` has chosen that trade.
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        Ok(Arc::new(provider))
    }
    #[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
    {
        rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .ok_or_else(|| {
                TlsConfigError(
                    "no TLS crypto provider: turn on sitebucket's `aws-lc-rs` or `ring` feature, \
                     or install one with rustls::crypto::CryptoProvider::install_default"
                        .into(),
                )
            })
    }
}

/// The client-side TLS settings of one stream, built once.
#[derive(Debug, Clone)]
pub(crate) struct TlsContext {
    config: Arc<ClientConfig>,
    time: Arc<HandedTime>,
}

impl TlsContext {
    /// Mozilla roots plus `extra_pem` (may be empty).
    pub(crate) fn new(extra_pem: &[u8]) -> Result<Self, TlsConfigError> {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if !extra_pem.is_empty() {
            for cert in parse_pem_roots(extra_pem)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsConfigError(format!("unusable root certificate: {e}")))?;
            }
        }
        let time = Arc::new(HandedTime::default());
        let provider = crypto_provider()?;
        let config = ClientConfig::builder_with_details(provider, time.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsConfigError(format!("TLS setup failed: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
            time,
        })
    }

    /// Starts a handshake with `host` at wall-clock time `unix_secs`.
    pub(crate) fn connect(&self, host: &str, unix_secs: u64) -> Result<TlsSession, String> {
        self.time.0.store(unix_secs, Ordering::Relaxed);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("invalid TLS server name {host:?}: {e}"))?;
        let conn = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| format!("TLS setup failed: {e}"))?;
        Ok(TlsSession {
            conn,
            plain: BytesMut::new(),
        })
    }
}

/// One TLS connection's state.
#[derive(Debug)]
pub(crate) struct TlsSession {
    conn: ClientConnection,
    /// The rest of the current plaintext block: decrypted bytes are read into its start and
    /// split off, frozen, so the framer can slice messages out of them without a copy.
    plain: BytesMut,
}

impl TlsSession {
    /// Queues plaintext to send (buffered until the handshake completes).
    pub(crate) fn write_plaintext(&mut self, data: &[u8]) {
        // rustls buffers plaintext written before the handshake ends; its default buffer
        // limit (64 KiB) is far above a request head, so the whole head is accepted.
        let _ = io::Write::write_all(&mut self.conn.writer(), data);
    }

    /// Ciphertext waiting to go to the peer.
    pub(crate) fn take_transmit(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail.
            if self.conn.write_tls(&mut out).is_err() {
                break;
            }
        }
        out
    }

    /// Feeds ciphertext; plaintext is handed to `sink` as it is decrypted, until `sink`
    /// returns `false`.
    pub(crate) fn read_ciphertext(
        &mut self,
        input: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), String> {
        self.read_ciphertext_bytes(input, &mut |plain: Bytes| sink(&plain))
    }

    /// [`read_ciphertext`](Self::read_ciphertext) handing out plaintext as [`Bytes`] split
    /// off a reused block (see [`PLAIN_BLOCK`]), for the reader to frame without a copy.
    pub(crate) fn read_ciphertext_bytes(
        &mut self,
        mut input: &[u8],
        sink: &mut dyn FnMut(Bytes) -> bool,
    ) -> Result<(), String> {
        while !input.is_empty() {
            let n = self
                .conn
                .read_tls(&mut input)
                .map_err(|e| format!("TLS read failed: {e}"))?;
            if n == 0 {
                break;
            }
            let mut want = self
                .conn
                .process_new_packets()
                .map_err(|e| format!("TLS error: {e}"))?
                .plaintext_bytes_to_read();
            while want > 0 {
                // A record is not split across blocks unless it is bigger than one: its
                // messages stay zero-copy. Zeroed once per block, which is cheaper than
                // copying.
                if self.plain.len() < want.min(PLAIN_BLOCK) {
                    let size = if want < PLAIN_SMALL {
                        PLAIN_SMALL
                    } else {
                        PLAIN_BLOCK
                    };
                    // The block is read into again once every message sliced from it is
                    // gone (as a driver's `ReadBuffer` does), rather than a new one
                    // allocated per record burst.
                    self.plain.clear();
                    if self.plain.try_reclaim(size) {
                        self.plain.resize(size, 0);
                    } else {
                        self.plain = BytesMut::zeroed(size);
                    }
                }
                match self.conn.reader().read(&mut self.plain[..]) {
                    Ok(0) => break,
                    Ok(len) => {
                        want = want.saturating_sub(len);
                        // In bounds: `read` reports at most the slice it was given.
                        let plain = self.plain.split_to(len.min(self.plain.len())).freeze();
                        if !sink(plain) {
                            return Ok(());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(format!("TLS read failed: {e}")),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_without_certificates_is_a_clear_error() {
        let err = parse_pem_roots(b"hello").unwrap_err();
        assert!(err.0.contains("no PEM certificate"), "{err}");
        assert!(TlsContext::new(b"not pem").is_err());
    }

    #[cfg(any(feature = "aws-lc-rs", feature = "ring"))]
    #[test]
    fn default_roots_build_and_start_a_handshake() {
        let ctx = TlsContext::new(b"").expect("Mozilla roots alone are valid");
        let mut session = ctx
            .connect("sitestream.twitter.com", 1_700_000_000)
            .unwrap();
        session.write_plaintext(b"GET / HTTP/1.1\r\n\r\n");
        let hello = session.take_transmit();
        // A TLS record of type handshake (22) opens the ClientHello.
        assert_eq!(hello.first(), Some(&22));
        assert!(ctx.connect("[::1]", 0).is_ok());
        assert!(ctx.connect("bad name!", 0).is_err());
    }

    /// The default provider offers the post-quantum hybrid first, and the ClientHello really
    /// carries its key share: an ML-KEM-768 public key alone is 1,184 bytes, while a classical
    /// ClientHello with an X25519 share fits in a few hundred.
    #[cfg(feature = "aws-lc-rs")]
    #[test]
    fn the_default_provider_sends_a_post_quantum_hybrid_key_share() {
        let provider = crypto_provider().unwrap();
        assert_eq!(
            provider.kx_groups[0].name(),
            rustls::NamedGroup::X25519MLKEM768
        );
        let ctx = TlsContext::new(b"").unwrap();
        let mut session = ctx
            .connect("sitestream.twitter.com", 1_700_000_000)
            .unwrap();
        let hello = session.take_transmit();
        assert!(hello.len() > 1_184, "ClientHello of {} bytes", hello.len());
        // The group's code point (0x11ec) is in the ClientHello's supported groups.
        assert!(hello.windows(2).any(|w| w == [0x11, 0xec]));
    }

    /// With `ring` alone the provider is ring's, which has no hybrid group.
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    #[test]
    fn the_ring_provider_offers_classical_groups_only() {
        let provider = crypto_provider().unwrap();
        assert!(provider
            .kx_groups
            .iter()
            .all(|group| group.name() != rustls::NamedGroup::X25519MLKEM768));
        let ctx = TlsContext::new(b"").unwrap();
        let hello = ctx.connect("example.com", 0).unwrap().take_transmit();
        assert!(hello.len() < 1_184, "ClientHello of {} bytes", hello.len());
    }

    /// With neither provider feature, the process's installed default is used, and its
    /// absence is a clear error rather than a panic inside rustls.
    #[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
    #[test]
    fn without_a_provider_feature_the_error_names_the_features() {
        // Nothing in this crate's tests installs a process-wide provider.
        let err = TlsContext::new(b"").unwrap_err();
        assert!(err.0.contains("`aws-lc-rs` or `ring`"), "{err}");
    }

    #[cfg(any(feature = "aws-lc-rs", feature = "ring"))]
    #[test]
    fn garbage_from_the_server_is_an_error_not_a_panic() {
        let ctx = TlsContext::new(b"").unwrap();
        let mut session = ctx.connect("example.com", 1_700_000_000).unwrap();
        let _ = session.take_transmit();
        let err = session
            .read_ciphertext(b"HTTP/1.1 200 OK\r\n\r\n", &mut |_| true)
            .unwrap_err();
        assert!(err.contains("TLS"), "{err}");
    }
}
