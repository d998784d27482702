//! The loop that turns the engine's actions into work and the work's results into journaled events.
//!
//! The orchestrator (CLI, demo, server) implements [`Worker`] with the real step runners; tests
//! implement it with scripted results. Every result is appended to the journal *before* the next
//! action is taken, so a crash at any point loses at most the work in flight, which `resume` redoes.

use super::journal::{Journal, JournalError};
use roomcast_proto::procedure::{Action, Event, Phase, State, Step, Timestamp, Verdict};
use std::collections::VecDeque;

/// Does the work the engine asks for and reports it as an event.
///
/// `Sync` and `&self` for per-machine work: the driver runs several PCs at once on scoped threads.
pub trait Worker: Sync {
    /// Runs a room-level step (a, b, c, d, f); returns `StepSucceeded`, `StepFailed` or (for a)
    /// `Refused`.
    fn run_step(&mut self, step: Step, state: &State) -> Event;
    /// Runs a per-machine step (g, h) on one PC; returns `MachineSucceeded` or `MachineFailed`.
    fn run_on_machine(&self, step: Step, machine: &str, attempt: u32) -> Event;

    /// Called once before a batch of per-machine work (every `(machine, attempt)` queued at once),
    /// then [`Worker::run_on_machine`] runs for each of them. A worker that serves the whole batch
    /// at once (one multicast session for the room) starts it here. Default: nothing.
    fn begin_batch(&mut self, _step: Step, _machines: &[(String, u32)], _state: &State) {}

    /// Called after every machine of the batch has answered (to stop what `begin_batch` started).
    fn end_batch(&mut self, _step: Step) {}

    /// Called once before a run drives campaign `campaign` of the journal `db`: a worker that
    /// runs imaging sessions keeps their live progress there ([`crate::campaign::live`]).
    /// Default: nothing.
    fn follow(&mut self, _db: &std::path::Path, _campaign: i64) {}
}

/// Why [`drive`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The campaign reached a terminal phase.
    Ended(Phase),
    /// Step e waits for a person: record it with [`signoff`], then [`resume`].
    AwaitingSignoff {
        /// Who may sign.
        allowed: Vec<String>,
    },
    /// The `--until` time came: no new step or PC was started after it; what was not done stays
    /// pending (or running, for work cut short) and [`resume`] takes it up.
    Deadline,
}

/// Carries out `actions` (and those they lead to) until the campaign ends or waits for a sign-off.
/// Per-machine work runs on up to `parallel` PCs at once (at least 1); each result is journaled as
/// soon as it arrives, so a crash loses only the PCs still in flight. `clock` gives the time of each
/// event (the engine never reads it).
// Each argument is a distinct input of the loop; bundling them would only move the list elsewhere.
#[allow(clippy::too_many_arguments)]
pub fn drive(
    journal: &mut Journal,
    campaign: i64,
    run: i64,
    state: State,
    actions: Vec<Action>,
    worker: &mut dyn Worker,
    parallel: usize,
    clock: &mut dyn FnMut() -> Timestamp,
) -> Result<(State, Stop), JournalError> {
    drive_until(
        journal,
        campaign,
        run,
        state,
        actions,
        worker,
        parallel,
        clock,
        &|| false,
    )
}

/// [`drive`], but no step and no PC is started once `past_deadline` says so (the overnight window's
/// end, `--until`): the loop then returns [`Stop::Deadline`] after journaling the work in flight.
// Same inputs as `drive`, plus the deadline.
#[allow(clippy::too_many_arguments)]
pub fn drive_until(
    journal: &mut Journal,
    campaign: i64,
    run: i64,
    mut state: State,
    actions: Vec<Action>,
    worker: &mut dyn Worker,
    parallel: usize,
    clock: &mut dyn FnMut() -> Timestamp,
    past_deadline: &(dyn Fn() -> bool + Sync),
) -> Result<(State, Stop), JournalError> {
    let mut queue: VecDeque<Action> = actions.into();
    let mut deadline_hit = false;
    let mut waiting = None;
    while let Some(action) = queue.pop_front() {
        let starts_work = matches!(action, Action::RunStep { .. } | Action::RunOnMachine { .. });
        if starts_work && past_deadline() {
            deadline_hit = true;
            break;
        }
        let event = match action {
            Action::RunStep { step } => worker.run_step(step, &state),
            Action::RunOnMachine {
                step,
                machine,
                attempt,
            } => {
                // Take every per-machine action queued now as one batch.
                let mut batch = vec![(step, machine, attempt)];
                while let Some(Action::RunOnMachine { .. }) = queue.front() {
                    if let Some(Action::RunOnMachine {
                        step,
                        machine,
                        attempt,
                    }) = queue.pop_front()
                    {
                        batch.push((step, machine, attempt));
                    }
                }
                let names: Vec<(String, u32)> =
                    batch.iter().map(|(_, m, a)| (m.clone(), *a)).collect();
                worker.begin_batch(step, &names, &state);
                let shared: &dyn Worker = worker;
                let (tx, rx) = std::sync::mpsc::channel::<(Event, std::sync::mpsc::Sender<()>)>();
                let mut outcome = Ok(());
                let jobs = std::sync::Mutex::new(batch.into_iter());
                std::thread::scope(|scope| {
                    for _ in 0..parallel.max(1) {
                        let (tx, jobs) = (tx.clone(), &jobs);
                        scope.spawn(move || {
                            let (ack_tx, ack_rx) = std::sync::mpsc::channel();
                            loop {
                                if past_deadline() {
                                    break;
                                }
                                let job = jobs.lock().expect("not poisoned").next();
                                let Some((step, machine, attempt)) = job else {
                                    break;
                                };
                                let event = shared.run_on_machine(step, &machine, attempt);
                                // Wait until the result is journaled before taking more work: a
                                // crash then never loses a finished PC behind a newer one.
                                if tx.send((event, ack_tx.clone())).is_err()
                                    || ack_rx.recv().is_err()
                                {
                                    break;
                                }
                            }
                        });
                    }
                    drop(tx);
                    for (event, ack) in rx {
                        if outcome.is_ok() {
                            let taken = std::mem::take(&mut state);
                            match journal.record_on(campaign, run, taken, &event, clock()) {
                                Ok((next, more)) => {
                                    state = next;
                                    queue.extend(more);
                                }
                                Err(e) => outcome = Err(e),
                            }
                        }
                        if outcome.is_ok() {
                            let _ = ack.send(());
                        }
                    }
                });
                worker.end_batch(step);
                outcome?;
                continue;
            }
            Action::AwaitSignoff { allowed } => {
                waiting = Some(allowed);
                continue;
            }
            Action::Finish => continue,
            Action::Rejected { reason } => {
                tracing::warn!(campaign, %reason, "event rejected by the procedure");
                continue;
            }
        };
        let (next, more) = journal.record_on(campaign, run, state, &event, clock())?;
        state = next;
        queue.extend(more);
    }
    let unfinished_machines = state.machines.values().any(|m| {
        m.values()
            .any(|s| matches!(s, roomcast_proto::procedure::Status::Running { .. }))
    });
    let stop = if state.phase.is_terminal() {
        Stop::Ended(state.phase.clone())
    } else if deadline_hit || (waiting.is_none() && unfinished_machines && past_deadline()) {
        Stop::Deadline
    } else {
        Stop::AwaitingSignoff {
            allowed: waiting.unwrap_or_default(),
        }
    };
    Ok((state, stop))
}

/// Resumes a campaign after a stop or a crash: new run, replay, redo what was in flight.
pub fn resume(
    journal: &mut Journal,
    campaign: i64,
    worker: &mut dyn Worker,
    parallel: usize,
    clock: &mut dyn FnMut() -> Timestamp,
) -> Result<(State, Stop), JournalError> {
    resume_until(journal, campaign, worker, parallel, clock, &|| false)
}

/// [`resume`] with a deadline, as [`drive_until`].
pub fn resume_until(
    journal: &mut Journal,
    campaign: i64,
    worker: &mut dyn Worker,
    parallel: usize,
    clock: &mut dyn FnMut() -> Timestamp,
    past_deadline: &(dyn Fn() -> bool + Sync),
) -> Result<(State, Stop), JournalError> {
    let (run, state, actions) = journal.resume(campaign, clock())?;
    drive_until(
        journal,
        campaign,
        run,
        state,
        actions,
        worker,
        parallel,
        clock,
        past_deadline,
    )
}

/// Records a sign-off (step e) given by `by`. Returns the engine's actions: a `Rejected` one when the
/// person is not allowed or no sign-off is awaited (the event is journaled either way, as a trace of
/// the attempt).
pub fn signoff(
    journal: &mut Journal,
    campaign: i64,
    by: &str,
    verdict: Verdict,
    comment: Option<String>,
    now: Timestamp,
) -> Result<(State, Vec<Action>), JournalError> {
    let state = journal.state(campaign)?;
    let run = journal.current_run(campaign)?;
    journal.record_on(
        campaign,
        run,
        state,
        &Event::Signoff {
            by: by.to_string(),
            verdict,
            comment,
        },
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomcast_proto::procedure::{DeployMode, Plan, Status};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Succeeds everything and notes each piece of work; flips `late` after its first PC.
    struct Scripted<'a> {
        done: Mutex<Vec<String>>,
        late: &'a AtomicBool,
    }

    impl Worker for Scripted<'_> {
        fn run_step(&mut self, step: Step, _state: &State) -> Event {
            self.done.lock().unwrap().push(step.letter().to_string());
            Event::StepSucceeded { step }
        }

        fn run_on_machine(&self, step: Step, machine: &str, _attempt: u32) -> Event {
            self.done
                .lock()
                .unwrap()
                .push(format!("{} {machine}", step.letter()));
            self.late.store(true, Ordering::SeqCst);
            Event::MachineSucceeded {
                step,
                machine: machine.to_string(),
            }
        }
    }

    #[test]
    fn past_the_deadline_no_new_pc_starts_and_resume_does_only_the_rest() {
        let plan = Plan {
            room: "B204".into(),
            machines: vec!["PC01".into(), "PC02".into(), "PC03".into()],
            master: "PC01".into(),
            mode: DeployMode::SoftwareOnly,
            retries: 0,
            signoff_required: false,
            signoff_allowed: vec![],
        };
        let mut journal = Journal::open_in_memory().unwrap();
        let mut t = 0;
        let mut clock = move || {
            t += 1;
            Timestamp(t)
        };
        let (id, actions) = journal.start(&plan, clock()).unwrap();
        let state = journal.state(id).unwrap();
        let late = AtomicBool::new(false);
        let mut worker = Scripted {
            done: Mutex::new(Vec::new()),
            late: &late,
        };
        let past = || late.load(Ordering::SeqCst);
        let (state, stop) = drive_until(
            &mut journal,
            id,
            1,
            state,
            actions,
            &mut worker,
            1,
            &mut clock,
            &past,
        )
        .unwrap();
        assert_eq!(stop, Stop::Deadline);
        assert_eq!(*worker.done.lock().unwrap(), ["a", "g PC01"]);
        assert!(matches!(
            state.machine_status("PC02", Step::Deploy),
            Status::Running { .. }
        ));
        // The next night, without a deadline: only PC02 and PC03.
        let (state, stop) = resume(&mut journal, id, &mut worker, 1, &mut clock).unwrap();
        assert_eq!(stop, Stop::Ended(Phase::Finished));
        assert_eq!(
            *worker.done.lock().unwrap(),
            ["a", "g PC01", "g PC02", "g PC03"]
        );
        assert!(matches!(
            state.machine_status("PC03", Step::Deploy),
            Status::Succeeded { .. }
        ));
    }
}
