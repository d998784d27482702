//! `roomcast generate DIR` (hidden): writes the man pages (one per command and subcommand,
//! `man/roomcast-deploy.1`, ...) and the bash, zsh and fish completions (`completions/`) from the
//! clap definitions, for the Debian package (`cargo deb` takes them from `target/package/`).
//!
//! A subcommand of the binary itself rather than a build script or an xtask: the pages and
//! completions come from exactly the `Cli` the package ships, with no second crate and no build-time
//! code; the package build runs the binary it just built (docs/INSTALL.md).

use super::exit::{self, CliError};
use clap::{Args, CommandFactory};
use clap_complete::Shell;
use std::path::PathBuf;

/// `roomcast generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Output folder: `man/` and `completions/` are created in it.
    pub dir: PathBuf,
}

/// Writes the man pages and completions; prints how many.
pub fn run(a: GenerateArgs) -> Result<u8, CliError> {
    let io = |what: &str, e: std::io::Error| CliError::from(format!("{what}: {e}"));
    let man = a.dir.join("man");
    let completions = a.dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).map_err(|e| io(&d.display().to_string(), e))?;
    }
    let cmd = super::Cli::command();
    clap_mangen::generate_to(cmd.clone(), &man).map_err(|e| io(&man.display().to_string(), e))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut c = cmd.clone();
        clap_complete::generate_to(shell, &mut c, "roomcast", &completions)
            .map_err(|e| io(&completions.display().to_string(), e))?;
    }
    let pages = std::fs::read_dir(&man)
        .map_err(|e| io(&man.display().to_string(), e))?
        .count();
    println!(
        "{pages} man pages in {}, bash/zsh/fish completions in {}",
        man.display(),
        completions.display()
    );
    Ok(exit::OK)
}
