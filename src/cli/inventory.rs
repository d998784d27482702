//! `roomcast inventory`: show and export the local inventory, deliver the GLPI outbox.
//!
//! Configuration of `sync` comes from flags or the environment (flag wins):
//! `--glpi-url` / `ROOMCAST_GLPI_URL`, `--app-token` / `ROOMCAST_GLPI_APP_TOKEN` (a `secret:NAME`
//! reference, default `secret:GLPI_APP_TOKEN`; `--no-app-token` when GLPI's API client has none),
//! `--user-token` / `ROOMCAST_GLPI_USER_TOKEN` (default `secret:GLPI_USER_TOKEN`),
//! `--secrets-file` / `ROOMCAST_SECRETS_FILE`, `--timeout` / `ROOMCAST_GLPI_TIMEOUT` (seconds).

use super::exit;
use crate::inventory::db::{DEFAULT_DB_PATH, InventoryDb, MachineRow};
use crate::inventory::glpi::{GlpiConfig, InventoryEncoding};
use crate::inventory::{Timestamp, sync};
use crate::secrets::{SecretError, SecretStore};
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;

/// `roomcast inventory ...`
#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// The roomcast database file.
    #[arg(long, env = "ROOMCAST_DB", default_value = DEFAULT_DB_PATH, global = true)]
    pub db: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: InventoryCommand,
}

/// Inventory subcommands.
#[derive(Debug, Subcommand)]
pub enum InventoryCommand {
    /// List the machines (of one room), their last image and intervention, and the GLPI queue.
    Show {
        /// Only this room (e.g. B204).
        room: Option<String>,
    },
    /// Write machines and interventions to standard output.
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
        format: ExportFormat,
        /// Only this room.
        #[arg(long)]
        room: Option<String>,
    },
    /// Deliver the queued records to GLPI (retries with backoff; nothing is sent twice).
    Sync(SyncArgs),
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One CSV row per machine.
    Csv,
    /// `{"machines": [...], "interventions": [...]}`.
    Json,
}

/// Where GLPI is and how to log in.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// GLPI's root URL (`/apirest.php` and `/front/inventory.php` are appended).
    #[arg(long, env = "ROOMCAST_GLPI_URL")]
    pub glpi_url: String,
    /// The API client's App-Token, as a `secret:NAME` reference.
    #[arg(
        long,
        env = "ROOMCAST_GLPI_APP_TOKEN",
        default_value = "secret:GLPI_APP_TOKEN"
    )]
    pub app_token: String,
    /// GLPI's API client has no App-Token: send none.
    #[arg(long)]
    pub no_app_token: bool,
    /// The technician account's API token, as a `secret:NAME` reference.
    #[arg(
        long,
        env = "ROOMCAST_GLPI_USER_TOKEN",
        default_value = "secret:GLPI_USER_TOKEN"
    )]
    pub user_token: String,
    /// Secrets file (KEY=VALUE, mode 0600) consulted after the ROOMCAST_SECRET_<NAME> variables.
    #[arg(long, env = "ROOMCAST_SECRETS_FILE")]
    pub secrets_file: Option<PathBuf>,
    /// Time budget of one GLPI call, in seconds.
    #[arg(long = "timeout", env = "ROOMCAST_GLPI_TIMEOUT", default_value_t = 20)]
    pub timeout_secs: u64,
    /// Body encoding of native inventories.
    #[arg(long, value_enum, default_value_t = Encoding::Zlib)]
    pub inventory_encoding: Encoding,
}

/// Native inventory body encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Encoding {
    /// application/json.
    Json,
    /// application/x-compress-zlib (glpi-agent's default).
    Zlib,
}

/// Runs `roomcast inventory`, returning the exit code.
pub fn run(args: InventoryArgs) -> u8 {
    let db = match InventoryDb::open(&args.db) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE_OR_IO;
        }
    };
    let result = match args.command {
        InventoryCommand::Show { room } => show(&db, room.as_deref()),
        InventoryCommand::Export { format, room } => export(&db, format, room.as_deref()),
        InventoryCommand::Sync(s) => return run_sync(&db, s),
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {e}");
            exit::USAGE_OR_IO
        }
    }
}

/// The clock is read here, in `cli/`, and passed down: the inventory code takes times as arguments.
fn now() -> Timestamp {
    use crate::clock::Clock;
    crate::clock::SystemClock.now()
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_string(), T::to_string)
}

fn show(db: &InventoryDb, room: Option<&str>) -> Result<(), crate::inventory::db::DbError> {
    let machines = db.machines(room)?;
    println!(
        "{:<8} {:<14} {:<17} {:<14} {:<16} {:>6}  {:<18} {:<20} RESULT",
        "ROOM", "HOSTNAME", "MAC", "SERIAL", "MODEL", "GLPI", "IMAGE", "LAST"
    );
    for MachineRow {
        machine: m,
        last_image_version,
        last_intervention_at,
        last_result,
        ..
    } in &machines
    {
        println!(
            "{:<8} {:<14} {:<17} {:<14} {:<16} {:>6}  {:<18} {:<20} {}",
            m.room,
            m.hostname,
            m.mac,
            m.serial,
            m.model,
            opt(&m.glpi_id),
            opt(last_image_version),
            opt(last_intervention_at),
            opt(last_result)
        );
    }
    let ivs = db.interventions(room)?;
    let stats = db.outbox_stats()?;
    println!(
        "{} machine(s), {} intervention(s); GLPI queue: {} sent, {} pending, {} retrying",
        machines.len(),
        ivs.len(),
        stats.sent,
        stats.pending,
        stats.retrying
    );
    for r in db.outbox_all()?.iter().filter(|r| r.sent_at.is_none()) {
        if let Some(e) = &r.last_error {
            println!(
                "  {} (attempts {}, next {}): {e}",
                r.idempotency_key, r.attempts, r.next_attempt_at
            );
        }
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn export(
    db: &InventoryDb,
    format: ExportFormat,
    room: Option<&str>,
) -> Result<(), crate::inventory::db::DbError> {
    let machines = db.machines(room)?;
    match format {
        ExportFormat::Json => {
            let doc = serde_json::json!({
                "machines": machines,
                "interventions": db.interventions(room)?,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&doc).expect("JSON values serialize")
            );
        }
        ExportFormat::Csv => {
            println!(
                "school_uai,room,hostname,mac,serial,model,glpi_id,last_image_id,last_image_version,last_intervention_at,last_result"
            );
            for r in &machines {
                let m = &r.machine;
                let fields = [
                    m.school_uai.clone(),
                    m.room.clone(),
                    m.hostname.clone(),
                    m.mac.clone(),
                    m.serial.clone(),
                    m.model.clone(),
                    m.glpi_id.map(|v| v.to_string()).unwrap_or_default(),
                    r.last_image_id.clone().unwrap_or_default(),
                    r.last_image_version.clone().unwrap_or_default(),
                    r.last_intervention_at
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default(),
                    r.last_result.map(|o| o.to_string()).unwrap_or_default(),
                ];
                let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                println!("{}", line.join(","));
            }
        }
    }
    Ok(())
}

fn run_sync(db: &InventoryDb, a: SyncArgs) -> u8 {
    let store = SecretStore::new(a.secrets_file.clone());
    let resolve = || -> Result<_, SecretError> {
        let app = match a.no_app_token {
            true => None,
            false => Some(store.resolve(&a.app_token)?),
        };
        Ok((app, store.resolve(&a.user_token)?))
    };
    let (app_token, user_token) = match resolve() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE_OR_IO;
        }
    };
    let config = GlpiConfig {
        url: a.glpi_url,
        app_token,
        user_token,
        timeout: std::time::Duration::from_secs(a.timeout_secs),
    };
    let encoding = match a.inventory_encoding {
        Encoding::Json => InventoryEncoding::Json,
        Encoding::Zlib => InventoryEncoding::Zlib,
    };
    let report = match sync::sync(db, &config, encoding, now()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE_OR_IO;
        }
    };
    for (key, err) in &report.failed {
        eprintln!("failed: {key}: {err}");
    }
    let stats = db.outbox_stats();
    println!(
        "sent {} record(s) ({} already in GLPI), {} failed, {} deferred{}",
        report.sent,
        report.found_already_sent,
        report.failed.len(),
        report.deferred,
        match stats {
            Ok(s) => format!("; queue: {} pending, {} retrying", s.pending, s.retrying),
            Err(_) => String::new(),
        }
    );
    if let Some(why) = &report.stopped {
        eprintln!("stopped early: {why}; the rest stays queued for the next sync");
    }
    if report.failed.is_empty() {
        exit::OK
    } else {
        exit::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("B204-PC01"), "B204-PC01");
        assert_eq!(csv_field("Dell, Inc."), "\"Dell, Inc.\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("a\nb"), "\"a\nb\"");
    }
}
