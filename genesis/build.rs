//! Builds the wasm contracts from source and embeds them (see src/wasm_build.rs). A failed
//! build stops the build with the reason (e.g. the missing wasm32 target and how to add it).

use std::path::{Path, PathBuf};

#[path = "src/wasm_build.rs"]
mod wasm_build;

const WATCHED: [&str; 7] = [
    "contracts/Cargo.toml",
    "contracts/Cargo.lock",
    "contracts/trading",
    "contracts/sdk",
    "contracts/tender",
    "contracts/experts",
    "contracts/archive",
];

fn main() -> Result<(), String> {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let repo_root = manifest_dir
        .parent()
        .unwrap_or(Path::new(".."))
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let cargo = PathBuf::from(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // Relative to the package root, so a target dir shared by two checkouts (a CI clone
    // and a working copy) watches the checkout being built, not the one built before.
    for watched in WATCHED {
        println!("cargo:rerun-if-changed=../{watched}");
    }
    println!("cargo:rerun-if-changed=src/wasm_build.rs");
    let target_dir = out_dir.join("contracts-target");
    let built = wasm_build::build_contracts(&cargo, &repo_root, &target_dir)?;
    let mut source =
        String::from("/// (name, wasm code) of each contract built from contracts/.\n");
    source.push_str("pub const BUNDLED: &[(&str, &[u8])] = &[\n");
    for (name, path) in built {
        let path = path.display().to_string();
        source.push_str(&format!("    ({name:?}, include_bytes!({path:?})),\n"));
    }
    source.push_str("];\n");
    std::fs::write(out_dir.join("bundled_contracts.rs"), source)
        .map_err(|e| format!("cannot write bundled_contracts.rs: {e}"))
}
