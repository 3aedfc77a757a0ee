//! The deterministic state machine: a block's transactions applied to state, in order,
//! producing receipts and a set of changes. No clock, no I/O, no randomness: every
//! validator computes the same result from the same inputs.

use std::any::Any;
use std::sync::Arc;

use bidchain_trading::Decode as _;

use crate::block::{BlockHash, CertificateError, CommitCertificate};
use crate::bounded::BoundedString;
use crate::contract::{
    CallContext, CallSession, Called, ContractError, ContractEvent, ContractStorage, Contracts,
};
use crate::crypto::{self, PublicKey};
use crate::hash::Hash;
use crate::ids::{AccountId, ChainId, Height, Nonce};
use crate::receipt::{Event, Receipt, TxOutcome};
use crate::state::{self, Account, Changes, Overlay, StateError, StateKey, StateView};
use crate::time::Timestamp;
use crate::tx::{ContractCall, NativeCall, Payload, Role, SignedTransaction, TxHash};
use crate::validator::{MAX_VALIDATOR_NAME_LEN, Validator, ValidatorSet, ValidatorSetError};

/// What execution may know about the block it runs in.
#[derive(Clone, Debug)]
pub struct BlockEnv {
    pub chain_id: ChainId,
    pub height: Height,
    pub time: Timestamp,
    pub prev_block_id: BlockHash,
    /// The block's certificate of the previous block (none at height 1).
    pub last_commit: Option<CommitCertificate>,
}

/// Why a block's `last_commit` is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum LastCommitError {
    #[error("the block at height {0} lacks the previous block's commit certificate")]
    Missing(Height),
    #[error("the first block carries a commit certificate")]
    Unexpected,
    #[error("state does not record which validators signed the previous block")]
    NoSigners,
    #[error(transparent)]
    Certificate(#[from] CertificateError),
}

/// Why a transaction may not be included at all (it would make its block invalid).
#[derive(Debug, thiserror::Error)]
pub enum TxInvalid {
    #[error("transaction is for chain {got}, this chain is {expected}")]
    WrongChain { expected: ChainId, got: ChainId },
    #[error("signature does not verify")]
    BadSignature,
    #[error("sender {0} has no account")]
    UnknownSender(AccountId),
    #[error("nonce {got} is not the sender's next nonce {expected}")]
    NonceMismatch { expected: Nonce, got: Nonce },
    #[error(transparent)]
    State(#[from] StateError),
    /// The block's contract calls already burnt [`MAX_BLOCK_FUEL`]: this call belongs in a
    /// later block.
    #[error("the block's contract fuel ({used} of {MAX_BLOCK_FUEL}) is spent")]
    BlockFuelSpent { used: u64 },
}

/// Fuel all contract calls of one block may burn before another call makes the block
/// invalid: bounds the time any block takes to execute (a call may overrun it by at most
/// one call's fuel).
pub const MAX_BLOCK_FUEL: u64 = 40 * crate::contract::FUEL_PER_CALL;

/// Why a block cannot be executed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("transaction {index} is invalid: {reason}")]
    InvalidTx { index: usize, reason: TxInvalid },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("last commit: {0}")]
    LastCommit(#[from] LastCommitError),
    /// This machine failed to run a contract (not the contract's doing): the block
    /// cannot be executed here, and must not be voted for.
    #[error("contract host failed on transaction {index}: {error}")]
    ContractHost { index: usize, error: ContractError },
}

/// A rule a valid transaction broke: recorded in its receipt, not fatal to the block.
#[derive(Debug, thiserror::Error)]
enum Rejection {
    #[error("a {sender} account may not {action}")]
    NotPermitted { sender: Role, action: String },
    #[error("account {0} already exists")]
    AccountExists(AccountId),
    #[error("account {0} does not exist")]
    UnknownAccount(AccountId),
    #[error("the validator set would be invalid: {0}")]
    InvalidValidatorSet(#[from] ValidatorSetError),
    #[error("no contract {0} on this chain")]
    UnknownContract(String),
    /// The contract refused, trapped or ran out of fuel.
    #[error("{reason}")]
    Contract { code: String, reason: String },
}

impl Rejection {
    fn code(&self) -> &str {
        match self {
            Rejection::UnknownContract(_) => "unknown_contract",
            Rejection::Contract { code, .. } => code,
            Rejection::NotPermitted { .. } => "not_permitted",
            Rejection::AccountExists(_) => "account_exists",
            Rejection::UnknownAccount(_) => "unknown_account",
            Rejection::InvalidValidatorSet(_) => "invalid_validator_set",
        }
    }
}

/// The result of executing a block.
#[derive(Debug)]
pub struct Executed {
    pub receipts: Vec<Receipt>,
    /// Shared: a node catching up reads them while the block is still being written.
    pub changes: Arc<Changes>,
}

/// Checks what a transaction must satisfy to be included, except its signature: the right
/// chain, a known sender and `expected_nonce`. Returns the sender's account.
pub fn check_envelope<V: StateView + ?Sized>(
    state: &Overlay<'_, V>,
    chain_id: &ChainId,
    stx: &SignedTransaction,
    expected_nonce: Option<Nonce>,
) -> Result<Account, TxInvalid> {
    let tx = &stx.tx;
    if &tx.chain_id != chain_id {
        return Err(TxInvalid::WrongChain {
            expected: chain_id.clone(),
            got: tx.chain_id.clone(),
        });
    }
    let sender = tx.sender_id();
    let account = state
        .account(sender)?
        .ok_or(TxInvalid::UnknownSender(sender))?;
    let expected = expected_nonce.unwrap_or(account.nonce);
    if tx.nonce != expected {
        return Err(TxInvalid::NonceMismatch {
            expected,
            got: tx.nonce,
        });
    }
    Ok(account)
}

/// Verifies the signature of every transaction not vouched for (`vouched[i]`: this node
/// verified `txs[i]`'s on admission; a missing entry vouches for nothing), in one batch
/// when all are good.
pub fn verify_signatures(txs: &[SignedTransaction], vouched: &[bool]) -> Result<(), ExecError> {
    let unchecked: Vec<(usize, &SignedTransaction)> = txs
        .iter()
        .enumerate()
        .filter(|(i, _)| !vouched.get(*i).copied().unwrap_or(false))
        .collect();
    let keys: Vec<_> = unchecked.iter().map(|(_, s)| s.tx.sender).collect();
    let bytes: Vec<Vec<u8>> = unchecked
        .iter()
        .map(|(_, s)| s.tx.signing_bytes())
        .collect();
    let messages: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
    let sigs: Vec<_> = unchecked.iter().map(|(_, s)| s.signature).collect();
    if crypto::verify_batch(&keys, &messages, &sigs).is_ok() {
        return Ok(());
    }
    match unchecked
        .iter()
        .find(|(_, s)| s.verify_signature().is_err())
    {
        Some((index, _)) => Err(ExecError::InvalidTx {
            index: *index,
            reason: TxInvalid::BadSignature,
        }),
        None => Ok(()),
    }
}

/// The block's random seed: SHA-256 over the height, the parent id and the signatures of
/// `last_commit` in validator order.
///
/// Why this seed: the signatures are ed25519 (deterministic, unforgeable), made by other
/// validators over the previous block's id *after* its content was fixed, so nobody can
/// know them before that block is decided — neither the party sending a draw nor the
/// previous block's proposer. What remains: this block's proposer picks which quorum of the
/// precommits it received goes into `last_commit`. With all n signatures at hand it can
/// choose among at most sum over k from q to n of C(n, k) seeds (q the quorum size): 5 for
/// n = 4, 29 for n = 7, i.e. at most 2.3 and 4.9 bits of bias, and it can also leave a tx
/// out of its block so that it lands in a later block with a different seed. It cannot
/// choose a seed outside that small set.
pub fn block_seed(env: &BlockEnv) -> Hash {
    let mut input = env.height.0.to_le_bytes().to_vec();
    input.extend_from_slice(&env.prev_block_id.0.0);
    if let Some(cert) = &env.last_commit {
        let mut sigs: Vec<_> = cert.signatures.iter().collect();
        sigs.sort_by_key(|s| s.validator_index);
        for sig in sigs {
            input.extend_from_slice(&sig.validator_index.to_le_bytes());
            input.extend_from_slice(&sig.signature.0);
        }
    }
    Hash::domain(b"bidchain/seed/v1\0", &[&input])
}

/// Checks `last_commit` proves the previous block with the set that signed it, then
/// records the set that signs this block (for the next block's check).
fn check_last_commit<V: StateView + ?Sized>(
    state: &mut Overlay<'_, V>,
    env: &BlockEnv,
) -> Result<(), ExecError> {
    match (&env.last_commit, env.height.0) {
        (None, 0 | 1) => {}
        (Some(_), 0 | 1) => return Err(LastCommitError::Unexpected.into()),
        (None, _) => return Err(LastCommitError::Missing(env.height).into()),
        (Some(cert), height) => {
            let signers = state
                .get::<ValidatorSet>(StateKey::LastSigners)?
                .ok_or(LastCommitError::NoSigners)?;
            cert.verify(
                &env.chain_id,
                Height(height - 1),
                &env.prev_block_id,
                &signers,
            )
            .map_err(LastCommitError::from)?;
        }
    }
    let current = state.validator_set()?;
    if state.get::<ValidatorSet>(StateKey::LastSigners)? != current
        && let Some(set) = current
    {
        state.put(StateKey::LastSigners, &set);
    }
    Ok(())
}

/// Blocks whose seeds state keeps, for draws made after the block that fixed their seed.
pub const SEED_HISTORY: u64 = 256;

fn seed_slot(height: Height) -> StateKey {
    // SEED_HISTORY is 256: the slot is the height's low byte.
    StateKey::Seed(height.0.to_le_bytes()[0])
}

/// The seed of block `height` as `state` keeps it.
fn kept_seed<V: StateView + ?Sized>(
    base: &V,
    changes: &Changes,
    height: u64,
) -> Result<Option<Hash>, StateError> {
    let kept: Option<(Height, Hash)> = state::get_after(base, changes, seed_slot(Height(height)))?;
    Ok(kept.filter(|(h, _)| h.0 == height).map(|(_, seed)| seed))
}

/// What every transaction of a block shares.
struct BlockCtx<'a> {
    env: &'a BlockEnv,
    contracts: &'a Contracts,
    /// The block's contract calls, in its order: the same on every validator.
    calls: CallSession<'a>,
    seed: Hash,
}

/// Executes `txs` in order on top of `base`. Their signatures must have been checked
/// ([`verify_signatures`]): execution does not check them again, so a block's
/// transactions that this node admitted itself cost no second check. `V: Clone +
/// 'static` because a contract call owns its view of state for the call's duration (a
/// clone of a handle, not of the data). `InvalidTx` is always the block's fault; `State`
/// and `ContractHost` are this node's (its state or its contract host failed).
pub fn execute_block<V: StateView + Clone + Send + 'static>(
    base: &V,
    contracts: &Contracts,
    env: &BlockEnv,
    txs: &[SignedTransaction],
) -> Result<Executed, ExecError> {
    let mut state = Overlay::new(base);
    check_last_commit(&mut state, env)?;
    let seed = block_seed(env);
    state.put(seed_slot(env.height), &(env.height, seed));
    let mut ctx = BlockCtx {
        env,
        contracts,
        calls: contracts.engine().session(),
        seed,
    };
    let mut receipts: Vec<Receipt> = Vec::with_capacity(txs.len());
    let mut fuel = 0u64;
    for (index, stx) in txs.iter().enumerate() {
        if fuel >= MAX_BLOCK_FUEL && matches!(stx.tx.payload, Payload::Call(_)) {
            let reason = TxInvalid::BlockFuelSpent { used: fuel };
            return Err(ExecError::InvalidTx { index, reason });
        }
        let receipt = execute_tx(&mut state, &mut ctx, index, stx)?;
        fuel = fuel.saturating_add(receipt.fuel_used);
        receipts.push(receipt);
    }
    Ok(Executed {
        receipts,
        changes: Arc::new(state.into_changes()),
    })
}

fn execute_tx<V: StateView + Clone + Send + 'static>(
    state: &mut Overlay<'_, V>,
    ctx: &mut BlockCtx<'_>,
    index: usize,
    stx: &SignedTransaction,
) -> Result<Receipt, ExecError> {
    let mut sender = check_envelope(state, &ctx.env.chain_id, stx, None).map_err(|reason| {
        match reason {
            // This node's state failed, not the transaction: the block is not invalid.
            TxInvalid::State(err) => ExecError::State(err),
            reason => ExecError::InvalidTx { index, reason },
        }
    })?;
    sender.nonce = sender.nonce.next();
    state.put(StateKey::Account(stx.tx.sender_id()), &sender);

    let checkpoint = state.checkpoint();
    let mut fuel_used = 0;
    let tx_hash = stx.hash();
    let applied = apply(state, ctx, &sender, stx, tx_hash, &mut fuel_used);
    let (outcome, events) = match applied {
        Ok(events) => (TxOutcome::Ok, events),
        Err(ApplyError::Rejected(rejection)) => {
            state.rollback(checkpoint);
            (
                TxOutcome::rejected(rejection.code(), &rejection.to_string()),
                Vec::new(),
            )
        }
        Err(ApplyError::State(err)) => return Err(ExecError::State(err)),
        Err(ApplyError::Host(error)) => return Err(ExecError::ContractHost { index, error }),
    };
    Ok(Receipt {
        tx_hash,
        height: ctx.env.height,
        index: u32::try_from(index).unwrap_or(u32::MAX),
        outcome,
        events: crate::bounded::BoundedVec::new(events).unwrap_or_default(),
        fuel_used,
    })
}

enum ApplyError {
    Rejected(Rejection),
    State(StateError),
    Host(ContractError),
}

impl From<StateError> for ApplyError {
    fn from(err: StateError) -> Self {
        ApplyError::State(err)
    }
}

impl From<Rejection> for ApplyError {
    fn from(rejection: Rejection) -> Self {
        ApplyError::Rejected(rejection)
    }
}

fn apply<V: StateView + Clone + Send + 'static>(
    state: &mut Overlay<'_, V>,
    ctx: &mut BlockCtx<'_>,
    sender: &Account,
    stx: &SignedTransaction,
    tx_hash: TxHash,
    fuel_used: &mut u64,
) -> Result<Vec<Event>, ApplyError> {
    match &stx.tx.payload {
        Payload::Native(call) => apply_native(state, sender, call),
        Payload::Call(call) => apply_call(state, ctx, (sender, tx_hash), call, fuel_used),
    }
}

/// A contract call's view of state: the committed state and the block's writes so far,
/// lent to the call and taken back after it.
struct CallView<V> {
    base: V,
    changes: Changes,
}

impl<V: StateView + Send + 'static> ContractStorage for CallView<V> {
    fn get(&self, contract: &str, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let key = state::contract_key(contract, key);
        match self.changes.get(&key) {
            Some(value) => Ok(value.clone()),
            None => self.base.get(&key).map_err(|e| e.to_string()),
        }
    }

    fn seed_at(&self, height: u64) -> Result<Option<[u8; 32]>, String> {
        kept_seed(&self.base, &self.changes, height)
            .map(|seed| seed.map(|s| s.0))
            .map_err(|e| e.to_string())
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

fn apply_call<V: StateView + Clone + Send + 'static>(
    state: &mut Overlay<'_, V>,
    ctx: &mut BlockCtx<'_>,
    (sender, tx_hash): (&Account, TxHash),
    call: &ContractCall,
    fuel_used: &mut u64,
) -> Result<Vec<Event>, ApplyError> {
    let name = call.contract.as_str();
    let module = ctx
        .contracts
        .module(name)
        .ok_or_else(|| Rejection::UnknownContract(name.to_owned()))?;
    let context = CallContext {
        contract: name.to_owned(),
        caller: sender.key.0,
        caller_role: sender.role.contract_code(),
        block_height: ctx.env.height.0,
        block_time_ms: ctx.env.time.as_millis(),
        random_seed: ctx.seed.0,
        tx_hash: tx_hash.0.0,
    };
    let view = Box::new(CallView {
        base: state.base().clone(),
        changes: state.take_changes(),
    });
    let Called {
        storage,
        fuel_used: fuel,
        result,
    } = ctx.calls.call(module, context, view, &call.input);
    *fuel_used = fuel;
    let view = storage
        .into_any()
        .downcast::<CallView<V>>()
        .map_err(|_| ApplyError::Host(ContractError::Host("storage view lost".into())))?;
    state.restore_changes(view.changes);
    match result {
        Ok(outcome) => {
            for (key, value) in outcome.writes {
                state.put_raw(state::contract_key(name, &key), value);
            }
            Ok(outcome.events.iter().map(receipt_event).collect())
        }
        Err(error) if !error.is_deterministic() => Err(ApplyError::Host(error)),
        Err(error) => {
            let (code, reason) = error.receipt_parts();
            Err(Rejection::Contract { code, reason }.into())
        }
    }
}

/// A contract event as receipts carry it: the SDK encodes key/value pairs; anything else
/// is kept as hex.
fn receipt_event(event: &ContractEvent) -> Event {
    match Vec::<(String, String)>::decode(&event.data) {
        Ok(pairs) => Event::from_pairs(&event.kind, pairs),
        Err(_) => Event::new(&event.kind, &[("data", hex::encode(&event.data))]),
    }
}

fn apply_native<V: StateView + ?Sized>(
    state: &mut Overlay<'_, V>,
    sender: &Account,
    call: &NativeCall,
) -> Result<Vec<Event>, ApplyError> {
    match call {
        NativeCall::CreateAccount { key, role, label } => {
            if !sender.role.may_create(*role) {
                let action = format!("create an account with role {role}");
                return Err(Rejection::NotPermitted {
                    sender: sender.role,
                    action,
                }
                .into());
            }
            let id = AccountId::of(key);
            if state.account(id)?.is_some() {
                return Err(Rejection::AccountExists(id).into());
            }
            let account = Account {
                key: *key,
                role: *role,
                nonce: Nonce(0),
                label: label.clone(),
            };
            state.put(StateKey::Account(id), &account);
            let attrs = [("account", id.to_string()), ("role", role.to_string())];
            Ok(vec![Event::new("account_created", &attrs)])
        }
        NativeCall::SetRole { account, role } => {
            if sender.role != Role::Hub {
                let action = "change roles".to_owned();
                return Err(Rejection::NotPermitted {
                    sender: sender.role,
                    action,
                }
                .into());
            }
            let mut target = state
                .account(*account)?
                .ok_or(Rejection::UnknownAccount(*account))?;
            target.role = *role;
            state.put(StateKey::Account(*account), &target);
            let attrs = [("account", account.to_string()), ("role", role.to_string())];
            Ok(vec![Event::new("role_set", &attrs)])
        }
        NativeCall::SetValidator { key, name, power } => {
            if sender.role != Role::Hub {
                let action = "change the validator set".to_owned();
                return Err(Rejection::NotPermitted {
                    sender: sender.role,
                    action,
                }
                .into());
            }
            let current = state.validator_set()?.map(|s| s.validators().to_vec());
            let next = with_validator(current.unwrap_or_default(), key, name, *power);
            let set = ValidatorSet::new(next).map_err(Rejection::from)?;
            state.put(StateKey::ValidatorSet, &set);
            let attrs = [
                ("validator", key.to_string()),
                ("power", power.to_string()),
                ("set", set.hash().to_string()),
            ];
            Ok(vec![Event::new("validator_set", &attrs)])
        }
    }
}

/// The list with `key` set to `power`: updated in place (order, and so proposer rotation
/// and certificate indices, is kept), appended if new, removed at power 0.
fn with_validator(
    mut validators: Vec<Validator>,
    key: &PublicKey,
    name: &BoundedString<MAX_VALIDATOR_NAME_LEN>,
    power: u64,
) -> Vec<Validator> {
    match validators.iter().position(|v| v.key == *key) {
        Some(i) if power == 0 => {
            validators.remove(i);
        }
        Some(i) => {
            validators[i].power = power;
            validators[i].name = name.clone();
        }
        None if power == 0 => {}
        None => validators.push(Validator {
            name: name.clone(),
            key: *key,
            power,
        }),
    }
    validators
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounded::BoundedString;
    use crate::crypto::Keypair;
    use crate::tx::Transaction;
    use std::collections::BTreeMap;

    fn chain() -> ChainId {
        ChainId::new("test").unwrap()
    }

    fn no_contracts() -> Contracts {
        Contracts::new().unwrap()
    }

    fn env() -> BlockEnv {
        BlockEnv {
            chain_id: chain(),
            height: Height(1),
            time: Timestamp(1_000),
            prev_block_id: BlockHash::default(),
            last_commit: None,
        }
    }

    fn genesis_state(hub: &Keypair) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let account = Account {
            key: hub.public(),
            role: Role::Hub,
            nonce: Nonce(0),
            label: BoundedString::new("hub").unwrap(),
        };
        BTreeMap::from([(
            StateKey::Account(AccountId::of(&hub.public())).to_bytes(),
            crate::codec::encode(&account),
        )])
    }

    fn create(signer: &Keypair, nonce: u64, new: &Keypair, role: Role) -> SignedTransaction {
        Transaction {
            chain_id: chain(),
            sender: signer.public(),
            nonce: Nonce(nonce),
            payload: Payload::Native(NativeCall::CreateAccount {
                key: new.public(),
                role,
                label: BoundedString::new("x").unwrap(),
            }),
        }
        .sign(signer)
    }

    #[test]
    fn hub_creates_center_which_creates_bidder_but_not_auditor() {
        let (hub, center, bidder, auditor) = (
            Keypair::from_seed_for_tests(1),
            Keypair::from_seed_for_tests(2),
            Keypair::from_seed_for_tests(3),
            Keypair::from_seed_for_tests(4),
        );
        let base = genesis_state(&hub);
        let txs = vec![
            create(&hub, 0, &center, Role::Center),
            create(&center, 0, &bidder, Role::Bidder),
            create(&center, 1, &auditor, Role::Auditor),
            create(&hub, 1, &center, Role::Center),
        ];
        let out = execute_block(&base, &no_contracts(), &env(), &txs).unwrap();
        let outcomes: Vec<_> = out.receipts.iter().map(|r| r.outcome.clone()).collect();
        assert!(outcomes[0].is_ok() && outcomes[1].is_ok());
        assert!(
            matches!(&outcomes[2], TxOutcome::Rejected { code, .. } if code.as_str() == "not_permitted")
        );
        assert!(
            matches!(&outcomes[3], TxOutcome::Rejected { code, .. } if code.as_str() == "account_exists")
        );
        // The rejected transaction still consumed the center's nonce.
        let mut applied = base.clone();
        for (k, v) in out.changes.iter() {
            match v {
                Some(v) => applied.insert(k.clone(), v.clone()),
                None => applied.remove(k),
            };
        }
        let state = Overlay::new(&applied);
        let center_acct = state
            .account(AccountId::of(&center.public()))
            .unwrap()
            .unwrap();
        assert_eq!(center_acct.nonce, Nonce(2));
        assert!(
            state
                .account(AccountId::of(&auditor.public()))
                .unwrap()
                .is_none()
        );
    }

    fn set_validator(signer: &Keypair, nonce: u64, key: &Keypair, power: u64) -> SignedTransaction {
        Transaction {
            chain_id: chain(),
            sender: signer.public(),
            nonce: Nonce(nonce),
            payload: Payload::Native(NativeCall::SetValidator {
                key: key.public(),
                name: BoundedString::new("v").unwrap(),
                power,
            }),
        }
        .sign(signer)
    }

    #[test]
    fn only_the_hub_changes_the_validator_set_and_never_to_an_empty_one() {
        let (hub, center, v1, v2) = (
            Keypair::from_seed_for_tests(1),
            Keypair::from_seed_for_tests(2),
            Keypair::from_seed_for_tests(3),
            Keypair::from_seed_for_tests(4),
        );
        let mut base = genesis_state(&hub);
        let genesis_set = ValidatorSet::new(vec![Validator {
            name: BoundedString::new("v1").unwrap(),
            key: v1.public(),
            power: 1,
        }])
        .unwrap();
        base.insert(
            StateKey::ValidatorSet.to_bytes(),
            crate::codec::encode(&genesis_set),
        );
        let txs = vec![
            create(&hub, 0, &center, Role::Center),
            set_validator(&center, 0, &v2, 1),
            set_validator(&hub, 1, &v2, 3),
            set_validator(&hub, 2, &v1, 0),
            set_validator(&hub, 3, &v2, 0),
        ];
        let out = execute_block(&base, &no_contracts(), &env(), &txs).unwrap();
        let codes: Vec<_> = out
            .receipts
            .iter()
            .map(|r| match &r.outcome {
                TxOutcome::Ok => "ok".to_owned(),
                TxOutcome::Rejected { code, .. } => code.to_string(),
            })
            .collect();
        assert_eq!(
            codes,
            ["ok", "not_permitted", "ok", "ok", "invalid_validator_set"]
        );
        let set: ValidatorSet =
            crate::state::get_after(&base, &out.changes, StateKey::ValidatorSet)
                .unwrap()
                .unwrap();
        assert_eq!(set.validators().len(), 1);
        assert_eq!(
            (set.validators()[0].key, set.validators()[0].power),
            (v2.public(), 3)
        );
    }

    #[test]
    fn invalid_envelopes_invalidate_the_block() {
        let hub = Keypair::from_seed_for_tests(1);
        let base = genesis_state(&hub);
        let other = Keypair::from_seed_for_tests(9);
        let replay = vec![
            create(&hub, 0, &other, Role::Bidder),
            create(&hub, 0, &other, Role::Bidder),
        ];
        assert!(matches!(
            execute_block(&base, &no_contracts(), &env(), &replay),
            Err(ExecError::InvalidTx {
                index: 1,
                reason: TxInvalid::NonceMismatch { .. }
            })
        ));
        let stranger = vec![create(&other, 0, &hub, Role::Bidder)];
        assert!(matches!(
            execute_block(&base, &no_contracts(), &env(), &stranger),
            Err(ExecError::InvalidTx {
                index: 0,
                reason: TxInvalid::UnknownSender(_)
            })
        ));
    }

    #[test]
    fn a_forged_signature_is_found_unless_vouched_for() {
        let hub = Keypair::from_seed_for_tests(1);
        let other = Keypair::from_seed_for_tests(9);
        let good = create(&hub, 0, &other, Role::Bidder);
        let mut forged = create(&hub, 1, &other, Role::Bidder);
        forged.signature.0[5] ^= 1;
        let txs = [good.clone(), forged.clone()];
        assert!(matches!(
            verify_signatures(&txs, &[]),
            Err(ExecError::InvalidTx {
                index: 1,
                reason: TxInvalid::BadSignature
            })
        ));
        // Vouching for the good one leaves the forged one found at its own index.
        assert!(matches!(
            verify_signatures(&txs, &[true]),
            Err(ExecError::InvalidTx { index: 1, .. })
        ));
        assert!(verify_signatures(&txs, &[false, true]).is_ok());
    }

    #[test]
    fn execution_is_deterministic() {
        let hub = Keypair::from_seed_for_tests(1);
        let base = genesis_state(&hub);
        let txs: Vec<_> = (0..20)
            .map(|i| {
                create(
                    &hub,
                    i,
                    &Keypair::from_seed_for_tests(100 + i),
                    Role::Bidder,
                )
            })
            .collect();
        let a = execute_block(&base, &no_contracts(), &env(), &txs).unwrap();
        let b = execute_block(&base, &no_contracts(), &env(), &txs).unwrap();
        assert_eq!(a.receipts, b.receipts);
        assert_eq!(a.changes, b.changes);
    }
}
