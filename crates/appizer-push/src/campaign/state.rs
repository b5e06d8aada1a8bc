//! A campaign's life: its states and the actions that move it, in one table; any other
//! move is refused (the API answers 409 with the state and the action).
//!
//! ```text
//! draft --schedule--> scheduled --start--> running --finish (last run)--> completed
//!                         ^  \               |  ^ \--finish (more runs)--> scheduled
//!                         |   \--pause-->  paused  (resume: back where it was)
//! any but completed and cancelled --cancel--> cancelled
//! ```
//!
//! Only a draft is freely editable; a scheduled or paused campaign takes changes that do
//! not alter what was already sent (its name, its pacing), which the caller checks.

pub use appizer_core::push::CampaignState;

/// What moves a campaign: the API's actions and the runner's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Schedule,
    /// The runner: a run is due.
    Start,
    Pause,
    /// Back to running when a run had started, else to scheduled.
    Resume {
        run_started: bool,
    },
    Cancel,
    /// The runner: a run sent to everyone it will; recurring campaigns wait for the
    /// next.
    Finish {
        more_runs: bool,
    },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Schedule => "schedule",
            Action::Start => "start",
            Action::Pause => "pause",
            Action::Resume { .. } => "resume",
            Action::Cancel => "cancel",
            Action::Finish { .. } => "finish",
        }
    }
}

/// A move the table does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {} campaign cannot {}", .state.as_str(), .action)]
pub struct InvalidTransition {
    pub state: CampaignState,
    pub action: &'static str,
}

/// The state after `action` from `state`.
pub fn apply(state: CampaignState, action: Action) -> Result<CampaignState, InvalidTransition> {
    use CampaignState::*;
    let next = match (state, action) {
        (Draft, Action::Schedule) => Scheduled,
        (Scheduled, Action::Start) => Running,
        (Scheduled | Running, Action::Pause) => Paused,
        (Paused, Action::Resume { run_started: true }) => Running,
        (Paused, Action::Resume { run_started: false }) => Scheduled,
        (Draft | Scheduled | Running | Paused, Action::Cancel) => Cancelled,
        (Running, Action::Finish { more_runs: true }) => Scheduled,
        (Running, Action::Finish { more_runs: false }) => Completed,
        _ => {
            return Err(InvalidTransition {
                state,
                action: action.name(),
            })
        }
    };
    Ok(next)
}

/// Every field may change (nothing was sent and nothing is planned).
pub fn freely_editable(state: CampaignState) -> bool {
    state == CampaignState::Draft
}

/// The runner may send now.
pub fn sends(state: CampaignState) -> bool {
    state == CampaignState::Running
}

#[cfg(test)]
mod tests {
    use super::CampaignState::*;
    use super::*;

    const STATES: [CampaignState; 6] = CampaignState::ALL;
    const ACTIONS: [Action; 8] = [
        Action::Schedule,
        Action::Start,
        Action::Pause,
        Action::Resume { run_started: true },
        Action::Resume { run_started: false },
        Action::Cancel,
        Action::Finish { more_runs: true },
        Action::Finish { more_runs: false },
    ];

    #[test]
    fn the_whole_table() {
        let allowed = [
            (Draft, Action::Schedule, Scheduled),
            (Draft, Action::Cancel, Cancelled),
            (Scheduled, Action::Start, Running),
            (Scheduled, Action::Pause, Paused),
            (Scheduled, Action::Cancel, Cancelled),
            (Running, Action::Pause, Paused),
            (Running, Action::Cancel, Cancelled),
            (Running, Action::Finish { more_runs: true }, Scheduled),
            (Running, Action::Finish { more_runs: false }, Completed),
            (Paused, Action::Resume { run_started: true }, Running),
            (Paused, Action::Resume { run_started: false }, Scheduled),
            (Paused, Action::Cancel, Cancelled),
        ];
        let mut moves = 0;
        for state in STATES {
            for action in ACTIONS {
                let expected = allowed
                    .iter()
                    .find(|(s, a, _)| *s == state && *a == action)
                    .map(|(_, _, to)| *to);
                match (apply(state, action), expected) {
                    (Ok(to), Some(want)) => {
                        assert_eq!(to, want, "{state:?} {action:?}");
                        moves += 1;
                    }
                    (Err(e), None) => {
                        assert_eq!(e.state, state);
                        assert_eq!(
                            e.to_string(),
                            format!("a {} campaign cannot {}", state.as_str(), action.name())
                        );
                    }
                    (got, want) => panic!("{state:?} {action:?}: {got:?}, expected {want:?}"),
                }
            }
        }
        assert_eq!(moves, allowed.len());
        // Final states take nothing.
        for state in [Completed, Cancelled] {
            assert!(state.is_final());
            assert!(ACTIONS.iter().all(|a| apply(state, *a).is_err()));
        }
    }

    #[test]
    fn names_round_trip_and_only_drafts_are_freely_editable() {
        for state in STATES {
            assert_eq!(CampaignState::parse(state.as_str()), Some(state));
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::json!(state.as_str())
            );
            assert_eq!(freely_editable(state), state == Draft);
            assert_eq!(sends(state), state == Running);
        }
        assert_eq!(CampaignState::parse("done"), None);
    }
}
