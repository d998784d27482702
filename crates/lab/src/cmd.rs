//! Running `ip`, `tc` and `nft`: every failure becomes a [`LabError`] that names the step, the
//! command line and the tool's stderr.

use super::LabError;
use std::process::{Command, Stdio};

/// Runs `program args...`, returns its stdout, or an error naming `step`.
pub fn run(step: &str, program: &str, args: &[&str]) -> Result<String, LabError> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    run_command(step, &mut cmd)
}

/// Runs an already built command, returns its stdout, or an error naming `step`.
pub fn run_command(step: &str, cmd: &mut Command) -> Result<String, LabError> {
    let command = describe(cmd);
    tracing::debug!(%command, step, "lab command");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            step: step.to_owned(),
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            step: step.to_owned(),
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The command line as a human would type it (for error messages and logs).
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}
