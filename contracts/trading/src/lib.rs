//! The trading rules' data model, shared by the contracts (built for wasm32, `no_std`) and
//! the host (clients, tests, `experts verify-draw`): one definition of every call, record,
//! storage key and encoding, and the expert draw as one pure function.
//!
//! The encoding is this crate's own small canonical codec ([`codec`]): fixed-width
//! little-endian integers, `u32` length prefixes bounded by the input left, no trailing
//! bytes. It has no dependencies so that the contracts' nested wasm build needs nothing
//! from a registry.

#![no_std]

extern crate alloc;

pub mod archive;
pub mod codec;
pub mod experts;
pub mod ids;
pub mod tender;
pub mod time;

pub use codec::{Decode, DecodeError, Encode};
pub use ids::{AccountKey, Digest, ExpertId, Label, TenderId, UnitId};

/// Contract names as genesis pins them and transactions address them.
pub mod contract_names {
    pub const TENDER: &str = "tender";
    pub const EXPERTS: &str = "experts";
    pub const ARCHIVE: &str = "archive";
    pub const ALL: [&str; 3] = [TENDER, EXPERTS, ARCHIVE];
}

/// The caller's role as the host passes it to a contract (`caller_role()`).
pub mod roles {
    pub const NONE: i32 = 0;
    pub const HUB: i32 = 1;
    pub const CENTER: i32 = 2;
    pub const TENDERER: i32 = 3;
    pub const BIDDER: i32 = 4;
    pub const AUDITOR: i32 = 5;

    pub fn name(role: i32) -> &'static str {
        match role {
            HUB => "hub",
            CENTER => "center",
            TENDERER => "tenderer",
            BIDDER => "bidder",
            AUDITOR => "auditor",
            _ => "unregistered",
        }
    }
}

/// A contract's refusal: a stable code and the reason in words. Contracts abort with
/// `"{code}: {reason}"`; the host splits it back into the receipt's code and reason.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Refusal {
    pub code: &'static str,
    pub reason: alloc::string::String,
}

impl Refusal {
    pub fn new(code: &'static str, reason: impl Into<alloc::string::String>) -> Refusal {
        Refusal {
            code,
            reason: reason.into(),
        }
    }

    /// The abort message the host parses.
    pub fn message(&self) -> alloc::string::String {
        alloc::format!("{}: {}", self.code, self.reason)
    }
}

impl From<DecodeError> for Refusal {
    fn from(err: DecodeError) -> Refusal {
        Refusal::new("bad_input", alloc::format!("{err}"))
    }
}
