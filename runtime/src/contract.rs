//! The WASM contract host: wasmtime configured so that every validator computes the same
//! result from the same inputs, with every resource bounded.
//!
//! Determinism: fuel metering (never wall-clock interruption), NaN canonicalisation, no
//! threads, no SIMD or relaxed SIMD, no GC, no WASI, no component model; the only
//! inputs a contract sees are its call input, its own storage, the caller, the block height
//! and time and the chain's seed. Bounds: fuel per call, linear memory and table size per
//! instance, instances at once, every byte string crossing the host boundary.
//!
//! A module is compiled once ([`ContractEngine::compile`]) into an `InstancePre` whose
//! imports are resolved. A block's calls run in a [`CallSession`], which keeps each
//! contract's instance for the block's next call to it when the call left nothing behind
//! that the next one could read (see there); otherwise a call costs a store, a pooled
//! instance and the call itself.
//!
//! Contract ABI (imports from module `env`, all lengths and pointers `i32`):
//!
//! | import | meaning |
//! |---|---|
//! | `storage_get(key, key_len, out, out_cap) -> i32` | value length, or -1 if absent; copies only if it fits |
//! | `storage_get_from(contract, contract_len, key, key_len, out, out_cap) -> i32` | the same, read-only, in another contract's storage |
//! | `storage_set(key, key_len, value, value_len)` | |
//! | `storage_delete(key, key_len)` | |
//! | `caller(out)` | the caller's 32-byte public key |
//! | `caller_role() -> i32` | see [`CallContext::caller_role`] |
//! | `block_height() -> i64`, `block_time_ms() -> i64` | |
//! | `random_seed(out)` | the chain's 32-byte seed for this block |
//! | `seed_at(height, out) -> i32` | 0 and the seed of block `height` if the chain keeps it (the last [`crate::execute::SEED_HISTORY`] blocks), else -1 |
//! | `sha256(data, len, out)` | |
//! | `emit_event(kind, kind_len, data, data_len)` | |
//! | `set_output(data, len)` | the call's result bytes |
//! | `abort(msg, msg_len)` | stop; the message is the rejection reason |
//!
//! and exports `memory`, `alloc(len) -> ptr` (where the host writes the input) and
//! `call(ptr, len)`. `alloc` starts a call: a contract's allocator starts over there, since
//! the instance may be the one its previous call in the block ran in.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::hash::Hash;
use wasmtime::{
    Caller, Config, Enabled, Engine, Extern, InstanceAllocationStrategy, InstancePre, Linker,
    Memory, Module, ModuleExport, PoolingAllocationConfig, Store, Trap, TypedFunc,
};

/// Fuel one call may burn (about one unit per wasm instruction).
pub const FUEL_PER_CALL: u64 = 50_000_000;
/// Fuel a host function costs, plus one unit per byte it moves.
const HOST_CALL_FUEL: u64 = 1_000;
/// A storage read also costs this (a database lookup), plus the value's length.
const STORAGE_READ_FUEL: u64 = 20_000;
/// Hashing costs this much per byte (about five wasm instructions' worth).
const SHA256_FUEL_PER_BYTE: u64 = 5;
/// A contract's linear memory may grow to this size.
pub const MAX_MEMORY_BYTES: usize = 16 * 1024 * 1024;
pub const MAX_TABLE_ELEMENTS: usize = 10_000;
/// Contract instances alive at once in one engine: a session's kept ones and the call
/// running, for each block being executed (one at a time on the consensus thread).
pub const MAX_INSTANCES: u32 = 32;
/// Instances one session keeps for its next calls; a call to a further contract runs in
/// an instance of its own. Deterministic: it depends only on the block's calls.
pub const MAX_KEPT_PER_SESSION: usize = 8;
/// Memory a pooled slot keeps between instances, reset in place rather than given back:
/// all of a contract's initial memory (256 KiB, set by their build: stack, data and heap).
const KEEP_RESIDENT_BYTES: usize = 256 * 1024;
/// The wasm stack a call may use; deeper recursion traps (the same on every validator of
/// one build: the compiled code is the same).
pub const MAX_WASM_STACK_BYTES: usize = 512 * 1024;
pub const MAX_CODE_BYTES: usize = 2 * 1024 * 1024;
pub const MAX_INPUT_BYTES: usize = 64 * 1024;
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;
pub const MAX_KEY_BYTES: usize = 256;
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Storage writes one call may make (distinct keys).
pub const MAX_WRITES_PER_CALL: usize = 1_024;
/// A receipt's bound: every event of a successful call goes into it.
pub const MAX_EVENTS_PER_CALL: usize = crate::receipt::MAX_EVENTS_PER_TX;
/// The longest contract name `storage_get_from` takes.
pub const MAX_CONTRACT_NAME_BYTES: usize = crate::tx::MAX_CONTRACT_NAME_LEN;
pub const MAX_EVENT_KIND_BYTES: usize = 64;
pub const MAX_EVENT_DATA_BYTES: usize = 4 * 1024;
pub const MAX_ABORT_MESSAGE_BYTES: usize = 1_024;

/// Why a contract could not be compiled, or why a call produced no result. A call's
/// error leaves state untouched; its `code` goes into the rejected receipt.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContractError {
    #[error("invalid contract module: {0}")]
    InvalidModule(String),
    #[error("contract ran out of fuel ({FUEL_PER_CALL} units)")]
    OutOfFuel,
    #[error("contract trapped: {0}")]
    Trap(String),
    #[error("contract aborted: {0}")]
    Aborted(String),
    #[error("contract exceeded a host limit: {0}")]
    Limit(String),
    /// Not the contract's doing (a disk error): the block must not be executed on.
    #[error("contract storage failed: {0}")]
    Storage(String),
    /// Not the contract's doing (this machine's resources): the block must not be
    /// executed on, since another validator may not fail the same way.
    #[error("contract host failed: {0}")]
    Host(String),
}

impl ContractError {
    /// Whether every validator fails this call the same way, so that a rejected receipt
    /// may record it. `Storage` and `Host` errors are this machine's and stop the block.
    pub fn is_deterministic(&self) -> bool {
        !matches!(self, ContractError::Storage(_) | ContractError::Host(_))
    }

    /// The receipt's rejection code.
    /// The receipt's code and reason. A contract's refusal aborts with
    /// `"{code}: {reason}"` (lowercase code, as the SDK's `Refusal` writes it); that code is
    /// the receipt's, so that clients can tell a late bid from a bad one.
    pub fn receipt_parts(&self) -> (String, String) {
        if let ContractError::Aborted(message) = self
            && let Some((code, reason)) = message.split_once(": ")
            && !code.is_empty()
            && code.len() <= crate::receipt::MAX_CODE_LEN
            && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            return (code.to_owned(), reason.to_owned());
        }
        (self.code().to_owned(), self.to_string())
    }

    pub fn code(&self) -> &'static str {
        match self {
            ContractError::InvalidModule(_) => "invalid_contract",
            ContractError::OutOfFuel => "out_of_fuel",
            ContractError::Trap(_) => "contract_trap",
            ContractError::Aborted(_) => "contract_aborted",
            ContractError::Limit(_) => "contract_limit",
            ContractError::Storage(_) => "storage_error",
            ContractError::Host(_) => "host_error",
        }
    }
}

/// Contracts' committed storage as a call sees it (writes of earlier transactions in the
/// block included). Owned, since a wasmtime store cannot borrow; handed back after the
/// call, and [`ContractStorage::into_any`] lets its owner take its own type back.
pub trait ContractStorage: Send {
    /// `contract`'s value at `key`.
    fn get(&self, contract: &str, key: &[u8]) -> Result<Option<Vec<u8>>, String>;

    /// The seed of the block at `height`, if state still keeps it.
    fn seed_at(&self, height: u64) -> Result<Option<[u8; 32]>, String>;

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
}

/// What the call may know about who calls and when.
#[derive(Clone, Debug)]
pub struct CallContext {
    /// The called contract's name: its storage is the one `storage_get`/`set` address.
    pub contract: String,
    pub caller: [u8; 32],
    /// The caller's role as a number the SDK maps back (0 none, 1 hub, 2 center, …).
    pub caller_role: i32,
    pub block_height: u64,
    pub block_time_ms: u64,
    pub random_seed: [u8; 32],
    /// The calling transaction's hash, for records that name it.
    pub tx_hash: [u8; 32],
}

/// An event a contract emitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContractEvent {
    pub kind: String,
    pub data: Vec<u8>,
}

/// A successful call: its writes (None deletes), events and output.
#[derive(Debug, PartialEq, Eq)]
pub struct CallOutcome {
    pub writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pub events: Vec<ContractEvent>,
    pub output: Vec<u8>,
}

/// What a call returns: the storage view handed in, the fuel burnt (charged whether or
/// not the call succeeded) and the outcome.
pub struct Called {
    pub storage: Box<dyn ContractStorage>,
    pub fuel_used: u64,
    pub result: Result<CallOutcome, ContractError>,
}

impl std::fmt::Debug for Called {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Called")
            .field("fuel_used", &self.fuel_used)
            .field("result", &self.result)
            .finish_non_exhaustive()
    }
}

struct HostState {
    context: CallContext,
    /// The call's view of storage; [`NoCall`] between the calls of a kept instance.
    storage: Box<dyn ContractStorage>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    events: Vec<ContractEvent>,
    output: Vec<u8>,
    /// The instance's exported memory for the host functions, set once instantiated (see
    /// [`AbiExports`]).
    memory: Option<Memory>,
}

impl HostState {
    fn new(context: CallContext, storage: Box<dyn ContractStorage>) -> HostState {
        HostState {
            context,
            storage,
            writes: BTreeMap::new(),
            events: Vec::new(),
            output: Vec::new(),
            memory: None,
        }
    }

    /// Makes a kept instance's state the next call's.
    fn lend(&mut self, context: CallContext, storage: Box<dyn ContractStorage>) {
        self.context = context;
        self.storage = storage;
    }

    /// The storage view handed in and what the call wrote, emitted and returned; leaves
    /// no writes, events or output for a next call (the context stays until it is
    /// replaced).
    fn give_back(&mut self) -> (Box<dyn ContractStorage>, CallOutcome) {
        let storage = std::mem::replace(&mut self.storage, Box::new(NoCall));
        let outcome = CallOutcome {
            writes: std::mem::take(&mut self.writes),
            events: std::mem::take(&mut self.events),
            output: std::mem::take(&mut self.output),
        };
        (storage, outcome)
    }
}

/// The storage of a kept instance between calls: no code runs there, so nothing reads it.
struct NoCall;

impl ContractStorage for NoCall {
    fn get(&self, _contract: &str, _key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Err("no call in progress".into())
    }

    fn seed_at(&self, _height: u64) -> Result<Option<[u8; 32]>, String> {
        Err("no call in progress".into())
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// A host-side stop, carried through wasmtime's error to the caller.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HostStop(ContractError);

type HostResult<T> = Result<T, wasmtime::Error>;

fn stop<T>(error: ContractError) -> HostResult<T> {
    Err(wasmtime::Error::new(HostStop(error)))
}

/// A compiled contract, ready to instantiate.
pub struct ContractModule {
    pre: InstancePre<HostState>,
    exports: AbiExports,
}

/// The exports the host uses, resolved once at compile time. Looked up by name, they were
/// hashed at every call, and the memory again at every host function: an eighth of a bid
/// call's time.
struct AbiExports {
    memory: ModuleExport,
    alloc: ModuleExport,
    call: ModuleExport,
}

impl AbiExports {
    fn resolve(module: &Module) -> Result<AbiExports, ContractError> {
        let export = |name: &str| {
            module.get_export_index(name).ok_or_else(|| {
                ContractError::InvalidModule(format!("module does not export `{name}`"))
            })
        };
        Ok(AbiExports {
            memory: export("memory")?,
            alloc: export("alloc")?,
            call: export("call")?,
        })
    }
}

impl std::fmt::Debug for ContractModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContractModule")
    }
}

pub struct ContractEngine {
    engine: Engine,
    linker: Linker<HostState>,
}

impl std::fmt::Debug for ContractEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContractEngine")
    }
}

/// Threads and the component model need features that are not built in: shared memory
/// and components cannot exist here.
fn deterministic_config() -> Result<Config, ContractError> {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(MAX_INSTANCES)
        .total_memories(MAX_INSTANCES)
        .total_tables(MAX_INSTANCES)
        .max_memories_per_module(1)
        .max_tables_per_module(1)
        .max_memory_size(MAX_MEMORY_BYTES)
        .table_elements(MAX_TABLE_ELEMENTS)
        // By default a slot's memory is given back with madvise when its instance is
        // dropped and faulted in again by the next: a TLB shootdown and page faults per
        // instance, a fifth of a node's CPU under load when every call had its own.
        // Instead the pages the instance wrote (found with PAGEMAP_SCAN, Linux 6.7+) are
        // reset in place.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES);
    let mut config = Config::new();
    // An explicit target turns off inferring CPU features from this machine, so every
    // validator's code (and with it stack use, hence where deep recursion traps) is the
    // same for one build of the node.
    // (Validators run Linux; elsewhere, for development, features are inferred.)
    if cfg!(target_os = "linux") {
        let target = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
        config
            .target(&target)
            .map_err(|e| ContractError::Host(format!("target {target}: {e}")))?;
    }
    config
        .consume_fuel(true)
        .cranelift_nan_canonicalization(true)
        .wasm_simd(false)
        .wasm_relaxed_simd(false)
        .wasm_gc(false)
        .wasm_memory64(false)
        .wasm_multi_memory(false)
        .max_wasm_stack(MAX_WASM_STACK_BYTES)
        // A trap's text goes into receipts: no backtraces, whose detail depends on the
        // build and the environment.
        .wasm_backtrace_max_frames(None)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(config)
}

impl ContractEngine {
    pub fn new() -> Result<ContractEngine, ContractError> {
        let host = |e: wasmtime::Error| ContractError::Host(e.to_string());
        let engine = Engine::new(&deterministic_config()?).map_err(host)?;
        let mut linker = Linker::new(&engine);
        link_host(&mut linker).map_err(host)?;
        Ok(ContractEngine { engine, linker })
    }

    /// Validates and compiles a wasm binary and resolves its imports against the host ABI.
    pub fn compile(&self, code: &[u8]) -> Result<ContractModule, ContractError> {
        let invalid = |e: wasmtime::Error| ContractError::InvalidModule(format!("{e:#}"));
        if code.len() > MAX_CODE_BYTES {
            return Err(ContractError::InvalidModule(format!(
                "{} bytes is over the {MAX_CODE_BYTES}-byte limit",
                code.len()
            )));
        }
        let module = Module::from_binary(&self.engine, code).map_err(invalid)?;
        let exports = AbiExports::resolve(&module)?;
        let pre = self.linker.instantiate_pre(&module).map_err(invalid)?;
        Ok(ContractModule { pre, exports })
    }

    /// The calls of one block (see [`CallSession`]).
    pub fn session(&self) -> CallSession<'_> {
        CallSession {
            engine: self,
            kept: BTreeMap::new(),
        }
    }

    /// Calls `module` with `input` in a fresh instance: a session of one call.
    pub fn call(
        &self,
        module: &ContractModule,
        context: CallContext,
        storage: Box<dyn ContractStorage>,
        input: &[u8],
    ) -> Called {
        self.session().call(module, context, storage, input)
    }
}

/// The calls of one block. A call runs in the instance its contract's previous call in the
/// session left, if any, rather than in a new one: instantiating and having the pool reset
/// the memory afterwards (a system call) were a sixth of a validator's consensus thread at
/// capacity.
///
/// A call must see nothing of an earlier one, so an instance is kept only if its call
/// left nothing behind that the next call could observe:
/// - the call succeeded (a trap, an abort or running out of fuel stop the contract with
///   its stack pointer and allocator wherever they were);
/// - its memory did not grow (the allocator's branches, and so the fuel a call burns,
///   follow the memory's size);
/// - instantiating it ran no code (a start function's fuel would be the first call's only).
///
/// The contract's allocator starts over at every call (in `alloc`, see the SDK), and the
/// contracts keep nothing else in statics, so what remains is bytes in memory that no
/// allocation reads before writing. Were a contract to break that rule, consensus would
/// still hold: every validator executes a block in a new session, calling in the block's
/// order. A session keeps at most [`MAX_KEPT_PER_SESSION`] instances.
pub struct CallSession<'m> {
    engine: &'m ContractEngine,
    /// By the module's address: the session borrows each module it calls for all of its
    /// life, so no other module can take that address meanwhile.
    kept: BTreeMap<usize, Kept>,
}

impl std::fmt::Debug for CallSession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallSession")
            .field("kept", &self.kept.len())
            .finish_non_exhaustive()
    }
}

/// An instance between two calls of a session.
struct Kept {
    store: Store<HostState>,
    live: Live,
}

/// An instance's ABI exports.
struct Live {
    alloc: TypedFunc<i32, i32>,
    call: TypedFunc<(i32, i32), ()>,
    memory: Memory,
    /// Its memory's size once instantiated: a call that grew it ends the instance.
    initial_bytes: usize,
    /// Whether instantiating it ran code (a start function): such an instance serves
    /// one call.
    ran_on_start: bool,
}

impl<'m> CallSession<'m> {
    /// Instances kept for a next call.
    pub fn kept(&self) -> usize {
        self.kept.len()
    }

    /// Calls `module` with `input`. On success the writes are returned for the caller to
    /// apply; on any error nothing was written. `storage` comes back either way.
    pub fn call(
        &mut self,
        module: &'m ContractModule,
        context: CallContext,
        storage: Box<dyn ContractStorage>,
        input: &[u8],
    ) -> Called {
        if input.len() > MAX_INPUT_BYTES {
            // Refused before any code runs, with a whole call's fuel.
            let error = format!("input of {} bytes is over {MAX_INPUT_BYTES}", input.len());
            return Called {
                storage,
                fuel_used: FUEL_PER_CALL,
                result: Err(ContractError::Limit(error)),
            };
        }
        let key = std::ptr::from_ref(module).addr();
        let (mut store, live) = match self.kept.remove(&key) {
            Some(Kept { mut store, live }) => {
                store.data_mut().lend(context, storage);
                (store, Some(live))
            }
            None => {
                let state = HostState::new(context, storage);
                (Store::new(&self.engine.engine, state), None)
            }
        };
        let (result, keep) = run(&mut store, module, live, input);
        let fuel_left = store.get_fuel().unwrap_or(0);
        let (storage, outcome) = store.data_mut().give_back();
        if let Some(live) = keep
            && self.kept.len() < MAX_KEPT_PER_SESSION
        {
            self.kept.insert(key, Kept { store, live });
        }
        Called {
            storage,
            fuel_used: FUEL_PER_CALL.saturating_sub(fuel_left),
            result: result.map(|()| outcome),
        }
    }
}

/// The contracts a chain runs, by name: genesis pins each name to a code hash, and the
/// node compiles the matching code once at start.
pub struct Contracts {
    engine: ContractEngine,
    installed: BTreeMap<String, (Hash, ContractModule)>,
}

impl std::fmt::Debug for Contracts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.installed.iter().map(|(name, (hash, _))| (name, hash)))
            .finish()
    }
}

impl Contracts {
    /// No contracts yet; calls are refused as unknown.
    pub fn new() -> Result<Contracts, ContractError> {
        Ok(Contracts {
            engine: ContractEngine::new()?,
            installed: BTreeMap::new(),
        })
    }

    /// Compiles `code` as contract `name`; returns its code hash.
    pub fn install(&mut self, name: &str, code: &[u8]) -> Result<Hash, ContractError> {
        let module = self.engine.compile(code)?;
        let hash = Hash::digest(code);
        self.installed.insert(name.to_owned(), (hash, module));
        Ok(hash)
    }

    pub fn module(&self, name: &str) -> Option<&ContractModule> {
        self.installed.get(name).map(|(_, module)| module)
    }

    pub fn code_hash(&self, name: &str) -> Option<Hash> {
        self.installed.get(name).map(|(hash, _)| *hash)
    }

    pub fn engine(&self) -> &ContractEngine {
        &self.engine
    }
}

/// Runs one call in `live`, or in a new instance if none; returns the instance if the
/// next call may use it (see [`CallSession`]).
fn run(
    store: &mut Store<HostState>,
    module: &ContractModule,
    live: Option<Live>,
    input: &[u8],
) -> (Result<(), ContractError>, Option<Live>) {
    if let Err(e) = store.set_fuel(FUEL_PER_CALL) {
        return (Err(ContractError::Host(e.to_string())), None);
    }
    let live = match live {
        Some(live) => live,
        None => match instantiate(store, module) {
            Ok(live) => live,
            Err(error) => return (Err(error), None),
        },
    };
    let result = call_with_input(store, &live, input);
    let unchanged = live.memory.data_size(&*store) == live.initial_bytes;
    let keep = result.is_ok() && unchanged && !live.ran_on_start;
    (result, keep.then_some(live))
}

fn instantiate(
    store: &mut Store<HostState>,
    module: &ContractModule,
) -> Result<Live, ContractError> {
    let instance = module.pre.instantiate(&mut *store).map_err(classify)?;
    let exports = &module.exports;
    let func = |store: &mut Store<HostState>, export, name| {
        instance
            .get_module_export(&mut *store, export)
            .and_then(Extern::into_func)
            .ok_or_else(|| ContractError::InvalidModule(format!("`{name}` is not a function")))
    };
    let typed =
        |name| move |e: wasmtime::Error| ContractError::InvalidModule(format!("{name}: {e}"));
    let alloc = func(store, &exports.alloc, "alloc")?
        .typed::<i32, i32>(&*store)
        .map_err(typed("alloc"))?;
    let call = func(store, &exports.call, "call")?
        .typed::<(i32, i32), ()>(&*store)
        .map_err(typed("call"))?;
    let memory = instance
        .get_module_export(&mut *store, &exports.memory)
        .and_then(Extern::into_memory)
        .ok_or_else(|| ContractError::InvalidModule("`memory` is not a memory".into()))?;
    store.data_mut().memory = Some(memory);
    let fuel_left = store
        .get_fuel()
        .map_err(|e| ContractError::Host(e.to_string()))?;
    Ok(Live {
        alloc,
        call,
        memory,
        initial_bytes: memory.data_size(&*store),
        ran_on_start: fuel_left != FUEL_PER_CALL,
    })
}

/// Writes `input` where the contract's `alloc` says and calls it. `alloc` comes first in
/// every call, input or not: that is where the contract's allocator starts over.
fn call_with_input(
    store: &mut Store<HostState>,
    live: &Live,
    input: &[u8],
) -> Result<(), ContractError> {
    let len = i32::try_from(input.len()).map_err(|_| ContractError::Limit("input".into()))?;
    let ptr = live.alloc.call(&mut *store, len).map_err(classify)?;
    let offset = usize::try_from(ptr)
        .map_err(|_| ContractError::Trap("alloc returned a negative pointer".into()))?;
    live.memory
        .write(&mut *store, offset, input)
        .map_err(|_| ContractError::Trap("alloc returned memory out of bounds".into()))?;
    live.call.call(&mut *store, (ptr, len)).map_err(classify)
}

/// Turns wasmtime's error into the reason the receipt names. Only traps and the host's
/// own stops are the contract's doing; anything else (an exhausted instance pool, memory
/// this machine could not map) is this machine's and must not become a receipt.
fn classify(error: wasmtime::Error) -> ContractError {
    if let Some(HostStop(reason)) = error.downcast_ref::<HostStop>() {
        return reason.clone();
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => ContractError::OutOfFuel,
        // The variant's name, not wasmtime's message: receipts are hashed into blocks, and a
        // message may change between wasmtime releases.
        Some(trap) => ContractError::Trap(format!("{trap:?}")),
        None => ContractError::Host(format!("{error:#}")),
    }
}

// ---- host functions ----

/// Charges fuel for a host call moving `bytes`; out of fuel stops the call.
fn charge(caller: &mut Caller<'_, HostState>, bytes: usize) -> HostResult<()> {
    charge_fuel(
        caller,
        HOST_CALL_FUEL.saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX)),
    )
}

fn charge_fuel(caller: &mut Caller<'_, HostState>, cost: u64) -> HostResult<()> {
    let left = caller.get_fuel()?;
    if left < cost {
        caller.set_fuel(0)?;
        return stop(ContractError::OutOfFuel);
    }
    caller.set_fuel(left - cost)
}

fn memory(caller: &mut Caller<'_, HostState>) -> HostResult<Memory> {
    // Set once instantiated; a start function runs before that.
    let instantiated = caller.data().memory;
    match instantiated.or_else(|| caller.get_export("memory").and_then(Extern::into_memory)) {
        Some(memory) => Ok(memory),
        None => stop(ContractError::InvalidModule("no exported memory".into())),
    }
}

/// Copies `len` bytes at `ptr` out of the contract's memory, refusing more than `max`.
fn read_bytes(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
    max: usize,
    what: &str,
) -> HostResult<Vec<u8>> {
    let (Ok(offset), Ok(len)) = (usize::try_from(ptr), usize::try_from(len)) else {
        return stop(ContractError::Trap(format!(
            "{what}: negative pointer or length"
        )));
    };
    if len > max {
        return stop(ContractError::Limit(format!(
            "{what} of {len} bytes is over {max}"
        )));
    }
    charge(caller, len)?;
    let memory = memory(caller)?;
    let mut bytes = vec![0; len];
    if memory.read(&*caller, offset, &mut bytes).is_err() {
        return stop(ContractError::Trap(format!("{what}: out of bounds")));
    }
    Ok(bytes)
}

fn write_bytes(caller: &mut Caller<'_, HostState>, ptr: i32, bytes: &[u8]) -> HostResult<()> {
    let Ok(offset) = usize::try_from(ptr) else {
        return stop(ContractError::Trap("negative output pointer".into()));
    };
    charge(caller, bytes.len())?;
    let memory = memory(caller)?;
    if memory.write(&mut *caller, offset, bytes).is_err() {
        return stop(ContractError::Trap("output out of bounds".into()));
    }
    Ok(())
}

fn storage_get(
    mut caller: Caller<'_, HostState>,
    key: i32,
    key_len: i32,
    out: i32,
    out_cap: i32,
) -> HostResult<i32> {
    let key = read_bytes(&mut caller, key, key_len, MAX_KEY_BYTES, "storage key")?;
    let contract = caller.data().context.contract.clone();
    read_storage(caller, &contract, key, out, out_cap)
}

fn storage_get_from(
    mut caller: Caller<'_, HostState>,
    contract: i32,
    contract_len: i32,
    key: i32,
    key_len: i32,
    out: i32,
    out_cap: i32,
) -> HostResult<i32> {
    let name = read_bytes(
        &mut caller,
        contract,
        contract_len,
        MAX_CONTRACT_NAME_BYTES,
        "contract name",
    )?;
    let Ok(name) = String::from_utf8(name) else {
        return stop(ContractError::Trap("contract name is not UTF-8".into()));
    };
    let key = read_bytes(&mut caller, key, key_len, MAX_KEY_BYTES, "storage key")?;
    read_storage(caller, &name, key, out, out_cap)
}

/// Reads `contract`'s value at `key` (this call's own writes first) into `out`.
fn read_storage(
    mut caller: Caller<'_, HostState>,
    contract: &str,
    key: Vec<u8>,
    out: i32,
    out_cap: i32,
) -> HostResult<i32> {
    charge_fuel(&mut caller, STORAGE_READ_FUEL)?;
    let state = caller.data();
    let own = state
        .writes
        .get(&key)
        .filter(|_| contract == state.context.contract);
    let value = match own {
        Some(value) => value.clone(),
        None => match state.storage.get(contract, &key) {
            Ok(value) => value,
            Err(err) => return stop(ContractError::Storage(err)),
        },
    };
    let Some(value) = value else {
        return Ok(-1);
    };
    // The value's length is paid for whether or not it fits the buffer.
    charge_fuel(&mut caller, u64::try_from(value.len()).unwrap_or(u64::MAX))?;
    let len = i32::try_from(value.len()).unwrap_or(i32::MAX);
    if len <= out_cap {
        write_bytes(&mut caller, out, &value)?;
    }
    Ok(len)
}

fn put(caller: &mut Caller<'_, HostState>, key: Vec<u8>, value: Option<Vec<u8>>) -> HostResult<()> {
    let writes = &mut caller.data_mut().writes;
    if writes.len() >= MAX_WRITES_PER_CALL && !writes.contains_key(&key) {
        return stop(ContractError::Limit(format!(
            "more than {MAX_WRITES_PER_CALL} storage writes"
        )));
    }
    writes.insert(key, value);
    Ok(())
}

fn storage_set(
    mut caller: Caller<'_, HostState>,
    key: i32,
    key_len: i32,
    value: i32,
    value_len: i32,
) -> HostResult<()> {
    let key = read_bytes(&mut caller, key, key_len, MAX_KEY_BYTES, "storage key")?;
    let value = read_bytes(
        &mut caller,
        value,
        value_len,
        MAX_VALUE_BYTES,
        "storage value",
    )?;
    put(&mut caller, key, Some(value))
}

fn storage_delete(mut caller: Caller<'_, HostState>, key: i32, key_len: i32) -> HostResult<()> {
    let key = read_bytes(&mut caller, key, key_len, MAX_KEY_BYTES, "storage key")?;
    put(&mut caller, key, None)
}

fn emit_event(
    mut caller: Caller<'_, HostState>,
    kind: i32,
    kind_len: i32,
    data: i32,
    data_len: i32,
) -> HostResult<()> {
    let kind = read_bytes(
        &mut caller,
        kind,
        kind_len,
        MAX_EVENT_KIND_BYTES,
        "event kind",
    )?;
    let data = read_bytes(
        &mut caller,
        data,
        data_len,
        MAX_EVENT_DATA_BYTES,
        "event data",
    )?;
    let Ok(kind) = String::from_utf8(kind) else {
        return stop(ContractError::Trap("event kind is not UTF-8".into()));
    };
    let events = &mut caller.data_mut().events;
    if events.len() >= MAX_EVENTS_PER_CALL {
        return stop(ContractError::Limit(format!(
            "more than {MAX_EVENTS_PER_CALL} events"
        )));
    }
    events.push(ContractEvent { kind, data });
    Ok(())
}

fn abort(mut caller: Caller<'_, HostState>, msg: i32, msg_len: i32) -> HostResult<()> {
    let len = msg_len.clamp(
        0,
        i32::try_from(MAX_ABORT_MESSAGE_BYTES).unwrap_or(i32::MAX),
    );
    let message = read_bytes(
        &mut caller,
        msg,
        len,
        MAX_ABORT_MESSAGE_BYTES,
        "abort message",
    )?;
    stop(ContractError::Aborted(
        String::from_utf8_lossy(&message).into_owned(),
    ))
}

/// A host function `name(out)` that writes a 32-byte field of the call's context to `out`.
fn link_context_bytes(
    linker: &mut Linker<HostState>,
    name: &str,
    field: fn(&CallContext) -> [u8; 32],
) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        name,
        move |mut caller: Caller<'_, HostState>, out: i32| {
            let bytes = field(&caller.data().context);
            write_bytes(&mut caller, out, &bytes)
        },
    )?;
    Ok(())
}

/// A host function `name() -> i64` that returns a number of the call's context.
fn link_context_u64(
    linker: &mut Linker<HostState>,
    name: &str,
    field: fn(&CallContext) -> u64,
) -> wasmtime::Result<()> {
    linker.func_wrap("env", name, move |mut caller: Caller<'_, HostState>| {
        charge(&mut caller, 0)?;
        Ok(i64::try_from(field(&caller.data().context)).unwrap_or(i64::MAX))
    })?;
    Ok(())
}

fn link_host(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "storage_get", storage_get)?;
    linker.func_wrap("env", "storage_get_from", storage_get_from)?;
    linker.func_wrap("env", "storage_set", storage_set)?;
    linker.func_wrap("env", "storage_delete", storage_delete)?;
    linker.func_wrap("env", "emit_event", emit_event)?;
    linker.func_wrap("env", "abort", abort)?;
    link_context_bytes(linker, "caller", |c| c.caller)?;
    link_context_bytes(linker, "tx_hash", |c| c.tx_hash)?;
    link_context_bytes(linker, "random_seed", |c| c.random_seed)?;
    linker.func_wrap("env", "caller_role", |mut caller: Caller<'_, HostState>| {
        charge(&mut caller, 0)?;
        Ok(caller.data().context.caller_role)
    })?;
    link_context_u64(linker, "block_height", |c| c.block_height)?;
    link_context_u64(linker, "block_time_ms", |c| c.block_time_ms)?;
    linker.func_wrap(
        "env",
        "seed_at",
        |mut caller: Caller<'_, HostState>, height: i64, out: i32| {
            charge_fuel(&mut caller, STORAGE_READ_FUEL)?;
            let Ok(height) = u64::try_from(height) else {
                return Ok(-1);
            };
            match caller.data().storage.seed_at(height) {
                Ok(Some(seed)) => write_bytes(&mut caller, out, &seed).map(|()| 0),
                Ok(None) => Ok(-1),
                Err(err) => stop(ContractError::Storage(err)),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "sha256",
        |mut caller: Caller<'_, HostState>, data: i32, len: i32, out: i32| {
            let bytes = read_bytes(&mut caller, data, len, MAX_VALUE_BYTES, "sha256 input")?;
            let per_byte = SHA256_FUEL_PER_BYTE.saturating_mul(bytes.len() as u64);
            charge_fuel(&mut caller, per_byte)?;
            let digest: [u8; 32] = Sha256::digest(&bytes).into();
            write_bytes(&mut caller, out, &digest)
        },
    )?;
    linker.func_wrap(
        "env",
        "set_output",
        |mut caller: Caller<'_, HostState>, data: i32, len: i32| {
            let bytes = read_bytes(&mut caller, data, len, MAX_OUTPUT_BYTES, "output")?;
            caller.data_mut().output = bytes;
            Ok(())
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Committed storage for tests: a fixed map.
    struct MapStorage(BTreeMap<Vec<u8>, Vec<u8>>);

    impl ContractStorage for MapStorage {
        fn get(&self, _contract: &str, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
            Ok(self.0.get(key).cloned())
        }

        fn seed_at(&self, _height: u64) -> Result<Option<[u8; 32]>, String> {
            Ok(None)
        }

        fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
            self
        }
    }

    fn context() -> CallContext {
        CallContext {
            contract: "test".into(),
            caller: [7; 32],
            caller_role: 2,
            block_height: 42,
            block_time_ms: 1_700_000_000_000,
            random_seed: [9; 32],
            tx_hash: [3; 32],
        }
    }

    /// A module with the ABI's exports around `body` (the `call` function's body).
    fn module(extra: &str, body: &str) -> String {
        format!(
            r#"(module
              (import "env" "storage_get" (func $get (param i32 i32 i32 i32) (result i32)))
              (import "env" "storage_set" (func $set (param i32 i32 i32 i32)))
              (import "env" "emit_event" (func $emit (param i32 i32 i32 i32)))
              (import "env" "abort" (func $abort (param i32 i32)))
              (import "env" "block_height" (func $height (result i64)))
              (import "env" "set_output" (func $out (param i32 i32)))
              (memory (export "memory") 1)
              (data (i32.const 0) "key")
              (data (i32.const 16) "bid")
              (data (i32.const 32) "deadline passed")
              {extra}
              (func (export "alloc") (param i32) (result i32) (i32.const 1024))
              (func (export "call") (param $ptr i32) (param $len i32) {body}))"#
        )
    }

    fn storage() -> Box<MapStorage> {
        Box::new(MapStorage(BTreeMap::from([(
            b"key".to_vec(),
            b"old".to_vec(),
        )])))
    }

    fn called(wat: &str, input: &[u8]) -> Result<Called, ContractError> {
        let engine = ContractEngine::new().unwrap();
        let module = engine.compile(&wat::parse_str(wat).unwrap())?;
        Ok(engine.call(&module, context(), storage(), input))
    }

    fn call(wat: &str, input: &[u8]) -> Result<CallOutcome, ContractError> {
        called(wat, input)?.result
    }

    #[test]
    fn a_call_writes_storage_emits_events_and_sees_its_input() {
        // Stores the input under "key", echoes the stored length, emits "bid".
        let body = r#"
            (drop (call $get (i32.const 0) (i32.const 3) (i32.const 2048) (i32.const 64)))
            (call $out (i32.const 2048) (i32.const 3))
            (call $set (i32.const 0) (i32.const 3) (local.get $ptr) (local.get $len))
            (call $emit (i32.const 16) (i32.const 3) (local.get $ptr) (local.get $len))"#;
        let outcome = call(&module("", body), b"sealed").unwrap();
        assert_eq!(outcome.output, b"old");
        assert_eq!(
            outcome.writes.get(b"key".as_slice()),
            Some(&Some(b"sealed".to_vec()))
        );
        assert_eq!(outcome.events[0].kind, "bid");
        assert_eq!(outcome.events[0].data, b"sealed");
    }

    #[test]
    fn an_endless_loop_runs_out_of_fuel() {
        let body = r#"(loop $l (br $l))"#;
        let called = called(&module("", body), b"").unwrap();
        assert_eq!(called.result, Err(ContractError::OutOfFuel));
        assert_eq!(called.fuel_used, FUEL_PER_CALL, "a failed call still pays");
        assert!(ContractError::OutOfFuel.is_deterministic());
    }

    #[test]
    fn grabbing_memory_stops_at_the_limit() {
        // Grows by 64 KiB pages until refused; then traps, as an allocator would.
        let body = r#"
            (loop $grow
              (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
            (unreachable)"#;
        let err = call(&module("", body), b"").unwrap_err();
        assert!(matches!(err, ContractError::Trap(_)), "{err:?}");
        let pages = r#"(memory.size) (i32.const 256) (i32.gt_u) (if (then (unreachable)))"#;
        let body = format!(
            "(loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) {pages}"
        );
        call(&module("", &body), b"").unwrap();
    }

    #[test]
    fn a_trap_and_an_abort_name_their_reason_and_write_nothing() {
        let body = r#"
            (call $set (i32.const 0) (i32.const 3) (i32.const 16) (i32.const 3))
            (unreachable)"#;
        assert!(matches!(
            call(&module("", body), b""),
            Err(ContractError::Trap(_))
        ));
        let body = r#"
            (call $set (i32.const 0) (i32.const 3) (i32.const 16) (i32.const 3))
            (call $abort (i32.const 32) (i32.const 15))"#;
        let err = call(&module("", body), b"").unwrap_err();
        assert_eq!(err, ContractError::Aborted("deadline passed".into()));
    }

    #[test]
    fn host_limits_and_bad_pointers_are_refused() {
        let body = r#"(call $set (i32.const 0) (i32.const 100000) (i32.const 16) (i32.const 3))"#;
        assert!(matches!(
            call(&module("", body), b""),
            Err(ContractError::Limit(_))
        ));
        let body = r#"(call $set (i32.const 65530) (i32.const 100) (i32.const 16) (i32.const 3))"#;
        assert!(matches!(
            call(&module("", body), b""),
            Err(ContractError::Trap(_))
        ));
    }

    #[test]
    fn modules_missing_the_abi_or_importing_unknown_functions_are_refused() {
        let engine = ContractEngine::new().unwrap();
        let compile = |wat: &str| engine.compile(&wat::parse_str(wat).unwrap());
        assert!(matches!(
            compile("(module)"),
            Err(ContractError::InvalidModule(_))
        ));
        let wasi = r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "alloc") (param i32) (result i32) (i32.const 0))
            (func (export "call") (param i32 i32)))"#;
        assert!(matches!(
            compile(wasi),
            Err(ContractError::InvalidModule(_))
        ));
        assert!(matches!(
            engine.compile(b"\0asm garbage"),
            Err(ContractError::InvalidModule(_))
        ));
    }

    #[test]
    fn a_start_function_reaches_memory_before_the_call() {
        // The host keeps the memory once instantiated; the start function runs earlier.
        let start = "(func $init (call $out (i32.const 16) (i32.const 3))) (start $init)";
        let outcome = call(&module(start, ""), b"x").unwrap();
        assert_eq!(outcome.output, b"bid");
    }

    #[test]
    fn an_abi_export_of_the_wrong_kind_fails_the_call() {
        let wat = r#"(module
            (memory (export "memory") 1)
            (global (export "alloc") i32 (i32.const 0))
            (func (export "call") (param i32 i32)))"#;
        let Err(ContractError::InvalidModule(reason)) = call(wat, b"x") else {
            panic!("a global named alloc was called");
        };
        assert!(reason.contains("alloc"), "{reason}");
    }

    #[test]
    fn the_same_call_burns_the_same_fuel() {
        let body = r#"(drop (call $height)) (call $out (local.get $ptr) (local.get $len))"#;
        let wat = module("", body);
        let a = called(&wat, b"input").unwrap();
        let b = called(&wat, b"input").unwrap();
        assert_eq!(a.result, b.result);
        assert_eq!(a.fuel_used, b.fuel_used);
        assert_eq!(a.result.unwrap().output, b"input");
    }

    /// The outputs (first byte) and fuel of `inputs` called in one session of `wat`.
    fn in_one_session(wat: &str, inputs: &[&[u8]]) -> Vec<(Option<u8>, u64)> {
        let engine = ContractEngine::new().unwrap();
        let module = engine.compile(&wat::parse_str(wat).unwrap()).unwrap();
        let mut session = engine.session();
        inputs
            .iter()
            .map(|input| {
                let called = session.call(&module, context(), storage(), input);
                let output = called.result.ok().map(|outcome| outcome.output[0]);
                (output, called.fuel_used)
            })
            .collect()
    }

    /// Counts its calls in a global (which contracts must not do: it shows which calls
    /// shared an instance); input `a` aborts, `g` grows memory by a page.
    const COUNTER: &str = r#"
        (global.set $n (i32.add (global.get $n) (i32.const 1)))
        (i32.store8 (i32.const 2048) (global.get $n))
        (if (i32.eq (i32.load8_u (local.get $ptr)) (i32.const 97))
          (then (call $abort (i32.const 32) (i32.const 15))))
        (if (i32.eq (i32.load8_u (local.get $ptr)) (i32.const 103))
          (then (drop (memory.grow (i32.const 1)))))
        (call $out (i32.const 2048) (i32.const 1))"#;

    #[test]
    fn a_session_keeps_an_instance_only_while_its_calls_leave_nothing_behind() {
        let wat = module("(global $n (mut i32) (i32.const 0))", COUNTER);
        let inputs: [&[u8]; 7] = [b"x", b"x", b"a", b"x", b"g", b"x", b"x"];
        let seen = in_one_session(&wat, &inputs);
        let outputs: Vec<_> = seen.iter().map(|(output, _)| *output).collect();
        // Kept after a success; a new instance after the abort and after the growth.
        let expected = [Some(1), Some(2), None, Some(1), Some(2), Some(1), Some(2)];
        assert_eq!(outputs, expected);
        // (That a kept instance burns the fuel a new one does is the real contracts'
        // test, in tests/tests/trading.rs: this body's fuel does not depend on the count.)
        assert_eq!(called(&wat, b"x").unwrap().result.unwrap().output, [1]);
    }

    #[test]
    fn an_instance_whose_start_function_ran_serves_one_call() {
        let start = "(global $n (mut i32) (i32.const 0))
            (func $init (global.set $n (i32.add (global.get $n) (i32.const 1)))) (start $init)";
        let seen = in_one_session(&module(start, COUNTER), &[b"x", b"x"]);
        assert_eq!(
            seen[0], seen[1],
            "the second call had an instance of its own"
        );
        assert_eq!(seen[0].0, Some(2));
    }

    #[test]
    fn a_session_keeps_a_bounded_number_of_instances() {
        let engine = ContractEngine::new().unwrap();
        let wat = module("(global $n (mut i32) (i32.const 0))", COUNTER);
        let modules: Vec<_> = (0..=MAX_KEPT_PER_SESSION)
            .map(|_| engine.compile(&wat::parse_str(&wat).unwrap()).unwrap())
            .collect();
        let mut session = engine.session();
        let mut count = |module| {
            let called = session.call(module, context(), storage(), b"x");
            called.result.unwrap().output[0]
        };
        let firsts: Vec<u8> = modules.iter().map(&mut count).collect();
        assert!(firsts.iter().all(|n| *n == 1));
        // The first ones were kept; the one past the bound was not.
        assert_eq!(count(&modules[0]), 2);
        assert_eq!(count(&modules[MAX_KEPT_PER_SESSION]), 1);
        assert_eq!(session.kept(), MAX_KEPT_PER_SESSION);
    }
}
