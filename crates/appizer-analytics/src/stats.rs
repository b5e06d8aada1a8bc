//! Significance of rates: the statistics a campaign report states beside its counts.
//!
//! Every figure is a proportion `successes / trials` (opened of sent, converted of
//! assigned). For each: a 95% Wilson score interval; between a variant and the control:
//! the lift and a pooled two-proportion z-test (two-sided); across all groups: Pearson's
//! chi-squared test of independence on the groups x {success, failure} table. Whether a
//! sample is large enough to call follows the usual rule for these approximations: every
//! expected cell count at least 5.
//!
//! p-values come from the normal and chi-squared distributions computed here (the
//! complementary error function, and the regularized upper incomplete gamma function by
//! its series or continued fraction), accurate to about 1e-9, far below what a report
//! shows.

use serde::Serialize;
use utoipa::ToSchema;

/// The two-sided 95% quantile of the standard normal distribution.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// The significance level the report calls at.
pub const ALPHA: f64 = 0.05;

/// Smallest expected count per cell for the approximations to hold.
pub const MIN_EXPECTED: f64 = 5.0;

/// A proportion with its 95% Wilson score interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Rate {
    pub successes: u64,
    pub trials: u64,
    /// `successes / trials`; 0 when there is no trial.
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

impl Rate {
    pub fn new(successes: u64, trials: u64) -> Rate {
        let successes = successes.min(trials);
        if trials == 0 {
            return Rate {
                successes,
                trials,
                rate: 0.0,
                low: 0.0,
                high: 1.0,
            };
        }
        let n = trials as f64;
        let p = successes as f64 / n;
        let z2 = Z_95 * Z_95;
        let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
        let half = Z_95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
        Rate {
            successes,
            trials,
            rate: p,
            low: (centre - half).max(0.0),
            high: (centre + half).min(1.0),
        }
    }
}

/// A test's statistic and two-sided p-value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Test {
    pub statistic: f64,
    /// Degrees of freedom (chi-squared); 0 for a z-test.
    pub degrees_of_freedom: u32,
    pub p_value: f64,
    /// `p_value < ALPHA`.
    pub significant: bool,
    /// Every expected cell count is at least [`MIN_EXPECTED`]: the approximation holds.
    pub sample_large_enough: bool,
}

/// A variant against the control: relative lift and the two-proportion z-test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Comparison {
    /// `(variant - control) / control`; `None` when the control's rate is 0.
    pub lift: Option<f64>,
    pub test: Option<Test>,
}

/// The pooled two-proportion z-test of `a` against `b`; `None` when a group has no
/// trial or the pooled rate is 0 or 1 (no variance: nothing to test).
pub fn two_proportion(a: Rate, b: Rate) -> Option<Test> {
    if a.trials == 0 || b.trials == 0 {
        return None;
    }
    let (na, nb) = (a.trials as f64, b.trials as f64);
    let pooled = (a.successes + b.successes) as f64 / (na + nb);
    if pooled <= 0.0 || pooled >= 1.0 {
        return None;
    }
    let se = (pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb)).sqrt();
    let z = (a.rate - b.rate) / se;
    let p_value = normal_two_sided(z);
    let smallest = na.min(nb) * pooled.min(1.0 - pooled);
    Some(Test {
        statistic: z,
        degrees_of_freedom: 0,
        p_value,
        significant: p_value < ALPHA,
        sample_large_enough: smallest >= MIN_EXPECTED,
    })
}

/// A variant's lift over the control and their z-test.
pub fn compare(variant: Rate, control: Rate) -> Comparison {
    let lift = (control.rate > 0.0).then(|| (variant.rate - control.rate) / control.rate);
    Comparison {
        lift,
        test: two_proportion(variant, control),
    }
}

/// Pearson's chi-squared test of independence across groups (no continuity
/// correction); `None` with fewer than two groups with trials or no variance.
pub fn chi_squared(groups: &[Rate]) -> Option<Test> {
    let groups: Vec<&Rate> = groups.iter().filter(|g| g.trials > 0).collect();
    if groups.len() < 2 {
        return None;
    }
    let total: f64 = groups.iter().map(|g| g.trials as f64).sum();
    let successes: f64 = groups.iter().map(|g| g.successes as f64).sum();
    let p = successes / total;
    if p <= 0.0 || p >= 1.0 {
        return None;
    }
    let mut statistic = 0.0;
    let mut smallest = f64::INFINITY;
    for g in &groups {
        let n = g.trials as f64;
        let (expected_yes, expected_no) = (n * p, n * (1.0 - p));
        let yes = g.successes as f64;
        let no = n - yes;
        statistic += (yes - expected_yes).powi(2) / expected_yes;
        statistic += (no - expected_no).powi(2) / expected_no;
        smallest = smallest.min(expected_yes).min(expected_no);
    }
    let degrees_of_freedom = (groups.len() - 1) as u32;
    let p_value = chi_squared_survival(statistic, f64::from(degrees_of_freedom));
    Some(Test {
        statistic,
        degrees_of_freedom,
        p_value,
        significant: p_value < ALPHA,
        sample_large_enough: smallest >= MIN_EXPECTED,
    })
}

/// `P(|Z| >= |z|)` for a standard normal `Z`.
pub fn normal_two_sided(z: f64) -> f64 {
    erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0)
}

/// `P(X >= x)` for `X` chi-squared with `k` degrees of freedom.
pub fn chi_squared_survival(x: f64, k: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    upper_gamma_regularized(k / 2.0, x / 2.0)
}

/// The complementary error function, through the incomplete gamma function:
/// `erfc(x) = Q(1/2, x^2)` for `x >= 0`.
fn erfc(x: f64) -> f64 {
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    upper_gamma_regularized(0.5, x * x)
}

/// `Q(a, x) = Γ(a, x) / Γ(a)`: by the power series of `P` below `a + 1`, by the
/// continued fraction (modified Lentz) above.
fn upper_gamma_regularized(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let log_prefix = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        // P(a, x) = x^a e^-x / Γ(a + 1) * Σ x^n / ((a + 1)...(a + n)).
        let mut term = 1.0 / a;
        let mut sum = term;
        let mut denominator = a;
        for _ in 0..1000 {
            denominator += 1.0;
            term *= x / denominator;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        (1.0 - sum * log_prefix.exp()).clamp(0.0, 1.0)
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..1000 {
            let i = f64::from(i);
            let an = -i * (i - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (log_prefix.exp() * h).clamp(0.0, 1.0)
    }
}

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, nine coefficients; reflection below 1/2).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) {
        assert!(
            (a - b).abs() <= tolerance,
            "{a} is not within {tolerance} of {b}"
        );
    }

    #[test]
    fn distributions_match_their_tables() {
        // Critical values of the standard tables.
        close(normal_two_sided(Z_95), 0.05, 1e-9);
        close(normal_two_sided(2.575_829_303_549), 0.01, 1e-9);
        close(normal_two_sided(0.0), 1.0, 1e-12);
        close(chi_squared_survival(3.841_458_820_694, 1.0), 0.05, 1e-9);
        close(chi_squared_survival(5.991_464_547_108, 2.0), 0.05, 1e-9);
        close(chi_squared_survival(7.814_727_903_251, 3.0), 0.05, 1e-9);
        close(chi_squared_survival(14.067_140_449_34, 7.0), 0.05, 1e-9);
        close(chi_squared_survival(6.634_896_601_021, 1.0), 0.01, 1e-9);
        // With two degrees of freedom the survival function is exp(-x/2).
        for x in [0.1, 1.0, 4.0, 20.0, 60.0] {
            close(chi_squared_survival(x, 2.0), (-x / 2.0).exp(), 1e-12);
        }
        close(ln_gamma(10.0), 362_880f64.ln(), 1e-12);
        close(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln(), 1e-12);
    }

    #[test]
    fn two_proportions_and_the_two_by_two_chi_squared_agree() {
        // 200 of 1,000 against 250 of 1,000: pooled 0.225, standard error
        // sqrt(0.225 * 0.775 * 2 / 1000) = 0.018675, z = -2.6774, p = 0.00742;
        // the 2x2 chi-squared is z^2 = 7.1685 with the same p-value.
        let a = Rate::new(200, 1_000);
        let b = Rate::new(250, 1_000);
        let z = two_proportion(a, b).expect("a test");
        close(z.statistic, -2.677_398, 1e-5);
        close(z.p_value, 0.007_419, 1e-5);
        assert!(z.significant && z.sample_large_enough);
        let chi = chi_squared(&[a, b]).expect("a test");
        close(chi.statistic, z.statistic * z.statistic, 1e-9);
        close(chi.p_value, z.p_value, 1e-9);
        assert_eq!(chi.degrees_of_freedom, 1);
        let versus = compare(b, a);
        close(versus.lift.expect("a lift"), 0.25, 1e-12);
    }

    #[test]
    fn a_textbook_chi_squared_across_three_groups() {
        // Observed successes 30/100, 45/100, 25/100: p = 1/3, expected 33.33 / 66.67 per
        // group; statistic (3.33^2 + 11.67^2 + 8.33^2) * (1/33.33 + 1/66.67) = 9.75,
        // 2 degrees of freedom, p = exp(-4.875) = 0.007635.
        let groups = [Rate::new(30, 100), Rate::new(45, 100), Rate::new(25, 100)];
        let chi = chi_squared(&groups).expect("a test");
        close(chi.statistic, 9.75, 1e-9);
        assert_eq!(chi.degrees_of_freedom, 2);
        close(chi.p_value, 0.007_635, 1e-6);
        assert!(chi.significant && chi.sample_large_enough);
    }

    #[test]
    fn wilson_intervals() {
        // 81 of 263: 0.3080, interval 0.2553 to 0.3662 (Wilson score, z = 1.96).
        let r = Rate::new(81, 263);
        close(r.rate, 0.307_985, 1e-6);
        close(r.low, 0.255_3, 1e-4);
        close(r.high, 0.366_2, 1e-4);
        // The interval stays inside [0, 1] at the edges and is wide without data.
        let none = Rate::new(0, 20);
        assert_eq!(none.low, 0.0);
        assert!(none.high > 0.1 && none.high < 0.2, "{}", none.high);
        let all = Rate::new(20, 20);
        assert_eq!(all.high, 1.0);
        assert_eq!(Rate::new(0, 0).high, 1.0);
    }

    #[test]
    fn no_variance_or_no_trials_is_no_test_and_small_samples_say_so() {
        assert!(two_proportion(Rate::new(0, 10), Rate::new(0, 10)).is_none());
        assert!(two_proportion(Rate::new(0, 0), Rate::new(3, 10)).is_none());
        assert!(chi_squared(&[Rate::new(5, 10)]).is_none());
        assert!(chi_squared(&[Rate::new(10, 10), Rate::new(7, 7)]).is_none());
        let small = two_proportion(Rate::new(1, 10), Rate::new(4, 10)).expect("a test");
        assert!(!small.sample_large_enough);
        let small = chi_squared(&[Rate::new(1, 10), Rate::new(4, 10)]).expect("a test");
        assert!(!small.sample_large_enough);
        assert_eq!(compare(Rate::new(3, 10), Rate::new(0, 10)).lift, None);
    }
}
