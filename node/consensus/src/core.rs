//! The Tendermint consensus core as a pure state machine.
//!
//! This is Algorithm 1 of Buchman, Kwon, Milosevic, "The latest gossip on BFT consensus"
//! (2018), one height at a time. Comments cite its lines as `[L22]`. The core does no I/O,
//! reads no clock and spawns nothing: [`Core::handle`] maps an [`Input`] to [`Effect`]s,
//! and an outer loop (the node's driver, or the deterministic simulation) performs them in
//! order. Value validity (`valid(v)`) and proposal timeliness are decided outside, by the
//! caller, and passed in with each proposal.
//!
//! Crash safety: every message the core signs is emitted as `Persist` before `Broadcast`;
//! the driver must make it durable before sending. On restart, [`Core::new`] takes those
//! messages back, refuses to sign anything that conflicts with them, and recovers the lock
//! (`lockedValue_p`/`lockedRound_p` are the value and round of the last non-nil precommit
//! this validator signed at the height) together with its proof, the 2f+1 prevotes that
//! are persisted when it locks.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bidchain_runtime::block::{BlockHash, CommitCertificate};
use bidchain_runtime::bounded::BoundedVec;
use bidchain_runtime::crypto::Keypair;
use bidchain_runtime::ids::{ChainId, Height, Round};
use bidchain_runtime::validator::ValidatorSet;

use super::proposer::proposer;
use super::types::*;
use super::votes::{Added, VoteBook};

/// Messages for rounds further ahead than this are dropped (bounds memory against a
/// Byzantine validator inventing rounds).
pub const MAX_ROUNDS_AHEAD: u32 = 1_000;
/// Distinct proposals kept per round (an equivocating proposer sends several).
pub const MAX_PROPOSALS_PER_ROUND: usize = 4;
/// Messages for the next height kept until this one is decided.
pub const MAX_FUTURE_MESSAGES: usize = 4_096;

/// Timeouts grow linearly with the round so that, after GST, some round is long enough.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub propose_ms: u64,
    pub prevote_ms: u64,
    pub precommit_ms: u64,
    pub delta_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            propose_ms: 1_000,
            prevote_ms: 500,
            precommit_ms: 500,
            delta_ms: 500,
        }
    }
}

impl Timeouts {
    pub fn duration_ms(&self, step: Step, round: Round) -> u64 {
        let base = match step {
            Step::Propose => self.propose_ms,
            Step::Prevote => self.prevote_ms,
            Step::Precommit => self.precommit_ms,
        };
        base.saturating_add(self.delta_ms.saturating_mul(u64::from(round.0)))
    }
}

/// Deliberate rule breakers, for proving the simulation's checker can fail. Always off in
/// a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Prevote for any valid proposal, ignoring `lockedValue_p` [L23, L29].
    pub ignore_lock: bool,
}

#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub chain_id: ChainId,
    pub timeouts: Timeouts,
    pub faults: Faults,
}

#[derive(Debug)]
pub enum Input {
    /// The answer to `RequestValue` (`getValue()` [L15]).
    Value {
        height: Height,
        round: Round,
        block_id: BlockHash,
    },
    /// A proposal with the caller's verdicts: `block_valid` is `valid(v)`; `timely` is the
    /// proposer-based-timestamp check of the block time against the local clock.
    Proposal {
        proposal: SignedProposal,
        block_valid: bool,
        timely: bool,
    },
    Vote(SignedVote),
    Timeout(Timeout),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Make this own signed message durable; only then perform the effects after it.
    Persist(Message),
    Broadcast(Message),
    ScheduleTimeout {
        timeout: Timeout,
        duration_ms: u64,
    },
    /// `getValue()`: build a block for (height, round) and answer with `Input::Value`.
    RequestValue {
        height: Height,
        round: Round,
    },
    /// `decision_p[h_p] = v` [L51], with the 2f+1 precommits as its certificate.
    Decide {
        height: Height,
        block_id: BlockHash,
        certificate: CommitCertificate,
    },
    /// A validator signed two different votes for one (height, round, kind).
    Equivocation {
        first: Box<SignedVote>,
        second: Box<SignedVote>,
    },
}

/// Which once-per-round rule has fired ("for the first time").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Once {
    PrevoteTimeout,
    Lock,
    PrecommitTimeout,
}

#[derive(Clone, Debug)]
struct ProposalEntry {
    signed: SignedProposal,
    block_valid: bool,
    timely: bool,
}

/// What this validator signed at this height, by (round, slot): the double-sign guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Proposal,
    Prevote,
    Precommit,
}

#[derive(Debug)]
pub struct Core {
    config: CoreConfig,
    key: Option<Keypair>,
    own_index: Option<u16>,
    validators: ValidatorSet,
    height: Height,
    round: Round,
    step: Step,
    locked: Option<(Round, BlockHash)>,
    valid: Option<(Round, BlockHash)>,
    proposals: BTreeMap<Round, Vec<ProposalEntry>>,
    votes: VoteBook,
    fired: BTreeSet<(Round, Once)>,
    decided: Option<BlockHash>,
    signed: BTreeMap<(Round, Slot), Message>,
    future: VecDeque<Input>,
}

impl Core {
    /// A core at `height`, resuming from `prior`: the messages this validator signed at this
    /// height before a restart (empty on a fresh start). Returns the start-up effects.
    pub fn new(
        config: CoreConfig,
        key: Option<Keypair>,
        validators: ValidatorSet,
        height: Height,
        prior: Vec<Message>,
    ) -> (Core, Vec<Effect>) {
        let own_index = key
            .as_ref()
            .and_then(|k| validators.index_of(&k.public()))
            .and_then(|i| u16::try_from(i).ok());
        let mut core = Core {
            config,
            key,
            own_index,
            validators,
            height,
            round: Round(0),
            step: Step::Propose,
            locked: None,
            valid: None,
            proposals: BTreeMap::new(),
            votes: VoteBook::default(),
            fired: BTreeSet::new(),
            decided: None,
            signed: BTreeMap::new(),
            future: VecDeque::new(),
        };
        let effects = if prior.is_empty() {
            core.start_round(Round(0))
        } else {
            core.resume(prior)
        };
        (core, effects)
    }

    pub fn height(&self) -> Height {
        self.height
    }

    pub fn round(&self) -> Round {
        self.round
    }

    pub fn step(&self) -> Step {
        self.step
    }

    pub fn decided(&self) -> Option<BlockHash> {
        self.decided
    }

    /// A one-line summary of the core's position, for logs and failing simulations.
    pub fn describe(&self) -> String {
        format!(
            "h={} r={} step={:?} locked={:?} valid={:?} proposals={:?}",
            self.height.0,
            self.round.0,
            self.step,
            self.locked.map(|(r, id)| (r.0, id)),
            self.valid.map(|(r, id)| (r.0, id)),
            self.proposals
                .iter()
                .map(|(r, l)| (
                    r.0,
                    l.iter()
                        .map(|e| (
                            e.signed.proposal.block_id,
                            e.signed.proposal.valid_round.map(|v| v.0),
                            e.block_valid
                        ))
                        .collect::<Vec<_>>()
                ))
                .collect::<Vec<_>>()
        )
    }

    /// What to send again on each gossip tick, so that every honest node eventually holds
    /// what this one holds (the paper's gossip assumption, §2: messages a correct process
    /// receives reach every correct process): this validator's own messages of the current
    /// and previous round and its locked-round precommit, and the 2f+1 prevotes that justify
    /// its `validValue_p` (the proof a re-proposal of it needs [L28]).
    pub fn gossip(&self) -> Vec<Message> {
        let from = Round(self.round.0.saturating_sub(1));
        let mut out: Vec<Message> = self
            .signed
            .range((from, Slot::Proposal)..)
            .map(|(_, m)| m.clone())
            .collect();
        // Our precommit of the locked round: part of the evidence a decision may need.
        if let Some((round, _)) = self.locked.filter(|(r, _)| *r < from) {
            out.extend(self.signed.get(&(round, Slot::Precommit)).cloned());
        }
        if let Some((round, id)) = self.valid {
            out.extend(
                self.votes
                    .votes_for(round, VoteKind::Prevote, id)
                    .map(Message::Vote),
            );
        }
        out
    }

    /// Moves to the next height once the decided block is committed [L52–L54], with the
    /// validator set in force there, and replays messages that arrived early.
    pub fn next_height(&mut self, validators: ValidatorSet) -> Vec<Effect> {
        let future = std::mem::take(&mut self.future);
        self.own_index = self
            .key
            .as_ref()
            .and_then(|k| validators.index_of(&k.public()))
            .and_then(|i| u16::try_from(i).ok());
        self.validators = validators;
        self.height = self.height.next();
        self.locked = None;
        self.valid = None;
        self.proposals.clear();
        self.votes = VoteBook::default();
        self.fired.clear();
        self.decided = None;
        self.signed.clear();
        let mut effects = self.start_round(Round(0));
        for input in future {
            effects.extend(self.handle(input));
        }
        effects
    }

    /// Rebuilds round, step, lock and the double-sign guard from own signed messages.
    fn resume(&mut self, prior: Vec<Message>) -> Vec<Effect> {
        let height = self.height;
        for message in prior.into_iter().filter(|m| m.height() == height) {
            if Some(message.sender()) != self.own_index {
                // Another validator's prevote, persisted as the proof of our lock.
                if let Message::Vote(v) = message {
                    self.add_vote(v);
                }
                continue;
            }
            let round = message.round();
            self.round = self.round.max(round);
            match &message {
                Message::Proposal(_) => {
                    self.signed.insert((round, Slot::Proposal), message);
                }
                Message::Vote(v) => {
                    let slot = match v.vote.kind {
                        VoteKind::Prevote => Slot::Prevote,
                        VoteKind::Precommit => Slot::Precommit,
                    };
                    if v.vote.kind == VoteKind::Precommit
                        && let Some(id) = v.vote.block_id
                        && self.locked.is_none_or(|(r, _)| r < round)
                    {
                        self.locked = Some((round, id));
                    }
                    self.add_vote(v.clone());
                    self.signed.insert((round, slot), message);
                }
            }
        }
        self.valid = self.locked;
        self.step = if self.signed.contains_key(&(self.round, Slot::Precommit)) {
            Step::Precommit
        } else if self.signed.contains_key(&(self.round, Slot::Prevote)) {
            Step::Prevote
        } else {
            Step::Propose
        };
        // Peers may have missed what was sent before the crash: send it again.
        let mut effects: Vec<Effect> = self
            .signed
            .range((self.round, Slot::Proposal)..)
            .map(|(_, m)| Effect::Broadcast(m.clone()))
            .collect();
        match self.step {
            Step::Propose => effects.extend(self.start_round(self.round)),
            step => effects.push(self.schedule(step)),
        }
        effects
    }

    /// Feeds one input; returns the effects to perform, in order.
    pub fn handle(&mut self, input: Input) -> Vec<Effect> {
        let mut effects = Vec::new();
        match input {
            Input::Value {
                height,
                round,
                block_id,
            } => {
                if height == self.height && round == self.round && self.step == Step::Propose {
                    effects.extend(self.propose(block_id, None));
                }
            }
            Input::Proposal {
                proposal,
                block_valid,
                timely,
            } => {
                let message = Message::Proposal(proposal.clone());
                if !self.admit(
                    &message,
                    Input::Proposal {
                        proposal: proposal.clone(),
                        block_valid,
                        timely,
                    },
                ) {
                    return effects;
                }
                self.add_proposal(ProposalEntry {
                    signed: proposal,
                    block_valid,
                    timely,
                });
            }
            Input::Vote(vote) => {
                let message = Message::Vote(vote.clone());
                if !self.admit(&message, Input::Vote(vote.clone())) {
                    return effects;
                }
                if let Some(effect) = self.add_vote(vote) {
                    effects.push(effect);
                }
            }
            Input::Timeout(timeout) => effects.extend(self.on_timeout(timeout)),
        }
        if self.decided.is_none() {
            effects.extend(self.run_rules());
        }
        effects
    }

    /// Filters a received message: right height (next height: kept for later), round
    /// window, valid signature, proposals only from the round's proposer.
    fn admit(&mut self, message: &Message, input: Input) -> bool {
        if message.height() == self.height.next() {
            if self.future.len() < MAX_FUTURE_MESSAGES {
                self.future.push_back(input);
            }
            return false;
        }
        if message.height() != self.height || self.decided.is_some() {
            return false;
        }
        if message.round().0 > self.round.0.saturating_add(MAX_ROUNDS_AHEAD) {
            return false;
        }
        if self.already_have(message) {
            return false;
        }
        if message
            .verify(&self.config.chain_id, &self.validators)
            .is_err()
        {
            return false;
        }
        if let Message::Proposal(p) = message {
            let expected = proposer(&self.validators, self.height, p.proposal.round);
            if usize::from(p.proposal.proposer_index) != expected {
                return false;
            }
        }
        self.votes.note_sender(message.round(), message.sender());
        true
    }

    /// An exact copy of something held (gossip repeats): nothing to verify or do.
    fn already_have(&self, message: &Message) -> bool {
        match message {
            Message::Vote(v) => self.votes.contains(v),
            Message::Proposal(p) => self
                .proposals
                .get(&p.proposal.round)
                .is_some_and(|list| list.iter().any(|e| e.signed == *p)),
        }
    }

    fn add_proposal(&mut self, entry: ProposalEntry) {
        let round = entry.signed.proposal.round;
        let list = self.proposals.entry(round).or_default();
        let id = entry.signed.proposal.block_id;
        let known = list.iter().any(|e| e.signed.proposal.block_id == id);
        if !known && list.len() < MAX_PROPOSALS_PER_ROUND {
            list.push(entry);
        }
    }

    fn add_vote(&mut self, vote: SignedVote) -> Option<Effect> {
        let power = self
            .validators
            .get(usize::from(vote.vote.validator_index))?
            .power;
        match self.votes.add(vote.clone(), power) {
            Added::New | Added::Duplicate | Added::Dropped => None,
            Added::Equivocation(first) => Some(Effect::Equivocation {
                first,
                second: Box::new(vote),
            }),
        }
    }

    fn power_is_quorum(&self, power: u64) -> bool {
        power >= self.validators.quorum_power()
    }

    /// `f + 1`: more than a third of the voting power, so at least one honest validator.
    fn power_is_f_plus_one(&self, power: u64) -> bool {
        power.saturating_mul(3) > self.validators.total_power()
    }

    /// StartRound(round) [L11–L21].
    fn start_round(&mut self, round: Round) -> Vec<Effect> {
        self.round = round; // [L12]
        self.step = Step::Propose; // [L13]
        let is_proposer = self
            .own_index
            .is_some_and(|i| usize::from(i) == proposer(&self.validators, self.height, round));
        // [L21] schedules timeoutPropose only for the other validators. We schedule it for
        // the proposer too: after a restart its validValue_p may lack the 2f+1 prevotes
        // [L28] needs, and a block may fail to build; the timeout (which acts only while
        // still in the propose step) then moves it on. Timeouts never affect safety.
        let mut effects = vec![self.schedule(Step::Propose)];
        if is_proposer {
            effects.extend(match self.valid {
                Some((valid_round, block_id)) => self.propose(block_id, Some(valid_round)), // [L15]
                None => vec![Effect::RequestValue {
                    height: self.height,
                    round,
                }], // [L17]
            });
        }
        effects
    }

    /// broadcast ⟨PROPOSAL, h_p, round_p, proposal, validRound_p⟩ [L19].
    fn propose(&mut self, block_id: BlockHash, valid_round: Option<Round>) -> Vec<Effect> {
        let Some(index) = self.own_index else {
            return Vec::new();
        };
        let proposal = Proposal {
            height: self.height,
            round: self.round,
            block_id,
            valid_round,
            proposer_index: index,
        };
        let Some(signed) = self.sign(Slot::Proposal, |key, chain| {
            Message::Proposal(sign_proposal(proposal.clone(), chain, key))
        }) else {
            return Vec::new();
        };
        let Message::Proposal(p) = signed.message() else {
            return Vec::new();
        };
        // Our own proposal is valid (we built it, or it is validValue_p) and timely.
        self.add_proposal(ProposalEntry {
            signed: p.clone(),
            block_valid: true,
            timely: true,
        });
        signed.effects()
    }

    /// Signs a message for the current round unless one was signed for this slot already:
    /// then the same message is sent again if it is the same, and nothing is signed if it
    /// would conflict (this is what keeps a restarted validator from double-signing).
    fn sign(
        &mut self,
        slot: Slot,
        make: impl FnOnce(&Keypair, &ChainId) -> Message,
    ) -> Option<Signed> {
        let key = self.key.as_ref()?;
        let message = make(key, &self.config.chain_id);
        match self.signed.get(&(self.round, slot)) {
            Some(previous) if same_content(previous, &message) => {
                Some(Signed::Again(previous.clone()))
            }
            Some(_) => {
                tracing::warn!(
                    height = self.height.0,
                    round = self.round.0,
                    ?slot,
                    "refusing to sign a conflicting message"
                );
                None
            }
            None => {
                self.signed.insert((self.round, slot), message.clone());
                Some(Signed::New(message))
            }
        }
    }

    fn vote(&mut self, kind: VoteKind, block_id: Option<BlockHash>) -> Vec<Effect> {
        let Some(index) = self.own_index else {
            return Vec::new();
        };
        let vote = Vote {
            kind,
            height: self.height,
            round: self.round,
            block_id,
            validator_index: index,
        };
        let slot = match kind {
            VoteKind::Prevote => Slot::Prevote,
            VoteKind::Precommit => Slot::Precommit,
        };
        let Some(signed) = self.sign(slot, |key, chain| {
            Message::Vote(sign_vote(vote.clone(), chain, key))
        }) else {
            return Vec::new();
        };
        if let Message::Vote(v) = signed.message() {
            self.add_vote(v.clone());
        }
        signed.effects()
    }

    fn schedule(&self, step: Step) -> Effect {
        let timeout = Timeout {
            height: self.height,
            round: self.round,
            step,
        };
        Effect::ScheduleTimeout {
            timeout,
            duration_ms: self.config.timeouts.duration_ms(step, self.round),
        }
    }

    /// OnTimeoutPropose / OnTimeoutPrevote / OnTimeoutPrecommit [L57–L67].
    fn on_timeout(&mut self, t: Timeout) -> Vec<Effect> {
        if t.height != self.height || t.round != self.round || self.decided.is_some() {
            return Vec::new();
        }
        match (t.step, self.step) {
            (Step::Propose, Step::Propose) => {
                self.step = Step::Prevote; // [L60]
                self.vote(VoteKind::Prevote, None) // [L59]
            }
            (Step::Prevote, Step::Prevote) => {
                self.step = Step::Precommit; // [L64]
                self.vote(VoteKind::Precommit, None) // [L63]
            }
            (Step::Precommit, _) => self.start_round(self.round.next()), // [L67]
            _ => Vec::new(),
        }
    }

    /// Applies the upon-rules until none fires.
    fn run_rules(&mut self) -> Vec<Effect> {
        let mut effects = Vec::new();
        loop {
            let fired = self
                .decide_rule()
                .or_else(|| self.skip_round_rule())
                .or_else(|| self.prevote_rule())
                .or_else(|| self.lock_rule())
                .or_else(|| self.nil_precommit_rule())
                .or_else(|| self.timeout_rules());
            match fired {
                Some(more) => {
                    effects.extend(more);
                    if self.decided.is_some() {
                        return effects;
                    }
                }
                None => return effects,
            }
        }
    }

    /// [L22–L33]: prevote on the round's proposal.
    fn prevote_rule(&mut self) -> Option<Vec<Effect>> {
        if self.step != Step::Propose {
            return None;
        }
        let entry = self.proposals.get(&self.round)?.first()?.clone();
        let id = entry.signed.proposal.block_id;
        let locked = if self.config.faults.ignore_lock {
            None
        } else {
            self.locked
        };
        let accept = match entry.signed.proposal.valid_round {
            // [L22–L23]: a fresh proposal must be valid and timely.
            None => entry.block_valid && entry.timely && locked.is_none_or(|(_, v)| v == id),
            // [L28–L29]: a re-proposal needs 2f+1 prevotes for it in its valid round.
            Some(vr) if vr < self.round => {
                let prevotes = self.votes.power_for(vr, VoteKind::Prevote, Some(id));
                if !self.power_is_quorum(prevotes) {
                    return None;
                }
                entry.block_valid && locked.is_none_or(|(lr, v)| lr <= vr || v == id)
            }
            Some(_) => return None,
        };
        self.step = Step::Prevote; // [L27, L33]
        Some(self.vote(VoteKind::Prevote, accept.then_some(id))) // [L24–L25, L30–L31]
    }

    /// [L36–L43]: 2f+1 prevotes for the round's valid proposal: lock and precommit it.
    fn lock_rule(&mut self) -> Option<Vec<Effect>> {
        if self.step < Step::Prevote || self.fired.contains(&(self.round, Once::Lock)) {
            return None;
        }
        let round = self.round;
        let id = self.proposals.get(&round)?.iter().find_map(|e| {
            let id = e.signed.proposal.block_id;
            let power = self.votes.power_for(round, VoteKind::Prevote, Some(id));
            (e.block_valid && self.power_is_quorum(power)).then_some(id)
        })?;
        self.fired.insert((round, Once::Lock));
        let mut effects = Vec::new();
        if self.step == Step::Prevote {
            self.locked = Some((round, id)); // [L38–L39]
            self.step = Step::Precommit; // [L41]
            // The 2f+1 prevotes behind the lock are persisted with it: after a restart they
            // are the proof a re-proposal of the locked value needs [L28]. Without them a
            // restarted, locked validator could wait forever for a proof nobody holds.
            effects.extend(
                self.votes
                    .votes_for(round, VoteKind::Prevote, id)
                    .filter(|v| Some(v.vote.validator_index) != self.own_index)
                    .map(|v| Effect::Persist(Message::Vote(v))),
            );
            effects.extend(self.vote(VoteKind::Precommit, Some(id))); // [L40]
        }
        self.valid = Some((round, id)); // [L42–L43]
        Some(effects)
    }

    /// [L44–L46]: 2f+1 prevotes for nil: precommit nil.
    fn nil_precommit_rule(&mut self) -> Option<Vec<Effect>> {
        if self.step != Step::Prevote {
            return None;
        }
        let nil = self.votes.power_for(self.round, VoteKind::Prevote, None);
        if !self.power_is_quorum(nil) {
            return None;
        }
        self.step = Step::Precommit;
        Some(self.vote(VoteKind::Precommit, None))
    }

    /// [L34–L35] and [L47–L48]: schedule the prevote and precommit timeouts once per round.
    fn timeout_rules(&mut self) -> Option<Vec<Effect>> {
        let round = self.round;
        if self.step == Step::Prevote
            && !self.fired.contains(&(round, Once::PrevoteTimeout))
            && self.power_is_quorum(self.votes.power_any(round, VoteKind::Prevote))
        {
            self.fired.insert((round, Once::PrevoteTimeout));
            return Some(vec![self.schedule(Step::Prevote)]);
        }
        if !self.fired.contains(&(round, Once::PrecommitTimeout))
            && self.power_is_quorum(self.votes.power_any(round, VoteKind::Precommit))
        {
            self.fired.insert((round, Once::PrecommitTimeout));
            return Some(vec![self.schedule(Step::Precommit)]);
        }
        None
    }

    /// [L49–L54]: a valid proposal of any round with 2f+1 precommits for it is decided.
    fn decide_rule(&mut self) -> Option<Vec<Effect>> {
        if self.decided.is_some() {
            return None;
        }
        let (round, id) = self.proposals.iter().find_map(|(round, entries)| {
            entries.iter().find_map(|e| {
                let id = e.signed.proposal.block_id;
                let power = self.votes.power_for(*round, VoteKind::Precommit, Some(id));
                (e.block_valid && self.power_is_quorum(power)).then_some((*round, id))
            })
        })?;
        self.decided = Some(id);
        let signatures = self.votes.precommits_for(round, id);
        let certificate = CommitCertificate {
            height: self.height,
            round,
            block_id: id,
            signatures: BoundedVec::new(signatures).unwrap_or_default(),
        };
        Some(vec![Effect::Decide {
            height: self.height,
            block_id: id,
            certificate,
        }])
    }

    /// [L55–L56]: f+1 validators are in a higher round: go there.
    fn skip_round_rule(&mut self) -> Option<Vec<Effect>> {
        let target = self
            .votes
            .rounds_heard()
            .filter(|r| *r > self.round)
            .filter(|r| {
                let power: u64 = self
                    .votes
                    .senders(*r)
                    .filter_map(|i| self.validators.get(usize::from(i)))
                    .map(|v| v.power)
                    .sum();
                self.power_is_f_plus_one(power)
            })
            .max()?;
        Some(self.start_round(target))
    }
}

/// The result of a signing attempt.
enum Signed {
    New(Message),
    Again(Message),
}

impl Signed {
    fn message(&self) -> &Message {
        match self {
            Signed::New(m) | Signed::Again(m) => m,
        }
    }

    fn effects(self) -> Vec<Effect> {
        match self {
            Signed::New(m) => vec![Effect::Persist(m.clone()), Effect::Broadcast(m)],
            Signed::Again(m) => vec![Effect::Broadcast(m)],
        }
    }
}

/// Same signed content (signatures are deterministic, but compare what was signed).
fn same_content(a: &Message, b: &Message) -> bool {
    match (a, b) {
        (Message::Proposal(x), Message::Proposal(y)) => x.proposal == y.proposal,
        (Message::Vote(x), Message::Vote(y)) => x.vote == y.vote,
        _ => false,
    }
}
