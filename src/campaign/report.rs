//! The morning report of a campaign, in Markdown and in HTML: per step and per machine, result,
//! duration, bytes and the reason of each failure. Built from the replayed [`State`], the event times
//! ([`Timings`]) and a few plan figures ([`Facts`]), so it never sees a secret the runners did not
//! already redact. Every text that comes from outside (room and machine names, failure reasons,
//! sign-off comments) is escaped for the format it goes into.

use roomcast_proto::procedure::{Event, State, Status, Step, Timestamp, Verdict, transition};
use std::collections::BTreeMap;
use std::fmt::Write;

/// When each step, and each step on each machine, started and ended, from the journal's times.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timings {
    /// Room-level: first start, end (when settled).
    pub steps: BTreeMap<Step, (Timestamp, Option<Timestamp>)>,
    /// Per machine (g, h): first attempt's start, end (when settled).
    pub machines: BTreeMap<(String, Step), (Timestamp, Option<Timestamp>)>,
}

fn active(s: &Status) -> bool {
    matches!(s, Status::Running { .. } | Status::Waiting { .. })
}

/// Replays `events` (with their journal times) and notes when each status started and settled.
pub fn timings<'a>(events: impl IntoIterator<Item = (&'a Event, Timestamp)>) -> Timings {
    let mut out = Timings::default();
    let mut state = State::default();
    for (event, at) in events {
        let before = state.clone();
        state = transition(state, event, at).0;
        for step in Step::ALL {
            let (was, now) = (before.step_status(step), state.step_status(step));
            note(&mut out.steps, step, &was, &now, at);
        }
        for (machine, steps) in &state.machines {
            for (step, now) in steps {
                let was = before.machine_status(machine, *step);
                note(&mut out.machines, (machine.clone(), *step), &was, now, at);
            }
        }
    }
    out
}

fn note<K: Ord>(
    map: &mut BTreeMap<K, (Timestamp, Option<Timestamp>)>,
    key: K,
    was: &Status,
    now: &Status,
    at: Timestamp,
) {
    if active(now) && !active(was) && !map.contains_key(&key) {
        map.insert(key, (at, None));
    } else if now.is_settled()
        && !was.is_settled()
        && let Some(entry) = map.get_mut(&key)
    {
        // Only what ran has a duration: a skipped step has none.
        entry.1 = Some(at);
    } else if active(now)
        && was.is_settled()
        && let Some(entry) = map.get_mut(&key)
    {
        // Entered again (step c after a rejected sign-off): the end is not known yet.
        entry.1 = None;
    }
}

/// Figures the state does not hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Step and machine times.
    pub timings: Timings,
    /// Bytes of the profile's installers: fetched at a, uploaded to the master at c, pushed to each
    /// PC at g `--software-only` (an upper bound: software already present is not sent again).
    pub installer_bytes: Option<u64>,
    /// Bytes of the image deployed to each PC at g, when the imaging backend told.
    pub image_bytes: Option<u64>,
    /// Set when the run stopped at its `--until` time; what was not done is reported as such.
    pub stopped_at_until: bool,
    /// `School name (UAI)`, from the plan saved at start.
    pub school: Option<String>,
    /// The image the room received (from the store, when the caller has it).
    pub image_info: Option<ImageFacts>,
    /// Bytes each PC wrote at g, from its agent's report (written + zeroed), by machine name.
    pub written: BTreeMap<String, u64>,
}

/// What the morning reader needs to know of the image deployed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFacts {
    /// Image name.
    pub name: String,
    /// Image version.
    pub version: String,
    /// Size of the disk it rebuilds, bytes.
    pub size: u64,
    /// Fingerprint of the key that signed it.
    pub signer: String,
}

/// One report, before it is written in a format.
struct Doc {
    room: String,
    school: Option<String>,
    outcome: String,
    /// Date and times of the run (UTC): start, end.
    when: Option<String>,
    duration: Option<String>,
    image_line: Option<String>,
    /// machine, step, what happened, what to do
    failed: Vec<[String; 4]>,
    image: Option<String>,
    note: Option<String>,
    /// step, result, duration, bytes, detail
    steps: Vec<[String; 5]>,
    signoffs: Vec<String>,
    /// header, then rows
    machines: Option<(Vec<String>, Vec<Vec<String>>)>,
}

fn doc(state: &State, facts: &Facts) -> Doc {
    let plan = state.plan.as_ref();
    let software_only =
        plan.is_some_and(|p| p.mode == roomcast_proto::procedure::DeployMode::SoftwareOnly);
    let span = |t: Option<&(Timestamp, Option<Timestamp>)>| match t {
        Some((s, Some(e))) => duration(e.0 - s.0),
        _ => String::new(),
    };
    let mut steps = Vec::new();
    for step in Step::ALL {
        let status = state.step_status(step);
        let bytes = match step {
            Step::Collect | Step::Install => facts.installer_bytes,
            _ => None,
        }
        .filter(|_| matches!(status, Status::Succeeded { .. }))
        .map(human_bytes)
        .unwrap_or_default();
        steps.push([
            step.to_string(),
            unfinished(word(&status), facts).to_string(),
            span(facts.timings.steps.get(&step)),
            bytes,
            detail(&status),
        ]);
    }
    let signoffs = state
        .signoffs
        .iter()
        .map(|s| {
            let verdict = match s.verdict {
                Verdict::Ok => "ok",
                Verdict::Rejected => "rejected",
            };
            let comment = s
                .comment
                .as_deref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default();
            format!("{} — {verdict}{comment}", s.by)
        })
        .collect();
    let per_machine: Vec<Step> = Step::ALL
        .into_iter()
        .filter(|s| s.is_per_machine())
        .collect();
    let machines = state.machines.values().any(|m| !m.is_empty()).then(|| {
        let mut head = vec!["machine".to_string()];
        for s in &per_machine {
            head.push(s.to_string());
            head.push("duration".into());
            if *s == Step::Deploy {
                head.push("bytes".into());
                head.push("rate".into());
            }
        }
        let rows = state
            .machines
            .keys()
            .map(|machine| {
                let mut row = vec![machine.clone()];
                for s in &per_machine {
                    let included = plan.is_none_or(|p| p.includes(*s));
                    let st = state.machine_status(machine, *s);
                    let cell = if !included {
                        "skipped".to_string()
                    } else {
                        let d = detail(&st);
                        let w = unfinished(word(&st), facts);
                        if d.is_empty() {
                            w.to_string()
                        } else {
                            format!("{w} ({d})")
                        }
                    };
                    row.push(cell);
                    row.push(span(facts.timings.machines.get(&(machine.clone(), *s))));
                    if *s == Step::Deploy {
                        // What the PC's agent reported writing; the plan's estimate otherwise.
                        let per_pc = facts.written.get(machine).copied().or(if software_only {
                            facts.installer_bytes
                        } else {
                            facts.image_bytes
                        });
                        let per_pc = per_pc.filter(|_| matches!(st, Status::Succeeded { .. }));
                        let secs = match facts.timings.machines.get(&(machine.clone(), *s)) {
                            Some((start, Some(end))) => Some((end.0 - start.0).max(1) as u64),
                            _ => None,
                        };
                        let (bytes, rate) = written_words(per_pc, secs);
                        row.push(bytes);
                        row.push(rate);
                    }
                }
                row
            })
            .collect();
        (head, rows)
    });
    let mut failed = Vec::new();
    for (machine, steps) in &state.machines {
        for (step, st) in steps {
            if let Status::Failed { reason, .. } = st {
                failed.push([
                    machine.clone(),
                    step.to_string(),
                    reason.clone(),
                    what_to_do(*step, reason).to_string(),
                ]);
            }
        }
    }
    let image_line = facts.image_info.as_ref().map(|i| {
        format!(
            "{} {} ({}), signed by {}",
            i.name,
            i.version,
            human_bytes(i.size),
            i.signer
        )
    });
    Doc {
        room: plan.map_or("?".into(), |p| p.room.clone()),
        school: facts.school.clone(),
        when: state.started_at.map(|s| {
            let day = s.to_rfc3339();
            let (date, start) = day.split_at(10);
            let start = start.trim_start_matches('T').trim_end_matches('Z');
            match state.ended_at {
                Some(e) => format!(
                    "{date}, {start} to {} (UTC)",
                    e.to_rfc3339()[11..].trim_end_matches('Z')
                ),
                None => format!("{date}, from {start} (UTC), not ended"),
            }
        }),
        image_line,
        failed,
        outcome: state.phase.to_string(),
        duration: match (state.started_at, state.ended_at) {
            (Some(s), Some(e)) => Some(duration(e.0 - s.0)),
            _ => None,
        },
        image: state.image.clone(),
        note: facts.stopped_at_until.then(|| {
            "The run stopped at its --until time: steps and PCs marked \"not done\" were not \
             started (or were cut short); `roomcast campaign resume` takes them up."
                .to_string()
        }),
        steps,
        signoffs,
        machines,
    }
}

fn unfinished(word: &'static str, facts: &Facts) -> &'static str {
    match word {
        "pending" | "running" if facts.stopped_at_until => "not done",
        w => w,
    }
}

/// The report in Markdown, from the state alone (no times, no bytes).
pub fn markdown(state: &State) -> String {
    markdown_with(state, &Facts::default())
}

/// Escapes text for a Markdown table cell or line: no markup, no line break, no cell break.
fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' | '\\' | '*' | '_' | '`' | '<' | '>' | '[' | ']' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The report in Markdown.
pub fn markdown_with(state: &State, facts: &Facts) -> String {
    let d = doc(state, facts);
    let mut out = String::new();
    let _ = writeln!(out, "# Campaign report: room {}\n", md(&d.room));
    if let Some(s) = &d.school {
        let _ = writeln!(out, "School: {}\n", md(s));
    }
    if let Some(w) = &d.when {
        let _ = writeln!(out, "Night: {}\n", md(w));
    }
    let _ = writeln!(out, "Outcome: **{}**\n", md(&d.outcome));
    if let Some(t) = &d.duration {
        let _ = writeln!(out, "Duration: {t}\n");
    }
    if let Some(i) = &d.image_line {
        let _ = writeln!(out, "Image: {}\n", md(i));
    }
    if let Some(i) = &d.image {
        let _ = writeln!(out, "Image captured at f: `{}`\n", md(i));
    }
    if let Some(n) = &d.note {
        let _ = writeln!(out, "> {}\n", md(n));
    }
    let _ = writeln!(
        out,
        "## Steps\n\n| step | result | duration | bytes | detail |\n|---|---|---|---|---|"
    );
    for row in &d.steps {
        let cells: Vec<String> = row.iter().map(|c| md(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    if !d.signoffs.is_empty() {
        let _ = writeln!(out, "\n## Sign-offs (step e)\n");
        for s in &d.signoffs {
            let _ = writeln!(out, "- {}", md(s));
        }
    }
    if let Some((head, rows)) = &d.machines {
        let _ = writeln!(out, "\n## Machines\n");
        let _ = writeln!(out, "| {} |", head.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
        for row in rows {
            let cells: Vec<String> = row.iter().map(|c| md(c)).collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
    }
    if !d.failed.is_empty() {
        let _ = writeln!(out, "\n## Failed PCs: what happened, what to do\n");
        for [machine, step, reason, todo] in &d.failed {
            let _ = writeln!(
                out,
                "- **{}** at {}: {}. *To do:* {}",
                md(machine),
                md(step),
                md(reason),
                md(todo)
            );
        }
    }
    out
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The report as a standalone HTML page (no script, no external resource).
pub fn html(state: &State, facts: &Facts) -> String {
    let d = doc(state, facts);
    let e = html_escape;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <title>Campaign report: room {}</title>\n<style>\
         body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #999;padding:.2em .5em;text-align:left}}\
         .FAILED{{background:#fdd}}.ok{{background:#dfd}}\
         @page{{size:A4;margin:15mm}}\
         @media print{{body{{margin:0;font-size:10pt}}table{{width:100%;page-break-inside:auto}}\
         tr{{page-break-inside:avoid}}h2{{page-break-after:avoid}}\
         .FAILED,.ok{{-webkit-print-color-adjust:exact;print-color-adjust:exact}}}}</style>\n</head>\n<body>",
        e(&d.room)
    );
    let _ = writeln!(out, "<h1>Campaign report: room {}</h1>", e(&d.room));
    if let Some(s) = &d.school {
        let _ = writeln!(out, "<p>School: {}</p>", e(s));
    }
    if let Some(w) = &d.when {
        let _ = writeln!(out, "<p>Night: {}</p>", e(w));
    }
    let _ = writeln!(out, "<p>Outcome: <strong>{}</strong></p>", e(&d.outcome));
    if let Some(t) = &d.duration {
        let _ = writeln!(out, "<p>Duration: {}</p>", e(t));
    }
    if let Some(i) = &d.image_line {
        let _ = writeln!(out, "<p>Image: {}</p>", e(i));
    }
    if let Some(i) = &d.image {
        let _ = writeln!(out, "<p>Image captured at f: <code>{}</code></p>", e(i));
    }
    if let Some(n) = &d.note {
        let _ = writeln!(out, "<p><em>{}</em></p>", e(n));
    }
    let _ = writeln!(
        out,
        "<h2>Steps</h2>\n<table>\n<tr><th>step</th><th>result</th><th>duration</th><th>bytes</th><th>detail</th></tr>"
    );
    for row in &d.steps {
        let _ = writeln!(out, "{}", html_row(row, 1));
    }
    let _ = writeln!(out, "</table>");
    if !d.signoffs.is_empty() {
        let _ = writeln!(out, "<h2>Sign-offs (step e)</h2>\n<ul>");
        for s in &d.signoffs {
            let _ = writeln!(out, "<li>{}</li>", e(s));
        }
        let _ = writeln!(out, "</ul>");
    }
    if let Some((head, rows)) = &d.machines {
        let _ = writeln!(out, "<h2>Machines</h2>\n<table>\n<tr>");
        for h in head {
            let _ = write!(out, "<th>{}</th>", e(h));
        }
        let _ = writeln!(out, "</tr>");
        for row in rows {
            let _ = writeln!(out, "{}", html_row(row, usize::MAX));
        }
        let _ = writeln!(out, "</table>");
    }
    if !d.failed.is_empty() {
        let _ = writeln!(
            out,
            "<h2>Failed PCs: what happened, what to do</h2>\n<table>\n\
             <tr><th>machine</th><th>step</th><th>what happened</th><th>what to do</th></tr>"
        );
        for row in &d.failed {
            let _ = writeln!(out, "{}", html_row(row, usize::MAX - 1));
        }
        let _ = writeln!(out, "</table>");
    }
    let _ = writeln!(out, "</body>\n</html>");
    out
}

/// A table row; the result cells get a class from their first word (ok, FAILED) so failures stand
/// out. `result_col`: the one result column, or every column when `usize::MAX`.
fn html_row(row: &[String], result_col: usize) -> String {
    let mut out = String::from("<tr>");
    for (i, cell) in row.iter().enumerate() {
        let first = cell.split(' ').next().unwrap_or("");
        let class = (i == result_col || (result_col == usize::MAX && i > 0))
            .then_some(first)
            .filter(|w| *w == "ok" || *w == "FAILED");
        match class {
            Some(c) => {
                let _ = write!(out, "<td class=\"{c}\">{}</td>", html_escape(cell));
            }
            None => {
                let _ = write!(out, "<td>{}</td>", html_escape(cell));
            }
        }
    }
    out.push_str("</tr>");
    out
}

/// What a technician does about a PC that failed `step` for `reason`, in plain words.
pub fn what_to_do(step: Step, reason: &str) -> &'static str {
    let r = reason.to_ascii_lowercase();
    if r.contains("never booted") || r.contains("no boot") {
        "check that the PC is powered, wired, and boots from the network first (BIOS/UEFI boot order, Wake-on-LAN armed); then `roomcast campaign resume`"
    } else if r.contains("timeout") || r.contains("no answer") || r.contains("timed out") {
        "check that the PC is on and its cable and switch port work; then `roomcast campaign resume`"
    } else if r.contains("disk") {
        "check the PC's disk (size, health) against the profile's system-disk rule; replace it or add a room exception; then resume"
    } else if r.contains("sha256") || r.contains("signature") || r.contains("signer") {
        "run `roomcast image verify` on the image; do not deploy it again before it verifies"
    } else if step == Step::Join || r.contains("join") {
        "check the join account and the OU in the directory, and the PC's hostname; then resume (only h is redone)"
    } else {
        "read the PC's agent report and the journal; fix the cause, then `roomcast campaign resume` (only what failed is redone)"
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
}

fn duration(seconds: i64) -> String {
    format!(
        "{}h{:02}m{:02}s",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

/// A PC's bytes and rate at g, in words: what it wrote over the step's seconds. A PC that wrote
/// nothing had every chunk of the image on its disk already (a delta restore writes only what
/// differs): said in words, rather than "0 B" at "0 B/s". The report's and the console's tiles.
pub fn written_words(written: Option<u64>, secs: Option<u64>) -> (String, String) {
    match (written, secs) {
        (Some(0), _) => (
            "nothing to write: the disk held the image".into(),
            String::new(),
        ),
        (Some(b), Some(t)) => (human_bytes(b), format!("{}/s", human_bytes(b / t.max(1)))),
        (Some(b), None) => (human_bytes(b), String::new()),
        (None, _) => (String::new(), String::new()),
    }
}

/// Human size, binary units (`1.5 GiB`): the one formatter of reports, console pages and the CLI.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomcast_proto::procedure::{DeployMode, Plan, replay};

    fn events() -> (Vec<Event>, Vec<Timestamp>) {
        let plan = Plan {
            room: "B204".into(),
            machines: vec!["PC01".into(), "PC02".into()],
            master: "PC01".into(),
            mode: DeployMode::SoftwareOnly,
            retries: 0,
            signoff_required: false,
            signoff_allowed: vec![],
        };
        let events = vec![
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
        (events, [0, 60, 3600, 3700].map(Timestamp).to_vec())
    }

    #[test]
    fn report_shows_steps_machines_durations_bytes_and_failure_reasons() {
        let (events, times) = events();
        let state = replay(events.iter().zip(times.iter().copied()));
        let facts = Facts {
            timings: timings(events.iter().zip(times.iter().copied())),
            installer_bytes: Some(3 * 1024 * 1024),
            ..Facts::default()
        };
        let md = markdown_with(&state, &facts);
        assert!(md.contains("Outcome: **finished**"), "{md}");
        assert!(md.contains("Duration: 1h01m40s"), "{md}");
        assert!(
            md.contains("| a:collect | ok | 0h01m00s | 3.0 MiB |  |"),
            "{md}"
        );
        assert!(
            md.contains("| b:master | skipped |  |  | not part of a software-only campaign |"),
            "{md}"
        );
        assert!(
            md.contains("| PC01 | ok | 0h59m00s | 3.0 MiB | 888 B/s | skipped |  |"),
            "{md}"
        );
        assert!(
            md.contains("| PC02 | FAILED (PC02: 198.18.4.2:22: no answer within 10 s; 1 attempt(s)) | 1h00m40s |  |  | skipped |  |"),
            "{md}"
        );
        assert!(md.contains("- **PC02** at g:deploy: PC02: 198.18.4.2:22: no answer within 10 s. *To do:* check that the PC is on"), "{md}");
        assert!(
            md.contains("Night: 1970-01-01, 00:00:00 to 01:01:40 (UTC)"),
            "{md}"
        );
        // What the agent reported writing wins over the plan's estimate; school, image facts.
        let facts = Facts {
            written: [("PC01".to_string(), 7 * 1024 * 1024)].into(),
            school: Some("Lycée Test (0350001A)".into()),
            image_info: Some(ImageFacts {
                name: "b204".into(),
                version: "2026.12".into(),
                size: 64 << 30,
                signer: "ab12".into(),
            }),
            ..facts
        };
        let md = markdown_with(&state, &facts);
        assert!(
            md.contains("| PC01 | ok | 0h59m00s | 7.0 MiB | 2.0 KiB/s |"),
            "{md}"
        );
        assert!(md.contains("School: Lycée Test (0350001A)"), "{md}");
        assert!(
            md.contains("Image: b204 2026.12 (64.0 GiB), signed by ab12"),
            "{md}"
        );
        let page = html(&state, &facts);
        assert!(page.contains("@page{size:A4"), "{page}");
        assert!(
            page.contains("<td>7.0 MiB</td><td>2.0 KiB/s</td>"),
            "{page}"
        );
        // A PC whose disk already held the image wrote nothing: said so, no "0 B/s".
        let facts = Facts {
            written: [("PC01".to_string(), 0)].into(),
            ..facts
        };
        let md = markdown_with(&state, &facts);
        assert!(
            md.contains("| PC01 | ok | 0h59m00s | nothing to write: the disk held the image |  |"),
            "{md}"
        );
        assert!(!md.contains("0 B/s"), "{md}");
    }

    #[test]
    fn hostile_names_and_reasons_are_escaped_in_html_and_markdown() {
        let (mut events, times) = events();
        let evil = "<script>alert('x')</script>&\"|**";
        if let Event::Started(p) = &mut events[0] {
            p.machines[1] = evil.into();
            p.room = "<b>B204</b>".into();
        }
        events[3] = Event::MachineFailed {
            step: Step::Deploy,
            machine: evil.into(),
            reason: format!("join refused: {evil}\n| injected | row |"),
        };
        let state = replay(events.iter().zip(times.iter().copied()));
        let page = html(&state, &Facts::default());
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<b>B204"), "{page}");
        assert!(
            page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;|**"),
            "{page}"
        );
        // The page is well-formed: every tag opened is closed.
        let body = page.replace("<!DOCTYPE html>", "");
        let doc = roxmltree::Document::parse(&body);
        assert!(doc.is_ok(), "{doc:?}\n{page}");
        let md = markdown(&state);
        assert!(!md.contains("<script>"), "{md}");
        assert!(
            !md.contains("\n| injected"),
            "a reason cannot start a table row: {md}"
        );
        let rows = md.lines().filter(|l| l.starts_with("| ")).count();
        assert_eq!(
            rows,
            1 + 8 + 1 + 2,
            "steps header + 8 steps + machines header + 2 PCs: {md}"
        );
    }
}
