//! bidchain-node: storage (RocksDB), mempool, block production and the HTTP API, wired
//! together by [`node::run`].

pub mod api;
pub mod chain;
pub mod config;
pub mod keyfile;
pub mod mempool;
pub mod node;
pub mod producer;
pub mod rpc;
pub mod shared;
pub mod storage;
pub mod testing;
