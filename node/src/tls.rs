//! TLS for the HTTP API (rustls on ring): the agent's certificate, from
//! files or self-signed, the listener that serves it, and the CLI's trust in
//! it (a CA file, or the certificate's SHA-256 fingerprint).
//!
//! A self-signed certificate is made once and kept in `<data-dir>/api-tls/`
//! (`cert.pem`, `key.pem` mode 0600, and `fingerprint`), so its fingerprint
//! stays the same across restarts; the agent logs it at start.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::debug;

/// Where the API's certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files: the certificate chain (leaf first) and its private key.
    Files { cert: PathBuf, key: PathBuf },
    /// Made by the agent once, kept in `<data-dir>/api-tls/`.
    SelfSigned,
}

/// Why TLS could not be set up. Nothing was served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read { what: &'static str, path: PathBuf, source: io::Error },
    #[error("{what} {path} holds no PEM {expected}: {why}")]
    Pem { what: &'static str, path: PathBuf, expected: &'static str, why: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(String),
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(String),
    #[error(
        "--tls-fingerprint {0:?} is not a SHA-256 fingerprint: 64 hex digits, colons allowed \
         (the agent logs it and keeps it in <data-dir>/api-tls/fingerprint)"
    )]
    Fingerprint(String),
}

/// The API's TLS: its configuration and the certificate's fingerprint.
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the leaf certificate, `AB:CD:...` as openssl prints it.
    pub fingerprint: String,
    /// Where the certificate came from, for the log.
    pub origin: String,
}

/// rustls on *ring*: no C toolchain or cmake to build (aws-lc-rs needs
/// both), at the price of no post-quantum key exchange, which rustls now
/// marks by deprecating this provider.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate's SHA-256 fingerprint, as `openssl x509 -fingerprint -sha256` prints it.
pub fn fingerprint(cert: &[u8]) -> String {
    Sha256::digest(cert).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Reads `--tls-fingerprint`: 64 hex digits, with or without colons.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], TlsError> {
    let bad = || TlsError::Fingerprint(text.to_string());
    let hex: String = text.trim().trim_start_matches("sha256:").chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Loads (or, for [`TlsSource::SelfSigned`], makes once) the certificate.
/// `names` are the DNS names and IP addresses a self-signed one is for.
pub fn load_server(source: &TlsSource, data_dir: &Path, names: &[String]) -> Result<ServerTls, TlsError> {
    let (cert, key, origin) = match source {
        TlsSource::Files { cert, key } => (cert.clone(), key.clone(), format!("{}", cert.display())),
        TlsSource::SelfSigned => {
            let dir = data_dir.join("api-tls");
            let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
            if !(cert.exists() && key.exists()) {
                make_self_signed(&dir, names)?;
            }
            (cert.clone(), key, format!("self-signed, {}", cert.display()))
        }
    };
    let chain = read_certs(&cert, "the certificate file")?;
    let key_der = PrivateKeyDer::from_pem_file(&key).map_err(|e| TlsError::Pem {
        what: "the key file",
        path: key.clone(),
        expected: "private key",
        why: e.to_string(),
    })?;
    let fingerprint = fingerprint(chain[0].as_ref());
    if matches!(source, TlsSource::SelfSigned) {
        let path = data_dir.join("api-tls").join("fingerprint");
        write_file(&path, format!("{fingerprint}\n").as_bytes(), 0o644)?;
    }
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerTls { config: Arc::new(config), fingerprint, origin })
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |why: String| TlsError::Pem { what, path: path.to_path_buf(), expected: "certificate", why };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| match e {
            rustls::pki_types::pem::Error::Io(source) => TlsError::Read { what, path: path.to_path_buf(), source },
            other => pem(other.to_string()),
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no `BEGIN CERTIFICATE` block".into()));
    }
    Ok(certs)
}

fn make_self_signed(dir: &Path, names: &[String]) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write { path: dir.to_path_buf(), source })?;
    let made = rcgen::generate_simple_self_signed(names.to_vec()).map_err(|e| TlsError::Generate(e.to_string()))?;
    // The key first: a certificate without its key would be kept forever.
    write_file(&dir.join("key.pem"), made.key_pair.serialize_pem().as_bytes(), 0o600)?;
    write_file(&dir.join("cert.pem"), made.cert.pem().as_bytes(), 0o644)
}

/// Writes a file whole (temp file, fsync, rename) with `mode`.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |source| TlsError::Write { path: path.to_path_buf(), source };
    let temp = path.with_extension("tmp");
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&temp).map_err(failed)?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(failed)?;
    std::fs::rename(&temp, path).map_err(failed)
}

/// Accepts TCP connections and completes their TLS handshakes off the
/// accept path (a slow or silent client cannot hold up the others), for
/// `axum::serve`.
#[derive(Debug)]
pub struct TlsListener {
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

/// Handshakes in progress at most; further connections wait to be accepted.
const MAX_HANDSHAKES: usize = 64;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsListener {
    /// Serves TLS with `config` on `tcp`.
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (done, handshaken) = mpsc::channel(MAX_HANDSHAKES);
        let acceptor = TlsAcceptor::from(config);
        let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { return };
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        debug!(%error, "API accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, done) = (acceptor.clone(), done.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = done.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => debug!(%peer, %error, "API TLS handshake failed"),
                        Err(_) => debug!(%peer, "API TLS handshake timed out"),
                    }
                    drop(permit);
                });
            }
        });
        Ok(TlsListener { handshaken, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(accepted) => accepted,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// The address a request came from, with or without TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> PeerAddr {
        PeerAddr(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> PeerAddr {
        PeerAddr(*stream.remote_addr())
    }
}

/// How the CLI trusts an agent's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// The usual public roots (a certificate from a public CA).
    PublicRoots,
    /// A PEM file of the CA that issued the agent's certificate, or the
    /// agent's self-signed certificate itself.
    CaFile(PathBuf),
    /// Exactly the certificate with this SHA-256 fingerprint (names and
    /// dates are not checked: the pin is the identity).
    Fingerprint([u8; 32]),
}

/// A rustls client configuration for `trust`; `None` for the public roots
/// (the HTTP client's own default).
pub fn client_config(trust: &Trust) -> Result<Option<Arc<rustls::ClientConfig>>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let config = match trust {
        Trust::PublicRoots => return Ok(None),
        Trust::CaFile(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(path, "the CA file")? {
                roots.add(cert).map_err(|e| TlsError::Pem {
                    what: "the CA file",
                    path: path.clone(),
                    expected: "usable certificate",
                    why: e.to_string(),
                })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Fingerprint(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned { pin: *pin, provider: provider() }))
            .with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}

/// Accepts exactly the certificate whose SHA-256 is `pin`, and checks that
/// the server holds its key (the handshake's signature).
#[derive(Debug)]
struct Pinned {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if seen == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the agent's certificate has fingerprint {}, not the one given with --tls-fingerprint",
                fingerprint(end_entity.as_ref())
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_read_back() -> Result<(), TlsError> {
        let printed = fingerprint(b"a certificate");
        assert_eq!(printed.len(), 32 * 3 - 1);
        let pin = parse_fingerprint(&printed)?;
        assert_eq!(fingerprint_hex(&pin), printed.replace(':', "").to_lowercase());
        assert_eq!(parse_fingerprint(&printed.replace(':', "").to_lowercase())?, pin);
        assert!(parse_fingerprint("AB:CD").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
        Ok(())
    }

    fn fingerprint_hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn a_self_signed_certificate_is_made_once() -> Result<(), TlsError> {
        let dir = std::env::temp_dir().join(format!("shoal-tls-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let first = load_server(&TlsSource::SelfSigned, &dir, &names)?;
        let again = load_server(&TlsSource::SelfSigned, &dir, &names)?;
        assert_eq!(first.fingerprint, again.fingerprint, "kept across restarts");
        let saved = std::fs::read_to_string(dir.join("api-tls/fingerprint")).unwrap_or_default();
        assert_eq!(saved.trim(), first.fingerprint);
        let mode = std::fs::metadata(dir.join("api-tls/key.pem")).map(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.permissions().mode() & 0o777
        });
        assert_eq!(mode.ok(), Some(0o600), "the key is private");
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
