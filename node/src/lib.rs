//! bidchain-node: storage (RocksDB), mempool, the consensus driver, the libp2p network and
//! the HTTP API,
//! wired together by [`node::run`].

pub mod api;
pub mod catch_up;
pub mod chain;
pub mod config;
pub mod driver;
pub mod keyfile;
pub mod mempool;
pub mod msg_stream;
pub mod net;
pub mod node;
pub mod p2p;
pub mod priority;
pub mod proofs;
pub mod read_cache;
pub mod rpc;
pub mod rpc_listener;
pub mod shared;
pub mod storage;
pub mod testing;
pub mod tree_top;
