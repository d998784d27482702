//! Advisory file locks (flock) that callers may not wait on indefinitely.
//!
//! A flock belongs to an open file description. While another thread of this process forks a
//! child, that child holds a copy of every descriptor until its `exec` closes the close-on-exec
//! ones, so a lock just released can look held for a moment. A "busy" answer is therefore given
//! only after that moment has been waited out.

use std::fs::{File, TryLockError};
use std::time::Duration;

/// How many times [`try_lock_exclusive`] retries, and how long it sleeps between tries (2 s).
const TRIES: u32 = 20;
const RETRY: Duration = Duration::from_millis(100);

/// Takes an exclusive lock on `file`: `Ok(true)` when taken, `Ok(false)` when someone else still
/// holds it after about 2 s.
pub fn try_lock_exclusive(file: &File) -> std::io::Result<bool> {
    for attempt in 0..=TRIES {
        match file.try_lock() {
            Ok(()) => return Ok(true),
            Err(TryLockError::WouldBlock) if attempt < TRIES => std::thread::sleep(RETRY),
            Err(TryLockError::WouldBlock) => return Ok(false),
            Err(TryLockError::Error(e)) => return Err(e),
        }
    }
    Ok(false)
}
