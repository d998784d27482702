//! `roomcast config show`: the merged view of the configuration file (`crate::config`), the
//! environment and the built-in defaults, and where each value comes from; secrets as `***`.

use super::exit::{self, CliError};
use crate::config::{self, Loaded, Source};
use clap::{Args, CommandFactory, Subcommand};

/// `roomcast config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ConfigCommand,
}

/// `roomcast config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print every setting, its value and where it comes from (environment, file:line, default).
    /// Precedence for every command: flag > environment > file > built-in default.
    Show,
}

/// Runs `roomcast config`, with the file `cli::main` already loaded and checked.
pub fn run(a: ConfigArgs, loaded: &Loaded) -> Result<u8, CliError> {
    match a.action {
        ConfigCommand::Show => {
            print!("{}", render(loaded));
            Ok(exit::OK)
        }
    }
}

/// The text of `config show`.
pub fn render(loaded: &Loaded) -> String {
    let mut out = match &loaded.path {
        Some(p) => format!("# file: {}\n", p.display()),
        None => format!(
            "# file: {} (none: built-in defaults)\n",
            config::DEFAULT_PATH
        ),
    };
    let shown = loaded.show(&super::Cli::command());
    let width = shown.iter().map(|s| s.key.len()).max().unwrap_or(0);
    for s in shown {
        let source = match &s.source {
            Source::Env(e) => format!("environment {e}"),
            Source::File(p, line) => format!("{}:{line}", p.display()),
            Source::Default => "built-in default".to_string(),
            Source::Unset => "unset (the commands that use it want a flag)".to_string(),
        };
        let value = if s.value.is_empty() { "-" } else { &s.value };
        out.push_str(&format!("{:width$} = {value}    # {source}\n", s.key));
    }
    out
}
