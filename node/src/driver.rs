//! The consensus driver: the outer loop around the pure Tendermint core
//! ([`bidchain_consensus::Core`]). It owns everything the core must not touch: the clock
//! (timers, block time, the timeliness check), the disk (what the core signs is logged with
//! fsync before it leaves), the chain (building, verifying and committing blocks) and the
//! [`Transport`] to the other validators.
//!
//! It runs on a thread of its own: each step is a short synchronous call, and a synced
//! write has to hold up the step that needs it anyway. One validator (n = 1) runs this same
//! loop with no peers: its own votes are a quorum.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant, SystemTime};

use bidchain_consensus::{
    Core, CoreConfig, Effect, Faults, Input, Message, SignedProposal, SignedVote, Timeout, Timeouts,
};
use bidchain_runtime::block::{Block, BlockHash, CommitCertificate};
use bidchain_runtime::crypto::Keypair;
use bidchain_runtime::ids::Height;
use bidchain_runtime::time::Timestamp;
use bidchain_runtime::tx::SignedTransaction;
use bidchain_runtime::validator::ValidatorSet;

use crate::catch_up::{CatchUp, CatchUpError};
use crate::chain::{ChainError, Proposal, Tip};
use crate::net::{Inbound, Inbox, NetMessage, SyncedBlock, Transport, ValidatorIndex};
use crate::shared::Shared;
use crate::storage::Durability;

/// How often a validator sends again what it holds of the current height (the paper's
/// gossip assumption, §2), so a lost message is not lost for good.
pub const GOSSIP_INTERVAL: Duration = Duration::from_millis(700);
/// The longest the loop sleeps, so a stop request is seen promptly.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// How often a due height with nothing to commit checks the mempool again.
const MEMPOOL_POLL: Duration = Duration::from_millis(5);
/// How often the loop looks for blocks written, while fetched blocks are in flight.
const CATCH_UP_POLL: Duration = Duration::from_millis(5);
/// Distinct blocks kept for the height being decided (an equivocating proposer sends
/// several a round); more are refused until the height is decided.
pub const MAX_BLOCKS_PER_HEIGHT: usize = 32;
/// Votes and proposals held while fetched blocks are written (the oldest go first); a
/// proposal carries its block, so fewer of those.
const MAX_HELD_VOTES: usize = 256;
const MAX_HELD_PROPOSALS: usize = 8;
/// Pending timers; the core asks for at most three a round.
pub const MAX_TIMERS: usize = 256;
/// Room left in a block for its header and length prefixes.
const HEADER_ALLOWANCE_BYTES: usize = 4 * 1024;
/// Blocks fetched from peers are committed without waiting for the disk (see
/// [`Durability::Deferred`]): at most this many in a row, and the log is synced once the
/// first is this old (checked every loop turn, at most `MAX_WAIT` apart, or by writing
/// the next fetched block synced). That is what a power loss can make a catching-up node
/// fetch again.
const MAX_UNSYNCED_BLOCKS: u32 = 64;
const MAX_UNSYNCED_AGE: Duration = Duration::from_millis(500);

#[derive(Clone, Debug)]
pub struct DriverConfig {
    pub timeouts: Timeouts,
    /// A non-voting node: it decides from the validators' votes and never signs.
    pub observer: bool,
    /// The pause after a decision before the next height starts; the decided block is
    /// written within it.
    pub block_interval: Duration,
    /// With nothing to commit, the next height still starts after this long, for an empty
    /// block; zero: never (a height then starts when a transaction arrives or another
    /// validator starts it).
    pub empty_block_interval: Duration,
}

/// A block proposed for the height being decided, with this node's verdict on it.
#[derive(Debug)]
enum Candidate {
    Valid(Proposal),
    Invalid(Block),
}

impl Candidate {
    fn block(&self) -> &Block {
        match self {
            Candidate::Valid(p) => &p.block,
            Candidate::Invalid(b) => b,
        }
    }
}

/// Why the driver stopped on its own (the node stops with it).
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("a quorum decided block {0}, which this node's execution refused")]
    DecidedInvalidBlock(BlockHash),
    #[error(transparent)]
    CatchUp(#[from] CatchUpError),
}

pub struct Driver {
    shared: Arc<Shared>,
    key: Keypair,
    transport: Box<dyn Transport>,
    config: DriverConfig,
    /// `None` between heights: after a commit, until the next height is due.
    core: Option<Core>,
    validators: ValidatorSet,
    timers: BinaryHeap<Reverse<(Instant, Timeout)>>,
    blocks: BTreeMap<BlockHash, Candidate>,
    /// Messages logged at the core's height so far (the next log key).
    logged: u32,
    /// Blocks logged with this validator's messages at the core's height.
    logged_blocks: BTreeSet<BlockHash>,
    next_height_at: Option<Instant>,
    /// A peer already sent something for the next height: start it without waiting for
    /// transactions.
    peers_moved_on: bool,
    last_commit: Instant,
    next_gossip: Instant,
    /// When this node last asked a peer for blocks it lacks.
    asked_at: Option<Instant>,
    /// Fetched blocks committed since the log was last synced, and when the first was.
    unsynced: Option<(Instant, u32)>,
    /// Fetched blocks executed and still being written.
    catch_up: CatchUp,
    /// Votes and proposals that arrived meanwhile, oldest first.
    held_votes: VecDeque<SignedVote>,
    held_proposals: VecDeque<(SignedProposal, Block, Timestamp)>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("core", &self.core.as_ref().map(Core::describe))
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// A driver at the height after the stored tip. If this validator signed messages at
    /// that height before a restart, the core resumes from them at once; otherwise the
    /// height starts when it is due (see [`DriverConfig`]).
    pub fn new(
        shared: Arc<Shared>,
        key: Keypair,
        transport: Box<dyn Transport>,
        config: DriverConfig,
    ) -> Result<Driver, DriverError> {
        let validators = shared.chain.validator_set()?;
        let catch_up = CatchUp::new(Arc::clone(&shared))?;
        let now = Instant::now();
        let mut driver = Driver {
            shared,
            key,
            transport,
            config,
            core: None,
            validators,
            timers: BinaryHeap::new(),
            blocks: BTreeMap::new(),
            logged: 0,
            logged_blocks: BTreeSet::new(),
            next_height_at: Some(now),
            peers_moved_on: false,
            last_commit: now,
            next_gossip: now + GOSSIP_INTERVAL,
            asked_at: None,
            unsynced: None,
            catch_up,
            held_votes: VecDeque::new(),
            held_proposals: VecDeque::new(),
        };
        let tip = driver.shared.chain.tip()?;
        if !driver
            .shared
            .chain
            .storage()
            .signed_at(tip.height.next())?
            .is_empty()
        {
            driver.start_height()?;
        }
        Ok(driver)
    }

    /// Runs until `stop` is set or a storage failure makes going on unsafe.
    pub fn run(mut self, inbox: Inbox, stop: &AtomicBool) -> Result<(), DriverError> {
        let result = self.run_until(inbox, stop);
        // Whatever stopped the loop, fetched blocks committed so far reach the disk.
        self.sync_deferred().and(result)
    }

    fn run_until(&mut self, inbox: Inbox, stop: &AtomicBool) -> Result<(), DriverError> {
        let mut inbox_open = true;
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let wait = self
                .next_deadline(now)
                .saturating_duration_since(now)
                .min(MAX_WAIT);
            if inbox_open {
                match inbox.recv_timeout(wait) {
                    Ok(Inbound::Net(message)) => self.on_message(message)?,
                    Ok(Inbound::Synced(synced)) => self.on_synced(*synced)?,
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => inbox_open = false,
                }
            } else {
                std::thread::sleep(wait);
            }
            self.on_tick(Instant::now())?;
        }
        Ok(())
    }

    fn next_deadline(&self, now: Instant) -> Instant {
        let timer = self.timers.peek().map(|Reverse((at, _))| *at);
        // A height that is due but has nothing to commit yet waits for transactions, which
        // reach the mempool rather than the inbox: look again after a pause, not at once
        // (returning `now` here kept an idle validator spinning on the clock).
        let height = self.next_height_at.map(|at| at.max(now + MEMPOOL_POLL));
        let writer = (!self.catch_up.is_idle()).then_some(now + CATCH_UP_POLL);
        [Some(self.next_gossip), timer, height, writer]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.next_gossip)
    }

    fn on_tick(&mut self, now: Instant) -> Result<(), DriverError> {
        self.catch_up.collect()?;
        // While blocks are in flight, the next one fetched is written synced instead.
        if self.catch_up.is_idle()
            && self
                .unsynced
                .is_some_and(|(since, _)| now.duration_since(since) >= MAX_UNSYNCED_AGE)
        {
            self.sync_deferred()?;
        }
        while let Some(Reverse((at, timeout))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.input(Input::Timeout(timeout))?;
        }
        if now >= self.next_gossip {
            self.next_gossip = now + GOSSIP_INTERVAL;
            self.gossip();
        }
        // A height starts on the committed tip: once the fetched blocks are written.
        if self.next_height_at.is_some_and(|at| now >= at)
            && self.catch_up.is_idle()
            && self.next_height_ready(now)
        {
            self.start_height()?;
        }
        if self.catch_up.is_idle() && self.core.is_some() {
            self.replay_held()?;
        }
        Ok(())
    }

    fn next_height_ready(&self, now: Instant) -> bool {
        let empty_after = self.config.empty_block_interval;
        self.peers_moved_on
            || self.shared.mempool().has_includable()
            || (!empty_after.is_zero() && now.duration_since(self.last_commit) >= empty_after)
    }

    fn gossip(&mut self) {
        let messages = self.core.as_ref().map(Core::gossip).unwrap_or_default();
        for message in messages {
            self.send_out(message);
        }
    }

    /// Starts the height after the tip: the decided core moves on (keeping the messages it
    /// buffered for the next height); otherwise a core is made from what was logged.
    fn start_height(&mut self) -> Result<(), DriverError> {
        let tip = self.shared.chain.tip()?;
        let height = tip.height.next();
        self.validators = self.shared.chain.validator_set()?;
        self.next_height_at = None;
        self.peers_moved_on = false;
        self.timers.clear();
        self.blocks.retain(|_, c| c.block().header.height == height);
        self.logged_blocks.clear();
        let effects = match self.core.as_mut() {
            Some(core) if core.decided().is_some() && core.height() == tip.height => {
                self.logged = 0;
                core.next_height(self.validators.clone())
            }
            _ => {
                let prior = self.shared.chain.storage().signed_at(height)?;
                self.logged = u32::try_from(prior.len()).unwrap_or(u32::MAX);
                self.restore_signed_blocks(height)?;
                let config = CoreConfig {
                    chain_id: self.shared.chain.chain_id().clone(),
                    timeouts: self.config.timeouts,
                    faults: Faults::default(),
                };
                let (core, effects) = Core::new(
                    config,
                    // An observer follows the votes and never signs.
                    (!self.config.observer).then(|| self.key.clone()),
                    self.validators.clone(),
                    height,
                    prior,
                );
                self.core = Some(core);
                effects
            }
        };
        tracing::debug!(height = height.0, "height started");
        self.perform(effects)
    }

    /// After a restart: the blocks behind this validator's logged messages, so that a block
    /// it precommitted (perhaps its own proposal, held nowhere else) can still be committed.
    fn restore_signed_blocks(&mut self, height: Height) -> Result<(), DriverError> {
        for block in self.shared.chain.storage().signed_blocks(height)? {
            let id = block.id();
            match self.verify(block) {
                Ok(proposal) => {
                    self.blocks.insert(id, Candidate::Valid(proposal));
                    self.logged_blocks.insert(id);
                }
                Err(err) if err.is_local() => return Err(err.into()),
                Err(err) => tracing::warn!(%err, block = %id, "a logged block no longer verifies"),
            }
        }
        Ok(())
    }

    fn input(&mut self, input: Input) -> Result<(), DriverError> {
        let Some(core) = self.core.as_mut() else {
            return Ok(());
        };
        let round_before = core.round();
        if let Input::Timeout(timeout) = &input {
            tracing::debug!(height = timeout.height.0, round = timeout.round.0, step = ?timeout.step, "timeout");
        }
        let effects = core.handle(input);
        if core.round() != round_before {
            // A height that needs more than one round is the first sign of trouble under load.
            tracing::info!(
                height = core.height().0,
                round = core.round().0,
                "round started"
            );
        }
        self.perform(effects)
    }

    fn perform(&mut self, effects: Vec<Effect>) -> Result<(), DriverError> {
        self.persist_all(&effects)?;
        for effect in effects {
            match effect {
                Effect::Persist(_) => {}
                Effect::Broadcast(message) => self.send_out(message),
                Effect::ScheduleTimeout {
                    timeout,
                    duration_ms,
                } => {
                    if self.timers.len() < MAX_TIMERS {
                        let at = Instant::now() + Duration::from_millis(duration_ms);
                        self.timers.push(Reverse((at, timeout)));
                    }
                }
                Effect::RequestValue { height, round } => {
                    if let Some(block_id) = self.build_block(height)? {
                        self.input(Input::Value {
                            height,
                            round,
                            block_id,
                        })?;
                    }
                }
                Effect::Decide {
                    block_id,
                    certificate,
                    ..
                } => self.commit_decided(block_id, &certificate)?,
                Effect::Equivocation { first, second } => tracing::warn!(
                    validator = first.vote.validator_index,
                    height = first.vote.height.0,
                    round = first.vote.round.0,
                    first = ?first.vote.block_id,
                    second = ?second.vote.block_id,
                    "validator signed two different votes"
                ),
            }
        }
        Ok(())
    }

    /// Logs every `Persist` of a batch in one synced write before any effect of the batch
    /// runs: each message is then durable no later than the core asked (persisting early
    /// is safe, a signed message is binding whether or not it was sent), at one fsync per
    /// batch instead of one per message.
    fn persist_all(&mut self, effects: &[Effect]) -> Result<(), DriverError> {
        let mut entries = Vec::new();
        let mut blocks = Vec::new();
        for effect in effects {
            if let Effect::Persist(message) = effect {
                entries.push((message.height(), self.logged, message));
                self.logged = self.logged.saturating_add(1);
                let signed_for = match message {
                    Message::Proposal(p) => Some(p.proposal.block_id),
                    Message::Vote(v) => v.vote.block_id,
                };
                if let Some(id) = signed_for.filter(|id| self.logged_blocks.insert(*id)) {
                    match self.blocks.get(&id) {
                        Some(Candidate::Valid(proposal)) => blocks.push(&proposal.block),
                        _ => {
                            self.logged_blocks.remove(&id);
                        }
                    }
                }
            }
        }
        if !entries.is_empty() {
            self.shared.chain.storage().log_signed(&entries, &blocks)?;
            self.note_commit(Durability::Synced);
        }
        Ok(())
    }

    fn send_out(&self, message: Message) {
        match message {
            Message::Vote(vote) => self.transport.broadcast(NetMessage::Vote(vote)),
            Message::Proposal(proposal) => match self.blocks.get(&proposal.proposal.block_id) {
                Some(candidate) => self.transport.broadcast(NetMessage::Proposal {
                    proposal,
                    block: Box::new(candidate.block().clone()),
                }),
                // Proposed before a restart; the block was not kept. Peers time out and
                // move to the next round.
                None => tracing::debug!("own proposal's block is gone; not sent"),
            },
        }
    }

    /// `getValue()`: a block of pending transactions on top of the tip.
    fn build_block(&mut self, height: Height) -> Result<Option<BlockHash>, DriverError> {
        let chain = &self.shared.chain;
        let tip = chain.tip()?;
        if height != tip.height.next() {
            return Ok(None);
        }
        let params = &chain.genesis().consensus;
        let max_bytes = (params.max_block_bytes as usize).saturating_sub(HEADER_ALLOWANCE_BYTES);
        let candidates = self
            .shared
            .mempool()
            .reap(params.max_block_txs as usize, max_bytes);
        // Block time strictly increases even if this clock stepped back.
        let time = Timestamp::from_system(SystemTime::now()).max(tip.time.saturating_add_millis(1));
        let proposal = match chain.build_proposal(candidates, time, self.key.public()) {
            Ok(proposal) => proposal,
            Err(err) if err.is_local() => return Err(err.into()),
            Err(err) => {
                tracing::error!(%err, "could not build a block; the round will time out");
                return Ok(None);
            }
        };
        let id = proposal.block.id();
        self.blocks.insert(id, Candidate::Valid(proposal));
        Ok(Some(id))
    }

    fn commit_decided(
        &mut self,
        block_id: BlockHash,
        certificate: &CommitCertificate,
    ) -> Result<(), DriverError> {
        let decided = Instant::now();
        let proposal = match self.blocks.remove(&block_id) {
            Some(Candidate::Valid(proposal)) => proposal,
            // A quorum committed what this node's execution refused: their state and ours
            // have split, and going on would build on a state nobody else has.
            Some(Candidate::Invalid(_)) => return Err(DriverError::DecidedInvalidBlock(block_id)),
            None => {
                // A quorum decided a block this node lacks: block sync fetches it.
                tracing::warn!(block = %block_id, "decided a block this node does not hold");
                return Ok(());
            }
        };
        self.shared
            .chain
            .commit(&proposal, certificate, Durability::Synced)?;
        self.note_commit(Durability::Synced);
        self.shared.after_commit(&proposal);
        self.after_commit(proposal.block.header.height, decided);
        Ok(())
    }

    /// How a fetched block is committed: deferred, unless enough are waiting already or
    /// the first has waited long enough.
    fn synced_block_durability(&self) -> Durability {
        match self.unsynced {
            Some((since, count))
                if count >= MAX_UNSYNCED_BLOCKS || since.elapsed() >= MAX_UNSYNCED_AGE =>
            {
                Durability::Synced
            }
            _ => Durability::Deferred,
        }
    }

    /// Counts a commit that was written: a synced write syncs the log before it too.
    fn note_commit(&mut self, durability: Durability) {
        self.unsynced = match durability {
            Durability::Synced => None,
            Durability::Deferred => {
                let (since, count) = self.unsynced.unwrap_or((Instant::now(), 0));
                Some((since, count + 1))
            }
        };
    }

    fn sync_deferred(&mut self) -> Result<(), DriverError> {
        // What was written reaches the disk even if the writer failed.
        let settled = self.catch_up.settle();
        if self.unsynced.take().is_some() {
            self.shared.chain.storage().sync()?;
        }
        Ok(settled?)
    }

    /// The driver's side of a commit at `height`, decided at `decided` (the shared side
    /// is [`Shared::after_commit`]). The block interval counts from the decision, so the
    /// commit's write is part of the pause rather than added to it.
    fn after_commit(&mut self, height: Height, decided: Instant) {
        self.last_commit = decided;
        self.next_height_at = Some(decided + self.config.block_interval);
        let next = height.next();
        self.blocks.retain(|_, c| c.block().header.height == next);
    }

    fn on_message(&mut self, message: NetMessage) -> Result<(), DriverError> {
        if !self.catch_up.is_idle() {
            return self.on_message_catching_up(message);
        }
        let tip = self.shared.chain.tip()?;
        match message {
            NetMessage::Vote(vote) => self.on_vote(&tip, vote),
            NetMessage::Proposal { proposal, block } => {
                // Timeliness is judged at arrival: re-executing a large block must not age it.
                let received = Timestamp::from_system(SystemTime::now());
                self.on_proposal(&tip, proposal, *block, received)
            }
            NetMessage::Txs(txs) => {
                self.on_txs(txs);
                Ok(())
            }
        }
    }

    /// While fetched blocks are being written, consensus waits: a vote or proposal says
    /// how far the others are, and is held for the height that starts once they are
    /// written ([`Driver::replay_held`]).
    fn on_message_catching_up(&mut self, message: NetMessage) -> Result<(), DriverError> {
        let tip = self.sync_tip()?;
        match message {
            NetMessage::Vote(vote) => {
                let (height, from) = (vote.vote.height, vote.vote.validator_index);
                self.note_height(&tip, height, from);
                if height > tip.height {
                    hold(&mut self.held_votes, vote, MAX_HELD_VOTES);
                }
            }
            NetMessage::Proposal { proposal, block } => {
                let received = Timestamp::from_system(SystemTime::now());
                let (height, from) = (proposal.proposal.height, proposal.proposal.proposer_index);
                self.note_height(&tip, height, from);
                if height > tip.height {
                    let held = (proposal, *block, received);
                    hold(&mut self.held_proposals, held, MAX_HELD_PROPOSALS);
                }
            }
            NetMessage::Txs(txs) => self.on_txs(txs),
        }
        Ok(())
    }

    /// The votes and proposals held while catching up, once a height started on the
    /// committed tip: proposals first, so that votes find their blocks.
    fn replay_held(&mut self) -> Result<(), DriverError> {
        for (proposal, block, received) in std::mem::take(&mut self.held_proposals) {
            let tip = self.shared.chain.tip()?;
            self.on_proposal(&tip, proposal, block, received)?;
        }
        for vote in std::mem::take(&mut self.held_votes) {
            let tip = self.shared.chain.tip()?;
            self.on_vote(&tip, vote)?;
        }
        Ok(())
    }

    /// The last block fetched and executed, written or not.
    fn sync_tip(&self) -> Result<Tip, DriverError> {
        match self.catch_up.tip() {
            Some(tip) => Ok(tip.clone()),
            None => Ok(self.shared.chain.tip()?),
        }
    }

    /// A vote or proposal for a committed height is old news: a peer that sends one is
    /// behind and fetches the blocks itself.
    fn on_vote(&mut self, tip: &Tip, vote: SignedVote) -> Result<(), DriverError> {
        let height = vote.vote.height;
        if height <= tip.height {
            return Ok(());
        }
        self.note_height(tip, height, vote.vote.validator_index);
        self.input(Input::Vote(vote))
    }

    fn on_proposal(
        &mut self,
        tip: &Tip,
        proposal: SignedProposal,
        block: Block,
        received: Timestamp,
    ) -> Result<(), DriverError> {
        let height = proposal.proposal.height;
        if height <= tip.height {
            return Ok(());
        }
        self.note_height(tip, height, proposal.proposal.proposer_index);
        // A block can only be checked on top of its parent; an early one is sent again by
        // its proposer's gossip.
        if height != tip.height.next() || block.id() != proposal.proposal.block_id {
            return Ok(());
        }
        let chain_id = self.shared.chain.chain_id();
        if Message::Proposal(proposal.clone())
            .verify(chain_id, &self.validators)
            .is_err()
        {
            tracing::debug!(height = height.0, "proposal with a bad signature dropped");
            return Ok(());
        }
        let Some(block_valid) = self.verify_block(block)? else {
            return Ok(());
        };
        let timely = self.is_timely(&proposal, received);
        if !timely {
            tracing::info!(
                height = height.0,
                round = proposal.proposal.round.0,
                "proposal's block time is not timely"
            );
        }
        self.input(Input::Proposal {
            proposal,
            block_valid,
            timely,
        })
    }

    /// `valid(v)`: re-executes the block once per block id. `None` when no more blocks are
    /// kept for this height.
    fn verify_block(&mut self, block: Block) -> Result<Option<bool>, DriverError> {
        let id = block.id();
        if let Some(candidate) = self.blocks.get(&id) {
            return Ok(Some(matches!(candidate, Candidate::Valid(_))));
        }
        if self.blocks.len() >= MAX_BLOCKS_PER_HEIGHT {
            return Ok(None);
        }
        let candidate = match self.verify(block.clone()) {
            Ok(proposal) => Candidate::Valid(proposal),
            Err(err) if err.is_local() => return Err(err.into()),
            Err(err) => {
                tracing::warn!(%err, block_id = %id, "proposed block is invalid");
                Candidate::Invalid(block)
            }
        };
        let valid = matches!(candidate, Candidate::Valid(_));
        self.blocks.insert(id, candidate);
        Ok(Some(valid))
    }

    /// Re-executes a block from a peer (or from this node's log). A transaction the mempool
    /// holds had its signature checked on admission; the others are checked here.
    fn verify(&self, block: Block) -> Result<Proposal, ChainError> {
        self.shared
            .chain
            .verify_proposal(block, |txs| self.shared.signatures_checked(txs))
    }

    /// Proposer-based timestamps ([`ConsensusParams::is_timely`]), at the proposal's
    /// arrival.
    ///
    /// [`ConsensusParams::is_timely`]: bidchain_genesis::ConsensusParams::is_timely
    fn is_timely(&self, proposal: &SignedProposal, received: Timestamp) -> bool {
        let Some(candidate) = self.blocks.get(&proposal.proposal.block_id) else {
            return false;
        };
        let params = &self.shared.chain.genesis().consensus;
        params.is_timely(
            candidate.block().header.time,
            received,
            proposal.proposal.round,
        )
    }

    /// Notes a peer's message for a height above the tip: start the next height without
    /// waiting for transactions, and if the peer is further ahead, ask for the blocks.
    fn note_height(&mut self, tip: &Tip, height: Height, peer: ValidatorIndex) {
        if height > tip.height && self.next_height_at.is_some() {
            self.peers_moved_on = true;
        }
        if height <= tip.height.next() {
            return;
        }
        let now = Instant::now();
        if self
            .asked_at
            .is_some_and(|at| now.duration_since(at) < GOSSIP_INTERVAL)
        {
            return;
        }
        self.asked_at = Some(now);
        self.transport.request_blocks(peer, tip.height.next());
    }

    /// A peer's batch: one batch signature check when all are good (the usual case), one
    /// by one otherwise.
    /// Peer transactions normally never reach the driver: the network task admits them
    /// off the consensus thread. A transport that does deliver them gets the same path.
    fn on_txs(&self, txs: Vec<SignedTransaction>) {
        self.shared.admit_peer_batch(txs);
    }

    /// A block this node lacks, with its certificate, from a peer that is ahead: verified
    /// and executed here, on top of the fetched blocks still being written, then handed to
    /// the writer ([`crate::catch_up`]); consensus restarts once they are all written.
    fn on_synced(&mut self, synced: SyncedBlock) -> Result<(), DriverError> {
        self.catch_up.make_room()?;
        let tip = self.sync_tip()?;
        let signatures_checked = synced.signatures_checked();
        let (block, certificate) = synced.into_parts();
        if block.header.height != tip.height.next() {
            return Ok(());
        }
        let view = self.catch_up.view(self.shared.chain.storage());
        // The certificate first: it is cheap, re-execution is not.
        let chain = &self.shared.chain;
        let certificate = match chain.check_certificate(&view, &block.header, certificate) {
            Ok(checked) => checked,
            Err(err) if err.is_local() => return Err(err.into()),
            Err(err) => {
                tracing::warn!(%err, height = block.header.height.0, "peer's commit certificate does not verify");
                return Ok(());
            }
        };
        // Block sync checked the signatures, or found them in the mempool.
        let vouch = |txs: &[SignedTransaction]| {
            if signatures_checked {
                vec![true; txs.len()]
            } else {
                self.shared.signatures_checked(txs)
            }
        };
        let executed = match chain.execute_checked(&view, &tip, &block, vouch) {
            Ok(executed) => executed,
            Err(err) if err.is_local() => return Err(err.into()),
            Err(err) => {
                tracing::warn!(%err, "peer's committed block does not verify");
                return Ok(());
            }
        };
        let height = block.header.height;
        let durability = self.synced_block_durability();
        self.catch_up
            .send(block, executed, certificate, durability)?;
        self.note_commit(durability);
        self.after_commit(height, Instant::now());
        // Behind the others: no pause before the next height.
        self.core = None;
        self.next_height_at = Some(Instant::now());
        self.peers_moved_on = true;
        Ok(())
    }
}

/// Appends `item`, dropping the oldest once `max` are held.
fn hold<T>(queue: &mut VecDeque<T>, item: T, max: usize) {
    if queue.len() >= max {
        queue.pop_front();
    }
    queue.push_back(item);
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bidchain_consensus::proposer::proposer;
    use bidchain_consensus::types::{Vote, sign_proposal, sign_vote};
    use bidchain_consensus::{Proposal as ConsensusProposal, VoteKind};
    use bidchain_runtime::bounded::BoundedVec;
    use bidchain_runtime::hash::Hash;
    use bidchain_runtime::ids::Round;
    use bidchain_runtime::tx::Role;

    use super::*;
    use crate::chain::Chain;
    use crate::mempool::{Admissible, Mempool};
    use crate::shared::TxSource;
    use crate::storage::Storage;
    use crate::testing::{certify, create_account_tx, genesis_for};

    /// Records what the driver sends.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<NetMessage>>>);

    impl Transport for Capture {
        fn broadcast(&self, message: NetMessage) {
            self.0.lock().unwrap().push(message);
        }
        fn request_blocks(&self, _from: ValidatorIndex, _height: Height) {}
    }

    impl Capture {
        fn prevotes(&self) -> Vec<Option<BlockHash>> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .filter_map(|m| match m {
                    NetMessage::Vote(v) if v.vote.kind == VoteKind::Prevote => {
                        Some(v.vote.block_id)
                    }
                    _ => None,
                })
                .collect()
        }
    }

    /// Two validators (seeds 1 and 2, power 1 each): neither decides alone.
    fn driver(dir: &std::path::Path, key: &Keypair) -> (Driver, Capture) {
        driver_for(dir, key, &[1, 2])
    }

    fn driver_for(dir: &std::path::Path, key: &Keypair, seeds: &[u64]) -> (Driver, Capture) {
        let genesis = genesis_for(seeds, &[]);
        let storage = Storage::open(dir, &genesis).unwrap();
        let mempool = Mempool::new(Default::default(), genesis.chain_id.clone());
        let shared = Arc::new(Shared::new(
            Chain::new(storage, genesis.clone(), genesis.contracts().unwrap()),
            mempool,
            "t".into(),
            false,
        ));
        let config = DriverConfig {
            observer: false,
            timeouts: Timeouts {
                propose_ms: 1,
                prevote_ms: 1,
                precommit_ms: 1,
                delta_ms: 0,
            },
            block_interval: Duration::ZERO,
            empty_block_interval: Duration::from_millis(1),
        };
        let capture = Capture::default();
        let driver = Driver::new(shared, key.clone(), Box::new(capture.clone()), config).unwrap();
        (driver, capture)
    }

    /// The round-0 proposal of height 1, signed by its proposer, its block time `skew_ms`
    /// ahead of this clock.
    fn proposal(driver: &Driver, proposer_key: &Keypair, index: u16, skew_ms: u64) -> NetMessage {
        proposal_on(
            &driver.shared.chain,
            Height(1),
            proposer_key,
            index,
            skew_ms,
        )
    }

    /// [`proposal`] of `height`, on top of `chain`'s tip.
    fn proposal_on(
        chain: &Chain,
        height: Height,
        proposer_key: &Keypair,
        index: u16,
        skew_ms: u64,
    ) -> NetMessage {
        let time = Timestamp::from_system(SystemTime::now()).saturating_add_millis(skew_ms);
        let built = chain
            .build_proposal(vec![], time, proposer_key.public())
            .unwrap();
        let proposal = ConsensusProposal {
            height,
            round: Round(0),
            block_id: built.block.id(),
            valid_round: None,
            proposer_index: index,
        };
        NetMessage::Proposal {
            proposal: sign_proposal(proposal, chain.chain_id(), proposer_key),
            block: Box::new(built.block),
        }
    }

    /// Lets the empty-block interval pass and starts height 1.
    fn start(d: &mut Driver) {
        std::thread::sleep(Duration::from_millis(2));
        d.on_tick(Instant::now()).unwrap();
        assert!(d.core.is_some(), "height 1 did not start");
    }

    fn keys() -> (Keypair, Keypair, u16) {
        keys_at(Height(1))
    }

    /// [`keys`] for the round-0 proposer of `height` (the set never changes).
    fn keys_at(height: Height) -> (Keypair, Keypair, u16) {
        let set = genesis_for(&[1, 2], &[]).validator_set().unwrap();
        let p = proposer(&set, height, Round(0));
        let (k1, k2) = (
            Keypair::from_seed_for_tests(1),
            Keypair::from_seed_for_tests(2),
        );
        let index = u16::try_from(p).unwrap();
        if set.index_of(&k1.public()) == Some(p) {
            (k1, k2, index)
        } else {
            (k2, k1, index)
        }
    }

    #[test]
    fn a_due_height_with_nothing_to_commit_does_not_spin() {
        let (_, own, _) = keys();
        let dir = tempfile::tempdir().unwrap();
        let (d, _) = driver(dir.path(), &own);
        let now = Instant::now();
        assert!(
            d.next_height_at.is_some_and(|at| at <= now),
            "height 1 is due"
        );
        assert!(d.shared.mempool().is_empty());
        assert!(d.next_deadline(now) >= now + MEMPOOL_POLL);
    }

    #[test]
    fn fetched_blocks_wait_for_the_disk_only_within_bounds() {
        let (_, own, _) = keys();
        let dir = tempfile::tempdir().unwrap();
        let (mut d, _) = driver(dir.path(), &own);
        for _ in 0..MAX_UNSYNCED_BLOCKS {
            assert_eq!(d.synced_block_durability(), Durability::Deferred);
            d.note_commit(Durability::Deferred);
        }
        assert_eq!(d.synced_block_durability(), Durability::Synced);
        d.note_commit(Durability::Synced);
        assert_eq!(d.unsynced, None);
        d.note_commit(Durability::Deferred);
        let (since, _) = d.unsynced.unwrap();
        d.on_tick(since + MAX_UNSYNCED_AGE / 2).unwrap();
        assert!(d.unsynced.is_some(), "too early to sync");
        d.on_tick(since + MAX_UNSYNCED_AGE).unwrap();
        assert_eq!(d.unsynced, None, "synced once old enough");
    }

    #[test]
    fn a_fresh_validator_prevotes_for_a_valid_timely_proposal() {
        let (proposer_key, own, index) = keys();
        let dir = tempfile::tempdir().unwrap();
        let (mut d, sent) = driver(dir.path(), &own);
        start(&mut d);
        let message = proposal(&d, &proposer_key, index, 0);
        let NetMessage::Proposal { proposal: p, .. } = &message else {
            unreachable!()
        };
        let id = p.proposal.block_id;
        d.on_message(message).unwrap();
        assert_eq!(sent.prevotes(), vec![Some(id)]);
    }

    #[test]
    fn a_block_time_beyond_the_precision_gets_a_nil_prevote() {
        let (proposer_key, own, index) = keys();
        let dir = tempfile::tempdir().unwrap();
        let (mut d, sent) = driver(dir.path(), &own);
        start(&mut d);
        let precision_ms = d.shared.chain.genesis().consensus.timestamp_precision_ms;
        let message = proposal(&d, &proposer_key, index, precision_ms + 5_000);
        d.on_message(message).unwrap();
        assert_eq!(sent.prevotes(), vec![None]);
    }

    #[test]
    fn after_a_restart_it_does_not_sign_a_conflicting_prevote() {
        let (proposer_key, own, index) = keys();
        let dir = tempfile::tempdir().unwrap();
        let (mut d, sent) = driver(dir.path(), &own);
        start(&mut d);
        // No proposal arrives: timeoutPropose fires and it prevotes nil.
        std::thread::sleep(Duration::from_millis(5));
        d.on_tick(Instant::now()).unwrap();
        assert_eq!(sent.prevotes(), vec![None]);
        drop(d);

        // Restarted (same database), then the proposal arrives late.
        let (mut d, sent) = driver(dir.path(), &own);
        assert_eq!(sent.prevotes(), vec![None], "resent on restart");
        let message = proposal(&d, &proposer_key, index, 0);
        d.on_message(message).unwrap();
        assert_eq!(sent.prevotes(), vec![None], "a second prevote was signed");
        let logged = d.shared.chain.storage().signed_at(Height(1)).unwrap();
        let own_prevotes = logged
            .iter()
            .filter(|m| matches!(m, Message::Vote(v) if v.vote.kind == VoteKind::Prevote))
            .count();
        assert_eq!(own_prevotes, 1);
    }

    #[test]
    fn a_block_decided_before_a_crash_is_committed_after_it() {
        // A lone validator signed a proposal, prevote and precommit for its block, then
        // crashed before committing: what the driver logged is all that is left.
        let own = Keypair::from_seed_for_tests(1);
        let dir = tempfile::tempdir().unwrap();
        let genesis = genesis_for(&[1], &[]);
        let id = {
            let storage = Storage::open(dir.path(), &genesis).unwrap();
            let chain = Chain::new(storage, genesis.clone(), genesis.contracts().unwrap());
            let time = Timestamp::from_system(SystemTime::now());
            let block = chain
                .build_proposal(vec![], time, own.public())
                .unwrap()
                .block;
            let id = block.id();
            let proposal = ConsensusProposal {
                height: Height(1),
                round: Round(0),
                block_id: id,
                valid_round: None,
                proposer_index: 0,
            };
            let vote = |kind| {
                let vote = Vote {
                    kind,
                    height: Height(1),
                    round: Round(0),
                    block_id: Some(id),
                    validator_index: 0,
                };
                Message::Vote(sign_vote(vote, chain.chain_id(), &own))
            };
            let messages = [
                Message::Proposal(sign_proposal(proposal, chain.chain_id(), &own)),
                vote(VoteKind::Prevote),
                vote(VoteKind::Precommit),
            ];
            let entries: Vec<_> = (0u32..)
                .zip(&messages)
                .map(|(i, m)| (Height(1), i, m))
                .collect();
            chain.storage().log_signed(&entries, &[&block]).unwrap();
            id
        };

        let (mut d, _) = driver_for(dir.path(), &own, &[1]);
        for _ in 0..50 {
            if d.shared.chain.tip().unwrap().height == Height(1) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
            d.on_tick(Instant::now()).unwrap();
        }
        let tip = d.shared.chain.tip().unwrap();
        assert_eq!((tip.height, tip.block_id), (Height(1), id));
        let storage = d.shared.chain.storage();
        assert!(storage.signed_blocks(Height(1)).unwrap().is_empty());
    }

    /// Blocks a chain of the validators `seeds` commits, each certified by all of them:
    /// each holds one transaction per signer, signed with the next nonce the block before
    /// left it. With `tampered`, the first block's header claims another state root.
    /// Also returns the chain, at the last block.
    fn fetched_blocks(
        dir: &std::path::Path,
        seeds: &[u64],
        signers: &[&[&Keypair]],
        tampered: bool,
    ) -> (Chain, Vec<SyncedBlock>) {
        let genesis = genesis_for(seeds, &[]);
        let keys: Vec<Keypair> = seeds
            .iter()
            .map(|s| Keypair::from_seed_for_tests(*s))
            .collect();
        let storage = Storage::open(dir, &genesis).unwrap();
        let source = Chain::new(storage, genesis.clone(), genesis.contracts().unwrap());
        let mut nonces = BTreeMap::new();
        let mut blocks = Vec::new();
        for (i, signers) in (1..).zip(signers) {
            let txs = signers
                .iter()
                .map(|signer| {
                    let nonce = nonces.entry(signer.public()).or_insert(0);
                    let new = Keypair::from_seed_for_tests(100 + i * 10 + *nonce);
                    *nonce += 1;
                    create_account_tx(signer, *nonce - 1, &new, Role::Bidder)
                })
                .collect::<Vec<_>>();
            let time = Timestamp::from_millis(genesis.genesis_time.as_millis() + i * 1_000);
            let mut built = source.build_proposal(txs, time, keys[0].public()).unwrap();
            assert_eq!(built.block.txs.len(), signers.len(), "block {i} lost a tx");
            if tampered && i == 1 {
                built.block.header.state_root = Hash::digest(b"not the state");
            }
            let set = source.validator_set().unwrap();
            let certificate = certify(&built.block.header, &set, &keys);
            source
                .commit(&built, &certificate, Durability::Synced)
                .unwrap();
            blocks.push(SyncedBlock::check(built.block, certificate, &[]));
        }
        (source, blocks)
    }

    /// Fetched blocks are executed on top of those still being written (here every block
    /// is sent from an account, or with a nonce, that the block before made), and
    /// committed in order: the node ends at the same block as the chain they came from.
    #[test]
    fn fetched_blocks_written_behind_end_where_their_chain_ends() {
        let hub = Keypair::from_seed_for_tests(1);
        let bidder = Keypair::from_seed_for_tests(110);
        let blocks: [&[&Keypair]; 4] = [&[&hub], &[&hub, &bidder], &[&bidder], &[&hub]];
        let source_dir = tempfile::tempdir().unwrap();
        let (_, synced) = fetched_blocks(source_dir.path(), &[1], &blocks, false);
        let last = synced
            .last()
            .map(|s| (s.block().header.height, s.block().id()));
        let last_tx = synced.last().map(|s| s.block().txs[0].hash()).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let (mut d, _) = driver_for(dir.path(), &hub, &[1]);
        for block in synced {
            let height = block.block().header.height;
            d.on_synced(block).unwrap();
            assert_eq!(d.sync_tip().unwrap().height, height, "taken");
            assert!(!d.catch_up.is_idle(), "handed to the writer");
        }
        d.catch_up.settle().unwrap();
        let tip = d.shared.chain.tip().unwrap();
        assert_eq!(Some((tip.height, tip.block_id)), last);
        let storage = d.shared.chain.storage();
        assert!(storage.receipt(&last_tx).unwrap().is_some());
    }

    /// The writer refuses a fetched block whose state root is not this node's; the block
    /// executed on top of it is dropped with it (still queued for the writer, which skips
    /// it), and the right blocks are taken after.
    #[test]
    fn a_refused_fetched_block_takes_the_blocks_on_top_of_it_along() {
        let hub = Keypair::from_seed_for_tests(1);
        let blocks: [&[&Keypair]; 2] = [&[&hub], &[&hub]];
        let tampered_dir = tempfile::tempdir().unwrap();
        let (_, tampered) = fetched_blocks(tampered_dir.path(), &[1], &blocks, true);
        let honest_dir = tempfile::tempdir().unwrap();
        let (_, honest) = fetched_blocks(honest_dir.path(), &[1], &blocks, false);

        let dir = tempfile::tempdir().unwrap();
        let (mut d, _) = driver_for(dir.path(), &hub, &[1]);
        for block in tampered {
            d.on_synced(block).unwrap();
        }
        assert_eq!(d.sync_tip().unwrap().height, Height(2), "both executed");
        // The first report: block 1 refused, block 2 void while still in flight.
        assert!(d.catch_up.take_report(true).unwrap());
        assert!(!d.catch_up.is_idle());
        assert_eq!(d.sync_tip().unwrap().height, Height::GENESIS);
        for block in honest {
            d.on_synced(block).unwrap();
        }
        d.catch_up.settle().unwrap();
        assert_eq!(d.shared.chain.tip().unwrap().height, Height(2));
    }

    /// A proposal for the next height that arrives while the fetched blocks are being
    /// written is held, and gets this validator's prevote once they are.
    #[test]
    fn a_proposal_that_arrives_while_catching_up_is_held_for_the_next_height() {
        let hub = Keypair::from_seed_for_tests(1);
        let source_dir = tempfile::tempdir().unwrap();
        let blocks: [&[&Keypair]; 1] = [&[&hub]];
        let (source, mut synced) = fetched_blocks(source_dir.path(), &[1, 2], &blocks, false);
        let (proposer_key, own, index) = keys_at(Height(2));
        let dir = tempfile::tempdir().unwrap();
        let (mut d, sent) = driver_for(dir.path(), &own, &[1, 2]);
        // Timely: built now, after the (slow) start of the driver.
        let message = proposal_on(&source, Height(2), &proposer_key, index, 0);
        let NetMessage::Proposal { proposal: p, .. } = &message else {
            unreachable!()
        };
        let id = p.proposal.block_id;

        d.on_synced(synced.remove(0)).unwrap();
        d.on_message(message).unwrap();
        assert_eq!(d.held_proposals.len(), 1);
        d.catch_up.settle().unwrap();
        d.on_tick(Instant::now()).unwrap();
        assert!(d.held_proposals.is_empty());
        assert_eq!(sent.prevotes(), vec![Some(id)]);
    }

    /// A fetched block whose certificate does not prove its commit (too few signers, or
    /// a forged signature) is not handed to the writer and the tip stays; with the
    /// quorum's own certificate it is committed.
    #[test]
    fn a_fetched_block_is_taken_only_with_a_certificate_that_holds() {
        let hub = Keypair::from_seed_for_tests(1);
        let blocks: [&[&Keypair]; 1] = [&[&hub]];
        let source_dir = tempfile::tempdir().unwrap();
        let (source, mut synced) = fetched_blocks(source_dir.path(), &[1, 2], &blocks, false);
        let (block, certificate) = synced.remove(0).into_parts();
        let set = source.validator_set().unwrap();
        let one_signer = certify(&block.header, &set, std::slice::from_ref(&hub));
        let mut forged = certificate.clone();
        let mut signatures = forged.signatures.into_inner();
        signatures[1].signature.0[0] ^= 1;
        forged.signatures = BoundedVec::new(signatures).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let (mut d, _) = driver_for(dir.path(), &hub, &[1, 2]);
        for bad in [one_signer, forged] {
            d.on_synced(SyncedBlock::check(block.clone(), bad, &[]))
                .unwrap();
            assert!(d.catch_up.is_idle(), "not handed to the writer");
            assert_eq!(d.sync_tip().unwrap().height, Height::GENESIS);
        }
        d.on_synced(SyncedBlock::check(block, certificate, &[]))
            .unwrap();
        d.catch_up.settle().unwrap();
        assert_eq!(d.shared.chain.tip().unwrap().height, Height(1));
    }

    /// Block sync checks signatures on the network side (those its mempool holds were
    /// checked on admission) and vouches only when all hold;
    /// otherwise the driver checks them itself and refuses a forged one, even with a
    /// quorum's certificate on the block.
    #[test]
    fn a_synced_block_is_committed_only_if_its_signatures_hold() {
        let hub = Keypair::from_seed_for_tests(1);
        let genesis = genesis_for(&[1], &[]);
        let source_dir = tempfile::tempdir().unwrap();
        let source = {
            let storage = Storage::open(source_dir.path(), &genesis).unwrap();
            Chain::new(storage, genesis.clone(), genesis.contracts().unwrap())
        };
        let set = source.validator_set().unwrap();
        let synced = |tx: SignedTransaction,
                      vouched: &dyn Fn(&[SignedTransaction]) -> Vec<bool>| {
            let time = Timestamp::from_system(SystemTime::now());
            let built = source.build_proposal(vec![tx], time, hub.public()).unwrap();
            assert_eq!(built.block.txs.len(), 1);
            let certificate = certify(&built.block.header, &set, std::slice::from_ref(&hub));
            let vouched = vouched(&built.block.txs);
            SyncedBlock::check(built.block, certificate, &vouched)
        };
        let good = create_account_tx(&hub, 0, &Keypair::from_seed_for_tests(7), Role::Bidder);
        let mut forged = good.clone();
        forged.signature.0[5] ^= 1;

        let dir = tempfile::tempdir().unwrap();
        let (mut d, _) = driver_for(dir.path(), &hub, &[1]);
        let refused = synced(forged.clone(), &|_| Vec::new());
        assert!(!refused.signatures_checked());
        d.on_synced(refused).unwrap();
        assert_eq!(d.shared.chain.tip().unwrap().height, Height::GENESIS);
        assert_eq!(d.unsynced, None, "a refused block is not counted");

        // What the mempool holds had its signature checked on admission (here the test
        // admits a forgery unchecked, to see that sync trusts that check and redoes none).
        let admissible = Admissible::new(forged.clone());
        d.shared.admit(admissible, TxSource::Peer).unwrap();
        let vouched = synced(forged, &|txs| d.shared.signatures_checked(txs));
        assert!(vouched.signatures_checked());

        let good = synced(good, &|_| Vec::new());
        assert!(good.signatures_checked());
        d.on_synced(good).unwrap();
        d.catch_up.settle().unwrap();
        assert_eq!(d.shared.chain.tip().unwrap().height, Height(1));
        assert!(d.unsynced.is_some_and(|(_, count)| count == 1), "deferred");
        d.sync_deferred().unwrap();
        assert_eq!(d.unsynced, None);
    }
}
