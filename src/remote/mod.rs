//! Running commands on, and copying files to, the room's PCs over SSH.
//!
//! [`RemoteExec`] is the narrow interface the step runners (c, d, g software-only, h) use; [`ssh`] is
//! the real client (russh, key authentication, host keys pinned at first contact in roomcast's own
//! known-hosts file) and [`fake`] a scripted stand-in for unit tests of a runner.
//!
//! The trait is blocking on purpose: runners are straight-line scripts (upload, run, check), and the
//! orchestrator runs one per machine on a blocking thread.

pub mod fake;
pub mod known_hosts;
pub mod ssh;

use std::path::{Path, PathBuf};

/// What a finished command left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit status (a command killed by a signal is reported as 128 + signal number by the shell; a
    /// channel closed without a status reads as 255, like OpenSSH's client).
    pub code: u32,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
}

impl Output {
    /// stdout as text (lossy).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text (lossy).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Errors of a remote operation; each names the machine.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The host presented a different key than the one pinned at first contact: possibly a
    /// man-in-the-middle, or a reinstalled PC whose entry must be removed by a person.
    #[error(
        "host key of {host} CHANGED: pinned {pinned}, presented {presented}; refusing to connect \
         (if the PC was reinstalled, remove its line from {known_hosts})"
    )]
    HostKeyChanged {
        /// host:port.
        host: String,
        /// Fingerprint in the known-hosts file.
        pinned: String,
        /// Fingerprint the host presented.
        presented: String,
        /// The known-hosts file.
        known_hosts: PathBuf,
    },
    /// No connection within the timeout.
    #[error("{host}: no answer within {seconds} s")]
    Timeout {
        /// host:port.
        host: String,
        /// The timeout.
        seconds: u64,
    },
    /// The server refused our key.
    #[error("{host}: key authentication refused for user {user}")]
    AuthRefused {
        /// host:port.
        host: String,
        /// Remote user.
        user: String,
    },
    /// Reading a local file (key, known-hosts, file to upload) failed.
    #[error("{path}: {source}")]
    Local {
        /// The local file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The SSH or SFTP layer failed.
    #[error("{host}: {message}")]
    Protocol {
        /// host:port.
        host: String,
        /// What failed.
        message: String,
    },
}

/// Run commands on one machine and copy files to it.
pub trait RemoteExec {
    /// The machine, as `host:port`, for messages.
    fn target(&self) -> &str;

    /// Runs `command` through the remote user's shell, feeding `stdin` (then end-of-file) to it, and
    /// waits for it to exit. Secrets go through `stdin`, never into `command`: the command line is
    /// visible in the remote process list.
    fn exec(&mut self, command: &str, stdin: &[u8]) -> Result<Output, RemoteError>;

    /// Runs `command` with an empty stdin.
    fn run(&mut self, command: &str) -> Result<Output, RemoteError> {
        self.exec(command, &[])
    }

    /// Copies the local file to `remote_path`; the file appears there complete or not at all.
    fn upload(&mut self, local: &Path, remote_path: &str) -> Result<(), RemoteError>;

    /// Writes `data` (a secret, or a script holding one) to `remote_path`, created afresh with mode
    /// 0600 so no other account can read it and nothing of it goes through a command line. An old
    /// file of that name is removed first rather than reused (its mode could be looser).
    fn upload_secret(&mut self, data: &[u8], remote_path: &str) -> Result<(), RemoteError>;
}

/// Quotes `s` for a POSIX shell (single quotes), for paths put into remote command lines.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quoting_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
