//! Deterministic simulation of n validators running [`Core`] over a simulated network.
//!
//! Everything is driven by one seed: message delay, loss, duplication and reordering,
//! partitions that heal, crash–restart (a restarted node keeps only what it persisted), and
//! Byzantine validators (equivocating proposals, double votes, votes for unknown blocks,
//! stale-round replays, forged signatures). There is no clock and no thread: simulated
//! time is an integer in an event queue, so the same seed gives the same run, event for
//! event, and a failing seed replays exactly.
//!
//! Checked while running: agreement (one block per height across honest nodes), validity
//! (only proposed valid blocks, with certificates that verify), no honest double-sign (two
//! different messages signed for one slot, across restarts) and, after the network heals,
//! liveness (every honest node commits new heights within a bound).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use bidchain_runtime::block::{BlockHash, CommitCertificate};
use bidchain_runtime::bounded::BoundedString;
use bidchain_runtime::crypto::{Keypair, Signature};
use bidchain_runtime::hash::Hash;
use bidchain_runtime::ids::{ChainId, Height, Round};
use bidchain_runtime::validator::{Validator, ValidatorSet};
use sha2::{Digest, Sha256};

use super::core::{Core, CoreConfig, Effect, Faults, Input, Timeouts};
use super::types::{Message, SignedVote, Timeout, Vote, VoteKind, sign_proposal, sign_vote};

/// SplitMix64: a tiny, well-known PRNG; the only source of "randomness" in a run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `0..n` as an index (n > 0).
    pub fn index(&mut self, n: usize) -> usize {
        usize::try_from(self.below(n as u64)).unwrap_or(0)
    }

    pub fn per_mille(&mut self, p: u32) -> bool {
        self.below(1000) < u64::from(p)
    }
}

/// The faults a run injects before `heal_at_ms`; after it the network is synchronous.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub n: usize,
    /// Byzantine validators (the last `byzantine` indices); at most f = (n-1)/3.
    pub byzantine: usize,
    pub seed: u64,
    pub delay_max_ms: u64,
    pub loss_per_mille: u32,
    pub dup_per_mille: u32,
    pub partitions: bool,
    pub crashes: bool,
    pub heal_at_ms: u64,
    /// After healing, every honest node must commit this many heights beyond the highest
    /// height any honest node had at heal time...
    pub heights_after_heal: u64,
    /// ...within this much simulated time.
    pub liveness_bound_ms: u64,
    /// Rule breakers injected into the honest nodes (checker tests only).
    pub faults: Faults,
}

impl SimConfig {
    /// A run with every fault on, for `n` validators with f Byzantine.
    pub fn adversarial(n: usize, seed: u64) -> SimConfig {
        SimConfig {
            n,
            byzantine: (n - 1) / 3,
            seed,
            delay_max_ms: 300,
            loss_per_mille: 100,
            dup_per_mille: 50,
            partitions: true,
            crashes: true,
            heal_at_ms: 20_000,
            heights_after_heal: 3,
            liveness_bound_ms: 60_000,
            faults: Faults::default(),
        }
    }
}

/// A broken invariant, with what is needed to understand it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    Agreement {
        height: Height,
        first: BlockHash,
        second: BlockHash,
        node: usize,
    },
    Validity {
        height: Height,
        node: usize,
        reason: String,
    },
    DoubleSign {
        node: usize,
        height: Height,
        round: Round,
        what: String,
    },
    Liveness {
        heal_height: u64,
        heights: Vec<u64>,
        at_ms: u64,
    },
}

#[derive(Clone, Debug)]
pub struct SimReport {
    pub seed: u64,
    /// SHA-256 over every event processed: equal for equal seeds, byte for byte.
    pub trace: Hash,
    pub events: u64,
    pub end_ms: u64,
    /// Committed height of each honest node at the end.
    pub heights: Vec<u64>,
    pub equivocations_seen: u64,
    pub violation: Option<Violation>,
    /// Each node's core at the end (see `Core::describe`).
    pub final_states: Vec<String>,
}

#[derive(Clone, Debug)]
enum NetMsg {
    Consensus(Message),
    /// Catch-up for a node seen at an older height: the decided block and its certificate.
    Decided {
        height: Height,
        block_id: BlockHash,
        certificate: CommitCertificate,
    },
}

#[derive(Clone, Debug)]
enum Event {
    Deliver {
        to: usize,
        msg: NetMsg,
    },
    Timer {
        node: usize,
        incarnation: u32,
        timeout: Timeout,
    },
    Gossip {
        node: usize,
        incarnation: u32,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
}

#[derive(Debug)]
struct Node {
    key: Keypair,
    byzantine: bool,
    core: Option<Core>,
    incarnation: u32,
    /// "Disk": own signed messages of the current height, and committed decisions.
    persisted: Vec<Message>,
    committed: Vec<(BlockHash, CommitCertificate)>,
}

impl Node {
    fn height(&self) -> Height {
        Height(self.committed.len() as u64 + 1)
    }
}

/// One simulation run.
#[derive(Debug)]
pub struct Sim {
    config: SimConfig,
    chain_id: ChainId,
    validators: ValidatorSet,
    nodes: Vec<Node>,
    rng: Rng,
    now_ms: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Event>,
    /// Which blocks `valid(v)` accepts: every block an honest node built, and the valid
    /// ones a Byzantine proposer built.
    valid_blocks: BTreeSet<BlockHash>,
    decided: BTreeMap<Height, BlockHash>,
    signed: BTreeMap<(usize, Height, Round, u8), String>,
    partition: Option<(u64, u64, Vec<bool>)>,
    trace: Sha256,
    processed: u64,
    equivocations: u64,
    violation: Option<Violation>,
}

/// Bound on events in one run, so a bug cannot make a run spin forever.
const MAX_EVENTS: u64 = 3_000_000;
/// Timeouts as in a node, scaled to the simulated network's delays.
/// How often a node re-sends what it holds (see [`Core::gossip`]).
const GOSSIP_INTERVAL_MS: u64 = 700;
const SIM_TIMEOUTS: Timeouts = Timeouts {
    propose_ms: 1_000,
    prevote_ms: 500,
    precommit_ms: 500,
    delta_ms: 250,
};

impl Sim {
    pub fn new(config: SimConfig) -> Sim {
        let keys: Vec<Keypair> = (0..config.n)
            .map(|i| Keypair::from_seed_for_tests(config.seed.wrapping_mul(1000) + i as u64))
            .collect();
        let validators = ValidatorSet::new(
            keys.iter()
                .enumerate()
                .map(|(i, k)| Validator {
                    name: BoundedString::truncating(&format!("v{i}")),
                    key: k.public(),
                    power: 1,
                })
                .collect(),
        )
        .unwrap_or_else(|e| unreachable!("simulated validator set is valid: {e}"));
        let byzantine_from = config.n - config.byzantine;
        let nodes = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| Node {
                key,
                byzantine: i >= byzantine_from,
                core: None,
                incarnation: 0,
                persisted: Vec::new(),
                committed: Vec::new(),
            })
            .collect();
        let chain_id = ChainId::new("sim").unwrap_or_else(|e| unreachable!("{e}"));
        let rng = Rng::new(config.seed);
        Sim {
            config,
            chain_id,
            validators,
            nodes,
            rng,
            now_ms: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            valid_blocks: BTreeSet::new(),
            decided: BTreeMap::new(),
            signed: BTreeMap::new(),
            partition: None,
            trace: Sha256::new(),
            processed: 0,
            equivocations: 0,
            violation: None,
        }
    }

    fn core_config(&self, node: usize) -> CoreConfig {
        // Byzantine nodes run an honest core underneath and mangle what it sends.
        let faults = if self.nodes[node].byzantine {
            Faults::default()
        } else {
            self.config.faults
        };
        CoreConfig {
            chain_id: self.chain_id.clone(),
            timeouts: SIM_TIMEOUTS,
            faults,
        }
    }

    fn push(&mut self, at_ms: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at_ms, self.seq)));
        self.events.insert(self.seq, event);
    }

    /// Runs to completion: all honest nodes reached the goal, a violation, or the bound.
    pub fn run(mut self) -> SimReport {
        self.plan_faults();
        for node in 0..self.nodes.len() {
            self.start_node(node);
        }
        let deadline = self.config.heal_at_ms + self.config.liveness_bound_ms;
        let mut heal_height = None;
        let mut reached = false;
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            let Some(event) = self.events.remove(&seq) else {
                continue;
            };
            self.now_ms = at;
            if heal_height.is_none() && at >= self.config.heal_at_ms {
                heal_height = Some(self.max_honest_height());
            }
            if let Some(h) = heal_height
                && self
                    .honest_heights()
                    .iter()
                    .all(|&x| x >= h + self.config.heights_after_heal)
            {
                reached = true;
                break;
            }
            if at > deadline || self.processed >= MAX_EVENTS {
                self.violation = Some(Violation::Liveness {
                    heal_height: heal_height.unwrap_or(0),
                    heights: self.honest_heights(),
                    at_ms: at,
                });
                break;
            }
            self.processed += 1;
            self.trace
                .update(format!("{at}:{seq}:{event:?}").as_bytes());
            self.step(event);
            if self.violation.is_some() {
                break;
            }
        }
        if !reached && self.violation.is_none() {
            self.violation = Some(Violation::Liveness {
                heal_height: heal_height.unwrap_or(0),
                heights: self.honest_heights(),
                at_ms: self.now_ms,
            });
        }
        SimReport {
            seed: self.config.seed,
            trace: Hash(self.trace.clone().finalize().into()),
            events: self.processed,
            end_ms: self.now_ms,
            heights: self.honest_heights(),
            equivocations_seen: self.equivocations,
            violation: self.violation.clone(),
            final_states: self
                .nodes
                .iter()
                .map(|n| n.core.as_ref().map_or("down".to_owned(), Core::describe))
                .collect(),
        }
    }

    fn honest_heights(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| !n.byzantine)
            .map(|n| n.committed.len() as u64)
            .collect()
    }

    fn max_honest_height(&self) -> u64 {
        self.honest_heights().into_iter().max().unwrap_or(0)
    }

    /// Partitions and crashes, all before healing.
    fn plan_faults(&mut self) {
        let heal = self.config.heal_at_ms;
        if self.config.partitions {
            let start = self.rng.below(heal / 2);
            let end = start + self.rng.below(heal - start);
            let side: Vec<bool> = (0..self.config.n).map(|_| self.rng.below(2) == 0).collect();
            self.partition = Some((start, end, side));
        }
        if self.config.crashes {
            for _ in 0..2 {
                let node = self.rng.index(self.config.n);
                let at = self.rng.below(heal / 2);
                let back = at + 1 + self.rng.below(heal / 2);
                self.push(at, Event::Crash { node });
                self.push(back, Event::Restart { node });
            }
        }
    }

    fn start_node(&mut self, node: usize) {
        let height = self.nodes[node].height();
        let prior = self.nodes[node].persisted.clone();
        let (core, effects) = Core::new(
            self.core_config(node),
            Some(self.nodes[node].key.clone()),
            self.validators.clone(),
            height,
            prior,
        );
        self.nodes[node].core = Some(core);
        let incarnation = self.nodes[node].incarnation;
        self.push(
            self.now_ms + GOSSIP_INTERVAL_MS,
            Event::Gossip { node, incarnation },
        );
        self.perform(node, effects);
    }

    fn step(&mut self, event: Event) {
        match event {
            Event::Deliver { to, msg } => self.deliver(to, msg),
            Event::Timer {
                node,
                incarnation,
                timeout,
            } => {
                if self.nodes[node].incarnation == incarnation {
                    self.input(node, Input::Timeout(timeout));
                }
            }
            Event::Gossip { node, incarnation } => {
                if self.nodes[node].incarnation != incarnation {
                    return;
                }
                if let Some(core) = &self.nodes[node].core {
                    for message in core.gossip() {
                        self.broadcast(node, message);
                    }
                }
                self.push(
                    self.now_ms + GOSSIP_INTERVAL_MS,
                    Event::Gossip { node, incarnation },
                );
            }
            Event::Crash { node } => {
                let n = &mut self.nodes[node];
                n.core = None;
                n.incarnation += 1;
            }
            Event::Restart { node } => {
                if self.nodes[node].core.is_none() {
                    self.start_node(node);
                }
            }
        }
    }

    fn input(&mut self, node: usize, input: Input) {
        let Some(core) = self.nodes[node].core.as_mut() else {
            return;
        };
        let effects = core.handle(input);
        self.perform(node, effects);
    }

    fn deliver(&mut self, to: usize, msg: NetMsg) {
        if self.nodes[to].core.is_none() {
            return;
        }
        let my_height = self.nodes[to].height();
        match msg {
            NetMsg::Consensus(message) => {
                if message.height() < my_height && !self.nodes[to].byzantine {
                    self.help_catch_up(to, usize::from(message.sender()), message.height());
                    return;
                }
                let input = match message {
                    Message::Vote(v) => Input::Vote(v),
                    Message::Proposal(p) => {
                        let block_valid = self.valid_blocks.contains(&p.proposal.block_id);
                        Input::Proposal {
                            proposal: p,
                            block_valid,
                            timely: true,
                        }
                    }
                };
                self.input(to, input);
            }
            NetMsg::Decided {
                height,
                block_id,
                certificate,
            } => {
                if height == my_height && self.valid_blocks.contains(&block_id) {
                    self.commit(to, height, block_id, certificate);
                }
            }
        }
    }

    /// Sends a lagging peer the decision of the height it is at (at most once per gossip
    /// message the peer sends, so bounded by its gossip rate).
    fn help_catch_up(&mut self, from: usize, peer: usize, height: Height) {
        if peer >= self.nodes.len() || height.0 == 0 {
            return;
        }
        let Some((block_id, certificate)) = self.nodes[from]
            .committed
            .get(usize::try_from(height.0 - 1).unwrap_or(usize::MAX))
            .cloned()
        else {
            return;
        };
        self.send(
            from,
            peer,
            NetMsg::Decided {
                height,
                block_id,
                certificate,
            },
        );
    }

    fn perform(&mut self, node: usize, effects: Vec<Effect>) {
        for effect in effects {
            if self.violation.is_some() || self.nodes[node].core.is_none() {
                return;
            }
            match effect {
                Effect::Persist(message) => self.persist(node, message),
                Effect::Broadcast(message) => self.broadcast(node, message),
                Effect::ScheduleTimeout {
                    timeout,
                    duration_ms,
                } => {
                    let incarnation = self.nodes[node].incarnation;
                    self.push(
                        self.now_ms + duration_ms,
                        Event::Timer {
                            node,
                            incarnation,
                            timeout,
                        },
                    );
                }
                Effect::RequestValue { height, round } => {
                    let block_id = self.make_block(node, height, round, 0);
                    self.input(
                        node,
                        Input::Value {
                            height,
                            round,
                            block_id,
                        },
                    );
                }
                Effect::Decide {
                    height,
                    block_id,
                    certificate,
                } => {
                    self.commit(node, height, block_id, certificate);
                }
                Effect::Equivocation { .. } => self.equivocations += 1,
            }
        }
    }

    fn make_block(&mut self, node: usize, height: Height, round: Round, variant: u64) -> BlockHash {
        let id = BlockHash(Hash::domain(
            b"sim-block",
            &[
                &self.config.seed.to_le_bytes(),
                &height.0.to_le_bytes(),
                &round.0.to_le_bytes(),
                &(node as u64).to_le_bytes(),
                &variant.to_le_bytes(),
            ],
        ));
        self.valid_blocks.insert(id);
        id
    }

    /// Writes a message to a node's "disk". For its own signed messages, two different
    /// ones for one slot is a double-sign.
    fn persist(&mut self, node: usize, message: Message) {
        let (slot, what) = match &message {
            Message::Proposal(p) => (0u8, format!("proposal {:?}", p.proposal.block_id)),
            Message::Vote(v) => (
                1 + v.vote.kind as u8,
                format!("{:?} {:?}", v.vote.kind, v.vote.block_id),
            ),
        };
        if usize::from(message.sender()) != node {
            // Another validator's vote kept as the proof of a lock: not ours to check.
            self.nodes[node].persisted.push(message);
            return;
        }
        let key = (node, message.height(), message.round(), slot);
        if let Some(before) = self.signed.get(&key)
            && *before != what
            && !self.nodes[node].byzantine
        {
            self.violation = Some(Violation::DoubleSign {
                node,
                height: message.height(),
                round: message.round(),
                what: format!("{before} then {what}"),
            });
            return;
        }
        self.signed.insert(key, what);
        self.nodes[node].persisted.push(message);
    }

    fn commit(
        &mut self,
        node: usize,
        height: Height,
        block_id: BlockHash,
        certificate: CommitCertificate,
    ) {
        if self.nodes[node].height() != height {
            return;
        }
        if !self.nodes[node].byzantine {
            if let Err(reason) = self.check_decision(height, &block_id, &certificate) {
                self.violation = Some(Violation::Validity {
                    height,
                    node,
                    reason,
                });
                return;
            }
            match self.decided.get(&height) {
                Some(first) if *first != block_id => {
                    self.violation = Some(Violation::Agreement {
                        height,
                        first: *first,
                        second: block_id,
                        node,
                    });
                    return;
                }
                _ => {
                    self.decided.insert(height, block_id);
                }
            }
        }
        let validators = self.validators.clone();
        let n = &mut self.nodes[node];
        n.committed.push((block_id, certificate));
        n.persisted.clear();
        let effects = match n.core.as_mut() {
            Some(core) if core.height() == height => core.next_height(validators),
            _ => {
                // Committed by catch-up: start a fresh core at the next height (a new
                // incarnation, so the old core's timers and gossip stop).
                self.nodes[node].incarnation += 1;
                self.start_node(node);
                return;
            }
        };
        self.perform(node, effects);
    }

    fn check_decision(
        &self,
        height: Height,
        block_id: &BlockHash,
        cert: &CommitCertificate,
    ) -> Result<(), String> {
        if !self.valid_blocks.contains(block_id) {
            return Err(format!("block {block_id} was never a valid proposal"));
        }
        cert.verify(&self.chain_id, height, block_id, &self.validators)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn broadcast(&mut self, from: usize, message: Message) {
        if self.nodes[from].byzantine {
            return self.byzantine_broadcast(from, message);
        }
        for to in 0..self.nodes.len() {
            if to != from {
                self.send(from, to, NetMsg::Consensus(message.clone()));
            }
        }
    }

    fn send(&mut self, from: usize, to: usize, msg: NetMsg) {
        let healed = self.now_ms >= self.config.heal_at_ms;
        if !healed {
            if let Some((start, end, side)) = &self.partition
                && (*start..*end).contains(&self.now_ms)
                && side[from] != side[to]
            {
                return;
            }
            if self.rng.per_mille(self.config.loss_per_mille) {
                return;
            }
        }
        let copies = if !healed && self.rng.per_mille(self.config.dup_per_mille) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = 1 + self.rng.below(self.config.delay_max_ms);
            self.push(
                self.now_ms + delay,
                Event::Deliver {
                    to,
                    msg: msg.clone(),
                },
            );
        }
    }

    /// A Byzantine validator: splits the network with two proposals, double-votes, votes
    /// for blocks nobody proposed, replays old rounds and forges signatures.
    fn byzantine_broadcast(&mut self, from: usize, message: Message) {
        let key = self.nodes[from].key.clone();
        let n = self.nodes.len();
        let half: Vec<bool> = (0..n).map(|_| self.rng.below(2) == 0).collect();
        let alternative = match &message {
            Message::Proposal(p) => {
                let mut other = p.proposal.clone();
                // A second, valid block: the equivocating proposer.
                let variant = 1 + self.rng.below(3);
                other.block_id = self.make_block(from, other.height, other.round, variant);
                Message::Proposal(sign_proposal(other, &self.chain_id, &key))
            }
            Message::Vote(v) => {
                let mut other = v.vote.clone();
                other.block_id = match self.rng.below(3) {
                    0 => None,
                    // A block nobody proposed.
                    1 => Some(BlockHash(Hash::digest(&self.rng.next_u64().to_le_bytes()))),
                    _ => v.vote.block_id.map(|_| BlockHash(Hash::digest(b"other"))),
                };
                Message::Vote(sign_vote(other, &self.chain_id, &key))
            }
        };
        for (to, first_half) in half.into_iter().enumerate() {
            if to == from {
                continue;
            }
            let chosen = if first_half {
                message.clone()
            } else {
                alternative.clone()
            };
            self.send(from, to, NetMsg::Consensus(chosen));
        }
        self.byzantine_noise(from, &message);
    }

    fn byzantine_noise(&mut self, from: usize, message: &Message) {
        let to = self.rng.index(self.nodes.len());
        if let Message::Vote(v) = message {
            // A stale-round replay.
            let mut stale = v.vote.clone();
            let back = 1 + u32::try_from(self.rng.below(3)).unwrap_or(0);
            stale.round = Round(stale.round.0.saturating_sub(back));
            let stale = sign_vote(stale, &self.chain_id, &self.nodes[from].key);
            self.send(from, to, NetMsg::Consensus(Message::Vote(stale)));
        }
        // A forged vote in an honest validator's name, with a garbage signature.
        let victim = u16::try_from(self.rng.index(self.nodes.len())).unwrap_or(0);
        let forged = SignedVote {
            vote: Vote {
                kind: VoteKind::Precommit,
                height: message.height(),
                round: message.round(),
                block_id: Some(BlockHash(Hash::digest(b"forged"))),
                validator_index: victim,
            },
            signature: Signature([7; 64]),
        };
        self.send(from, to, NetMsg::Consensus(Message::Vote(forged)));
    }
}

/// Runs one seed.
pub fn run(config: SimConfig) -> SimReport {
    Sim::new(config).run()
}
