//! A/B assignment: which variant (or the control group) a person is in, and whether the
//! person is in a winner-mode campaign's test share.
//!
//! Both are functions of the campaign id and the person id alone (SHA-256 of the two,
//! with a different label for each question), so a person lands in the same group on
//! every run, on every node and after every restart, and the two questions are
//! independent: the test share is not made of the first variant's people. A person's
//! position in `[0, 1)` is the hash's first 64 bits; groups take consecutive intervals in
//! proportion to their weights, so changing the control's weight moves only the people
//! at the boundaries.

use appizer_core::ids::{CampaignId, PersonId};
use sha2::{Digest, Sha256};

/// Most variants a campaign may have (the control group aside).
pub const MAX_VARIANTS: usize = 8;

/// Where a person falls in a campaign's split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// The variant at this index of the campaign's variants.
    Variant(usize),
    /// The control group: receives nothing, measured all the same.
    Control,
}

/// A campaign's split: each variant's weight and the control's (any non-negative
/// integers, e.g. percentages; at least one variant weight above zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    weights: Vec<u32>,
    control: u32,
    total: u64,
}

/// Why a split cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("a campaign has 1 to {MAX_VARIANTS} variants")]
    VariantCount,
    #[error("at least one variant needs a weight above 0")]
    NoVariantWeight,
}

impl Split {
    pub fn new(weights: Vec<u32>, control: u32) -> Result<Split, SplitError> {
        if weights.is_empty() || weights.len() > MAX_VARIANTS {
            return Err(SplitError::VariantCount);
        }
        if weights.iter().all(|w| *w == 0) {
            return Err(SplitError::NoVariantWeight);
        }
        let total = weights.iter().map(|w| u64::from(*w)).sum::<u64>() + u64::from(control);
        Ok(Split {
            weights,
            control,
            total,
        })
    }

    /// The group of `person` in `campaign`.
    pub fn assign(&self, campaign: CampaignId, person: PersonId) -> Group {
        let at = scaled(position(b"variant", campaign, person), self.total);
        let mut end = 0;
        for (index, weight) in self.weights.iter().enumerate() {
            end += u64::from(*weight);
            if at < end {
                return Group::Variant(index);
            }
        }
        Group::Control
    }

    /// The variants' and the control's weights.
    pub fn weights(&self) -> (&[u32], u32) {
        (&self.weights, self.control)
    }
}

/// Whether `person` is in the first `share_percent` of `campaign`'s audience: the test
/// share of a winner-mode campaign (the rest receive the winner later).
pub fn in_test_share(campaign: CampaignId, person: PersonId, share_percent: u8) -> bool {
    scaled(position(b"test share", campaign, person), 100) < u64::from(share_percent)
}

/// The person's position in the campaign for one question: 64 uniform bits.
fn position(label: &[u8], campaign: CampaignId, person: PersonId) -> u64 {
    let mut hash = Sha256::new();
    hash.update(label);
    hash.update(campaign.as_uuid().as_bytes());
    hash.update(person.as_uuid().as_bytes());
    let digest = hash.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// `position / 2^64 * total`, exactly, without modulo bias.
fn scaled(position: u64, total: u64) -> u64 {
    ((u128::from(position) * u128::from(total)) >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn people(n: usize) -> Vec<PersonId> {
        (0..n as u128)
            .map(|i| PersonId::from(uuid::Uuid::from_u128(0x5eed_0000_0000 + i)))
            .collect()
    }

    #[test]
    fn groups_follow_the_weights_and_never_change() {
        let campaign = CampaignId::from(uuid::Uuid::from_u128(42));
        let split = Split::new(vec![45, 45], 10).unwrap();
        let persons = people(100_000);
        let mut counts = [0usize; 3];
        for person in &persons {
            let group = split.assign(campaign, *person);
            assert_eq!(group, split.assign(campaign, *person), "stable");
            counts[match group {
                Group::Variant(i) => i,
                Group::Control => 2,
            }] += 1;
        }
        // Binomial standard deviation at n = 100,000: 157 for 45%, 95 for 10%; five
        // of them either way.
        for (count, expected, sd) in [
            (counts[0], 45_000.0, 157.0),
            (counts[1], 45_000.0, 157.0),
            (counts[2], 10_000.0, 95.0),
        ] {
            assert!(
                (count as f64 - expected).abs() < 5.0 * sd,
                "{counts:?} against 45/45/10"
            );
        }
        // The same split under another campaign is a different draw.
        let other = CampaignId::from(uuid::Uuid::from_u128(43));
        let moved = persons
            .iter()
            .filter(|p| split.assign(campaign, **p) != split.assign(other, **p))
            .count();
        assert!(moved > 40_000, "{moved} moved");
        // Fixed points, computed apart from this code (SHA-256 of "variant", the two
        // UUIDs' bytes; the first 8 bytes big-endian times 100 over 2^64): the hash is
        // part of the contract, since reports group events assigned long ago.
        use Group::{Control as C, Variant};
        let (v0, v1) = (Variant(0), Variant(1));
        let first: Vec<Group> = persons[..8]
            .iter()
            .map(|p| split.assign(campaign, *p))
            .collect();
        assert_eq!(first, [C, v0, v1, v1, v1, C, v1, v0]);
    }

    #[test]
    fn the_test_share_is_independent_of_the_variants() {
        let campaign = CampaignId::new();
        let split = Split::new(vec![50, 50], 0).unwrap();
        let persons = people(40_000);
        let in_share: Vec<&PersonId> = persons
            .iter()
            .filter(|p| in_test_share(campaign, **p, 20))
            .collect();
        // 20% of 40,000 = 8,000, standard deviation 80.
        assert!(
            (in_share.len() as f64 - 8_000.0).abs() < 400.0,
            "{}",
            in_share.len()
        );
        let first = in_share
            .iter()
            .filter(|p| split.assign(campaign, ***p) == Group::Variant(0))
            .count();
        // Half of the share in each variant, standard deviation 63.
        assert!(
            (first as f64 - in_share.len() as f64 / 2.0).abs() < 320.0,
            "{first}"
        );
        assert!(persons.iter().all(|p| in_test_share(campaign, *p, 100)));
        assert!(!persons.iter().any(|p| in_test_share(campaign, *p, 0)));
    }

    #[test]
    fn a_zero_weight_gets_no_one_and_the_rules_are_enforced() {
        let campaign = CampaignId::new();
        let split = Split::new(vec![0, 1], 0).unwrap();
        assert!(people(1_000)
            .iter()
            .all(|p| split.assign(campaign, *p) == Group::Variant(1)));
        assert_eq!(Split::new(vec![], 10), Err(SplitError::VariantCount));
        assert_eq!(Split::new(vec![1; 9], 0), Err(SplitError::VariantCount));
        assert_eq!(Split::new(vec![0, 0], 10), Err(SplitError::NoVariantWeight));
        assert_eq!(Split::new(vec![1; 8], 0).unwrap().weights().0.len(), 8);
    }
}
