//! Block time: milliseconds since the Unix epoch, UTC. Chain logic only ever sees the time
//! in a header (set by the proposer, checked by validators), never a local clock.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bincode::{Decode, Encode};

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Encode, Decode)]
pub struct Timestamp(pub u64);

/// Why a string is not an RFC 3339 UTC time.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{input:?} is not an RFC 3339 UTC time such as 2026-05-01T10:00:00Z: {reason}")]
pub struct TimeError {
    pub input: String,
    pub reason: String,
}

impl Timestamp {
    pub fn from_millis(millis: u64) -> Timestamp {
        Timestamp(millis)
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// Reads a wall clock. Only node shells call this (to propose or to check a proposal's
    /// time); the state machine never does.
    pub fn from_system(now: SystemTime) -> Timestamp {
        let millis = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis();
        Timestamp(u64::try_from(millis).unwrap_or(u64::MAX))
    }

    pub fn parse_rfc3339(input: &str) -> Result<Timestamp, TimeError> {
        let err = |reason: String| TimeError {
            input: input.to_owned(),
            reason,
        };
        let time = humantime::parse_rfc3339(input).map_err(|e| err(e.to_string()))?;
        let millis = time
            .duration_since(UNIX_EPOCH)
            .map_err(|_| err("before 1970".to_owned()))?
            .as_millis();
        u64::try_from(millis)
            .map(Timestamp)
            .map_err(|_| err("too far in the future".to_owned()))
    }

    pub fn saturating_add_millis(self, millis: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(millis))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = UNIX_EPOCH + Duration::from_millis(self.0);
        write!(f, "{}", humantime::format_rfc3339_millis(time))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::parse_rfc3339("2026-05-01T10:00:00Z").unwrap();
        assert_eq!(t.as_millis(), 1_777_629_600_000);
        assert_eq!(t.to_string(), "2026-05-01T10:00:00.000Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_string()), Ok(t));
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }
}
