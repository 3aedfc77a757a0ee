//! The validator set: who may sign blocks, with what voting power.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::bounded::{BoundedString, BoundedVec};
use crate::codec;
use crate::crypto::PublicKey;
use crate::hash::Hash;

/// Most validators a set may hold (every city center plus the hub, with room to grow).
pub const MAX_VALIDATORS: usize = 128;
pub const MAX_VALIDATOR_NAME_LEN: usize = 64;
/// Bound on the total voting power, so quorum arithmetic (`2 * total`) cannot overflow.
pub const MAX_TOTAL_POWER: u64 = 1 << 60;

#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct Validator {
    pub name: BoundedString<MAX_VALIDATOR_NAME_LEN>,
    pub key: PublicKey,
    pub power: u64,
}

/// An ordered validator set. Order matters (it fixes proposer rotation and certificate
/// indices), so it is part of the set's hash.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct ValidatorSet {
    validators: BoundedVec<Validator, MAX_VALIDATORS>,
}

/// Why a list of validators is not a usable set.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValidatorSetError {
    #[error("a validator set needs at least one validator")]
    Empty,
    #[error("more than {MAX_VALIDATORS} validators")]
    TooMany,
    #[error("validator {0} has zero voting power")]
    ZeroPower(String),
    #[error("validator key {0} appears twice")]
    DuplicateKey(PublicKey),
    #[error("total voting power exceeds {MAX_TOTAL_POWER}")]
    PowerOverflow,
}

impl ValidatorSet {
    pub fn new(validators: Vec<Validator>) -> Result<ValidatorSet, ValidatorSetError> {
        if validators.is_empty() {
            return Err(ValidatorSetError::Empty);
        }
        let mut total: u64 = 0;
        for (i, v) in validators.iter().enumerate() {
            if v.power == 0 {
                return Err(ValidatorSetError::ZeroPower(v.name.to_string()));
            }
            if validators[..i].iter().any(|w| w.key == v.key) {
                return Err(ValidatorSetError::DuplicateKey(v.key));
            }
            total = total.saturating_add(v.power);
        }
        if total > MAX_TOTAL_POWER {
            return Err(ValidatorSetError::PowerOverflow);
        }
        let validators = BoundedVec::new(validators).map_err(|_| ValidatorSetError::TooMany)?;
        Ok(ValidatorSet { validators })
    }

    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }

    pub fn len(&self) -> usize {
        self.validators.len()
    }

    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    pub fn total_power(&self) -> u64 {
        self.validators.iter().map(|v| v.power).sum()
    }

    /// The least power that is more than two thirds of the total: a quorum.
    pub fn quorum_power(&self) -> u64 {
        self.total_power() * 2 / 3 + 1
    }

    pub fn index_of(&self, key: &PublicKey) -> Option<usize> {
        self.validators.iter().position(|v| &v.key == key)
    }

    pub fn get(&self, index: usize) -> Option<&Validator> {
        self.validators.get(index)
    }

    pub fn hash(&self) -> Hash {
        Hash::domain(b"bidchain/validator-set/v1", &[&codec::encode(self)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    fn validator(seed: u64, power: u64) -> Validator {
        Validator {
            name: BoundedString::new(format!("v{seed}")).unwrap(),
            key: Keypair::from_seed_for_tests(seed).public(),
            power,
        }
    }

    #[test]
    fn quorum_is_more_than_two_thirds() {
        let set = ValidatorSet::new((0..4).map(|i| validator(i, 1)).collect()).unwrap();
        assert_eq!(set.quorum_power(), 3);
        let one = ValidatorSet::new(vec![validator(0, 1)]).unwrap();
        assert_eq!(one.quorum_power(), 1);
        let seven = ValidatorSet::new((0..7).map(|i| validator(i, 1)).collect()).unwrap();
        assert_eq!(seven.quorum_power(), 5);
    }

    #[test]
    fn invalid_sets_are_refused() {
        assert_eq!(ValidatorSet::new(vec![]), Err(ValidatorSetError::Empty));
        assert!(matches!(
            ValidatorSet::new(vec![validator(1, 1), validator(1, 2)]),
            Err(ValidatorSetError::DuplicateKey(_))
        ));
        assert!(matches!(
            ValidatorSet::new(vec![validator(1, 0)]),
            Err(ValidatorSetError::ZeroPower(_))
        ));
    }
}
