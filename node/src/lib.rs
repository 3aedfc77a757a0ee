//! bidchain-node: storage (RocksDB), mempool, the consensus driver and the HTTP API,
//! wired together by [`node::run`].

pub mod api;
pub mod chain;
pub mod config;
pub mod driver;
pub mod keyfile;
pub mod mempool;
pub mod net;
pub mod node;
pub mod rpc;
pub mod shared;
pub mod storage;
pub mod testing;
