//! Crash tests: a real orchestrator process (this test binary, re-executed) is killed with SIGKILL
//! during step c and during step g; `resume` in a new process finishes the campaign without redoing
//! anything that had succeeded, and the journal shows both runs.

use roomcast::campaign::driver::{Stop, Worker, drive, resume, signoff};
use roomcast::campaign::journal::Journal;
use roomcast_proto::procedure::{DeployMode, Event, Phase, Plan, State, Step, Timestamp, Verdict};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn plan() -> Plan {
    Plan {
        room: "B204".into(),
        machines: vec!["PC01".into(), "PC02".into(), "PC03".into()],
        master: "PC01".into(),
        mode: DeployMode::Image,
        retries: 1,
        signoff_required: true,
        signoff_allowed: vec!["M. Dupont".into()],
    }
}

/// Appends every piece of work to a file (synced) and hangs, once, where told.
struct Recorder {
    log: PathBuf,
    hang_at: Option<(Step, String)>,
    hung_flag: PathBuf,
}

impl Recorder {
    fn note(&self, what: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        // One write per line (parallel PCs): `writeln!` may split it in two writes.
        f.write_all(format!("{what}\n").as_bytes()).unwrap();
        f.sync_all().unwrap();
    }

    fn maybe_hang(&self, step: Step, machine: &str) {
        if self
            .hang_at
            .as_ref()
            .is_some_and(|(s, m)| *s == step && m == machine)
        {
            std::fs::write(&self.hung_flag, b"").unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(1)); // until SIGKILL
            }
        }
    }
}

impl Worker for Recorder {
    fn run_step(&mut self, step: Step, _state: &State) -> Event {
        self.note(&format!("{}", step.letter()));
        self.maybe_hang(step, "");
        Event::StepSucceeded { step }
    }

    fn run_on_machine(&self, step: Step, machine: &str, _attempt: u32) -> Event {
        self.note(&format!("{} {machine}", step.letter()));
        self.maybe_hang(step, machine);
        Event::MachineSucceeded {
            step,
            machine: machine.to_string(),
        }
    }
}

fn clock() -> impl FnMut() -> Timestamp {
    let mut t = 1_000;
    move || {
        t += 1;
        Timestamp(t)
    }
}

/// Not a test of its own: the orchestrator process the crash tests start and kill. Without the
/// environment the crash tests set, it returns at once.
#[test]
#[ignore = "run by the crash tests as a child process"]
fn crash_child_orchestrator() {
    let Ok(dir) = std::env::var("ROOMCAST_CRASH_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let hang = std::env::var("ROOMCAST_CRASH_AT").unwrap();
    let hang_at = match hang.as_str() {
        "c" => (Step::Install, String::new()),
        _ => (Step::Deploy, "PC02".to_string()),
    };
    let mut journal = Journal::open(&dir.join("roomcast.db")).unwrap();
    let mut clock = clock();
    let (id, actions) = journal.start(&plan(), clock()).unwrap();
    let state = journal.state(id).unwrap();
    let mut worker = Recorder {
        log: dir.join("work.log"),
        hang_at: Some(hang_at),
        hung_flag: dir.join("hung"),
    };
    let (_, stop) = drive(
        &mut journal,
        id,
        1,
        state,
        actions,
        &mut worker,
        1,
        &mut clock,
    )
    .unwrap();
    assert!(matches!(stop, Stop::AwaitingSignoff { .. }));
    signoff(&mut journal, id, "M. Dupont", Verdict::Ok, None, clock()).unwrap();
    resume(&mut journal, id, &mut worker, 1, &mut clock).unwrap();
}

fn crash_and_resume(at: &str) -> (Vec<String>, Vec<i64>, Vec<Event>) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "campaign::crash::crash_child_orchestrator",
            "--ignored",
            "--nocapture",
        ])
        .env("ROOMCAST_CRASH_DIR", dir.path())
        .env("ROOMCAST_CRASH_AT", at)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let hung = dir.path().join("hung");
    for _ in 0..600 {
        if hung.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        hung.exists(),
        "the child orchestrator never reached step {at}"
    );
    child.kill().unwrap(); // SIGKILL: no destructor, no goodbye
    child.wait().unwrap();

    let db = dir.path().join("roomcast.db");
    let mut journal = Journal::open(&db).unwrap();
    let id = journal.latest_for_room("B204").unwrap().unwrap();
    let mut worker = Recorder {
        log: dir.path().join("work.log"),
        hang_at: None,
        hung_flag: dir.path().join("unused"),
    };
    let mut clock = clock();
    let (mut state, mut stop) = resume(&mut journal, id, &mut worker, 1, &mut clock).unwrap();
    if let Stop::AwaitingSignoff { .. } = stop {
        signoff(
            &mut journal,
            id,
            "M. Dupont",
            Verdict::Ok,
            None,
            Timestamp(5_000),
        )
        .unwrap();
        (state, stop) = resume(&mut journal, id, &mut worker, 1, &mut clock).unwrap();
    }
    assert_eq!(stop, Stop::Ended(Phase::Finished));
    assert_eq!(state.phase, Phase::Finished);
    let work = std::fs::read_to_string(dir.path().join("work.log"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let events = journal.events(id).unwrap();
    let mut runs: Vec<i64> = events.iter().map(|e| e.run).collect();
    runs.dedup();
    (work, runs, events.into_iter().map(|e| e.event).collect())
}

fn count(work: &[String], item: &str) -> usize {
    work.iter().filter(|w| *w == item).count()
}

#[test]
fn kill_during_install_then_resume_redoes_only_install() {
    let (work, runs, _) = crash_and_resume("c");
    // a and b are not redone; c (interrupted) is run again; the rest once.
    assert_eq!(count(&work, "a"), 1, "{work:?}");
    assert_eq!(count(&work, "b"), 1);
    assert_eq!(count(&work, "c"), 2);
    for item in [
        "d", "f", "g PC01", "g PC02", "g PC03", "h PC01", "h PC02", "h PC03",
    ] {
        assert_eq!(count(&work, item), 1, "{item} in {work:?}");
    }
    assert_eq!(
        runs,
        vec![1, 2, 3],
        "start, resume after the crash, resume after the sign-off"
    );
}

#[test]
fn kill_during_deploy_then_resume_never_redeploys_a_finished_pc() {
    let (work, runs, events) = crash_and_resume("g");
    for item in [
        "a", "b", "c", "d", "f", "g PC01", "g PC03", "h PC01", "h PC02", "h PC03",
    ] {
        assert_eq!(count(&work, item), 1, "{item} in {work:?}");
    }
    assert_eq!(
        count(&work, "g PC02"),
        2,
        "the interrupted PC is redone: {work:?}"
    );
    // Run 1 = start, run 2 = resume after the sign-off (still before the crash), run 3 = after.
    assert_eq!(runs, vec![1, 2, 3]);
    assert_eq!(events.iter().filter(|e| **e == Event::Resumed).count(), 2);
}
