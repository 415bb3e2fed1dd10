//! Test support: a throwaway certificate authority, made with rcgen for one test, whose
//! certificate a test hands to Visor (caFile, SSL_CERT_FILE) and whose server certificate for
//! 127.0.0.1 and localhost the fake GitHub presents over HTTPS.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;

/// A CA and one server certificate it signed.
pub struct TestCa {
    /// The CA's certificate in PEM, what a client is told to trust.
    pub ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
}

impl TestCa {
    /// A new CA named `name`, and a server certificate for 127.0.0.1 and localhost.
    pub fn new(name: &str) -> TestCa {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("Visor test CA {name}"));
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "fake GitHub");
        let key = KeyPair::generate().unwrap();
        let server = params.signed_by(&key, &issuer).unwrap();
        TestCa {
            ca_pem: ca.pem(),
            server_chain: vec![server.der().clone(), ca.der().clone()],
            server_key: key.serialize_der(),
        }
    }

    /// Writes the CA's certificate to `path` and returns the path as text.
    pub fn write_ca(&self, path: &Path) -> String {
        std::fs::write(path, &self.ca_pem).unwrap();
        path.display().to_string()
    }

    /// The rustls server side presenting the server certificate.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(self.server_chain.clone(), key)
                .unwrap();
        Arc::new(config)
    }
}
