//! Untrusted block bytes (block sync): decoding never panics and is canonical.
#![no_main]

use bidchain_runtime::block::Block;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(block) = Block::decode(data) {
        assert_eq!(block.encode(), data);
    }
});
