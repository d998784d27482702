//! A long-running program started inside a lab namespace (sshd, samba, ...): its output goes to a
//! log file, and dropping the handle kills and reaps it, so a test or demo that fails half-way
//! leaves neither a running daemon nor a zombie behind.

use super::LabError;
use super::cmd::describe;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A daemon running in a lab namespace; killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct Daemon {
    what: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Spawns `cmd` with stdout+stderr appended to `log`, and stdin an open pipe (never written):
    /// `samba -F` takes end-of-file on stdin as an order to exit. `what` names it in
    /// errors ("sshd on pc1").
    pub fn spawn(what: &str, mut cmd: Command, log: &Path) -> Result<Daemon, LabError> {
        let step = format!("starting {what}");
        let io = |source| LabError::Io {
            step: format!("{step}: log {}", log.display()),
            source,
        };
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io)?;
        let err = out.try_clone().map_err(io)?;
        let command = describe(&cmd);
        tracing::debug!(%command, what, "lab daemon");
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| LabError::Spawn {
                step,
                command,
                source,
            })?;
        Ok(Daemon {
            what: what.to_owned(),
            log: log.to_path_buf(),
            child: Some(child),
        })
    }

    /// The process id (after `ip netns exec` and `unshare` exec'd themselves away, the daemon's).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of its log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Polls `ready` every 100 ms until it returns true; fails if the daemon exits first or
    /// `timeout` passes, with the end of its log.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            if ready() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(self.failed(&format!("exited with {status} before it was ready")));
            }
            if Instant::now() >= deadline {
                return Err(self.failed(&format!("not ready after {} s", timeout.as_secs())));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn failed(&self, reason: &str) -> LabError {
        LabError::Io {
            step: format!(
                "{}: {reason}; end of {}:\n{}",
                self.what,
                self.log.display(),
                self.log_tail(20)
            ),
            source: std::io::Error::other("daemon failed"),
        }
    }

    /// Kills and reaps it now.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
