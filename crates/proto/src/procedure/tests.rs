//! Every rule of the engine through one helper: `check(plan, events, expected)` replays the events
//! (event i happens at time i), renders the final state and the last event's actions as text and
//! compares with `expected`.

use super::*;
use proptest::prelude::*;
use std::fmt::Write;

fn plan(machines: &[&str], retries: u32) -> Plan {
    Plan {
        room: "B204".into(),
        machines: machines.iter().map(|m| m.to_string()).collect(),
        master: machines[0].to_string(),
        mode: DeployMode::Image,
        retries,
        signoff_required: true,
        signoff_allowed: vec!["M. Dupont".into(), "Mme Leroy".into()],
    }
}

fn ok(step: Step) -> Event {
    Event::StepSucceeded { step }
}

fn m_ok(step: Step, machine: &str) -> Event {
    Event::MachineSucceeded {
        step,
        machine: machine.into(),
    }
}

fn m_fail(step: Step, machine: &str) -> Event {
    Event::MachineFailed {
        step,
        machine: machine.into(),
        reason: format!("{machine} did not answer"),
    }
}

fn sign(by: &str, verdict: Verdict) -> Event {
    Event::Signoff {
        by: by.into(),
        verdict,
        comment: None,
    }
}

/// a–d then an accepted sign-off and capture: the campaign is at g.
fn up_to_deploy(plan: Plan) -> Vec<Event> {
    vec![
        Event::Started(plan),
        ok(Step::Collect),
        ok(Step::Master),
        ok(Step::Install),
        ok(Step::Tests),
        sign("Mme Leroy", Verdict::Ok),
        ok(Step::Capture),
    ]
}

fn render(state: &State, actions: &[Action]) -> String {
    let mut out = String::new();
    let phase = match &state.phase {
        Phase::At(s) => format!("at {s}"),
        Phase::Refused(r) => format!(
            "refused: {}",
            r.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
        Phase::Failed { step, reason } => format!("failed at {step}: {reason}"),
        Phase::Aborted { by } => format!("aborted by {by}"),
        other => format!("{other:?}").to_lowercase(),
    };
    writeln!(out, "phase {phase}").unwrap();
    for (step, status) in &state.steps {
        if !step.is_per_machine() {
            writeln!(out, "{} {}", step.letter(), short(status)).unwrap();
        }
    }
    for (machine, steps) in &state.machines {
        if steps.is_empty() {
            continue;
        }
        let cells: Vec<String> = steps
            .iter()
            .map(|(s, st)| format!("{}={}", s.letter(), short(st)))
            .collect();
        writeln!(out, "{machine}: {}", cells.join(" ")).unwrap();
    }
    for a in actions {
        let line = match a {
            Action::RunStep { step } => format!("-> run {step}"),
            Action::RunOnMachine {
                step,
                machine,
                attempt,
            } => format!("-> run {step} on {machine} #{attempt}"),
            Action::AwaitSignoff { allowed } => {
                format!("-> await sign-off by {}", allowed.join("|"))
            }
            Action::Finish => "-> finish".into(),
            Action::Rejected { reason } => format!("-> rejected: {reason}"),
        };
        writeln!(out, "{line}").unwrap();
    }
    out
}

fn short(s: &Status) -> String {
    match s {
        Status::Pending => "pending".into(),
        Status::Running { attempt, .. } => format!("running#{attempt}"),
        Status::Waiting { .. } => "waiting".into(),
        Status::Succeeded { attempts, .. } => format!("ok#{attempts}"),
        Status::Failed { attempts, .. } => format!("FAILED#{attempts}"),
        Status::Skipped { .. } => "skipped".into(),
    }
}

fn run(events: &[Event]) -> (State, Vec<Action>) {
    let mut state = State::default();
    let mut last = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let (s, a) = transition(state, e, Timestamp(i as i64));
        state = s;
        last = a;
    }
    (state, last)
}

#[track_caller]
fn check(events: &[Event], expected: &str) {
    let (state, actions) = run(events);
    let got = render(&state, &actions);
    let want: String = expected
        .trim()
        .lines()
        .map(|l| format!("{}\n", l.trim()))
        .collect();
    assert_eq!(got, want, "\n--- got ---\n{got}--- want ---\n{want}");
}

#[test]
fn a_phase_says_itself_once_and_a_step_is_found_by_its_letter() {
    let refused = Phase::Refused(vec![Refusal::InstallerUnavailable {
        file: "setup.msi".into(),
        reason: "gone".into(),
    }]);
    assert!(
        refused
            .to_string()
            .starts_with("refused at step a, no PC touched: installer setup.msi"),
        "{refused}"
    );
    assert_eq!(refused.word(), "refused");
    assert_eq!(
        Phase::At(Step::Signoff).to_string(),
        "in progress, at e:signoff"
    );
    assert_eq!(Phase::At(Step::Signoff).word(), "running");
    for s in Step::ALL {
        assert_eq!(Step::from_letter(s.letter()), Some(s));
    }
    assert_eq!(Step::from_letter('i'), None);
}

#[test]
fn start_runs_step_a() {
    check(
        &[Event::Started(plan(&["PC01", "PC02"], 1))],
        "phase at a:collect
         a running#1
         -> run a:collect",
    );
}

#[test]
fn room_steps_run_in_order_then_signoff_waits() {
    check(
        &[
            Event::Started(plan(&["PC01"], 0)),
            ok(Step::Collect),
            ok(Step::Master),
            ok(Step::Install),
            ok(Step::Tests),
        ],
        "phase at e:signoff
         a ok#1
         b ok#1
         c ok#1
         d ok#1
         e waiting
         -> await sign-off by M. Dupont|Mme Leroy",
    );
}

#[test]
fn nothing_auto_passes_the_signoff_gate() {
    // A room-level success for e, or any other result, does not move the gate.
    let mut events = up_to_deploy(plan(&["PC01"], 0));
    events.truncate(5);
    events.push(ok(Step::Signoff));
    check(
        &events,
        "phase at e:signoff
         a ok#1
         b ok#1
         c ok#1
         d ok#1
         e waiting
         -> rejected: step e:signoff has no room-level result (use its own event)",
    );
    events.pop();
    events.push(Event::Resumed);
    check(
        &events,
        "phase at e:signoff
         a ok#1
         b ok#1
         c ok#1
         d ok#1
         e waiting
         -> await sign-off by M. Dupont|Mme Leroy",
    );
}

#[test]
fn signoff_by_someone_not_allowed_is_refused() {
    let mut events = up_to_deploy(plan(&["PC01"], 0));
    events.truncate(5);
    events.push(sign("Le Proviseur", Verdict::Ok));
    check(
        &events,
        "phase at e:signoff
         a ok#1
         b ok#1
         c ok#1
         d ok#1
         e waiting
         -> rejected: Le Proviseur may not sign off room B204 (allowed: M. Dupont, Mme Leroy)",
    );
    let (state, _) = run(&events);
    assert!(state.signoffs.is_empty());
}

#[test]
fn rejected_signoff_goes_back_to_install() {
    let mut events = up_to_deploy(plan(&["PC01"], 0));
    events.truncate(5);
    events.push(sign("M. Dupont", Verdict::Rejected));
    check(
        &events,
        "phase at c:install
         a ok#1
         b ok#1
         c running#1
         d pending
         e pending
         -> run c:install",
    );
    events.extend([
        ok(Step::Install),
        ok(Step::Tests),
        sign("Mme Leroy", Verdict::Ok),
    ]);
    let (state, actions) = run(&events);
    assert_eq!(state.phase, Phase::At(Step::Capture));
    assert_eq!(
        actions,
        vec![Action::RunStep {
            step: Step::Capture
        }]
    );
    assert_eq!(state.install_rounds, 2);
    assert_eq!(state.signoffs.len(), 2);
    assert_eq!(state.signoffs[0].verdict, Verdict::Rejected);
}

#[test]
fn signoff_before_step_e_is_refused() {
    check(
        &[
            Event::Started(plan(&["PC01"], 0)),
            sign("M. Dupont", Verdict::Ok),
        ],
        "phase at a:collect
         a running#1
         -> rejected: no sign-off is awaited: the campaign is at step a:collect",
    );
}

#[test]
fn waived_signoff_is_skipped_not_passed() {
    let mut p = plan(&["PC01"], 0);
    p.signoff_required = false;
    check(
        &[
            Event::Started(p),
            ok(Step::Collect),
            ok(Step::Master),
            ok(Step::Install),
            ok(Step::Tests),
        ],
        "phase at f:capture
         a ok#1
         b ok#1
         c ok#1
         d ok#1
         e skipped
         f running#1
         -> run f:capture",
    );
}

#[test]
fn refusal_at_a_touches_no_pc() {
    check(
        &[
            Event::Started(plan(&["PC01", "PC02"], 2)),
            Event::Refused(vec![
                Refusal::LicenceShortfall {
                    software: "solidworks-edu".into(),
                    seats: 30,
                    needed: 32,
                },
                Refusal::InstallerMismatch {
                    file: "setup.msi".into(),
                    expected: "aa".into(),
                    actual: "bb".into(),
                },
            ]),
        ],
        "phase refused: licence shortfall for solidworks-edu: 30 seat(s) covered, the room needs 32; installer setup.msi: expected sha256 aa, got bb
         a FAILED#1
         -> finish",
    );
}

#[test]
fn refusal_after_step_a_is_ignored() {
    let events = [
        Event::Started(plan(&["PC01"], 0)),
        ok(Step::Collect),
        Event::Refused(vec![Refusal::NoLicence {
            software: "x".into(),
        }]),
    ];
    let (state, actions) = run(&events);
    assert_eq!(state.phase, Phase::At(Step::Master));
    assert!(
        matches!(&actions[..], [Action::Rejected { reason }] if reason.contains("only comes from step a"))
    );
}

#[test]
fn failed_room_step_stops_the_campaign() {
    check(
        &[
            Event::Started(plan(&["PC01"], 3)),
            ok(Step::Collect),
            ok(Step::Master),
            ok(Step::Install),
            Event::StepFailed {
                step: Step::Tests,
                reason: "LibreOffice starts: exit 1, expected 0".into(),
            },
        ],
        "phase failed at d:tests: LibreOffice starts: exit 1, expected 0
         a ok#1
         b ok#1
         c ok#1
         d FAILED#1
         -> finish",
    );
}

#[test]
fn deploy_runs_on_every_pc() {
    check(
        &up_to_deploy(plan(&["PC01", "PC02", "PC03"], 1)),
        "phase at g:deploy
         a ok#1
         b ok#1
         c ok#1
         d ok#1
         e ok#1
         f ok#1
         PC01: g=running#1
         PC02: g=running#1
         PC03: g=running#1
         -> run g:deploy on PC01 #1
         -> run g:deploy on PC02 #1
         -> run g:deploy on PC03 #1",
    );
}

#[test]
fn failed_pc_is_retried_as_configured() {
    let mut events = up_to_deploy(plan(&["PC01", "PC02"], 2));
    events.push(m_fail(Step::Deploy, "PC02"));
    let (_, actions) = run(&events);
    assert_eq!(
        actions,
        vec![Action::RunOnMachine {
            step: Step::Deploy,
            machine: "PC02".into(),
            attempt: 2
        }]
    );
    events.push(m_fail(Step::Deploy, "PC02"));
    events.push(m_ok(Step::Deploy, "PC02"));
    let (state, _) = run(&events);
    assert!(matches!(
        state.machine_status("PC02", Step::Deploy),
        Status::Succeeded { attempts: 3, .. }
    ));
}

#[test]
fn one_failed_pc_fails_that_pc_not_the_room() {
    let mut events = up_to_deploy(plan(&["PC01", "PC02", "PC03"], 1));
    events.extend([
        m_ok(Step::Deploy, "PC01"),
        m_fail(Step::Deploy, "PC02"),
        m_fail(Step::Deploy, "PC02"),
        m_ok(Step::Deploy, "PC03"),
    ]);
    check(
        &events,
        "phase at h:join
         a ok#1
         b ok#1
         c ok#1
         d ok#1
         e ok#1
         f ok#1
         PC01: g=ok#1 h=running#1
         PC02: g=FAILED#2 h=skipped
         PC03: g=ok#1 h=running#1
         -> run h:join on PC01 #1
         -> run h:join on PC03 #1",
    );
    events.extend([m_ok(Step::Join, "PC01"), m_fail(Step::Join, "PC03")]);
    events.push(m_ok(Step::Join, "PC03"));
    check(
        &events,
        "phase finished
         a ok#1
         b ok#1
         c ok#1
         d ok#1
         e ok#1
         f ok#1
         PC01: g=ok#1 h=ok#1
         PC02: g=FAILED#2 h=skipped
         PC03: g=ok#1 h=ok#2
         -> finish",
    );
}

#[test]
fn every_pc_failing_fails_the_room() {
    let mut events = up_to_deploy(plan(&["PC01", "PC02"], 0));
    events.extend([m_fail(Step::Deploy, "PC01"), m_fail(Step::Deploy, "PC02")]);
    let (state, actions) = run(&events);
    assert_eq!(
        state.phase,
        Phase::Failed {
            step: Step::Deploy,
            reason: "no PC of room B204 passed step g:deploy".into()
        }
    );
    assert_eq!(actions, vec![Action::Finish]);
}

#[test]
fn a_second_result_for_a_succeeded_machine_is_ignored() {
    let mut events = up_to_deploy(plan(&["PC01", "PC02"], 0));
    events.push(m_ok(Step::Deploy, "PC01"));
    events.push(m_fail(Step::Deploy, "PC01"));
    let (state, actions) = run(&events);
    assert!(matches!(
        state.machine_status("PC01", Step::Deploy),
        Status::Succeeded { .. }
    ));
    assert!(
        matches!(&actions[..], [Action::Rejected { reason }] if reason.contains("already succeeded")),
        "{actions:?}"
    );
}

#[test]
fn resume_reissues_only_unfinished_machines() {
    let mut events = up_to_deploy(plan(&["PC01", "PC02", "PC03"], 1));
    events.extend([m_ok(Step::Deploy, "PC01"), m_fail(Step::Deploy, "PC03")]);
    events.push(Event::Resumed);
    check(
        &events,
        "phase at g:deploy
         a ok#1
         b ok#1
         c ok#1
         d ok#1
         e ok#1
         f ok#1
         PC01: g=ok#1
         PC02: g=running#1
         PC03: g=running#2
         -> run g:deploy on PC02 #1
         -> run g:deploy on PC03 #2",
    );
}

#[test]
fn resume_during_install_reruns_install() {
    let events = [
        Event::Started(plan(&["PC01"], 0)),
        ok(Step::Collect),
        ok(Step::Master),
        Event::Resumed,
    ];
    let (_, actions) = run(&events);
    assert_eq!(
        actions,
        vec![Action::RunStep {
            step: Step::Install
        }]
    );
}

#[test]
fn unknown_machine_and_late_results_are_rejected() {
    let mut events = up_to_deploy(plan(&["PC01"], 0));
    events.push(m_ok(Step::Deploy, "PC99"));
    let (_, actions) = run(&events);
    assert!(
        matches!(&actions[..], [Action::Rejected { reason }] if reason.contains("PC99 is not a machine of room B204"))
    );
    let mut events = up_to_deploy(plan(&["PC01"], 0));
    events.push(m_ok(Step::Join, "PC01"));
    let (_, actions) = run(&events);
    assert!(
        matches!(&actions[..], [Action::Rejected { reason }] if reason.contains("at step g:deploy"))
    );
    let (_, actions) = run(&[Event::Started(plan(&["PC01"], 0)), ok(Step::Master)]);
    assert!(matches!(&actions[..], [Action::Rejected { .. }]));
}

#[test]
fn software_only_runs_a_then_g() {
    let mut p = plan(&["PC01", "PC02"], 0);
    p.mode = DeployMode::SoftwareOnly;
    let (state, _) = run(&[Event::Started(p.clone())]);
    assert!(matches!(
        state.step_status(Step::Join),
        Status::Skipped { .. }
    ));
    check(
        &[
            Event::Started(p),
            ok(Step::Collect),
            m_ok(Step::Deploy, "PC01"),
            m_ok(Step::Deploy, "PC02"),
        ],
        "phase finished
         a ok#1
         b skipped
         c skipped
         d skipped
         e skipped
         f skipped
         PC01: g=ok#1
         PC02: g=ok#1
         -> finish",
    );
}

#[test]
fn abort_ends_and_nothing_happens_after() {
    let events = [
        Event::Started(plan(&["PC01"], 0)),
        Event::Aborted {
            by: "technicien".into(),
        },
        ok(Step::Collect),
    ];
    let (state, actions) = run(&events);
    assert_eq!(
        state.phase,
        Phase::Aborted {
            by: "technicien".into()
        }
    );
    assert!(matches!(&actions[..], [Action::Rejected { .. }]));
    let (_, actions) = run(&[events[0].clone(), events[1].clone(), Event::Resumed]);
    assert!(
        matches!(&actions[..], [Action::Rejected { reason }] if reason.contains("nothing to resume"))
    );
}

#[test]
fn bad_plans_are_rejected_at_start() {
    let mut p = plan(&["PC01", "PC01"], 0);
    let (_, a) = run(&[Event::Started(p.clone())]);
    assert!(matches!(&a[..], [Action::Rejected { reason }] if reason.contains("listed twice")));
    p.machines = vec!["PC02".into()];
    let (state, a) = run(&[Event::Started(p)]);
    assert!(matches!(&a[..], [Action::Rejected { reason }] if reason.contains("master PC01")));
    assert_eq!(state, State::default());
    let p = plan(&["PC01"], 0);
    let (_, a) = run(&[Event::Started(p.clone()), Event::Started(p)]);
    assert!(matches!(&a[..], [Action::Rejected { reason }] if reason.contains("already started")));
}

const IMAGE: &str = "5e1f0c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

#[test]
fn capture_journals_its_image_and_g_follows() {
    let mut events = up_to_deploy(plan(&["PC01", "PC02"], 0));
    events.pop();
    events.push(Event::ImageCaptured {
        image: IMAGE.to_uppercase(),
    });
    check(
        &events,
        "phase at g:deploy
         a ok#1
         b ok#1
         c ok#1
         d ok#1
         e ok#1
         f ok#1
         PC01: g=running#1
         PC02: g=running#1
         -> run g:deploy on PC01 #1
         -> run g:deploy on PC02 #1",
    );
    let (state, _) = run(&events);
    assert_eq!(state.image.as_deref(), Some(IMAGE), "stored lowercase");
    // A replay from the journal's JSON keeps the image for a resumed g.
    let json: Vec<String> = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    let loaded: Vec<Event> = json
        .iter()
        .map(|j| serde_json::from_str(j).unwrap())
        .collect();
    let replayed = replay(loaded.iter().map(|e| (e, Timestamp(0))));
    assert_eq!(replayed.image.as_deref(), Some(IMAGE));
}

#[test]
fn an_image_outside_step_f_or_not_an_id_is_refused() {
    let mut events = up_to_deploy(plan(&["PC01"], 0));
    events.pop();
    let (state, _) = run(&events);
    let (same, actions) = transition(
        state.clone(),
        &Event::ImageCaptured {
            image: "not-an-id".into(),
        },
        Timestamp(50),
    );
    assert_eq!(same, state);
    assert!(
        matches!(&actions[..], [Action::Rejected { reason }] if reason.contains("not an image id")),
        "{actions:?}"
    );
    let (state, _) = run(&[Event::Started(plan(&["PC01"], 0))]);
    let (same, actions) = transition(
        state.clone(),
        &Event::ImageCaptured {
            image: IMAGE.into(),
        },
        Timestamp(50),
    );
    assert_eq!(same, state);
    assert!(
        matches!(&actions[..], [Action::Rejected { reason }] if reason.contains("ignored")),
        "{actions:?}"
    );
}

// ---- properties -------------------------------------------------------------------------------

const HOSTS: [&str; 3] = ["PC01", "PC02", "PC03"];

fn any_event() -> impl Strategy<Value = Event> {
    let step = prop::sample::select(Step::ALL.to_vec());
    let host = prop::sample::select(HOSTS.to_vec());
    let who = prop::sample::select(vec!["M. Dupont", "Intrus"]);
    prop_oneof![
        3 => step.clone().prop_map(|step| Event::StepSucceeded { step }),
        1 => step.clone().prop_map(|step| Event::StepFailed { step, reason: "boom".into() }),
        4 => (step.clone(), host.clone()).prop_map(|(s, h)| m_ok(s, h)),
        3 => (step, host).prop_map(|(s, h)| m_fail(s, h)),
        2 => (who, any::<bool>()).prop_map(|(w, ok)| sign(w, if ok { Verdict::Ok } else { Verdict::Rejected })),
        1 => Just(Event::Resumed),
        1 => Just(Event::ImageCaptured { image: IMAGE.into() }),
        1 => Just(Event::Refused(vec![Refusal::NoLicence { software: "x".into() }])),
    ]
}

fn any_campaign() -> impl Strategy<Value = Vec<(Event, i64)>> {
    (
        0u32..3,
        any::<bool>(),
        prop::collection::vec((any_event(), 0i64..1_000), 0..60),
    )
        .prop_map(|(retries, software_only, rest)| {
            let mut p = plan(&HOSTS, retries);
            if software_only {
                p.mode = DeployMode::SoftwareOnly;
            }
            let mut events = vec![(Event::Started(p), 0)];
            events.extend(rest);
            events
        })
}

proptest! {
    /// The journal's promise: storing the events (as JSON, like the journal) and replaying them gives
    /// back exactly the state the live run had.
    #[test]
    fn replaying_the_journal_rebuilds_the_state(events in any_campaign()) {
        let mut live = State::default();
        for (e, t) in &events {
            live = transition(live, e, Timestamp(*t)).0;
        }
        let stored: Vec<(String, i64)> = events
            .iter()
            .map(|(e, t)| (serde_json::to_string(e).unwrap(), *t))
            .collect();
        let loaded: Vec<(Event, Timestamp)> = stored
            .iter()
            .map(|(j, t)| (serde_json::from_str(j).unwrap(), Timestamp(*t)))
            .collect();
        let rebuilt = replay(loaded.iter().map(|(e, t)| (e, *t)));
        prop_assert_eq!(rebuilt, live);
    }

    /// Whatever happens, the engine never asks to run a per-machine step on a machine where it already
    /// succeeded, and resume only re-asks for work that is in flight.
    #[test]
    fn never_reruns_a_succeeded_machine(events in any_campaign()) {
        let mut state = State::default();
        for (e, t) in &events {
            let before = state.clone();
            let (next, actions) = transition(state, e, Timestamp(*t));
            for a in actions.iter().chain(pending_actions(&next).iter()) {
                if let Action::RunOnMachine { step, machine, .. } = a {
                    let was_ok = matches!(before.machine_status(machine, *step), Status::Succeeded { .. });
                    prop_assert!(!was_ok, "{step} re-run on {machine}");
                }
            }
            if let Phase::Refused(_) = next.phase {
                // Refused campaigns touched no PC.
                prop_assert!(next.machines.values().all(|m| m.is_empty()));
            }
            state = next;
        }
    }
}
