//! Archive records (电子档案): the hash of every file of a tender's file set, so that a file
//! can be verified later against the chain (DESIGN.md rule 5).

use alloc::vec::Vec;

use crate::codec::{Decode, DecodeError, Encode, Reader};
use crate::ids::{AccountKey, Digest, TenderId};
use crate::{record, tagged};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ArchiveKind {
    TenderDocument,
    BidFile,
    OpeningRecord,
    EvaluationReport,
    AwardNotice,
    Contract,
    /// Audio/video of the opening or evaluation venue.
    Recording,
}
tagged!(ArchiveKind {
    TenderDocument = 0, BidFile = 1, OpeningRecord = 2, EvaluationReport = 3,
    AwardNotice = 4, Contract = 5, Recording = 6,
});

impl ArchiveKind {
    pub const ALL: [ArchiveKind; 7] = [
        ArchiveKind::TenderDocument,
        ArchiveKind::BidFile,
        ArchiveKind::OpeningRecord,
        ArchiveKind::EvaluationReport,
        ArchiveKind::AwardNotice,
        ArchiveKind::Contract,
        ArchiveKind::Recording,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ArchiveKind::TenderDocument => "tender-document",
            ArchiveKind::BidFile => "bid-file",
            ArchiveKind::OpeningRecord => "opening-record",
            ArchiveKind::EvaluationReport => "evaluation-report",
            ArchiveKind::AwardNotice => "award-notice",
            ArchiveKind::Contract => "contract",
            ArchiveKind::Recording => "recording",
        }
    }

    pub fn parse(text: &str) -> Option<ArchiveKind> {
        ArchiveKind::ALL.into_iter().find(|k| k.name() == text)
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ArchiveRecord {
    pub tender: TenderId,
    pub kind: ArchiveKind,
    pub sha256: Digest,
    pub size_bytes: u64,
    /// Block time and height of the recording transaction.
    pub time_ms: u64,
    pub height: u64,
    pub recorded_by: AccountKey,
    /// The recording transaction.
    pub tx: Digest,
}
record!(ArchiveRecord {
    tender,
    kind,
    sha256,
    size_bytes,
    time_ms,
    height,
    recorded_by,
    tx
});

/// Calls of the `archive` contract.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ArchiveCall {
    /// A center records a file of one of its tenders.
    Record {
        tender: TenderId,
        kind: ArchiveKind,
        sha256: Digest,
        size_bytes: u64,
    },
}

impl Encode for ArchiveCall {
    fn encode_to(&self, out: &mut Vec<u8>) {
        let ArchiveCall::Record {
            tender,
            kind,
            sha256,
            size_bytes,
        } = self;
        (0u8, tender).encode_to(out);
        (kind, sha256).encode_to(out);
        size_bytes.encode_to(out);
    }
}

impl Decode for ArchiveCall {
    fn decode_from(input: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match input.byte()? {
            0 => Ok(ArchiveCall::Record {
                tender: TenderId::decode_from(input)?,
                kind: ArchiveKind::decode_from(input)?,
                sha256: Digest::decode_from(input)?,
                size_bytes: u64::decode_from(input)?,
            }),
            tag => Err(DecodeError::BadTag {
                what: "archive call",
                tag,
            }),
        }
    }
}

/// The `archive` contract's storage keys.
pub mod keys {
    use super::*;

    /// One record: a tender's file of one kind with one hash.
    pub fn record(tender: &TenderId, kind: ArchiveKind, sha256: &Digest) -> Vec<u8> {
        [&records_of(tender, kind)[..], &sha256.0[..]].concat()
    }

    /// The prefix of every record of a tender's files of one kind.
    pub fn records_of(tender: &TenderId, kind: ArchiveKind) -> Vec<u8> {
        [b"a/", tender.as_str().as_bytes(), b"/", &[kind as u8][..]].concat()
    }

    /// The tender's records in order, a `Vec<(ArchiveKind, Digest)>`.
    pub fn index(tender: &TenderId) -> Vec<u8> {
        [b"i/", tender.as_str().as_bytes()].concat()
    }
}
