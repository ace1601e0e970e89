//! The one TLS policy of chaosflow's clients (the runner's HTTP providers and every sink):
//! rustls with the ring provider, trusting what Python `requests` trusts, so that an endpoint
//! `chaos` reaches is one chaosflow reaches:
//!
//! - Mozilla's roots, compiled in (what `requests` gets from certifi);
//! - or, when `REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE` or `SSL_CERT_FILE` names a PEM bundle, that
//!   bundle instead, including self-signed server certificates listed in it (as OpenSSL
//!   allows);
//! - `verify_tls: false` accepts any certificate but still checks handshake signatures.
//!
//! The configurations are built once per process, and the roots are loaded at the first
//! handshake, never at start-up.

use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// The CA bundle the environment names instead of Mozilla's roots, if any: the variable
/// (`REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`, `SSL_CERT_FILE`, first set wins) and the path.
pub fn ca_bundle() -> Option<(&'static str, String)> {
    ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"]
        .into_iter()
        .find_map(|var| {
            std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| (var, v))
        })
}

/// The client configuration for `verify` (true: the roots above; false: anything).
///
/// Cheap: the roots are loaded at the first certificate to verify (parsing a system bundle of
/// a hundred and more certificates costs milliseconds, which a run whose sinks speak plain
/// HTTP should not pay). A bundle that cannot be read fails that handshake with the reason.
pub fn client_config(verify: bool) -> Arc<rustls::ClientConfig> {
    static VERIFYING: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    static TRUSTING: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let provider = || Arc::new(rustls::crypto::ring::default_provider());
    let build = |verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>| {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Arc::new(config)
    };
    let cell = if verify { &VERIFYING } else { &TRUSTING };
    cell.get_or_init(|| {
        if verify {
            build(Arc::new(LazyVerifier {
                provider: provider(),
                inner: OnceLock::new(),
            }))
        } else {
            build(Arc::new(NoVerification(provider())))
        }
    })
    .clone()
}

/// The verifier of [`client_config`]: the Web PKI rules with the policy's roots, built on
/// first use.
#[derive(Debug)]
struct LazyVerifier {
    provider: Arc<rustls::crypto::CryptoProvider>,
    inner: OnceLock<Result<Arc<dyn rustls::client::danger::ServerCertVerifier>, String>>,
}

impl LazyVerifier {
    fn get(&self) -> Result<&Arc<dyn rustls::client::danger::ServerCertVerifier>, rustls::Error> {
        self.inner
            .get_or_init(|| {
                let (roots, listed) = root_store()?;
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    self.provider.clone(),
                )
                .build()
                .map_err(|e| format!("invalid CA bundle: {e}"))?;
                Ok(if listed.is_empty() {
                    webpki as Arc<dyn rustls::client::danger::ServerCertVerifier>
                } else {
                    Arc::new(BundleVerifier { webpki, listed })
                })
            })
            .as_ref()
            .map_err(|e| rustls::Error::General(e.clone()))
    }
}

impl rustls::client::danger::ServerCertVerifier for LazyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.get()?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Mozilla's roots (as `requests`' certifi), or the bundle named by `REQUESTS_CA_BUNDLE`,
/// `CURL_CA_BUNDLE` or `SSL_CERT_FILE` with the certificates it lists.
fn root_store() -> Result<(rustls::RootCertStore, Vec<CertificateDer<'static>>), String> {
    let mut store = rustls::RootCertStore::empty();
    let mut listed = Vec::new();
    match ca_bundle() {
        Some((var, path)) => {
            let certs = CertificateDer::pem_file_iter(&path)
                .map_err(|e| format!("cannot read CA bundle {path} (from {var}): {e}"))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| format!("invalid CA bundle {path} (from {var}): {e}"))?;
                // Certificates webpki cannot use as anchors are still trusted as listed ones.
                let _ = store.add(cert.clone());
                listed.push(cert);
            }
        }
        None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok((store, listed))
}

/// Verification with a user's CA bundle: the Web PKI rules, and, as OpenSSL (so `requests`)
/// allows, a server certificate that is itself listed in the bundle (a self-signed one) when
/// its names match the server.
#[derive(Debug)]
struct BundleVerifier {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    listed: Vec<CertificateDer<'static>>,
}

impl rustls::client::danger::ServerCertVerifier for BundleVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => Ok(verified),
            Err(error) => {
                if !self
                    .listed
                    .iter()
                    .any(|c| c.as_ref() == end_entity.as_ref())
                {
                    return Err(error);
                }
                let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&parsed, server_name)?;
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// `verify_tls: false`: accept any certificate, still checking handshake signatures.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
