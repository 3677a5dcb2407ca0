//! TLS to LND, pinned to the certificate in `tls.cert`.
//!
//! LND's certificate is self-signed and marked as a CA, which webpki refuses as a server
//! certificate (`CaUsedAsEndEntity`). So instead of a chain check, the server is accepted
//! only when the certificate it presents is byte for byte one of those in `tls.cert`; the
//! handshake signatures are still verified with the crypto provider's algorithms, so the
//! server must hold that certificate's key. There is no way to turn the check off.

use super::config::Resolved;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// How long one TCP connect plus TLS handshake may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Every certificate in the PEM file at `path`.
pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read LND TLS certificate {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("LND TLS certificate {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "LND TLS certificate {} holds no certificate",
            path.display()
        ));
    }
    Ok(certs)
}

/// Accepts exactly the pinned certificates. Remembers whether a server presented another
/// one, so a connection failure can be reported as a mismatch rather than a TLS error.
#[derive(Debug)]
pub(crate) struct PinnedVerifier {
    pinned: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
    mismatch: AtomicBool,
}

impl PinnedVerifier {
    pub fn new(pinned: Vec<CertificateDer<'static>>, provider: Arc<CryptoProvider>) -> Self {
        PinnedVerifier {
            pinned,
            provider,
            mismatch: AtomicBool::new(false),
        }
    }

    /// Whether any server so far presented a certificate that is not pinned.
    pub(crate) fn saw_mismatch(&self) -> bool {
        self.mismatch.load(Ordering::Relaxed)
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pinned.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            Ok(ServerCertVerified::assertion())
        } else {
            self.mismatch.store(true, Ordering::Relaxed);
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Opens TLS connections to LND (ALPN h2) for tonic's `connect_with_connector`.
///
/// The certificate file is read again for every connection: LND replaces its certificate
/// when it expires (or with `tlsautorefresh`), and a sidecar that kept the old one could
/// never reconnect. Connections are made at start and on reconnects only.
#[derive(Clone)]
pub(crate) struct PinnedConnector {
    certpath: std::path::PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// The verifier of the latest connection attempt, for [`Self::saw_mismatch`].
    verifier: Arc<std::sync::Mutex<Arc<PinnedVerifier>>>,
    addr: String,
    server_name: ServerName<'static>,
}

impl PinnedConnector {
    pub fn new(r: &Resolved) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // Read now too, so a missing or unreadable file is a start-up error.
        let verifier = Arc::new(PinnedVerifier::new(load_certs(&r.tlscertpath)?, provider.clone()));
        let server_name = ServerName::try_from(r.host.clone())
            .unwrap_or_else(|_| ServerName::try_from("localhost").expect("valid name"));
        Ok(PinnedConnector {
            certpath: r.tlscertpath.clone(),
            provider,
            verifier: Arc::new(std::sync::Mutex::new(verifier)),
            addr: r.rpcserver.clone(),
            server_name,
        })
    }

    /// A TLS connector pinned to the certificate file as it is now.
    fn tls(&self) -> std::io::Result<TlsConnector> {
        let pinned = load_certs(&self.certpath).map_err(std::io::Error::other)?;
        let verifier = Arc::new(PinnedVerifier::new(pinned, self.provider.clone()));
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| std::io::Error::other(format!("cannot set up TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        *self.verifier.lock().unwrap_or_else(|p| p.into_inner()) = verifier;
        Ok(TlsConnector::from(Arc::new(config)))
    }

    /// Whether a server presented a certificate other than the pinned ones.
    pub(crate) fn saw_mismatch(&self) -> bool {
        self.verifier
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .saw_mismatch()
    }

    /// TCP connect and TLS handshake, within [`CONNECT_TIMEOUT`].
    pub async fn connect(&self) -> std::io::Result<TokioIo<TlsStream<TcpStream>>> {
        let attempt = async {
            let tls = self.tls()?;
            let tcp = TcpStream::connect(&self.addr).await?;
            tcp.set_nodelay(true)?;
            tls.connect(self.server_name.clone(), tcp).await
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(tls)) => Ok(TokioIo::new(tls)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {}s", CONNECT_TIMEOUT.as_secs()),
            )),
        }
    }
}
