//! Untrusted bytes from a peer (consensus messages, sync requests and responses): decoding
//! never panics, and whatever decodes re-encodes to exactly the input.
#![no_main]

use bidchain_node::net::{MAX_NET_MESSAGE_BYTES, NetMessage};
use bidchain_node::p2p::{SyncRequest, SyncResponse, Wire};
use bidchain_runtime::codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = codec::decode_bounded::<NetMessage>(data, MAX_NET_MESSAGE_BYTES) {
        assert_eq!(codec::encode(&message), data);
    }
    if let Ok(request) = codec::decode_bounded::<SyncRequest>(data, SyncRequest::MAX_BYTES) {
        assert_eq!(codec::encode(&request), data);
    }
    if let Ok(response) = codec::decode_bounded::<SyncResponse>(data, SyncResponse::MAX_BYTES) {
        assert_eq!(codec::encode(&response), data);
    }
});
