//! Untrusted transaction bytes (RPC bodies, gossip): decoding never panics, and whatever
//! decodes re-encodes to exactly the input (one encoding per value).
#![no_main]

use bidchain_runtime::tx::SignedTransaction;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = SignedTransaction::decode(data) {
        assert_eq!(tx.encode(), data);
        let _ = tx.verify_signature();
    }
});
