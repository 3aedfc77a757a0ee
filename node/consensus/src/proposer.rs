//! Proposer selection, weighted by voting power.
//!
//! Powers are divided by their greatest common divisor; slot `(height + round) mod total`
//! then falls in the interval of one validator, whose width is its (reduced) power. Over
//! any `total` consecutive slots each validator proposes exactly its share. With equal
//! powers this is plain round robin. A pure function of (set, height, round), so every
//! validator, the simulation and an auditor agree on it.

use bidchain_runtime::ids::{Height, Round};
use bidchain_runtime::validator::ValidatorSet;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The index of the proposer of (height, round).
pub fn proposer(validators: &ValidatorSet, height: Height, round: Round) -> usize {
    let divisor = validators
        .validators()
        .iter()
        .fold(0, |g, v| gcd(g, v.power))
        .max(1);
    let total = validators.total_power() / divisor;
    if total == 0 {
        return 0;
    }
    let slot = height.0.wrapping_add(u64::from(round.0)) % total;
    let mut upper = 0u64;
    for (index, v) in validators.validators().iter().enumerate() {
        upper += v.power / divisor;
        if slot < upper {
            return index;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use bidchain_runtime::bounded::BoundedString;
    use bidchain_runtime::crypto::Keypair;
    use bidchain_runtime::validator::Validator;

    fn set(powers: &[u64]) -> ValidatorSet {
        ValidatorSet::new(
            powers
                .iter()
                .enumerate()
                .map(|(i, &power)| Validator {
                    name: BoundedString::truncating(&format!("v{i}")),
                    key: Keypair::from_seed_for_tests(i as u64).public(),
                    power,
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn equal_powers_rotate() {
        let s = set(&[10, 10, 10, 10]);
        let picks: Vec<_> = (0..8).map(|h| proposer(&s, Height(h), Round(0))).collect();
        assert_eq!(picks, [0, 1, 2, 3, 0, 1, 2, 3]);
        assert_eq!(proposer(&s, Height(1), Round(2)), 3);
    }

    #[test]
    fn shares_follow_power() {
        let s = set(&[1, 2, 3]);
        let mut counts = [0; 3];
        for h in 0..600 {
            counts[proposer(&s, Height(h), Round(0))] += 1;
        }
        assert_eq!(counts, [100, 200, 300]);
    }
}
