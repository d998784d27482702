//! The morning report of a campaign, in Markdown: per step and per machine, result, duration and the
//! reason of each failure. Built from the replayed [`State`] only, so it never sees a secret the
//! runners did not already redact.

use crate::procedure::{Phase, State, Status, Step, Verdict};
use std::fmt::Write;

/// Renders the report.
pub fn markdown(state: &State) -> String {
    let mut out = String::new();
    let room = state.plan.as_ref().map_or("?", |p| p.room.as_str());
    let _ = writeln!(out, "# Campaign report: room {room}\n");
    let _ = writeln!(out, "Outcome: **{}**\n", outcome(&state.phase));
    if let (Some(s), Some(e)) = (state.started_at, state.ended_at) {
        let _ = writeln!(out, "Duration: {}\n", duration(e.0 - s.0));
    }
    let _ = writeln!(out, "## Steps\n\n| step | result | detail |\n|---|---|---|");
    for step in Step::ALL {
        let status = state.step_status(step);
        let _ = writeln!(out, "| {step} | {} | {} |", word(&status), detail(&status));
    }
    if !state.signoffs.is_empty() {
        let _ = writeln!(out, "\n## Sign-offs (step e)\n");
        for s in &state.signoffs {
            let verdict = match s.verdict {
                Verdict::Ok => "ok",
                Verdict::Rejected => "rejected",
            };
            let comment = s
                .comment
                .as_deref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default();
            let _ = writeln!(out, "- {} — {verdict}{comment}", s.by);
        }
    }
    let per_machine: Vec<Step> = Step::ALL
        .into_iter()
        .filter(|s| s.is_per_machine())
        .collect();
    if state.machines.values().any(|m| !m.is_empty()) {
        let _ = writeln!(out, "\n## Machines\n");
        let head: Vec<String> = per_machine.iter().map(|s| s.to_string()).collect();
        let _ = writeln!(out, "| machine | {} |", head.join(" | "));
        let _ = writeln!(out, "|---|{}", "---|".repeat(head.len()));
        for machine in state.machines.keys() {
            let cells: Vec<String> = per_machine
                .iter()
                .map(|s| {
                    if state.plan.as_ref().is_some_and(|p| !p.includes(*s)) {
                        return "skipped".to_string();
                    }
                    let st = state.machine_status(machine, *s);
                    let d = detail(&st);
                    if d.is_empty() {
                        word(&st).to_string()
                    } else {
                        format!("{} ({d})", word(&st))
                    }
                })
                .collect();
            let _ = writeln!(out, "| {machine} | {} |", cells.join(" | "));
        }
    }
    out
}

fn outcome(phase: &Phase) -> String {
    match phase {
        Phase::New => "not started".into(),
        Phase::At(step) => format!("in progress, at {step}"),
        Phase::Finished => "finished".into(),
        Phase::Refused(r) => format!(
            "refused at a: {}",
            r.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
        Phase::Failed { step, reason } => format!("failed at {step}: {reason}"),
        Phase::Aborted { by } => format!("aborted by {by}"),
    }
}

fn word(status: &Status) -> &'static str {
    match status {
        Status::Pending => "pending",
        Status::Running { .. } => "running",
        Status::Waiting { .. } => "waiting for sign-off",
        Status::Succeeded { .. } => "ok",
        Status::Failed { .. } => "FAILED",
        Status::Skipped { .. } => "skipped",
    }
}

fn detail(status: &Status) -> String {
    match status {
        Status::Failed {
            reason, attempts, ..
        } => format!("{reason}; {attempts} attempt(s)"),
        Status::Skipped { reason } => reason.clone(),
        Status::Succeeded { attempts, .. } if *attempts > 1 => format!("{attempts} attempts"),
        Status::Running { attempt, .. } if *attempt > 1 => format!("attempt {attempt}"),
        _ => String::new(),
    }
    .replace('|', "\\|")
}

fn duration(seconds: i64) -> String {
    format!(
        "{}h{:02}m{:02}s",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procedure::{DeployMode, Event, Plan, Timestamp, replay};

    #[test]
    fn report_shows_steps_machines_and_failure_reasons() {
        let plan = Plan {
            room: "B204".into(),
            machines: vec!["PC01".into(), "PC02".into()],
            master: "PC01".into(),
            mode: DeployMode::SoftwareOnly,
            retries: 0,
            signoff_required: false,
            signoff_allowed: vec![],
        };
        let events = [
            Event::Started(plan),
            Event::StepSucceeded {
                step: Step::Collect,
            },
            Event::MachineSucceeded {
                step: Step::Deploy,
                machine: "PC01".into(),
            },
            Event::MachineFailed {
                step: Step::Deploy,
                machine: "PC02".into(),
                reason: "PC02: 198.18.4.2:22: no answer within 10 s".into(),
            },
        ];
        let times = [0, 60, 3600, 3700];
        let state = replay(events.iter().zip(times.map(Timestamp)));
        let md = markdown(&state);
        assert!(md.contains("Outcome: **finished**"), "{md}");
        assert!(md.contains("Duration: 1h01m40s"), "{md}");
        assert!(
            md.contains("| b:master | skipped | not part of a software-only campaign |"),
            "{md}"
        );
        assert!(md.contains("| PC01 | ok | skipped |"), "{md}");
        assert!(
            md.contains("| PC02 | FAILED (PC02: 198.18.4.2:22: no answer within 10 s; 1 attempt(s)) | skipped |"),
            "{md}"
        );
    }
}
