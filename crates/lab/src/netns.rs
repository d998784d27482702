//! Entering a lab namespace from inside this process: a thread that calls `setns(2)` lives in the
//! namespace from then on, and so does every socket it creates, wherever the socket is used later.
//! Tests use this to open sockets "on a PC" without spawning helper programs.

use super::LabError;
use std::os::fd::AsRawFd;

/// Moves the calling thread into network namespace `netns` (`/run/netns/<netns>`).
///
/// Only the calling thread moves; call it first thing on a thread made for this purpose.
pub fn enter_current_thread(netns: &str) -> Result<(), LabError> {
    let path = format!("/run/netns/{netns}");
    let step = format!("entering network namespace {netns}");
    let file = std::fs::File::open(&path).map_err(|source| LabError::Io {
        step: step.clone(),
        source,
    })?;
    // SAFETY: setns(2) only reads the descriptor, which `file` keeps open for the call's duration.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(LabError::Io {
            step,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Runs `f` on a fresh thread inside `netns` and returns its result (a panic in `f` resumes here).
pub fn run_in<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> Result<T, LabError> {
    std::thread::scope(|s| {
        let handle = s.spawn(|| {
            enter_current_thread(netns)?;
            Ok(f())
        });
        handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Spawns a thread inside `netns` that runs `f`; the handle yields `f`'s result, or the error of
/// entering the namespace.
pub fn spawn_in<T: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<Result<T, LabError>> {
    let netns = netns.to_owned();
    std::thread::spawn(move || {
        enter_current_thread(&netns)?;
        Ok(f())
    })
}
