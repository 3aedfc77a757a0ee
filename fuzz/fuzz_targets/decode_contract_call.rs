//! Untrusted contract call inputs (what the wasm contracts decode with the same code):
//! decoding never panics, and whatever decodes re-encodes to exactly the input.
#![no_main]

use bidchain_trading::archive::ArchiveCall;
use bidchain_trading::experts::ExpertsCall;
use bidchain_trading::tender::TenderCall;
use bidchain_trading::{Decode, Encode};
use libfuzzer_sys::fuzz_target;

fn round_trip<T: Decode + Encode>(data: &[u8]) {
    if let Ok(value) = T::decode(data) {
        assert_eq!(value.encode(), data);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<TenderCall>(data);
    round_trip::<ExpertsCall>(data);
    round_trip::<ArchiveCall>(data);
});
