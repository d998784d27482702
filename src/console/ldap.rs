//! Technicians' login against the region's Active Directory over LDAP (issue 16), beside the
//! argon2 hashes of the config: LDAPS or StartTLS only (a simple bind never travels in clear), the
//! directory's certificate checked against the CA file the config names (nothing else is trusted),
//! a bind as the technician's own UPN with their password, then membership of one configured group
//! required. Every step is bounded by the config's timeout; the password is never logged, and a
//! name outside `[A-Za-z0-9._-]` (at most 64) or an empty password never reaches the directory.

use ldap3::{LdapConn, LdapConnSettings, Scope, ldap_escape};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The `ldap:` section of the console's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldaps://dc1.region.example` (TLS from the first byte) or `ldap://dc1.region.example`
    /// with `starttls: true`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before the bind (required for `ldap://`).
    #[serde(default)]
    pub starttls: bool,
    /// PEM file of the CA certificate(s) that sign the directory's certificate: the only trust
    /// anchors.
    pub ca_file: PathBuf,
    /// The name the directory's certificate is checked against, when it is not the URL's host
    /// (a URL with an address; the DC's certificate names its host).
    #[serde(default)]
    pub tls_name: Option<String>,
    /// A technician logging in as `jdupont` binds as `jdupont@<upn_suffix>`.
    pub upn_suffix: String,
    /// Where the technician's account is looked up (the domain's base DN).
    pub base_dn: String,
    /// Full DN of the group whose members may log in (direct membership).
    pub group: String,
    /// Seconds allowed to connect, and to each LDAP operation (1-30, default 5).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    5
}

impl LdapConfig {
    /// The rules beyond the types (names the field).
    pub fn check(&self) -> Result<(), String> {
        let url = self.url.to_ascii_lowercase();
        if url.starts_with("ldaps://") {
            if self.starttls {
                return Err("field `ldap.starttls`: not with an ldaps:// URL (TLS already)".into());
            }
        } else if url.starts_with("ldap://") {
            if !self.starttls {
                return Err(
                    "field `ldap.url`: ldap:// without `starttls: true` would send the password \
                     in clear; use ldaps:// or set starttls"
                        .into(),
                );
            }
        } else {
            return Err(
                "field `ldap.url`: must start with ldaps:// (or ldap:// with starttls)".into(),
            );
        }
        if !(1..=30).contains(&self.timeout_secs) {
            return Err("field `ldap.timeout_secs`: between 1 and 30".into());
        }
        for (field, v) in [
            ("upn_suffix", &self.upn_suffix),
            ("base_dn", &self.base_dn),
            ("group", &self.group),
        ] {
            if v.trim().is_empty() {
                return Err(format!("field `ldap.{field}`: empty"));
            }
        }
        Ok(())
    }
}

/// Why the directory could not answer (not a wrong password: that is `Ok(false)`).
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The CA file cannot be read or holds no certificate.
    #[error("field `ldap.ca_file` ({path}): {reason}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Connecting, TLS, or an operation failed or timed out.
    #[error("directory {url}: {reason}")]
    Ldap {
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
}

/// The region's directory, ready to check logins.
pub struct Directory {
    config: LdapConfig,
    tls: Arc<ClientConfig>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("url", &self.config.url)
            .finish()
    }
}

/// Checks the chain against the CA file's roots and the name against `tls_name`, whatever host the
/// URL named (rustls' own verifier does the work).
#[derive(Debug)]
struct NamedVerifier {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NamedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Whether `name` may be put in a UPN and a filter as it is.
fn plain_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Directory {
    /// Reads the CA file and prepares the TLS settings (once, at start).
    pub fn new(config: LdapConfig) -> Result<Directory, DirectoryError> {
        let ca = |reason: String| DirectoryError::Ca {
            path: config.ca_file.clone(),
            reason,
        };
        let mut roots = RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(&config.ca_file)
            .map_err(|e| ca(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ca(e.to_string()))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(ca("no CA certificate in it".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ca(e.to_string()))?;
        let tls = match &config.tls_name {
            None => builder.with_root_certificates(roots).with_no_client_auth(),
            Some(name) => {
                let name = ServerName::try_from(name.clone()).map_err(|e| DirectoryError::Ca {
                    path: config.ca_file.clone(),
                    reason: format!("field `ldap.tls_name`: {e}"),
                })?;
                let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| ca(e.to_string()))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(NamedVerifier { inner, name }))
                    .with_no_client_auth()
            }
        };
        Ok(Directory {
            config,
            tls: Arc::new(tls),
        })
    }

    /// Whether `name` with `password` binds to the directory and is a member of the group.
    /// `Ok(false)`: wrong password, unknown account, not a member, or a name or password that is
    /// not sent at all; `Err`: the directory could not be asked (unreachable, TLS refused, timeout).
    pub fn verify(&self, name: &str, password: &str) -> Result<bool, DirectoryError> {
        // An empty password would be an anonymous ("unauthenticated") bind that succeeds.
        if !plain_name(name) || password.is_empty() || password.len() > 1024 {
            return Ok(false);
        }
        let c = &self.config;
        let err = |reason: String| DirectoryError::Ldap {
            url: c.url.clone(),
            reason,
        };
        let t = Duration::from_secs(c.timeout_secs);
        let settings = LdapConnSettings::new()
            .set_conn_timeout(t)
            .set_starttls(c.starttls)
            .set_config(self.tls.clone());
        let mut ldap = LdapConn::with_settings(settings, &c.url).map_err(|e| err(e.to_string()))?;
        let upn = format!("{name}@{}", c.upn_suffix);
        let bound = ldap
            .with_timeout(t)
            .simple_bind(&upn, password)
            .map_err(|e| err(e.to_string()))?;
        if bound.rc == 49 {
            // invalidCredentials: wrong password or no such account (AD says the same).
            let _ = ldap.unbind();
            return Ok(false);
        }
        bound.success().map_err(|e| err(e.to_string()))?;
        let filter = format!(
            "(&(userPrincipalName={})(memberOf={}))",
            ldap_escape(&upn),
            ldap_escape(&c.group)
        );
        let found = ldap
            .with_timeout(t)
            .search(&c.base_dn, Scope::Subtree, &filter, vec!["1.1"])
            .and_then(|r| r.success())
            .map_err(|e| err(e.to_string()))?;
        let _ = ldap.unbind();
        Ok(found.0.len() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, starttls: bool) -> LdapConfig {
        LdapConfig {
            url: url.into(),
            starttls,
            ca_file: "/nonexistent".into(),
            tls_name: None,
            upn_suffix: "region.example".into(),
            base_dn: "DC=region,DC=example".into(),
            group: "CN=roomcast,DC=region,DC=example".into(),
            timeout_secs: 5,
        }
    }

    #[test]
    fn only_ldaps_or_starttls_and_names_that_need_no_escaping() {
        assert!(config("ldaps://dc1", false).check().is_ok());
        assert!(config("ldap://dc1", true).check().is_ok());
        let e = config("ldap://dc1", false).check().unwrap_err();
        assert!(e.contains("in clear"), "{e}");
        assert!(config("ldaps://dc1", true).check().is_err());
        assert!(config("http://dc1", false).check().is_err());
        let mut slow = config("ldaps://dc1", false);
        slow.timeout_secs = 600;
        assert!(slow.check().unwrap_err().contains("timeout_secs"));
        assert!(plain_name("j.dupont-2_x"));
        for bad in ["", "a*", "a)(x=1", "a@b", "é", &"a".repeat(65)] {
            assert!(!plain_name(bad), "{bad}");
        }
        let e = Directory::new(config("ldaps://dc1", false)).unwrap_err();
        assert!(e.to_string().contains("field `ldap.ca_file`"), "{e}");
    }
}
