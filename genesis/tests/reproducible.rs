//! The same contract sources build to the same bytes, wherever the checkout is: a copy of
//! the sources in another directory, built into another target directory, gives exactly
//! the modules embedded in this build (and so the hashes a genesis pins).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use bidchain_genesis::contracts::bundled_code;
use bidchain_genesis::{CONTRACTS, build_contracts};
use bidchain_runtime::hash::Hash;

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_tree(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

#[test]
fn contracts_build_reproducibly() {
    // Cargo sets the variable when it runs the test too; that value names this checkout
    // even when the binary was built from another one sharing the target directory.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    );
    let root = manifest_dir.parent().unwrap();
    let copy = tempfile::tempdir().unwrap();
    copy_tree(&root.join("contracts"), &copy.path().join("contracts"));
    let cargo = Path::new(option_env!("CARGO").unwrap_or("cargo"));
    let built = build_contracts(cargo, copy.path(), &copy.path().join("target")).unwrap();
    assert_eq!(built.len(), CONTRACTS.len());
    for (name, path) in built {
        let rebuilt = std::fs::read(&path).unwrap();
        let embedded = bundled_code(name).unwrap();
        assert_eq!(
            Hash::digest(&rebuilt),
            Hash::digest(embedded),
            "contract {name} built from {} differs from the embedded build",
            copy.path().display()
        );
    }
}
