//! The votes of one height, tallied by voting power per (round, kind, value).

use std::collections::{BTreeMap, BTreeSet};

use bidchain_runtime::block::{BlockHash, CommitSig};
use bidchain_runtime::ids::Round;

use super::types::{SignedVote, VoteKind};

/// Distinct values one validator's votes are counted for in one (round, kind). An honest
/// validator votes once; more is equivocation, kept (bounded) because the paper counts
/// messages: a Byzantine prevote for v is part of "2f+1 ⟨PREVOTE, h, r, id(v)⟩" even if it
/// also sent one for w, and honest nodes must be able to check the same quorum
/// (Tendermint's VoteSet does the same for a claimed +2/3 majority).
pub const MAX_VALUES_PER_VOTER: u8 = 3;

/// What adding a vote did.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    New,
    /// The same vote again (gossip duplicates): ignored.
    Duplicate,
    /// A second value from the same validator for the same round and kind: counted for its
    /// value, and reported as evidence with one earlier vote.
    Equivocation(Box<SignedVote>),
    /// Past [`MAX_VALUES_PER_VOTER`]: dropped.
    Dropped,
}

#[derive(Debug, Default)]
struct Tally {
    by_value: BTreeMap<Option<BlockHash>, BTreeMap<u16, SignedVote>>,
    power: BTreeMap<Option<BlockHash>, u64>,
    values_per_voter: BTreeMap<u16, u8>,
    /// Power of distinct voters, whatever they voted.
    total: u64,
}

#[derive(Debug, Default)]
pub struct VoteBook {
    tallies: BTreeMap<(Round, VoteKind), Tally>,
    /// Validators heard from in each round (any message), for the f+1 round-skip rule.
    senders: BTreeMap<Round, BTreeSet<u16>>,
}

impl VoteBook {
    pub fn add(&mut self, vote: SignedVote, power: u64) -> Added {
        let v = &vote.vote;
        let (round, validator, value) = (v.round, v.validator_index, v.block_id);
        let tally = self.tallies.entry((round, v.kind)).or_default();
        if tally
            .by_value
            .get(&value)
            .is_some_and(|votes| votes.contains_key(&validator))
        {
            return Added::Duplicate;
        }
        // Past the cap, an equivocator's vote still counts for a value someone else voted
        // for (it may complete a quorum honest nodes must see), never for a new one: memory
        // stays bounded by validators × cap values per (round, kind).
        let others_voted = tally
            .by_value
            .get(&value)
            .is_some_and(|votes| !votes.is_empty());
        let count = tally.values_per_voter.entry(validator).or_default();
        if *count >= MAX_VALUES_PER_VOTER && !others_voted {
            return Added::Dropped;
        }
        *count = count.saturating_add(1);
        let first = *count == 1;
        let earlier = tally
            .by_value
            .values()
            .find_map(|votes| votes.get(&validator))
            .cloned();
        if first {
            tally.total += power;
        }
        *tally.power.entry(value).or_default() += power;
        tally
            .by_value
            .entry(value)
            .or_default()
            .insert(validator, vote);
        self.senders.entry(round).or_default().insert(validator);
        match earlier {
            Some(earlier) => Added::Equivocation(Box::new(earlier)),
            None => Added::New,
        }
    }

    /// Whether this exact signed vote is held.
    pub fn contains(&self, vote: &SignedVote) -> bool {
        let v = &vote.vote;
        self.tallies
            .get(&(v.round, v.kind))
            .and_then(|t| t.by_value.get(&v.block_id))
            .and_then(|votes| votes.get(&v.validator_index))
            .is_some_and(|held| held == vote)
    }

    /// The signed votes for `block_id` in (round, kind).
    pub fn votes_for(
        &self,
        round: Round,
        kind: VoteKind,
        block_id: BlockHash,
    ) -> impl Iterator<Item = SignedVote> + '_ {
        self.tallies
            .get(&(round, kind))
            .and_then(|t| t.by_value.get(&Some(block_id)))
            .into_iter()
            .flat_map(|votes| votes.values())
            .cloned()
    }

    pub fn note_sender(&mut self, round: Round, validator: u16) {
        self.senders.entry(round).or_default().insert(validator);
    }

    /// Power that voted `value` (None: nil) in (round, kind).
    pub fn power_for(&self, round: Round, kind: VoteKind, value: Option<BlockHash>) -> u64 {
        self.tallies
            .get(&(round, kind))
            .and_then(|t| t.power.get(&value))
            .copied()
            .unwrap_or(0)
    }

    /// Power that voted anything in (round, kind).
    pub fn power_any(&self, round: Round, kind: VoteKind) -> u64 {
        self.tallies.get(&(round, kind)).map_or(0, |t| t.total)
    }

    /// Validators heard from in `round`.
    pub fn senders(&self, round: Round) -> impl Iterator<Item = u16> + '_ {
        self.senders.get(&round).into_iter().flatten().copied()
    }

    pub fn rounds_heard(&self) -> impl Iterator<Item = Round> + '_ {
        self.senders.keys().copied()
    }

    /// The precommit signatures for `block_id` in `round`, in validator order.
    pub fn precommits_for(&self, round: Round, block_id: BlockHash) -> Vec<CommitSig> {
        self.votes_for(round, VoteKind::Precommit, block_id)
            .map(|v| CommitSig {
                validator_index: v.vote.validator_index,
                signature: v.signature,
            })
            .collect()
    }
}
