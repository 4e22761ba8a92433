//! A throw-away private CA and a `127.0.0.1`/`localhost` server certificate it issued, for the
//! simulator's HTTPS mode: what a DevLake behind an internal CA looks like to the functions,
//! which trust it only through `DEVLAKE_CA_BUNDLE`.

use crate::sim::SimTls;

/// A CA (its certificate as PEM) and a server certificate with key it issued.
pub struct Pki {
    pub ca_pem: String,
    pub server: SimTls,
}

/// A new CA named `name` and a leaf certificate for `127.0.0.1` and `localhost`.
pub fn private_ca(name: &str) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, name);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key"))
        .expect("self-signed CA");

    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("leaf parameters");
    leaf.distinguished_name
        .push(DnType::CommonName, "devlake.test");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = leaf
        .signed_by(&leaf_key, &ca)
        .expect("leaf signed by the CA");
    Pki {
        ca_pem: ca.pem(),
        server: SimTls {
            cert_chain_pem: leaf.pem(),
            key_pem: leaf_key.serialize_pem(),
        },
    }
}
