//! Tenders and bids: the lifecycle, the bid deadline, sealed bids and their reveal, and the
//! cross-bidder collusion flags (DESIGN.md "The trading rules" 1–3).

use alloc::string::String;
use alloc::vec::Vec;

use crate::codec::{Decode, DecodeError, Encode, Reader};
use crate::ids::{AccountKey, Digest, Label, TenderId, UnitId};
use crate::{record, tagged};

/// Fewer valid bids than this and the tender fails (实施条例 art. 44).
pub const MIN_BIDDERS: u32 = 3;
/// An evaluation committee has at least this many members, an odd number (实施条例 art. 46).
pub const MIN_COMMITTEE: u32 = 5;
pub const MAX_COMMITTEE: u32 = 25;
pub const MAX_ALTERNATES: u32 = 10;
pub const MAX_EXPERT_CATEGORIES: usize = 8;
/// Bids one tender takes (submissions; a replacement does not count again).
pub const MAX_BIDS_PER_TENDER: usize = 256;
/// The shortest decryption window a tender may set.
pub const MIN_DECRYPTION_WINDOW_MS: u64 = 1_000;
/// SHA-256 of the empty string: a fingerprint the bid file did not carry. Equal "missing"
/// values say nothing about collusion and are not flagged.
pub const MISSING: Digest = Digest([
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
]);

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TenderParams {
    pub id: TenderId,
    /// SHA-256 of the tender document.
    pub document_hash: Digest,
    pub category: Label,
    pub region: Label,
    pub tenderer_unit: UnitId,
    /// Bids are taken while block time < deadline (招标投标法 art. 28).
    pub deadline_ms: u64,
    /// Opening happens at or after this time, which is at or after the deadline.
    pub opening_ms: u64,
    /// Bidders reveal within this long after opening; later, an unrevealed bid is revoked.
    pub decryption_window_ms: u64,
    pub min_bidders: u32,
    pub expert_count: u32,
    pub alternates: u32,
    pub expert_categories: Vec<Label>,
    /// Remote evaluation (远程异地评标): experts come from other regions than the tenderer's.
    pub remote: bool,
}
record!(TenderParams {
    id,
    document_hash,
    category,
    region,
    tenderer_unit,
    deadline_ms,
    opening_ms,
    decryption_window_ms,
    min_bidders,
    expert_count,
    alternates,
    expert_categories,
    remote,
});

impl TenderParams {
    /// The rules a tender's parameters must follow, whatever the block time.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.opening_ms < self.deadline_ms {
            return Err("opening time is before the bid deadline");
        }
        if self.decryption_window_ms < MIN_DECRYPTION_WINDOW_MS {
            return Err("the decryption window must be at least 1 s");
        }
        if self.min_bidders < MIN_BIDDERS {
            return Err("a tender needs at least 3 bidders (实施条例 art. 44)");
        }
        if self.expert_count < MIN_COMMITTEE || self.expert_count.is_multiple_of(2) {
            return Err("the committee must be odd and at least 5 (实施条例 art. 46)");
        }
        if self.expert_count > MAX_COMMITTEE || self.alternates > MAX_ALTERNATES {
            return Err("too many experts or alternates");
        }
        if self.expert_categories.is_empty() || self.expert_categories.len() > MAX_EXPERT_CATEGORIES
        {
            return Err("expert categories must number 1 to 8");
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TenderStatus {
    /// Taking bids until the deadline.
    Open,
    /// Opened: bidders reveal within the decryption window.
    Opened,
    /// Reveals closed with enough valid bids; the committee evaluates.
    Evaluating,
    Awarded,
    /// Too few (valid) bids: must be re-tendered.
    Failed,
}
tagged!(TenderStatus { Open = 0, Opened = 1, Evaluating = 2, Awarded = 3, Failed = 4 });

impl TenderStatus {
    pub fn name(self) -> &'static str {
        match self {
            TenderStatus::Open => "open",
            TenderStatus::Opened => "opened",
            TenderStatus::Evaluating => "evaluating",
            TenderStatus::Awarded => "awarded",
            TenderStatus::Failed => "failed",
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Tender {
    pub params: TenderParams,
    /// The center that created it and runs it.
    pub center: AccountKey,
    pub status: TenderStatus,
    pub created_ms: u64,
    /// Block time of the opening: the decryption window runs from here.
    pub opened_ms: Option<u64>,
    /// How many bidders ever submitted; the `n`th (from 0, in order of first submission)
    /// is at [`keys::bidder`]. Kept apart so that a bid does not read and decode every
    /// earlier bidder's key with the tender.
    pub bidder_count: u32,
    pub winner: Option<AccountKey>,
    /// Why it failed, in words.
    pub failure: Option<String>,
}
record!(Tender {
    params,
    center,
    status,
    created_ms,
    opened_ms,
    bidder_count,
    winner,
    failure,
});

impl Tender {
    /// When the decryption window closes (never before the tender is opened).
    pub fn reveal_end_ms(&self) -> Option<u64> {
        self.opened_ms
            .map(|opened| opened.saturating_add(self.params.decryption_window_ms))
    }
}

/// The maker fingerprints a bid file carries (DESIGN.md rule 3), each hashed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Fingerprints {
    /// 文件制作机器码: the machine that made the file.
    pub machine_code: Digest,
    /// 文件创建标识码: the file-creation id (which downloaded tender file it was built from).
    pub file_creation_id: Digest,
    /// 计价软件加密锁序列号: the pricing-software dongle serial.
    pub dongle_serial: Digest,
    /// MAC + CPU serial + disk serial of the computer, hashed together (实施条例 art. 40).
    pub hardware: Digest,
}
record!(Fingerprints {
    machine_code,
    file_creation_id,
    dongle_serial,
    hardware
});

/// What a bidder records before the deadline.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SealedBid {
    /// SHA-256 of the encrypted bid file.
    pub cipher_hash: Digest,
    /// [`commitment`] of the plaintext file hash.
    pub commitment: Digest,
    pub fingerprints: Fingerprints,
}
record!(SealedBid {
    cipher_hash,
    commitment,
    fingerprints
});

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BidStatus {
    /// Submitted, not yet revealed.
    Sealed,
    /// Withdrawn by the bidder before the deadline.
    Withdrawn,
    /// Revealed, and the reveal matches the commitment.
    Consistent,
    /// Revealed, and the reveal does not match what was sealed.
    Inconsistent,
    /// Not revealed within the decryption window: revoked (撤销, 电子招标投标办法 art. 31).
    Revoked,
}
tagged!(BidStatus { Sealed = 0, Withdrawn = 1, Consistent = 2, Inconsistent = 3, Revoked = 4 });

impl BidStatus {
    pub fn name(self) -> &'static str {
        match self {
            BidStatus::Sealed => "sealed",
            BidStatus::Withdrawn => "withdrawn",
            BidStatus::Consistent => "consistent",
            BidStatus::Inconsistent => "inconsistent",
            BidStatus::Revoked => "revoked",
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Bid {
    pub tender: TenderId,
    pub bidder: AccountKey,
    /// The bidder's unit as a center registered it (never as the bidder states it).
    pub unit: UnitId,
    pub sealed: SealedBid,
    pub status: BidStatus,
    /// Block time of the latest submission or replacement.
    pub submitted_ms: u64,
    /// 1 for the first submission, +1 per replacement.
    pub version: u32,
    /// The plaintext file hash the bidder revealed.
    pub revealed_file: Option<Digest>,
}
record!(Bid {
    tender,
    bidder,
    unit,
    sealed,
    status,
    submitted_ms,
    version,
    revealed_file
});

/// Which recorded value two bids of one tender share.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CollusionField {
    MachineCode,
    FileCreationId,
    DongleSerial,
    Hardware,
    CipherHash,
    FileHash,
}
tagged!(CollusionField {
    MachineCode = 0, FileCreationId = 1, DongleSerial = 2, Hardware = 3, CipherHash = 4,
    FileHash = 5,
});

impl CollusionField {
    pub fn name(self) -> &'static str {
        match self {
            CollusionField::MachineCode => "machine_code",
            CollusionField::FileCreationId => "file_creation_id",
            CollusionField::DongleSerial => "dongle_serial",
            CollusionField::Hardware => "hardware",
            CollusionField::CipherHash => "cipher_hash",
            CollusionField::FileHash => "file_hash",
        }
    }
}

/// A 围标串标 indicator: two bids of one tender share `value` in `field`. It goes to the
/// committee and supervisors; it does not drop either bid.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CollusionFlag {
    pub field: CollusionField,
    pub first: AccountKey,
    pub second: AccountKey,
    pub value: Digest,
}
record!(CollusionFlag {
    field,
    first,
    second,
    value
});

/// The flags between `bid` and each of `others` from their sealed records (fingerprints
/// and encrypted-file hash); `others` come first in each flag.
pub fn sealed_matches(bid: &Bid, others: &[Bid]) -> Vec<CollusionFlag> {
    let fields = |b: &Bid| {
        let f = &b.sealed.fingerprints;
        [
            (CollusionField::MachineCode, f.machine_code),
            (CollusionField::FileCreationId, f.file_creation_id),
            (CollusionField::DongleSerial, f.dongle_serial),
            (CollusionField::Hardware, f.hardware),
            (CollusionField::CipherHash, b.sealed.cipher_hash),
        ]
    };
    let mut flags = Vec::new();
    for other in others {
        for ((field, mine), (_, theirs)) in fields(bid).into_iter().zip(fields(other)) {
            if mine == theirs && mine != MISSING {
                flags.push(CollusionFlag {
                    field,
                    first: other.bidder,
                    second: bid.bidder,
                    value: mine,
                });
            }
        }
    }
    flags
}

/// The bytes whose SHA-256 is a bid's commitment: binds the plaintext file hash to the
/// bidder and a salt (so equal files do not show as equal commitments before opening).
pub fn commitment_preimage(bidder: &AccountKey, file_hash: &Digest, salt: &Digest) -> Vec<u8> {
    let mut bytes = Vec::from(&b"bidchain/bid-commitment/v1"[..]);
    bytes.extend_from_slice(&bidder.0);
    bytes.extend_from_slice(&file_hash.0);
    bytes.extend_from_slice(&salt.0);
    bytes
}

/// Calls of the `tender` contract.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum TenderCall {
    /// A center creates a tender (status Open).
    Create(TenderParams),
    /// A bidder seals its bid; only before the deadline.
    Submit { tender: TenderId, bid: SealedBid },
    /// A bidder replaces its sealed bid; only before the deadline.
    Replace { tender: TenderId, bid: SealedBid },
    /// A bidder withdraws; only before the deadline.
    Withdraw { tender: TenderId },
    /// The tender's center opens it at or after the opening time: fails it with too few
    /// bids, else flags shared fingerprints and starts the decryption window.
    Open { tender: TenderId },
    /// A bidder reveals its plaintext file hash and salt within the decryption window.
    Reveal {
        tender: TenderId,
        file_hash: Digest,
        salt: Digest,
    },
    /// The center closes the decryption window once it has passed: unrevealed bids are
    /// revoked, and too few consistent bids fail the tender.
    CloseReveal { tender: TenderId },
    /// The center records the award to a consistent bid.
    Award {
        tender: TenderId,
        winner: AccountKey,
    },
    /// A center records which unit a bidder account bids for (checked off chain against
    /// its CA certificate); bids carry this unit, which the expert draw recuses.
    RegisterBidder { bidder: AccountKey, unit: UnitId },
}

impl Encode for TenderCall {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            TenderCall::Create(params) => {
                out.push(0);
                params.encode_to(out);
            }
            TenderCall::Submit { tender, bid } | TenderCall::Replace { tender, bid } => {
                out.push(if matches!(self, TenderCall::Submit { .. }) {
                    1
                } else {
                    2
                });
                tender.encode_to(out);
                bid.encode_to(out);
            }
            TenderCall::Withdraw { tender } => (3u8, tender).encode_to(out),
            TenderCall::Open { tender } => (4u8, tender).encode_to(out),
            TenderCall::Reveal {
                tender,
                file_hash,
                salt,
            } => {
                (5u8, tender).encode_to(out);
                (file_hash, salt).encode_to(out);
            }
            TenderCall::CloseReveal { tender } => (6u8, tender).encode_to(out),
            TenderCall::Award { tender, winner } => {
                (7u8, tender).encode_to(out);
                winner.encode_to(out);
            }
            TenderCall::RegisterBidder { bidder, unit } => {
                (8u8, bidder).encode_to(out);
                unit.encode_to(out);
            }
        }
    }
}

impl Decode for TenderCall {
    fn decode_from(input: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let call = match input.byte()? {
            0 => TenderCall::Create(TenderParams::decode_from(input)?),
            1 => TenderCall::Submit {
                tender: TenderId::decode_from(input)?,
                bid: SealedBid::decode_from(input)?,
            },
            2 => TenderCall::Replace {
                tender: TenderId::decode_from(input)?,
                bid: SealedBid::decode_from(input)?,
            },
            3 => TenderCall::Withdraw {
                tender: TenderId::decode_from(input)?,
            },
            4 => TenderCall::Open {
                tender: TenderId::decode_from(input)?,
            },
            5 => TenderCall::Reveal {
                tender: TenderId::decode_from(input)?,
                file_hash: Digest::decode_from(input)?,
                salt: Digest::decode_from(input)?,
            },
            6 => TenderCall::CloseReveal {
                tender: TenderId::decode_from(input)?,
            },
            7 => TenderCall::Award {
                tender: TenderId::decode_from(input)?,
                winner: AccountKey::decode_from(input)?,
            },
            8 => TenderCall::RegisterBidder {
                bidder: AccountKey::decode_from(input)?,
                unit: UnitId::decode_from(input)?,
            },
            tag => {
                return Err(DecodeError::BadTag {
                    what: "tender call",
                    tag,
                });
            }
        };
        Ok(call)
    }
}

/// The `tender` contract's storage keys.
pub mod keys {
    use super::*;

    pub fn tender(id: &TenderId) -> Vec<u8> {
        [b"t/", id.as_str().as_bytes()].concat()
    }

    /// A bidder account's registered unit, a `UnitId`.
    pub fn bidder_unit(bidder: &AccountKey) -> Vec<u8> {
        [&b"u/"[..], &bidder.0[..]].concat()
    }

    pub fn bid(id: &TenderId, bidder: &AccountKey) -> Vec<u8> {
        [b"b/", id.as_str().as_bytes(), b"/", &bidder.0[..]].concat()
    }

    /// The tender's `index`th bidder (from 0, in order of first submission), an
    /// `AccountKey`.
    pub fn bidder(id: &TenderId, index: u32) -> Vec<u8> {
        indexed(b"tb/", id, index)
    }

    /// How many collusion flags the tender has, a `u32`.
    pub fn flag_count(id: &TenderId) -> Vec<u8> {
        [b"fc/", id.as_str().as_bytes()].concat()
    }

    /// The tender's `index`th collusion flag (from 0), a `CollusionFlag`: one entry per
    /// flag, so that no number of flags outgrows a stored value.
    pub fn flag(id: &TenderId, index: u32) -> Vec<u8> {
        indexed(b"f/", id, index)
    }

    /// `<prefix><tender>/<index, big-endian>`: the entries of one of a tender's lists.
    fn indexed(prefix: &[u8], id: &TenderId, index: u32) -> Vec<u8> {
        [
            prefix,
            id.as_str().as_bytes(),
            b"/",
            &index.to_be_bytes()[..],
        ]
        .concat()
    }
}
