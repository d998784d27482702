//! The real [`RemoteExec`]: an SSH client on russh with key authentication, host keys pinned in
//! roomcast's known-hosts file, and uploads over SFTP (russh-sftp).

use super::known_hosts::{KnownHosts, Verdict};
use super::{Output, RemoteError, RemoteExec};
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate, load_secret_key};
use russh::{ChannelMsg, client};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How to reach the room's PCs. One value serves every machine of a campaign.
#[derive(Debug, Clone)]
pub struct SshConfig {
    /// Remote user (the PCs' administration account).
    pub user: String,
    /// Private key file (OpenSSH format, unencrypted: the overnight run has nobody to type a
    /// passphrase).
    pub key: PathBuf,
    /// roomcast's known-hosts file.
    pub known_hosts: PathBuf,
    /// TCP connect + handshake + authentication must finish within this.
    pub connect_timeout: Duration,
    /// One command (or one upload) must finish within this.
    pub command_timeout: Duration,
}

impl SshConfig {
    /// Defaults for a room: 10 s to connect, 1 h per command (a big installer can take long).
    pub fn new(user: &str, key: &Path, known_hosts: &Path) -> SshConfig {
        SshConfig {
            user: user.to_string(),
            key: key.to_path_buf(),
            known_hosts: known_hosts.to_path_buf(),
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(3600),
        }
    }
}

/// Checks the server's key against the known-hosts file and remembers a refusal, so `connect` can
/// report it by name instead of russh's generic error.
struct Pinning {
    host: String,
    known: KnownHosts,
    refusal: Arc<Mutex<Option<RemoteError>>>,
}

impl client::Handler for Pinning {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_public_key else {
            *self.refusal.lock().expect("not poisoned") = Some(RemoteError::Protocol {
                host: self.host.clone(),
                message: "host certificates are not supported; configure a plain host key".into(),
            });
            return Ok(false);
        };
        let refusal = match self.known.check(&self.host, key) {
            Ok(Verdict::Known) => None,
            Ok(Verdict::Pinned) => {
                tracing::info!(host = %self.host, fingerprint = %super::known_hosts::fingerprint(key), "host key pinned at first contact");
                None
            }
            Ok(Verdict::Changed { pinned, presented }) => Some(RemoteError::HostKeyChanged {
                host: self.host.clone(),
                pinned,
                presented,
                known_hosts: self.known.path().to_path_buf(),
            }),
            Err(source) => Some(RemoteError::Local {
                path: self.known.path().to_path_buf(),
                source,
            }),
        };
        let ok = refusal.is_none();
        *self.refusal.lock().expect("not poisoned") = refusal;
        Ok(ok)
    }
}

/// A connected, authenticated SSH session to one machine.
pub struct SshClient {
    // Declared before `rt`: the session must go before the runtime that drives it.
    handle: client::Handle<Pinning>,
    rt: tokio::runtime::Runtime,
    target: String,
    config: SshConfig,
}

impl SshClient {
    /// Connects to `host:port` (an address or name), checks its host key and authenticates with the
    /// configured key.
    pub fn connect(host: &str, port: u16, config: &SshConfig) -> Result<SshClient, RemoteError> {
        let target = format!("{host}:{port}");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Protocol {
                host: target.clone(),
                message: format!("cannot start the SSH runtime: {e}"),
            })?;
        let key = load_secret_key(&config.key, None).map_err(|e| RemoteError::Local {
            path: config.key.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let refusal = Arc::new(Mutex::new(None));
        let handler = Pinning {
            host: target.clone(),
            known: KnownHosts::new(&config.known_hosts),
            refusal: refusal.clone(),
        };
        let ssh_config = Arc::new(client::Config {
            inactivity_timeout: Some(config.command_timeout),
            ..Default::default()
        });
        let protocol = |message: String| RemoteError::Protocol {
            host: target.clone(),
            message,
        };
        let attempt = async {
            let mut handle = client::connect(ssh_config, (host, port), handler).await?;
            let hash = handle.best_supported_rsa_hash().await?.flatten();
            let auth = handle
                .authenticate_publickey(
                    config.user.clone(),
                    PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                )
                .await?;
            Ok::<_, russh::Error>((handle, auth.success()))
        };
        let outcome =
            rt.block_on(async { tokio::time::timeout(config.connect_timeout, attempt).await });
        let (handle, authenticated) = match outcome {
            Err(_) => {
                return Err(RemoteError::Timeout {
                    host: target,
                    seconds: config.connect_timeout.as_secs(),
                });
            }
            Ok(Err(e)) => {
                if let Some(refusal) = refusal.lock().expect("not poisoned").take() {
                    return Err(refusal);
                }
                return Err(protocol(format!("SSH connection failed: {e}")));
            }
            Ok(Ok(v)) => v,
        };
        if !authenticated {
            return Err(RemoteError::AuthRefused {
                host: target,
                user: config.user.clone(),
            });
        }
        Ok(SshClient {
            handle,
            rt,
            target,
            config: config.clone(),
        })
    }

    fn protocol(&self, what: &str, e: impl std::fmt::Display) -> RemoteError {
        RemoteError::Protocol {
            host: self.target.clone(),
            message: format!("{what}: {e}"),
        }
    }

    fn timeout(&self) -> RemoteError {
        RemoteError::Timeout {
            host: self.target.clone(),
            seconds: self.config.command_timeout.as_secs(),
        }
    }

    /// Runs `work` within the command timeout; a failure becomes a protocol error saying `what`.
    fn within_timeout<T, E: std::fmt::Display>(
        &self,
        what: impl FnOnce() -> String,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, RemoteError> {
        let limit = self.config.command_timeout;
        match self
            .rt
            .block_on(async { tokio::time::timeout(limit, work).await })
        {
            Err(_) => Err(self.timeout()),
            Ok(Err(e)) => Err(self.protocol(&what(), e)),
            Ok(Ok(out)) => Ok(out),
        }
    }
}

/// An SFTP session on a new channel of `handle`.
async fn open_sftp(
    handle: &client::Handle<Pinning>,
) -> Result<russh_sftp::client::SftpSession, String> {
    let channel = handle
        .channel_open_session()
        .await
        .map_err(|e| e.to_string())?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| e.to_string())?;
    russh_sftp::client::SftpSession::new(channel.into_stream())
        .await
        .map_err(|e| e.to_string())
}

/// Removes `path` if it exists (SFTP v3 rename does not replace, and an exclusive create must not
/// meet an old file).
async fn remove_if_exists(
    sftp: &russh_sftp::client::SftpSession,
    path: &str,
) -> Result<(), String> {
    if sftp.try_exists(path).await.map_err(|e| e.to_string())? {
        sftp.remove_file(path).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

impl RemoteExec for SshClient {
    fn target(&self) -> &str {
        &self.target
    }

    fn exec(&mut self, command: &str, stdin: &[u8]) -> Result<Output, RemoteError> {
        let work = async {
            let mut channel = self.handle.channel_open_session().await?;
            channel.exec(true, command).await?;
            if !stdin.is_empty() {
                channel.data(stdin).await?;
            }
            channel.eof().await?;
            let mut out = Output {
                code: 255,
                stdout: Vec::new(),
                stderr: Vec::new(),
            };
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        out.stderr.extend_from_slice(&data)
                    }
                    ChannelMsg::ExitStatus { exit_status } => out.code = exit_status,
                    _ => {}
                }
            }
            Ok::<_, russh::Error>(out)
        };
        self.within_timeout(|| "command failed".into(), work)
    }

    fn upload(&mut self, local: &Path, remote_path: &str) -> Result<(), RemoteError> {
        let data = std::fs::read(local).map_err(|source| RemoteError::Local {
            path: local.to_path_buf(),
            source,
        })?;
        let partial = format!("{remote_path}.roomcast-part");
        let work = async {
            let sftp = open_sftp(&self.handle).await?;
            let mut file = sftp
                .create(partial.clone())
                .await
                .map_err(|e| e.to_string())?;
            file.write_all(&data).await.map_err(|e| e.to_string())?;
            file.shutdown().await.map_err(|e| e.to_string())?;
            drop(file);
            // The new file only appears under its name once complete.
            remove_if_exists(&sftp, remote_path).await?;
            sftp.rename(partial.clone(), remote_path)
                .await
                .map_err(|e| e.to_string())?;
            sftp.close().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        };
        self.within_timeout(
            || format!("upload of {} to {remote_path}", local.display()),
            work,
        )
    }

    fn upload_secret(&mut self, data: &[u8], remote_path: &str) -> Result<(), RemoteError> {
        use russh_sftp::protocol::{FileAttributes, OpenFlags};
        let work = async {
            let sftp = open_sftp(&self.handle).await?;
            remove_if_exists(&sftp, remote_path).await?;
            // EXCLUDE: if someone recreated the name in between, fail rather than write into
            // their file; the mode is set at creation, so there is no moment with a looser one.
            let attrs = FileAttributes {
                permissions: Some(0o600),
                ..FileAttributes::empty()
            };
            let mut file = sftp
                .open_with_flags_and_attributes(
                    remote_path,
                    OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE,
                    attrs,
                )
                .await
                .map_err(|e| e.to_string())?;
            file.write_all(data).await.map_err(|e| e.to_string())?;
            file.shutdown().await.map_err(|e| e.to_string())?;
            drop(file);
            sftp.close().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        };
        self.within_timeout(|| format!("writing {remote_path} (mode 0600)"), work)
    }
}
