//! Builds the contracts workspace (`contracts/`) for wasm32 from source. Used by
//! `build.rs` (which embeds the modules in the node) and by the reproducibility test
//! (which builds them again elsewhere and compares hashes); kept free of crate-internal
//! items so both can include it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (contract name, wasm file name) of every contract the build produces.
pub const CONTRACTS: [(&str, &str); 3] = [
    ("tender", "bidchain_contract_tender.wasm"),
    ("experts", "bidchain_contract_experts.wasm"),
    ("archive", "bidchain_contract_archive.wasm"),
];

pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Where the path prefix of the sources is remapped to, so the module bytes do not depend on
/// where the checkout is.
const REMAPPED_ROOT: &str = "/bidchain";
/// The contracts' stack in linear memory (Rust's default is 1 MiB). The stack sits below
/// the data, so a smaller one keeps all that a call touches in the low pages the host
/// resets in place when it lets an instance go (`KEEP_RESIDENT_BYTES` in the runtime).
const CONTRACT_STACK_BYTES: u32 = 128 * 1024;
/// A contract's memory at instantiation: the stack, the data and a bid call's heap, so
/// that most calls do not grow memory (each growth, and the shrink back when the host
/// reuses the slot, is an mprotect system call). No more: when it lets an instance go, the
/// host walks the page table of all of it to find the pages written (PAGEMAP_SCAN); at
/// 1 MiB, with an instance per call, that walk was 6 % of a validator's CPU at capacity. Changing it changes the code hashes a
/// genesis pins.
const CONTRACT_INITIAL_MEMORY_BYTES: u32 = 256 * 1024;

/// Builds `repo_root/contracts` into `target_dir`; returns each contract's wasm path.
pub fn build_contracts(
    cargo: &Path,
    repo_root: &Path,
    target_dir: &Path,
) -> Result<Vec<(&'static str, PathBuf)>, String> {
    let mut command = Command::new(cargo);
    command
        .current_dir(repo_root.join("contracts"))
        .args(["build", "--release", "--offline", "--locked", "--quiet"])
        .args(["--target", WASM_TARGET, "--target-dir"])
        .arg(target_dir)
        // The outer build's settings are for the host, not for wasm; a clippy run's
        // wrapper must not lint (or change) the contracts.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            format!(
                "--remap-path-prefix={}={REMAPPED_ROOT}\x1f-Clink-arg=-zstack-size={CONTRACT_STACK_BYTES}\
                 \x1f-Clink-arg=--initial-memory={CONTRACT_INITIAL_MEMORY_BYTES}",
                repo_root.display()
            ),
        );
    let output = command
        .output()
        .map_err(|e| format!("cannot run {}: {e}", cargo.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains(WASM_TARGET) || stderr.contains("can't find crate") {
            format!(
                "\nThe {WASM_TARGET} target is missing: run scripts/setup.sh \
                 (or `rustup target add {WASM_TARGET}`)."
            )
        } else {
            String::new()
        };
        return Err(format!("building the contracts failed:\n{stderr}{hint}"));
    }
    let dir = target_dir.join(WASM_TARGET).join("release");
    Ok(CONTRACTS
        .iter()
        .map(|(name, file)| (*name, dir.join(file)))
        .collect())
}
