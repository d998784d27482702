//! `roomcast campaign ...`: start a campaign from a room file, resume it, follow it (status, report),
//! sign step e off, abort it. `start` and `resume` are thin over [`crate::campaign::run`].

use super::exit;
use crate::campaign::journal::Journal;
use crate::campaign::{driver, report, run};
use clap::{Args, Subcommand, ValueEnum};
use roomcast_proto::procedure::{Action, Event, Timestamp, Verdict};
use std::path::PathBuf;

/// Arguments of `roomcast campaign`.
#[derive(Debug, Args)]
pub struct CampaignArgs {
    /// The journal database (normally the inventory's database file).
    #[arg(long, env = "ROOMCAST_DB", default_value = "roomcast.db")]
    pub db: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub action: CampaignCommand,
}

/// Which campaign: by id, or the latest of a room.
#[derive(Debug, Args)]
pub struct Which {
    /// Campaign id.
    #[arg(long, conflicts_with = "room")]
    pub id: Option<i64>,
    /// Room id: its latest campaign.
    #[arg(long)]
    pub room: Option<String>,
}

/// The teacher's verdict on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum VerdictArg {
    /// Fit for the room: go on to capture.
    Ok,
    /// Back to step c.
    Rejected,
}

/// `roomcast campaign` subcommands.
#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Start a campaign for a room: a, b, c, d, then wait for the sign-off (step e).
    Start(Box<super::campaign_run::StartArgs>),
    /// Go on with a campaign after its sign-off, its --until time or a crash.
    Resume(super::campaign_run::ResumeArgs),
    /// Where a campaign stands (the report, as Markdown).
    Status(Which),
    /// Print the morning report (Markdown, or --html).
    Report {
        /// Which campaign.
        #[command(flatten)]
        which: Which,
        /// The HTML page instead of Markdown.
        #[arg(long)]
        html: bool,
    },
    /// Record the teachers' sign-off of step e.
    Signoff {
        /// Which campaign.
        #[command(flatten)]
        which: Which,
        /// Who signs (must be listed in the profile's `signoff.allowed`).
        #[arg(long)]
        by: String,
        /// ok or rejected.
        #[arg(long, value_enum)]
        verdict: VerdictArg,
        /// Free comment.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Stop a campaign for good.
    Abort {
        /// Which campaign.
        #[command(flatten)]
        which: Which,
        /// Who stops it.
        #[arg(long)]
        by: String,
    },
}

/// Runs `roomcast campaign ...` and returns the exit code.
pub fn run(args: CampaignArgs) -> u8 {
    match execute(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            exit::USAGE_OR_IO
        }
    }
}

fn now() -> Timestamp {
    use crate::clock::Clock;
    crate::clock::SystemClock.now()
}

fn pick(journal: &Journal, which: &Which) -> Result<i64, String> {
    match (which.id, &which.room) {
        (Some(id), _) => Ok(id),
        (None, Some(room)) => journal
            .latest_for_room(room)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no campaign for room {room}")),
        (None, None) => Err("give --id or --room".into()),
    }
}

fn execute(args: CampaignArgs) -> Result<u8, String> {
    let action = match args.action {
        CampaignCommand::Start(start) => return Ok(super::campaign_run::start(&args.db, *start)),
        CampaignCommand::Resume(resume) => {
            return Ok(super::campaign_run::resume(&args.db, resume));
        }
        other => other,
    };
    if !args.db.exists() {
        return Err(format!("{}: no such journal", args.db.display()));
    }
    let mut journal = Journal::open(&args.db).map_err(|e| e.to_string())?;
    match action {
        CampaignCommand::Start(_) | CampaignCommand::Resume(_) => Ok(exit::USAGE_OR_IO),
        CampaignCommand::Status(which) => print_report(&journal, &args.db, &which, false),
        CampaignCommand::Report { which, html } => print_report(&journal, &args.db, &which, html),
        CampaignCommand::Signoff {
            which,
            by,
            verdict,
            comment,
        } => {
            let id = pick(&journal, &which)?;
            let verdict = match verdict {
                VerdictArg::Ok => Verdict::Ok,
                VerdictArg::Rejected => Verdict::Rejected,
            };
            let (_, actions) = driver::signoff(&mut journal, id, &by, verdict, comment, now())
                .map_err(|e| e.to_string())?;
            Ok(report_actions(
                &actions,
                "sign-off recorded; run `roomcast campaign resume` to go on",
            ))
        }
        CampaignCommand::Abort { which, by } => {
            let id = pick(&journal, &which)?;
            let state = journal.state(id).map_err(|e| e.to_string())?;
            let run = journal.current_run(id).map_err(|e| e.to_string())?;
            let (_, actions) = journal
                .record_on(id, run, state, &Event::Aborted { by }, now())
                .map_err(|e| e.to_string())?;
            Ok(report_actions(&actions, "campaign aborted"))
        }
    }
}

fn print_report(
    journal: &Journal,
    db: &std::path::Path,
    which: &Which,
    html: bool,
) -> Result<u8, String> {
    let id = pick(journal, which)?;
    let (state, facts) = run::reports(journal, db, id, false).map_err(|e| e.to_string())?;
    if html {
        print!("{}", report::html(&state, &facts));
    } else {
        print!("{}", report::markdown_with(&state, &facts));
    }
    let failed = matches!(
        state.phase,
        roomcast_proto::procedure::Phase::Failed { .. }
            | roomcast_proto::procedure::Phase::Refused(_)
            | roomcast_proto::procedure::Phase::Aborted { .. }
    );
    Ok(if failed { exit::FAILURE } else { exit::OK })
}

fn report_actions(actions: &[Action], ok: &str) -> u8 {
    if let Some(Action::Rejected { reason }) = actions.first() {
        eprintln!("refused: {reason}");
        return exit::FAILURE;
    }
    println!("{ok}");
    exit::OK
}
