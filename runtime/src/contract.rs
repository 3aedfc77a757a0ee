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
//! imports are resolved; a call then costs a store, a pooled instance and the call itself.
//!
//! Contract ABI (imports from module `env`, all lengths and pointers `i32`):
//!
//! | import | meaning |
//! |---|---|
//! | `storage_get(key, key_len, out, out_cap) -> i32` | value length, or -1 if absent; copies only if it fits |
//! | `storage_set(key, key_len, value, value_len)` | |
//! | `storage_delete(key, key_len)` | |
//! | `caller(out)` | the caller's 32-byte public key |
//! | `caller_role() -> i32` | see [`CallContext::caller_role`] |
//! | `block_height() -> i64`, `block_time_ms() -> i64` | |
//! | `random_seed(out)` | the chain's 32-byte seed for this block |
//! | `sha256(data, len, out)` | |
//! | `emit_event(kind, kind_len, data, data_len)` | |
//! | `set_output(data, len)` | the call's result bytes |
//! | `abort(msg, msg_len)` | stop; the message is the rejection reason |
//!
//! and exports `memory`, `alloc(len) -> ptr` (where the host writes the input) and
//! `call(ptr, len)`.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use wasmtime::{
    Caller, Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Memory, Module,
    PoolingAllocationConfig, Store, Trap,
};

/// Fuel one call may burn (about one unit per wasm instruction).
pub const FUEL_PER_CALL: u64 = 50_000_000;
/// Fuel a host function costs, plus one unit per byte it moves.
const HOST_CALL_FUEL: u64 = 1_000;
/// A contract's linear memory may grow to this size.
pub const MAX_MEMORY_BYTES: usize = 16 * 1024 * 1024;
pub const MAX_TABLE_ELEMENTS: usize = 10_000;
/// Contract instances alive at once in one engine (calls are sequential in a block).
pub const MAX_INSTANCES: u32 = 32;
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
pub const MAX_EVENTS_PER_CALL: usize = 64;
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
    #[error("contract storage failed: {0}")]
    Storage(String),
    #[error("contract host failed: {0}")]
    Host(String),
}

impl ContractError {
    /// The receipt's rejection code.
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

/// A contract's view of its own committed storage. Owned (a store outlives borrows), and
/// handed back after the call.
pub trait ContractStorage: Send {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String>;
}

/// What the call may know about who calls and when.
#[derive(Clone, Debug)]
pub struct CallContext {
    pub caller: [u8; 32],
    /// The caller's role as a number the SDK maps back (0 none, 1 hub, 2 center, …).
    pub caller_role: i32,
    pub block_height: u64,
    pub block_time_ms: u64,
    pub random_seed: [u8; 32],
}

/// An event a contract emitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContractEvent {
    pub kind: String,
    pub data: Vec<u8>,
}

/// A successful call: its writes (None deletes), events, output and fuel used.
#[derive(Debug, PartialEq, Eq)]
pub struct CallOutcome {
    pub writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pub events: Vec<ContractEvent>,
    pub output: Vec<u8>,
    pub fuel_used: u64,
}

struct HostState {
    context: CallContext,
    storage: Box<dyn ContractStorage>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    events: Vec<ContractEvent>,
    output: Vec<u8>,
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
fn deterministic_config() -> Config {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(MAX_INSTANCES)
        .total_memories(MAX_INSTANCES)
        .total_tables(MAX_INSTANCES)
        .max_memories_per_module(1)
        .max_tables_per_module(1)
        .max_memory_size(MAX_MEMORY_BYTES)
        .table_elements(MAX_TABLE_ELEMENTS);
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .cranelift_nan_canonicalization(true)
        .wasm_simd(false)
        .wasm_relaxed_simd(false)
        .wasm_gc(false)
        .wasm_memory64(false)
        .wasm_multi_memory(false)
        .max_wasm_stack(MAX_WASM_STACK_BYTES)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

impl ContractEngine {
    pub fn new() -> Result<ContractEngine, ContractError> {
        let host = |e: wasmtime::Error| ContractError::Host(e.to_string());
        let engine = Engine::new(&deterministic_config()).map_err(host)?;
        let mut linker = Linker::new(&engine);
        link_host(&mut linker).map_err(host)?;
        Ok(ContractEngine { engine, linker })
    }

    /// Validates and compiles `code` (wasm binary or, for tests, WAT text) and resolves
    /// its imports against the host ABI.
    pub fn compile(&self, code: &[u8]) -> Result<ContractModule, ContractError> {
        let invalid = |e: wasmtime::Error| ContractError::InvalidModule(format!("{e:#}"));
        if code.len() > MAX_CODE_BYTES {
            return Err(ContractError::InvalidModule(format!(
                "{} bytes is over the {MAX_CODE_BYTES}-byte limit",
                code.len()
            )));
        }
        let module = Module::new(&self.engine, code).map_err(invalid)?;
        for export in ["memory", "alloc", "call"] {
            if module.get_export(export).is_none() {
                return Err(ContractError::InvalidModule(format!(
                    "module does not export `{export}`"
                )));
            }
        }
        let pre = self.linker.instantiate_pre(&module).map_err(invalid)?;
        Ok(ContractModule { pre })
    }

    /// Calls `module` with `input`. On success the writes are returned for the caller to
    /// apply; on any error nothing was written. `storage` comes back either way.
    pub fn call(
        &self,
        module: &ContractModule,
        context: CallContext,
        storage: Box<dyn ContractStorage>,
        input: &[u8],
    ) -> (Box<dyn ContractStorage>, Result<CallOutcome, ContractError>) {
        let state = HostState {
            context,
            storage,
            writes: BTreeMap::new(),
            events: Vec::new(),
            output: Vec::new(),
        };
        let mut store = Store::new(&self.engine, state);
        let result = run(&mut store, module, input);
        let fuel_left = store.get_fuel().unwrap_or(0);
        let state = store.into_data();
        let outcome = result.map(|()| CallOutcome {
            writes: state.writes,
            events: state.events,
            output: state.output,
            fuel_used: FUEL_PER_CALL.saturating_sub(fuel_left),
        });
        (state.storage, outcome)
    }
}

fn run(
    store: &mut Store<HostState>,
    module: &ContractModule,
    input: &[u8],
) -> Result<(), ContractError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(ContractError::Limit(format!(
            "input of {} bytes is over {MAX_INPUT_BYTES}",
            input.len()
        )));
    }
    store
        .set_fuel(FUEL_PER_CALL)
        .map_err(|e| ContractError::Host(e.to_string()))?;
    let instance = module.pre.instantiate(&mut *store).map_err(classify)?;
    let alloc = instance
        .get_typed_func::<i32, i32>(&mut *store, "alloc")
        .map_err(|e| ContractError::InvalidModule(format!("alloc: {e}")))?;
    let call = instance
        .get_typed_func::<(i32, i32), ()>(&mut *store, "call")
        .map_err(|e| ContractError::InvalidModule(format!("call: {e}")))?;
    let memory = instance
        .get_memory(&mut *store, "memory")
        .ok_or_else(|| ContractError::InvalidModule("`memory` is not a memory".into()))?;
    let len = i32::try_from(input.len()).map_err(|_| ContractError::Limit("input".into()))?;
    let ptr = alloc.call(&mut *store, len).map_err(classify)?;
    let offset = usize::try_from(ptr)
        .map_err(|_| ContractError::Trap("alloc returned a negative pointer".into()))?;
    memory
        .write(&mut *store, offset, input)
        .map_err(|_| ContractError::Trap("alloc returned memory out of bounds".into()))?;
    call.call(&mut *store, (ptr, len)).map_err(classify)
}

/// Turns wasmtime's error into the reason the receipt names.
fn classify(error: wasmtime::Error) -> ContractError {
    if let Some(HostStop(reason)) = error.downcast_ref::<HostStop>() {
        return reason.clone();
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => ContractError::OutOfFuel,
        Some(trap) => ContractError::Trap(trap.to_string()),
        None => ContractError::Trap(format!("{error:#}")),
    }
}

// ---- host functions ----

/// Charges fuel for a host call moving `bytes`; out of fuel stops the call.
fn charge(caller: &mut Caller<'_, HostState>, bytes: usize) -> HostResult<()> {
    let cost = HOST_CALL_FUEL.saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX));
    let left = caller.get_fuel()?;
    if left < cost {
        caller.set_fuel(0)?;
        return stop(ContractError::OutOfFuel);
    }
    caller.set_fuel(left - cost)
}

fn memory(caller: &mut Caller<'_, HostState>) -> HostResult<Memory> {
    match caller.get_export("memory").and_then(|e| e.into_memory()) {
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
    let state = caller.data();
    let value = match state.writes.get(&key) {
        Some(value) => value.clone(),
        None => match state.storage.get(&key) {
            Ok(value) => value,
            Err(err) => return stop(ContractError::Storage(err)),
        },
    };
    let Some(value) = value else {
        return Ok(-1);
    };
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
    let len = msg_len.min(i32::try_from(MAX_ABORT_MESSAGE_BYTES).unwrap_or(i32::MAX));
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

fn link_host(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "storage_get", storage_get)?;
    linker.func_wrap("env", "storage_set", storage_set)?;
    linker.func_wrap("env", "storage_delete", storage_delete)?;
    linker.func_wrap("env", "emit_event", emit_event)?;
    linker.func_wrap("env", "abort", abort)?;
    linker.func_wrap(
        "env",
        "caller",
        |mut caller: Caller<'_, HostState>, out: i32| {
            let key = caller.data().context.caller;
            write_bytes(&mut caller, out, &key)
        },
    )?;
    linker.func_wrap("env", "caller_role", |mut caller: Caller<'_, HostState>| {
        charge(&mut caller, 0)?;
        Ok(caller.data().context.caller_role)
    })?;
    linker.func_wrap(
        "env",
        "block_height",
        |mut caller: Caller<'_, HostState>| {
            charge(&mut caller, 0)?;
            Ok(i64::try_from(caller.data().context.block_height).unwrap_or(i64::MAX))
        },
    )?;
    linker.func_wrap(
        "env",
        "block_time_ms",
        |mut caller: Caller<'_, HostState>| {
            charge(&mut caller, 0)?;
            Ok(i64::try_from(caller.data().context.block_time_ms).unwrap_or(i64::MAX))
        },
    )?;
    linker.func_wrap(
        "env",
        "random_seed",
        |mut caller: Caller<'_, HostState>, out: i32| {
            let seed = caller.data().context.random_seed;
            write_bytes(&mut caller, out, &seed)
        },
    )?;
    linker.func_wrap(
        "env",
        "sha256",
        |mut caller: Caller<'_, HostState>, data: i32, len: i32, out: i32| {
            let bytes = read_bytes(&mut caller, data, len, MAX_VALUE_BYTES, "sha256 input")?;
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
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
            Ok(self.0.get(key).cloned())
        }
    }

    fn context() -> CallContext {
        CallContext {
            caller: [7; 32],
            caller_role: 2,
            block_height: 42,
            block_time_ms: 1_700_000_000_000,
            random_seed: [9; 32],
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

    fn call(wat: &str, input: &[u8]) -> Result<CallOutcome, ContractError> {
        let engine = ContractEngine::new().unwrap();
        let module = engine.compile(wat.as_bytes())?;
        let storage = Box::new(MapStorage(BTreeMap::from([(
            b"key".to_vec(),
            b"old".to_vec(),
        )])));
        engine.call(&module, context(), storage, input).1
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
        assert!(outcome.fuel_used > 0);
    }

    #[test]
    fn an_endless_loop_runs_out_of_fuel() {
        let body = r#"(loop $l (br $l))"#;
        let err = call(&module("", body), b"").unwrap_err();
        assert_eq!(err, ContractError::OutOfFuel);
        assert_eq!(err.code(), "out_of_fuel");
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
        assert!(matches!(
            engine.compile(b"(module)"),
            Err(ContractError::InvalidModule(_))
        ));
        let wasi = r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "alloc") (param i32) (result i32) (i32.const 0))
            (func (export "call") (param i32 i32)))"#;
        assert!(matches!(
            engine.compile(wasi.as_bytes()),
            Err(ContractError::InvalidModule(_))
        ));
        assert!(matches!(
            engine.compile(b"\0asm garbage"),
            Err(ContractError::InvalidModule(_))
        ));
    }

    #[test]
    fn the_same_call_burns_the_same_fuel() {
        let body = r#"(drop (call $height)) (call $out (local.get $ptr) (local.get $len))"#;
        let wat = module("", body);
        let a = call(&wat, b"input").unwrap();
        let b = call(&wat, b"input").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.output, b"input");
    }
}
