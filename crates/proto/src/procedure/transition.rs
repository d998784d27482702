//! The transition function: `(state, event, now) -> (state, actions)`. Pure: no I/O, no clock.

use super::state::{Action, Event, Phase, Plan, Refusal, Signoff, State, Status, Step, Verdict};
use std::collections::BTreeSet;

/// Applies one event to the campaign. An event that does not fit the current state (a late answer, a
/// sign-off by someone not allowed, a second result for a machine) leaves the state unchanged and
/// yields one [`Action::Rejected`] saying why, so replaying a journal that contains it is harmless.
pub fn transition(
    state: State,
    event: &Event,
    now: crate::procedure::Timestamp,
) -> (State, Vec<Action>) {
    let mut engine = Engine {
        state,
        now,
        actions: Vec::new(),
    };
    match engine.apply(event) {
        Ok(()) => (engine.state, engine.actions),
        Err(reason) => (
            engine.original_on_error(),
            vec![Action::Rejected { reason }],
        ),
    }
}

/// Rebuilds the state from a journal: every event in order with the time it was recorded at.
pub fn replay<'a>(
    events: impl IntoIterator<Item = (&'a Event, crate::procedure::Timestamp)>,
) -> State {
    events
        .into_iter()
        .fold(State::default(), |state, (event, now)| {
            transition(state, event, now).0
        })
}

/// The actions that are in flight in `state`: what a restarted orchestrator must (re)do. A step or
/// machine that already succeeded never appears here.
pub fn pending_actions(state: &State) -> Vec<Action> {
    let mut actions = Vec::new();
    let Phase::At(step) = state.phase else {
        return actions;
    };
    if step.is_per_machine() {
        for (machine, steps) in &state.machines {
            if let Some(Status::Running { attempt, .. }) = steps.get(&step) {
                actions.push(Action::RunOnMachine {
                    step,
                    machine: machine.clone(),
                    attempt: *attempt,
                });
            }
        }
    } else if step == Step::Signoff {
        if let Some(plan) = &state.plan {
            actions.push(Action::AwaitSignoff {
                allowed: plan.signoff_allowed.clone(),
            });
        }
    } else {
        actions.push(Action::RunStep { step });
    }
    actions
}

struct Engine {
    state: State,
    now: crate::procedure::Timestamp,
    actions: Vec<Action>,
}

type Outcome = Result<(), String>;

impl Engine {
    /// Validation happens before any mutation in every branch below, so on error the state is still
    /// the one we were given.
    fn original_on_error(self) -> State {
        self.state
    }

    fn plan(&self) -> &Plan {
        self.state
            .plan
            .as_ref()
            .expect("a campaign past New always has a plan")
    }

    fn apply(&mut self, event: &Event) -> Outcome {
        match event {
            Event::Started(plan) => self.start(plan),
            Event::Resumed => {
                if self.state.phase.is_terminal() {
                    return Err(format!(
                        "nothing to resume: the campaign is {}",
                        phase_words(&self.state.phase)
                    ));
                }
                self.actions = pending_actions(&self.state);
                Ok(())
            }
            Event::StepSucceeded { step } => {
                self.expect_room_step(*step)?;
                let attempts = self.running_attempt(*step);
                self.state.steps.insert(
                    *step,
                    Status::Succeeded {
                        at: self.now,
                        attempts,
                    },
                );
                self.advance(*step);
                Ok(())
            }
            Event::StepFailed { step, reason } => {
                self.expect_room_step(*step)?;
                let attempts = self.running_attempt(*step);
                self.state.steps.insert(
                    *step,
                    Status::Failed {
                        at: self.now,
                        reason: reason.clone(),
                        attempts,
                    },
                );
                self.end(Phase::Failed {
                    step: *step,
                    reason: reason.clone(),
                });
                Ok(())
            }
            Event::ImageCaptured { image } => {
                self.expect_room_step(Step::Capture)?;
                if image.len() != 64 || !image.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!(
                        "step {} produced {image:?}, which is not an image id (64 hex digits)",
                        Step::Capture
                    ));
                }
                let attempts = self.running_attempt(Step::Capture);
                self.state.image = Some(image.to_ascii_lowercase());
                self.state.steps.insert(
                    Step::Capture,
                    Status::Succeeded {
                        at: self.now,
                        attempts,
                    },
                );
                self.advance(Step::Capture);
                Ok(())
            }
            Event::Refused(refusals) => self.refuse(refusals),
            Event::Signoff {
                by,
                verdict,
                comment,
            } => self.signoff(by, *verdict, comment),
            Event::MachineSucceeded { step, machine } => {
                let attempt = self.expect_machine_running(*step, machine)?;
                self.set_machine(
                    machine,
                    *step,
                    Status::Succeeded {
                        at: self.now,
                        attempts: attempt,
                    },
                );
                self.settle_if_done(*step);
                Ok(())
            }
            Event::MachineFailed {
                step,
                machine,
                reason,
            } => {
                let attempt = self.expect_machine_running(*step, machine)?;
                if attempt <= self.plan().retries {
                    self.set_machine(
                        machine,
                        *step,
                        Status::Running {
                            attempt: attempt + 1,
                            since: self.now,
                        },
                    );
                    self.actions.push(Action::RunOnMachine {
                        step: *step,
                        machine: machine.clone(),
                        attempt: attempt + 1,
                    });
                } else {
                    self.set_machine(
                        machine,
                        *step,
                        Status::Failed {
                            at: self.now,
                            reason: reason.clone(),
                            attempts: attempt,
                        },
                    );
                    self.settle_if_done(*step);
                }
                Ok(())
            }
            Event::Aborted { by } => {
                if self.state.phase.is_terminal() {
                    return Err(format!(
                        "cannot abort: the campaign is already {}",
                        phase_words(&self.state.phase)
                    ));
                }
                self.end(Phase::Aborted { by: by.clone() });
                Ok(())
            }
        }
    }

    fn start(&mut self, plan: &Plan) -> Outcome {
        if self.state.phase != Phase::New {
            return Err("the campaign was already started".into());
        }
        if plan.machines.is_empty() {
            return Err(format!("room {} lists no machine", plan.room));
        }
        let mut seen = BTreeSet::new();
        for m in &plan.machines {
            if !seen.insert(m.as_str()) {
                return Err(format!("room {}: machine {m} is listed twice", plan.room));
            }
        }
        if !seen.contains(plan.master.as_str()) {
            return Err(format!(
                "room {}: master {} is not one of the room's machines",
                plan.room, plan.master
            ));
        }
        if plan.signoff_required && plan.signoff_allowed.is_empty() {
            return Err(format!(
                "room {}: sign-off is required but nobody is allowed to give it",
                plan.room
            ));
        }
        self.state.plan = Some(plan.clone());
        self.state.started_at = Some(self.now);
        for step in Step::ALL {
            if !plan.includes(step) {
                let reason =
                    if step == Step::Signoff && plan.mode == crate::procedure::DeployMode::Image {
                        "sign-off waived by the profile (signoff.required: false)"
                    } else {
                        "not part of a software-only campaign"
                    };
                self.state.steps.insert(
                    step,
                    Status::Skipped {
                        reason: reason.into(),
                    },
                );
            }
        }
        for m in &plan.machines {
            self.state.machines.insert(m.clone(), Default::default());
        }
        self.enter(Step::Collect);
        Ok(())
    }

    fn refuse(&mut self, refusals: &[Refusal]) -> Outcome {
        if self.state.phase != Phase::At(Step::Collect) {
            return Err(format!(
                "a refusal only comes from step a; the campaign is {}",
                phase_words(&self.state.phase)
            ));
        }
        if refusals.is_empty() {
            return Err("a refusal must give at least one reason".into());
        }
        let reason = refusals
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let attempts = self.running_attempt(Step::Collect);
        self.state.steps.insert(
            Step::Collect,
            Status::Failed {
                at: self.now,
                reason,
                attempts,
            },
        );
        self.end(Phase::Refused(refusals.to_vec()));
        Ok(())
    }

    fn signoff(&mut self, by: &str, verdict: Verdict, comment: &Option<String>) -> Outcome {
        if self.state.phase != Phase::At(Step::Signoff) {
            return Err(format!(
                "no sign-off is awaited: the campaign is {}",
                phase_words(&self.state.phase)
            ));
        }
        let plan = self.plan();
        if !plan.signoff_allowed.iter().any(|a| a == by) {
            return Err(format!(
                "{by} may not sign off room {} (allowed: {})",
                plan.room,
                plan.signoff_allowed.join(", ")
            ));
        }
        self.state.signoffs.push(Signoff {
            by: by.to_string(),
            verdict,
            comment: comment.clone(),
            at: self.now,
        });
        match verdict {
            Verdict::Ok => {
                self.state.steps.insert(
                    Step::Signoff,
                    Status::Succeeded {
                        at: self.now,
                        attempts: self.state.install_rounds,
                    },
                );
                self.advance(Step::Signoff);
            }
            Verdict::Rejected => {
                // Back to c: c, d and e run again (c is idempotent: what is installed is skipped).
                for step in [Step::Tests, Step::Signoff] {
                    self.state.steps.insert(step, Status::Pending);
                }
                self.enter(Step::Install);
            }
        }
        Ok(())
    }

    fn expect_room_step(&self, step: Step) -> Outcome {
        if step.is_per_machine() || step == Step::Signoff {
            return Err(format!(
                "step {step} has no room-level result (use its own event)"
            ));
        }
        if self.state.phase != Phase::At(step) {
            return Err(format!(
                "result for step {step} ignored: the campaign is {}",
                phase_words(&self.state.phase)
            ));
        }
        Ok(())
    }

    fn expect_machine_running(&self, step: Step, machine: &str) -> Result<u32, String> {
        if !step.is_per_machine() {
            return Err(format!("step {step} does not run per machine"));
        }
        if self.state.phase != Phase::At(step) {
            return Err(format!(
                "result for {machine} at step {step} ignored: the campaign is {}",
                phase_words(&self.state.phase)
            ));
        }
        if !self.state.machines.contains_key(machine) {
            return Err(format!(
                "{machine} is not a machine of room {}",
                self.plan().room
            ));
        }
        match self.state.machine_status(machine, step) {
            Status::Running { attempt, .. } => Ok(attempt),
            other => Err(format!(
                "result for {machine} at step {step} ignored: it is {}",
                status_words(&other)
            )),
        }
    }

    fn running_attempt(&self, step: Step) -> u32 {
        match self.state.step_status(step) {
            Status::Running { attempt, .. } => attempt,
            _ => 1,
        }
    }

    fn set_machine(&mut self, machine: &str, step: Step, status: Status) {
        self.state
            .machines
            .entry(machine.to_string())
            .or_default()
            .insert(step, status);
    }

    fn enter(&mut self, step: Step) {
        self.state.phase = Phase::At(step);
        let running = Status::Running {
            attempt: 1,
            since: self.now,
        };
        if step == Step::Signoff {
            self.state
                .steps
                .insert(step, Status::Waiting { since: self.now });
            self.actions.push(Action::AwaitSignoff {
                allowed: self.plan().signoff_allowed.clone(),
            });
        } else if step.is_per_machine() {
            self.state.steps.insert(step, running.clone());
            let earlier: Vec<Step> = Step::ALL
                .iter()
                .copied()
                .filter(|s| s.is_per_machine() && *s < step && self.plan().includes(*s))
                .collect();
            for machine in self.plan().machines.clone() {
                let current = self.state.machine_status(&machine, step);
                if current.is_settled() {
                    continue; // never run a step twice where it already succeeded
                }
                let blocked = earlier.iter().find(|e| {
                    !matches!(
                        self.state.machine_status(&machine, **e),
                        Status::Succeeded { .. }
                    )
                });
                if let Some(e) = blocked {
                    self.set_machine(
                        &machine,
                        step,
                        Status::Skipped {
                            reason: format!("step {e} did not succeed on this machine"),
                        },
                    );
                    continue;
                }
                self.set_machine(&machine, step, running.clone());
                self.actions.push(Action::RunOnMachine {
                    step,
                    machine,
                    attempt: 1,
                });
            }
            self.settle_if_done(step);
        } else {
            if step == Step::Install {
                self.state.install_rounds += 1;
            }
            self.state.steps.insert(step, running);
            self.actions.push(Action::RunStep { step });
        }
    }

    /// When every machine is settled for a per-machine step, the room moves on — unless no PC at all
    /// succeeded, which fails the campaign (one failed PC fails that PC, not the room).
    fn settle_if_done(&mut self, step: Step) {
        let plan = self.plan();
        let statuses: Vec<Status> = plan
            .machines
            .iter()
            .map(|m| self.state.machine_status(m, step))
            .collect();
        if !statuses.iter().all(Status::is_settled) {
            return;
        }
        let succeeded = statuses
            .iter()
            .filter(|s| matches!(s, Status::Succeeded { .. }))
            .count();
        if succeeded == 0 {
            let reason = format!("no PC of room {} passed step {step}", plan.room);
            self.state.steps.insert(
                step,
                Status::Failed {
                    at: self.now,
                    reason: reason.clone(),
                    attempts: 1,
                },
            );
            self.end(Phase::Failed { step, reason });
        } else {
            self.state.steps.insert(
                step,
                Status::Succeeded {
                    at: self.now,
                    attempts: 1,
                },
            );
            self.advance(step);
        }
    }

    fn advance(&mut self, from: Step) {
        match self.plan().next_after(from) {
            Some(next) => self.enter(next),
            None => self.end(Phase::Finished),
        }
    }

    fn end(&mut self, phase: Phase) {
        self.state.phase = phase;
        self.state.ended_at = Some(self.now);
        self.actions.push(Action::Finish);
    }
}

fn phase_words(phase: &Phase) -> String {
    match phase {
        Phase::New => "not started".into(),
        Phase::At(step) => format!("at step {step}"),
        Phase::Finished => "finished".into(),
        Phase::Refused(_) => "refused".into(),
        Phase::Failed { step, .. } => format!("failed at step {step}"),
        Phase::Aborted { by } => format!("aborted by {by}"),
    }
}

fn status_words(status: &Status) -> String {
    match status {
        Status::Pending => "not started".into(),
        Status::Running { attempt, .. } => format!("running (attempt {attempt})"),
        Status::Waiting { .. } => "waiting".into(),
        Status::Succeeded { .. } => "already succeeded".into(),
        Status::Failed { .. } => "already failed".into(),
        Status::Skipped { .. } => "skipped".into(),
    }
}
