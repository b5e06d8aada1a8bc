//! Winner mode: after the test share has had its wait, the variant that goes to the rest.
//!
//! The best variant is the highest rate of the chosen measure (opens of sent, or goal
//! conversions of assigned; the lowest index on a tie). It wins outright when it beats
//! every other variant in a two-proportion z-test at [`ALPHA`] on samples large enough
//! for the test; otherwise the campaign's rule decides: send the best anyway, or stop
//! and say why. The decision keeps every figure it was made on.

use appizer_analytics::stats::{two_proportion, Rate, Test, ALPHA};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What to do when no variant is significantly better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoWinnerRule {
    SendBest,
    Stop,
}

/// The best variant against one other.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Against {
    pub variant: usize,
    pub test: Option<Test>,
    /// The best is ahead and the test says so at `ALPHA` on a large enough sample.
    pub beaten: bool,
}

/// A winner-mode decision and its figures.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Decision {
    /// The variant sent to the rest; `None` when the campaign stops.
    pub winner: Option<usize>,
    /// The highest rate.
    pub best: usize,
    /// The best beat every other variant.
    pub significant: bool,
    pub rates: Vec<Rate>,
    pub against: Vec<Against>,
}

/// Decides from each variant's rate (in the campaign's variant order; at least one).
pub fn decide(rates: &[Rate], rule: NoWinnerRule) -> Decision {
    let best = rates.iter().enumerate().fold(
        0,
        |best, (i, r)| if r.rate > rates[best].rate { i } else { best },
    );
    let against: Vec<Against> = (0..rates.len())
        .filter(|i| *i != best)
        .map(|variant| {
            let test = two_proportion(rates[best], rates[variant]);
            let beaten = rates[best].rate > rates[variant].rate
                && test.is_some_and(|t| t.p_value < ALPHA && t.sample_large_enough);
            Against {
                variant,
                test,
                beaten,
            }
        })
        .collect();
    let significant = !rates.is_empty() && against.iter().all(|a| a.beaten);
    let winner = match (significant, rule) {
        (true, _) | (false, NoWinnerRule::SendBest) if !rates.is_empty() => Some(best),
        _ => None,
    };
    Decision {
        winner,
        best,
        significant,
        rates: rates.to_vec(),
        against,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clear_winner_goes_to_the_rest_whatever_the_rule() {
        // 250/1,000 against 200/1,000 (p = 0.0074) and 180/1,000.
        let rates = [
            Rate::new(200, 1_000),
            Rate::new(250, 1_000),
            Rate::new(180, 1_000),
        ];
        for rule in [NoWinnerRule::SendBest, NoWinnerRule::Stop] {
            let d = decide(&rates, rule);
            assert_eq!((d.winner, d.best, d.significant), (Some(1), 1, true));
            assert_eq!(
                d.against.iter().map(|a| a.variant).collect::<Vec<_>>(),
                [0, 2]
            );
            assert!(d.against.iter().all(|a| a.beaten));
            let p = d.against[0].test.unwrap().p_value;
            assert!((p - 0.007_42).abs() < 1e-4, "{p}");
        }
    }

    #[test]
    fn without_significance_the_rule_decides() {
        // 210/1,000 against 200/1,000: p = 0.58.
        let rates = [Rate::new(200, 1_000), Rate::new(210, 1_000)];
        let send = decide(&rates, NoWinnerRule::SendBest);
        assert_eq!(
            (send.winner, send.best, send.significant),
            (Some(1), 1, false)
        );
        assert!(!send.against[0].beaten);
        let stop = decide(&rates, NoWinnerRule::Stop);
        assert_eq!((stop.winner, stop.best), (None, 1));
        // Beating one variant is not enough: all must be beaten.
        let three = [
            Rate::new(250, 1_000),
            Rate::new(200, 1_000),
            Rate::new(245, 1_000),
        ];
        let d = decide(&three, NoWinnerRule::Stop);
        assert_eq!((d.winner, d.best), (None, 0));
        assert_eq!(
            d.against.iter().map(|a| a.beaten).collect::<Vec<_>>(),
            [true, false]
        );
    }

    #[test]
    fn small_samples_ties_and_a_single_variant() {
        // 4/10 against 0/10 is a large difference on too small a sample.
        let d = decide(&[Rate::new(4, 10), Rate::new(0, 10)], NoWinnerRule::Stop);
        assert!(!d.significant && d.winner.is_none());
        // A tie keeps the first.
        let d = decide(
            &[Rate::new(5, 50), Rate::new(5, 50)],
            NoWinnerRule::SendBest,
        );
        assert_eq!((d.best, d.winner), (0, Some(0)));
        // One variant wins by default.
        let d = decide(&[Rate::new(1, 3)], NoWinnerRule::Stop);
        assert_eq!((d.winner, d.significant), (Some(0), true));
        assert!(d.against.is_empty());
    }
}
