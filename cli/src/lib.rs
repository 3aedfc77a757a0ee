//! The `bidchain` command's library: the API client, node processes, home setup, client-side
//! verification and the demo. `main.rs` only parses arguments.

pub mod client;
pub mod demo;
pub mod demo_tender;
pub mod localnet;
pub mod process;
pub mod proof_cli;
pub mod setup;
pub mod trading;
pub mod trading_cli;
