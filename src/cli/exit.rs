//! The exit-code table and the CLI's error type. Only `cli/` maps outcomes to exit codes; the
//! library returns typed values, every command returns `Result<u8, CliError>` (a code of this
//! table, or an error), and [`finish`], called once by `cli::main`, prints the error and maps it.
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

/// Why a command stopped short of success: its words (printed once, by [`finish`]) and its code.
#[derive(Debug)]
pub enum CliError {
    /// The command ran and refuses or failed (findings at error level, a bad chunk, a failed PC):
    /// exit [`FAILURE`].
    Failure(String),
    /// Usage error, unreadable input, or an I/O error that stopped the command: exit
    /// [`USAGE_OR_IO`].
    UsageOrIo(String),
}

impl CliError {
    /// Its exit code.
    pub fn code(&self) -> u8 {
        match self {
            CliError::Failure(_) => FAILURE,
            CliError::UsageOrIo(_) => USAGE_OR_IO,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Failure(m) | CliError::UsageOrIo(m) => f.write_str(m),
        }
    }
}

/// Most errors stop the command before it could do its work: usage or I/O.
impl From<String> for CliError {
    fn from(m: String) -> Self {
        CliError::UsageOrIo(m)
    }
}

impl From<&str> for CliError {
    fn from(m: &str) -> Self {
        CliError::UsageOrIo(m.to_string())
    }
}

impl CliError {
    /// The same error with `prefix` (`"roomcast serve: "`, `"error: "`) before its words.
    pub fn prefixed(self, prefix: &str) -> CliError {
        match self {
            CliError::Failure(m) => CliError::Failure(format!("{prefix}{m}")),
            CliError::UsageOrIo(m) => CliError::UsageOrIo(format!("{prefix}{m}")),
        }
    }
}

/// The one place an outcome becomes the process's exit code: `Ok(code)` is a code of the table
/// above, decided by the command from its results; an error's words go to stderr as worded.
pub fn finish(outcome: Result<u8, CliError>) -> ExitCode {
    match outcome {
        Ok(c) => code(c),
        Err(e) => {
            eprintln!("{e}");
            code(e.code())
        }
    }
}
