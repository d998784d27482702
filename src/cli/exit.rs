//! The exit-code table. Only `cli/` maps outcomes to exit codes; the library returns typed values.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success: nothing to report at error level |
//! | 1 | the command ran, and found or met a failure (findings at error level, a bad chunk, a failed PC) |
//! | 2 | usage error, unreadable input, or an I/O error that stopped the command |

use std::process::ExitCode;

/// Success: nothing at error level.
pub const OK: u8 = 0;
/// The command ran and reports a failure (findings, bad chunks, failed machines).
pub const FAILURE: u8 = 1;
/// Usage error or an I/O error that stopped the command.
pub const USAGE_OR_IO: u8 = 2;

/// Converts one of the codes above into the process exit code.
pub fn code(c: u8) -> ExitCode {
    ExitCode::from(c)
}
