//! Writing PEM. Reading is rustls-pki-types' `PemObject` (see `load`); it has no encoder,
//! so writing uses the `pem` crate rcgen already depends on.

use ::pem::{EncodeConfig, LineEnding, Pem};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// `\n` line endings everywhere: the files are read by Unix tools and diffed by people.
const CONFIG: EncodeConfig = EncodeConfig::new().set_line_ending(LineEnding::LF);

pub fn encode_cert(cert: &CertificateDer<'_>) -> String {
    ::pem::encode_config(&Pem::new("CERTIFICATE", cert.as_ref()), CONFIG)
}

/// Certificates one after the other, as a chain or bundle file holds them.
pub fn encode_certs<'a>(certs: impl IntoIterator<Item = &'a CertificateDer<'a>>) -> String {
    certs.into_iter().map(encode_cert).collect()
}

/// A private key with the label of its encoding.
pub fn encode_key(key: &PrivateKeyDer<'_>) -> String {
    let label = match key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    ::pem::encode_config(&Pem::new(label, key.secret_der()), CONFIG)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{PrivatePkcs1KeyDer, PrivateSec1KeyDer};

    #[test]
    fn certificates_round_trip_through_the_reader() {
        let certs = [
            CertificateDer::from(vec![1, 2, 3]),
            CertificateDer::from(vec![4; 100]),
        ];
        let text = encode_certs(&certs);
        assert!(!text.contains('\r'));
        let back: Vec<_> = CertificateDer::pem_slice_iter(text.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, certs);
    }

    #[test]
    fn keys_keep_their_label() {
        let pkcs1 = PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(vec![1, 2]));
        assert!(encode_key(&pkcs1).starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let sec1 = PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(vec![1, 2]));
        let text = encode_key(&sec1);
        assert!(text.starts_with("-----BEGIN EC PRIVATE KEY-----"));
        let back = PrivateKeyDer::from_pem_slice(text.as_bytes()).unwrap();
        assert!(matches!(back, PrivateKeyDer::Sec1(_)));
    }
}
