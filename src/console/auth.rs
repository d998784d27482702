//! Technicians' authentication: argon2 password hashes (from the config file), server-side
//! sessions behind a `__Host-` cookie (Secure, HttpOnly, SameSite=Strict), one CSRF token per
//! session checked on every form, and a rate limit on failed logins (per client address and per
//! name), every attempt logged.

use super::config::Technician;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name (`__Host-`: the browser keeps it only if Secure, path `/`, no domain).
pub const COOKIE: &str = "__Host-roomcast";
/// A session ends this long after login.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Failed logins allowed per client address or name within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: usize = 5;
/// The window of the rate limit.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// Sessions kept at most (oldest dropped first): bounded memory whatever logs in.
const MAX_SESSIONS: usize = 1000;
/// Addresses and names remembered by the rate limit at most.
const MAX_TRACKED: usize = 10_000;

/// Hashes a password with argon2id (default parameters, random salt) into a PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A random token: 32 bytes, hex.
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Compares two strings in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A logged-in technician.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who.
    pub user: String,
    /// The token every form of this session carries.
    pub csrf: String,
    expires: Instant,
}

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRefused {
    /// Name unknown or password wrong (not told apart).
    BadCredentials,
    /// Too many failures lately from this address or for this name.
    RateLimited,
}

/// Sessions and the login rate limit, in memory (a restart logs everyone out).
pub struct Auth {
    technicians: Vec<Technician>,
    directory: Option<super::ldap::Directory>,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Auth {
    /// An authenticator for these technicians, and the members of the directory's group when
    /// one is given (a name of the config is checked against its hash only).
    pub fn new(technicians: Vec<Technician>, directory: Option<super::ldap::Directory>) -> Auth {
        Auth {
            technicians,
            directory,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn limited(&self, keys: &[String], now: Instant) -> bool {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter().any(|k| {
            f.get_mut(k).is_some_and(|q| {
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > FAILURE_WINDOW)
                {
                    q.pop_front();
                }
                q.len() >= MAX_FAILURES
            })
        })
    }

    fn fail(&self, keys: &[String], now: Instant) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() > MAX_TRACKED {
            f.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.duration_since(*t) <= FAILURE_WINDOW)
            });
        }
        for k in keys {
            let q = f.entry(k.clone()).or_default();
            q.push_back(now);
            while q.len() > MAX_FAILURES {
                q.pop_front();
            }
        }
    }

    /// Checks a login from `client`; on success returns the new session's id and its session.
    /// Every attempt is logged (name and address, never the password).
    pub fn login(
        &self,
        client: &str,
        name: &str,
        password: &str,
    ) -> Result<(String, Session), LoginRefused> {
        let now = Instant::now();
        let name: String = name.chars().take(100).collect();
        let keys = [format!("addr:{client}"), format!("name:{name}")];
        if self.limited(&keys, now) {
            tracing::warn!(client, user = ?name, "console login refused: rate limited");
            return Err(LoginRefused::RateLimited);
        }
        let ok = match (
            self.technicians.iter().find(|t| t.name == name),
            &self.directory,
        ) {
            (Some(t), _) => verify_password(&t.password_hash, password),
            (None, Some(d)) => match d.verify(&name, password) {
                Ok(member) => {
                    if member {
                        tracing::info!(client, user = ?name, "directory login (group member)");
                    }
                    member
                }
                Err(e) => {
                    tracing::warn!(client, user = ?name, %e, "directory not reachable");
                    false
                }
            },
            (None, None) => false,
        };
        if !ok {
            self.fail(&keys, now);
            tracing::warn!(client, user = ?name, "console login failed");
            return Err(LoginRefused::BadCredentials);
        }
        tracing::info!(client, user = ?name, "console login");
        let id = random_token();
        let session = Session {
            user: name,
            csrf: random_token(),
            expires: now + SESSION_LIFETIME,
        };
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.retain(|_, v| v.expires > now);
        if s.len() >= MAX_SESSIONS
            && let Some(oldest) = s
                .iter()
                .min_by_key(|(_, v)| v.expires)
                .map(|(k, _)| k.clone())
        {
            s.remove(&oldest);
        }
        s.insert(id.clone(), session.clone());
        Ok((id, session))
    }

    /// The live session of a cookie value.
    pub fn session(&self, id: &str) -> Option<Session> {
        let s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.get(id).filter(|v| v.expires > Instant::now()).cloned()
    }

    /// Ends a session.
    pub fn logout(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// The `Set-Cookie` value of a new session.
pub fn session_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn cleared_cookie() -> String {
    format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The session id in a `Cookie` header, if any.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .map(str::trim)
        .find_map(|kv| kv.strip_prefix(COOKIE)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_and_failures_are_rate_limited() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "correct hors"));
        let auth = Auth::new(
            vec![Technician {
                name: "alice".into(),
                password_hash: hash,
            }],
            None,
        );
        for _ in 0..MAX_FAILURES {
            assert_eq!(
                auth.login("1.2.3.4", "alice", "wrong").unwrap_err(),
                LoginRefused::BadCredentials
            );
        }
        // Now even the right password is refused, from this address and for this name.
        assert_eq!(
            auth.login("5.6.7.8", "alice", "correct horse").unwrap_err(),
            LoginRefused::RateLimited
        );
        let auth2 = Auth::new(auth.technicians.clone(), None);
        let (id, s) = auth2.login("1.2.3.4", "alice", "correct horse").unwrap();
        assert_eq!(auth2.session(&id).unwrap().user, "alice");
        assert_eq!(s.csrf.len(), 64);
        assert_eq!(
            cookie_value(&format!("a=b; {COOKIE}={id}")),
            Some(id.as_str())
        );
        auth2.logout(&id);
        assert!(auth2.session(&id).is_none());
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
