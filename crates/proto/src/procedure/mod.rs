//! The campaign procedure (steps a–h of the region's framework) as a pure state machine.
//!
//! [`transition`] takes the current [`State`], one [`Event`] and the time, and returns the new state
//! and the [`Action`]s the orchestrator must carry out. Nothing here does I/O or reads the clock, so
//! the journal (which stores events with their time) is enough to rebuild a campaign after a crash:
//! [`replay`] the events, then [`pending_actions`] says what was in flight. See `docs/CAMPAIGN.md`.
//!
//! Rules the engine keeps (each has a test in `tests.rs`):
//! - a step never runs twice on a machine where it already succeeded;
//! - one failed PC fails that PC, not the room; per-machine steps are retried `plan.retries` times;
//! - step a refuses the campaign before any PC is touched (licence shortfall, bad installer);
//! - step e only passes on a sign-off by someone the profile allows; `rejected` goes back to c.

pub mod licences;
mod state;
mod transition;

#[cfg(test)]
mod tests;

pub use state::{
    Action, DeployMode, Event, Phase, Plan, Refusal, Signoff, State, Status, Step, Timestamp,
    Verdict,
};
pub use transition::{pending_actions, replay, transition};
