//! The expert registry and the random draw of an evaluation committee (DESIGN.md rule 4,
//! 实施条例 art. 46). The draw is [`draw`]: a pure function of (seed, registry snapshot,
//! request), run by the contract and recomputed by `bidchain experts verify-draw`.

use alloc::string::String;
use alloc::vec::Vec;

use crate::codec::{Decode, DecodeError, Encode, Reader};
use crate::ids::{AccountKey, Digest, ExpertId, Label, TenderId, UnitId};
use crate::tender::MAX_EXPERT_CATEGORIES;
use crate::{record, tagged};

/// Experts the registry holds: a draw reads them all within one call's fuel.
pub const MAX_EXPERTS: usize = 1_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExpertStatus {
    Active,
    /// Not drawn (penalised, on leave).
    Suspended,
}
tagged!(ExpertStatus { Active = 0, Suspended = 1 });

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Expert {
    pub id: ExpertId,
    pub categories: Vec<Label>,
    pub region: Label,
    /// The employer unit: recused from tenders where it is the tenderer or a bidder.
    pub unit: UnitId,
    pub status: ExpertStatus,
}
record!(Expert {
    id,
    categories,
    region,
    unit,
    status
});

impl Expert {
    pub fn check(&self) -> Result<(), &'static str> {
        if self.categories.is_empty() || self.categories.len() > MAX_EXPERT_CATEGORIES {
            return Err("an expert has 1 to 8 categories");
        }
        Ok(())
    }
}

/// What a draw asks for, as the contract assembles it from the tender.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DrawRequest {
    pub tender: TenderId,
    pub categories: Vec<Label>,
    pub count: u32,
    pub alternates: u32,
    /// The tenderer's and every bidder's units (回避).
    pub excluded_units: Vec<UnitId>,
    /// Remote evaluation: the tenderer's region is excluded.
    pub excluded_region: Option<Label>,
}
record!(DrawRequest {
    tender,
    categories,
    count,
    alternates,
    excluded_units,
    excluded_region
});

/// A draw asked for and not yet made: it is made with the seed of the block after
/// `height`, which nobody knows when the request is sent.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PendingDraw {
    /// What was asked for, with every recused unit (the bidders are fixed once a tender
    /// is opened, so the draw need not read them again).
    pub request: DrawRequest,
    pub requested_by: AccountKey,
    /// The height of the block holding the request.
    pub height: u64,
    /// The registry as it was at the request ([`registry_hash`]) and its size.
    pub registry_hash: Digest,
    pub registry_size: u32,
    /// The experts who qualified at the request, in registry order: the draw ranks these,
    /// so no change to the registry after the seed is known can shape the result.
    pub qualified: Vec<ExpertId>,
}
record!(PendingDraw {
    request,
    requested_by,
    height,
    registry_hash,
    registry_size,
    qualified
});

/// A draw as the chain records it: enough to recompute it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DrawRecord {
    pub request: DrawRequest,
    pub requested_by: AccountKey,
    /// The height of the block holding the request; the seed is that of the next block.
    pub requested_height: u64,
    /// The height and time of the block that made the draw.
    pub height: u64,
    pub time_ms: u64,
    /// The seed of block `requested_height + 1` (see `execute::block_seed` in the runtime).
    pub seed: Digest,
    /// SHA-256 of the encoded registry snapshot the draw read (every expert, id order).
    pub registry_hash: Digest,
    pub registry_size: u32,
    /// The experts who qualified at the request, in registry order: with `seed` and
    /// `request`, what the ranking is recomputed from (`bidchain experts verify-draw`).
    pub qualified: Vec<ExpertId>,
    /// The committee, in draw order.
    pub members: Vec<ExpertId>,
    /// Ranked alternates, first replacement first.
    pub alternates: Vec<ExpertId>,
}
record!(DrawRecord {
    request,
    requested_by,
    requested_height,
    height,
    time_ms,
    seed,
    registry_hash,
    registry_size,
    qualified,
    members,
    alternates,
});

/// Why a draw cannot be made.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TooFewExperts {
    pub qualified: u32,
    pub needed: u32,
}

/// The committee and ranked alternates.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Drawn {
    pub members: Vec<ExpertId>,
    pub alternates: Vec<ExpertId>,
}

/// Whether `expert` may sit on the committee `request` asks for.
pub fn qualifies(expert: &Expert, request: &DrawRequest) -> bool {
    expert.status == ExpertStatus::Active
        && expert
            .categories
            .iter()
            .any(|c| request.categories.contains(c))
        && !request.excluded_units.contains(&expert.unit)
        && request.excluded_region.as_ref() != Some(&expert.region)
}

/// The experts of `registry` who may sit on the committee `request` asks for.
pub fn qualified_ids(registry: &[Expert], request: &DrawRequest) -> Vec<ExpertId> {
    registry
        .iter()
        .filter(|e| qualifies(e, request))
        .map(|e| e.id)
        .collect()
}

/// Ranks `qualified` by SHA-256(seed ‖ tender ‖ expert id) and takes the first `count` as
/// the committee and the next ones (up to `alternates`) as ranked alternates. `sha256` is
/// the hash function (the contract's host call, or a library on the host).
pub fn rank(
    seed: &Digest,
    qualified: &[ExpertId],
    request: &DrawRequest,
    sha256: impl Fn(&[u8]) -> [u8; 32],
) -> Result<Drawn, TooFewExperts> {
    let available = qualified.len() as u32;
    if available < request.count {
        return Err(TooFewExperts {
            qualified: available,
            needed: request.count,
        });
    }
    let mut ranked: Vec<([u8; 32], ExpertId)> = qualified
        .iter()
        .map(|id| {
            let mut input = Vec::from(&b"bidchain/expert-draw/v1"[..]);
            input.extend_from_slice(&seed.0);
            request.tender.encode_to(&mut input);
            input.extend_from_slice(&id.0);
            (sha256(&input), *id)
        })
        .collect();
    ranked.sort();
    let mut ids = ranked.into_iter().map(|(_, id)| id);
    let members = ids.by_ref().take(request.count as usize).collect();
    let alternates = ids.take(request.alternates as usize).collect();
    Ok(Drawn {
        members,
        alternates,
    })
}

/// The whole draw from a registry snapshot: [`qualified_ids`] then [`rank`].
pub fn draw(
    seed: &Digest,
    registry: &[Expert],
    request: &DrawRequest,
    sha256: impl Fn(&[u8]) -> [u8; 32],
) -> Result<Drawn, TooFewExperts> {
    rank(seed, &qualified_ids(registry, request), request, sha256)
}

/// A draw's `registry_hash`: SHA-256 over the SHA-256 of each expert's encoding, in id
/// order (hashed per expert so that no registry size outgrows one hash input).
pub fn registry_hash(registry: &[Expert], sha256: impl Fn(&[u8]) -> [u8; 32]) -> Digest {
    let mut sorted: Vec<&Expert> = registry.iter().collect();
    sorted.sort_by_key(|e| e.id);
    let mut leaves = Vec::with_capacity(4 + 32 * sorted.len());
    (sorted.len() as u32).encode_to(&mut leaves);
    for expert in sorted {
        leaves.extend_from_slice(&sha256(&expert.encode()));
    }
    Digest(sha256(&leaves))
}

/// Calls of the `experts` contract.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ExpertsCall {
    /// The hub registers (or updates) an expert.
    Register(Expert),
    /// The hub suspends or reinstates an expert.
    SetStatus { id: ExpertId, status: ExpertStatus },
    /// The tender's center asks for its committee; once per tender (again only if the
    /// request expired unmade).
    RequestDraw { tender: TenderId },
    /// Anyone makes a requested draw, in a later block than the request, with the seed of
    /// the block after the request.
    Draw { tender: TenderId },
}

impl Encode for ExpertsCall {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            ExpertsCall::Register(expert) => (0u8, expert).encode_to(out),
            ExpertsCall::SetStatus { id, status } => {
                (1u8, id).encode_to(out);
                status.encode_to(out);
            }
            ExpertsCall::RequestDraw { tender } => (2u8, tender).encode_to(out),
            ExpertsCall::Draw { tender } => (3u8, tender).encode_to(out),
        }
    }
}

impl Decode for ExpertsCall {
    fn decode_from(input: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match input.byte()? {
            0 => ExpertsCall::Register(Expert::decode_from(input)?),
            1 => ExpertsCall::SetStatus {
                id: ExpertId::decode_from(input)?,
                status: ExpertStatus::decode_from(input)?,
            },
            2 => ExpertsCall::RequestDraw {
                tender: TenderId::decode_from(input)?,
            },
            3 => ExpertsCall::Draw {
                tender: TenderId::decode_from(input)?,
            },
            tag => {
                return Err(DecodeError::BadTag {
                    what: "experts call",
                    tag,
                });
            }
        })
    }
}

/// The `experts` contract's storage keys.
pub mod keys {
    use super::*;

    pub fn expert(id: &ExpertId) -> Vec<u8> {
        [&b"e/"[..], &id.0[..]].concat()
    }

    /// Every registered expert id, a `Vec<ExpertId>` in registration order.
    pub fn index() -> Vec<u8> {
        b"index".to_vec()
    }

    pub fn draw(tender: &TenderId) -> Vec<u8> {
        [b"d/", tender.as_str().as_bytes()].concat()
    }

    /// A requested draw not yet made, a `PendingDraw`.
    pub fn pending(tender: &TenderId) -> Vec<u8> {
        [b"p/", tender.as_str().as_bytes()].concat()
    }
}

/// A plain-words summary of a refused draw.
pub fn too_few_message(err: &TooFewExperts) -> String {
    alloc::format!(
        "only {} experts qualify (active, in a requested category, not recused), {} are needed",
        err.qualified,
        err.needed
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// Any well-mixing function will do for ranking in tests (splitmix64 per byte).
    fn toy_hash(bytes: &[u8]) -> [u8; 32] {
        let mix = |mut z: u64| {
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let h = bytes
            .iter()
            .fold(0x9e37_79b9_7f4a_7c15u64, |h, b| mix(h ^ u64::from(*b)));
        let mut out = [0u8; 32];
        out[..8].copy_from_slice(&h.to_be_bytes());
        out
    }

    fn label(t: &str) -> Label {
        Label::new(t).unwrap()
    }

    fn expert(i: u8, region: &str, unit: u8, status: ExpertStatus) -> Expert {
        Expert {
            id: ExpertId([i; 32]),
            categories: vec![label("construction")],
            region: label(region),
            unit: UnitId([unit; 32]),
            status,
        }
    }

    fn request(count: u32) -> DrawRequest {
        DrawRequest {
            tender: TenderId::new("T-1").unwrap(),
            categories: vec![label("construction")],
            count,
            alternates: 2,
            excluded_units: vec![UnitId([100; 32])],
            excluded_region: Some(label("nanjing")),
        }
    }

    #[test]
    fn the_draw_excludes_recused_suspended_and_local_experts_and_is_reproducible() {
        let mut registry: Vec<Expert> = (0..8)
            .map(|i| expert(i, "suzhou", i, ExpertStatus::Active))
            .collect();
        registry.push(expert(50, "suzhou", 100, ExpertStatus::Active));
        registry.push(expert(51, "nanjing", 51, ExpertStatus::Active));
        registry.push(expert(52, "suzhou", 52, ExpertStatus::Suspended));
        let seed = Digest([7; 32]);
        let drawn = draw(&seed, &registry, &request(5), toy_hash).unwrap();
        assert_eq!((drawn.members.len(), drawn.alternates.len()), (5, 2));
        for id in drawn.members.iter().chain(&drawn.alternates) {
            assert!(id.0[0] < 8, "{id} may not be drawn");
        }
        // Registry order does not matter; the seed does.
        registry.reverse();
        assert_eq!(
            draw(&seed, &registry, &request(5), toy_hash).unwrap(),
            drawn
        );
        let other = draw(&Digest([8; 32]), &registry, &request(5), toy_hash).unwrap();
        assert_ne!(other, drawn);
        assert_eq!(
            draw(&seed, &registry, &request(9), toy_hash),
            Err(TooFewExperts {
                qualified: 8,
                needed: 9
            })
        );
    }

    #[test]
    fn calls_and_records_round_trip() {
        let record = DrawRecord {
            request: request(5),
            requested_by: AccountKey([1; 32]),
            requested_height: 8,
            height: 9,
            time_ms: 10,
            seed: Digest([2; 32]),
            registry_hash: Digest([3; 32]),
            registry_size: 4,
            qualified: vec![ExpertId([6; 32])],
            members: vec![ExpertId([5; 32])],
            alternates: vec![],
        };
        assert_eq!(DrawRecord::decode(&record.encode()), Ok(record));
        let call = ExpertsCall::SetStatus {
            id: ExpertId([1; 32]),
            status: ExpertStatus::Suspended,
        };
        assert_eq!(ExpertsCall::decode(&call.encode()), Ok(call));
        let mut bytes = ExpertsCall::Draw {
            tender: TenderId::new("T").unwrap(),
        }
        .encode();
        bytes[1 + 4] = b'/';
        assert!(
            ExpertsCall::decode(&bytes).is_err(),
            "a tender id with '/' decodes"
        );
    }
}
