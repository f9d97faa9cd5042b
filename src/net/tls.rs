//! The TLS roots for public endpoints (S3, GitHub, image registries): the
//! Mozilla roots bundled in the binary (webpki-root-certs) plus the
//! system's trust store (rustls-native-certs: `SSL_CERT_FILE`,
//! `SSL_CERT_DIR`, the distribution's bundle) when there is one, so a
//! private CA added to the system is trusted and an empty root still works.
//! The Kubernetes client trusts the kubeconfig's CA instead.

use std::sync::OnceLock;

use base64::Engine;
use rustls::pki_types::CertificateDer;

/// Make aws-lc-rs rustls's process-wide crypto provider (once), as kube's
/// own builder does: with more than one provider compiled in, rustls needs
/// to be told.
pub fn install_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Only fails if another thread installed one first: fine either way.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

/// [`certificates`], once read.
static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();

/// When the system has no CA certificates at all (an empty root, a scratch
/// image), point `SSL_CERT_FILE` at a copy of the bundled roots in a fresh
/// temporary file: oci-client builds a throw-away default reqwest client,
/// whose platform verifier refuses to start without system roots. Keep the
/// returned file until the process ends (dropping it deletes it). Call it
/// before any thread starts: it sets an environment variable.
pub fn provide_system_roots() -> Option<tempfile::TempPath> {
    let system = certificates().len() > webpki_root_certs::TLS_SERVER_ROOT_CERTS.len();
    if system || std::env::var_os("SSL_CERT_FILE").is_some() {
        return None;
    }
    let written = tempfile::Builder::new()
        .prefix("berth-roots-")
        .suffix(".pem")
        .tempfile()
        .and_then(|mut file| {
            std::io::Write::write_all(&mut file, pem_bundle().as_bytes())?;
            Ok(file.into_temp_path())
        });
    match written {
        Ok(path) => {
            // SAFETY: called from main before the runtime starts any thread.
            unsafe { std::env::set_var("SSL_CERT_FILE", &path) };
            Some(path)
        }
        Err(e) => {
            tracing::debug!("cannot write the bundled TLS roots to a temporary file: {e}");
            None
        }
    }
}

/// Bundled roots followed by the system's, read once.
pub fn certificates() -> &'static [CertificateDer<'static>] {
    ROOTS.get_or_init(|| {
        let mut roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec();
        let system = rustls_native_certs::load_native_certs();
        if !system.errors.is_empty() {
            tracing::debug!("system TLS roots: {:?}", system.errors);
        }
        roots.extend(system.certs);
        roots
    })
}

/// [`certificates`] for a reqwest client's `tls_certs_only`.
pub fn reqwest_roots() -> Vec<reqwest::Certificate> {
    certificates()
        .iter()
        .filter_map(|der| reqwest::Certificate::from_der(der).ok())
        .collect()
}

/// [`certificates`] as one PEM bundle.
pub fn pem_bundle() -> String {
    let base64 = base64::engine::general_purpose::STANDARD;
    let mut pem = String::new();
    for certificate in certificates() {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let encoded = base64.encode(certificate.as_ref());
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn the_bundle_holds_every_root() {
        let parsed: Vec<_> = CertificateDer::pem_slice_iter(pem_bundle().as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(parsed, certificates());
        assert!(parsed.len() >= webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
    }
}
