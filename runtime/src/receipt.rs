//! Receipts: what the chain decided about each transaction it included.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::bounded::{BoundedString, BoundedVec};
use crate::codec;
use crate::ids::Height;
use crate::merkle;
use crate::tx::TxHash;

pub const MAX_EVENTS_PER_TX: usize = 32;
pub const MAX_EVENT_ATTRS: usize = 16;
pub const MAX_EVENT_KEY_LEN: usize = 64;
pub const MAX_EVENT_VALUE_LEN: usize = 256;
pub const MAX_REASON_LEN: usize = 512;
pub const MAX_CODE_LEN: usize = 32;

/// One key/value fact an execution reports (e.g. `account` = id).
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct EventAttr {
    pub key: BoundedString<MAX_EVENT_KEY_LEN>,
    pub value: BoundedString<MAX_EVENT_VALUE_LEN>,
}

#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct Event {
    pub kind: BoundedString<MAX_EVENT_KEY_LEN>,
    pub attributes: BoundedVec<EventAttr, MAX_EVENT_ATTRS>,
}

impl Event {
    /// Builds an event, cutting over-long values: an event must never fail to record.
    pub fn new(kind: &str, attributes: &[(&str, String)]) -> Event {
        let pairs = attributes
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone()));
        Event::from_pairs(kind, pairs)
    }

    /// [`Event::new`] from pairs the caller owns (a contract's decoded event), moved in
    /// rather than copied.
    pub fn from_pairs(kind: &str, pairs: impl IntoIterator<Item = (String, String)>) -> Event {
        let attributes = pairs
            .into_iter()
            .take(MAX_EVENT_ATTRS)
            .map(|(key, value)| EventAttr {
                key: BoundedString::truncated(key),
                value: BoundedString::truncated(value),
            })
            .collect();
        Event {
            kind: BoundedString::truncating(kind),
            attributes: BoundedVec::new(attributes).unwrap_or_default(),
        }
    }
}

/// The result of one included transaction. A rejected transaction still consumed its
/// nonce; its state changes were discarded.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TxOutcome {
    Ok,
    Rejected {
        /// A stable machine-readable code, e.g. `not_permitted`.
        code: BoundedString<MAX_CODE_LEN>,
        /// The reason in words, naming the values that decided it.
        reason: BoundedString<MAX_REASON_LEN>,
    },
}

impl TxOutcome {
    pub fn rejected(code: &str, reason: &str) -> TxOutcome {
        TxOutcome::Rejected {
            code: BoundedString::truncating(code),
            reason: BoundedString::truncating(reason),
        }
    }

    pub fn is_ok(&self) -> bool {
        matches!(self, TxOutcome::Ok)
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct Receipt {
    pub tx_hash: TxHash,
    pub height: Height,
    /// Position of the transaction in its block.
    pub index: u32,
    pub outcome: TxOutcome,
    pub events: BoundedVec<Event, MAX_EVENTS_PER_TX>,
    /// Contract fuel consumed; zero for native calls.
    pub fuel_used: u64,
}

impl Receipt {
    /// This receipt's leaf in its block's receipts tree.
    pub fn leaf_hash(&self) -> crate::Hash {
        merkle::leaf_hash(&codec::encode(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Receipts are consensus: a contract's event keeps its first `MAX_EVENT_ATTRS` pairs
    /// in order, each value cut at the last character boundary within the bound.
    #[test]
    fn an_event_keeps_the_first_pairs_and_cuts_long_values() {
        let long = "数".repeat(MAX_EVENT_VALUE_LEN);
        let pairs = (0..MAX_EVENT_ATTRS + 4).map(|i| (format!("k{i}"), long.clone()));
        let event = Event::from_pairs("bid", pairs);
        assert_eq!(event.kind.as_str(), "bid");
        assert_eq!(event.attributes.len(), MAX_EVENT_ATTRS);
        // Three bytes a character: 85 of them fit in 256 bytes.
        let cut = "数".repeat(MAX_EVENT_VALUE_LEN / 3);
        for (i, attr) in event.attributes.iter().enumerate() {
            assert_eq!(attr.key.as_str(), format!("k{i}"));
            assert_eq!(attr.value.as_str(), cut);
        }
    }
}
