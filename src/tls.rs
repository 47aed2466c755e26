//! Certificate verification for `wss://` hubs. Verification is always on:
//! by default through the OS trust store (rustls-platform-verifier, as a browser
//! would), or, with `--ca-file`, against exactly the CAs in that file, the way
//! a private hub with its own CA is pinned. There is no switch to turn it off.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

pub fn client_config(ca_file: Option<&Path>) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS setup")?;
    let config = match ca_file {
        None => {
            let verifier = rustls_platform_verifier::Verifier::new(provider)
                .context("cannot load the OS certificate store")?;
            builder
                .dangerous() // not dangerous: this is the platform's own full verifier
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read CA file {}", path.display()))?;
            for cert in certs {
                let cert =
                    cert.with_context(|| format!("bad PEM in CA file {}", path.display()))?;
                roots
                    .add(cert)
                    .with_context(|| format!("unusable certificate in {}", path.display()))?;
            }
            anyhow::ensure!(
                !roots.is_empty(),
                "CA file {} holds no certificate",
                path.display()
            );
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Arc::new(config))
}

/// Installs ring as the process-wide default provider, for code paths (such as
/// tokio-tungstenite's) that ask for the default instead of taking a config.
pub fn install_default_provider() {
    let _ = CryptoProvider::install_default(rustls::crypto::ring::default_provider());
}
