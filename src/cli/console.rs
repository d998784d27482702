//! `roomcast console ...`: the web console (serve), a technician's password hash, and the
//! teachers' sign-off links of a campaign at step e in the terminal (with QR codes).

use super::exit;
use crate::console::{ConsoleConfig, signoff};
use clap::{Args, Subcommand};
use std::io::Read;
use std::path::PathBuf;

/// Arguments of `roomcast console`.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ConsoleCommand,
}

/// `roomcast console` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// Run the web console (HTTPS on the config's admin-side address).
    Serve {
        /// The console's configuration file (YAML).
        #[arg(long, env = "ROOMCAST_CONSOLE_CONFIG")]
        config: PathBuf,
    },
    /// Read a password on stdin, print its argon2 hash for the config's `technicians`.
    HashPassword,
    /// Issue the sign-off links of a campaign waiting at step e; print them with QR codes.
    Links {
        /// The console's configuration file (its database and public URL).
        #[arg(long, env = "ROOMCAST_CONSOLE_CONFIG")]
        config: PathBuf,
        /// Campaign id.
        #[arg(long)]
        id: i64,
        /// No QR codes.
        #[arg(long)]
        no_qr: bool,
    },
}

/// Runs `roomcast console ...` and returns the exit code.
pub fn run(args: ConsoleArgs) -> u8 {
    match execute(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            exit::USAGE_OR_IO
        }
    }
}

fn execute(args: ConsoleArgs) -> Result<u8, String> {
    match args.action {
        ConsoleCommand::HashPassword => {
            let mut pw = String::new();
            std::io::stdin()
                .take(4096)
                .read_to_string(&mut pw)
                .map_err(|e| format!("stdin: {e}"))?;
            let pw = pw.trim_end_matches(['\n', '\r']);
            if pw.is_empty() {
                return Err("stdin: no password given".into());
            }
            println!("{}", crate::console::auth::hash_password(pw)?);
            Ok(exit::OK)
        }
        ConsoleCommand::Serve { config } => {
            let config = ConsoleConfig::load(&config).map_err(|e| e.to_string())?;
            // Logins, refusals and sign-offs are logged (stderr; RUST_LOG filters).
            super::room::init_tracing();
            let plain = config.plain_http_behind_proxy;
            let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
            rt.block_on(crate::console::serve(config, |addr| {
                let scheme = if plain { "http" } else { "https" };
                eprintln!("console listening on {scheme}://{addr}");
            }))
            .map_err(|e| e.to_string())?;
            Ok(exit::OK)
        }
        ConsoleCommand::Links { config, id, no_qr } => {
            let config = ConsoleConfig::load(&config).map_err(|e| e.to_string())?;
            let now = {
                use crate::clock::Clock;
                crate::clock::SystemClock.now()
            };
            let deadline = crate::campaign::run::saved_deadline(&config.db, id);
            let links = signoff::issue(&config.db, id, now, deadline, config.link_days)
                .map_err(|e| format!("campaign {id}: {e}"))?;
            let base = config.public_url.trim_end_matches('/');
            for l in links {
                let url = format!("{base}/signoff/{}", l.token);
                println!("{} (until {}):\n{url}", l.teacher, l.expires_at);
                if !no_qr {
                    println!("{}", signoff::qr_text(&url));
                }
            }
            Ok(exit::OK)
        }
    }
}
