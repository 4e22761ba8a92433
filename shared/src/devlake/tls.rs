//! Extra trust roots for a DevLake behind an internal CA (`DEVLAKE_CA_BUNDLE`), and recognising
//! the TLS failure that asks for them.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// PEM text, or the path of a PEM file, with the CA certificates that may issue DevLake's.
pub const CA_BUNDLE_VAR: &str = "DEVLAKE_CA_BUNDLE";

/// CA certificates trusted for DevLake in addition to the system's roots. Each one was checked
/// to be a usable trust anchor when the bundle was read, so building the client cannot fail on
/// it later with an error that names the wrong setting.
#[derive(Clone, PartialEq, Eq)]
pub struct CaBundle {
    /// Where the roots came from: `PEM text` or the file's path (for logs and errors).
    origin: String,
    roots: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle")
            .field("origin", &self.origin)
            .field("roots", &self.roots.len())
            .finish()
    }
}

impl CaBundle {
    /// The value of `DEVLAKE_CA_BUNDLE`: PEM text when it contains a `-----BEGIN` line, else the
    /// path of a PEM file (relative to the working directory, which is the unpacked deployment
    /// package on Lambda). The error is one line without the bundle's content.
    pub fn from_setting(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value.contains("-----BEGIN") {
            return Self::from_pem(value.as_bytes(), "PEM text");
        }
        let pem =
            std::fs::read(value).map_err(|e| format!("cannot read the file {value:?}: {e}"))?;
        Self::from_pem(&pem, &format!("file {value:?}"))
    }

    /// Every `CERTIFICATE` block of `pem` (other blocks, such as keys, are ignored); at least one,
    /// each a parsable X.509 certificate.
    pub fn from_pem(pem: &[u8], origin: &str) -> Result<Self, String> {
        let roots = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{origin} is not valid PEM: {e}"))?;
        if roots.is_empty() {
            return Err(format!("{origin} holds no PEM CERTIFICATE block"));
        }
        let mut store = rustls::RootCertStore::empty();
        for (n, root) in roots.iter().enumerate() {
            store.add(root.clone()).map_err(|e| {
                format!(
                    "certificate {} of {} in {origin} is not a usable CA certificate: {e}",
                    n + 1,
                    roots.len()
                )
            })?;
        }
        Ok(CaBundle {
            origin: origin.to_string(),
            roots,
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }
}

/// Whether the failure is rustls refusing DevLake's certificate because no trusted root issued
/// it: the case `DEVLAKE_CA_BUNDLE` exists for. The rustls error sits deep in reqwest's source
/// chain, and `io::Error` hides the error it wraps from `source()`, so both are looked into.
pub(crate) fn is_unknown_issuer(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) =
            e.downcast_ref::<rustls::Error>()
        {
            return true;
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            if is_unknown_issuer(inner) {
                return true;
            }
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_no_ca_bundle_in_one_line() {
        for (value, expected) in [
            (
                "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
                "not valid PEM",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "no PEM CERTIFICATE block",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "certificate 1 of 1 in PEM text is not a usable CA certificate",
            ),
            (
                "/nonexistent/ca.pem",
                "cannot read the file \"/nonexistent/ca.pem\"",
            ),
        ] {
            let err = CaBundle::from_setting(value).unwrap_err();
            assert!(err.contains(expected), "{value:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
