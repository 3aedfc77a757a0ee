//! The `experts` contract: the expert registry and the random draw of a tender's
//! evaluation committee (实施条例 art. 46: random, from the categories, with recusal; ranked
//! alternates drawn the same way).
//!
//! A draw takes two transactions: the tender's center requests it (block h), then anyone
//! makes it in a later block, with the seed of block h + 1 — made from validator signatures
//! over block h, so unknown to everyone when the request was sent.

#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::ToString;
use alloc::vec::Vec;

use bidchain_sdk as sdk;
use bidchain_trading::contract_names::TENDER;
use bidchain_trading::experts::{
    self, DrawRecord, DrawRequest, Expert, ExpertStatus, ExpertsCall, MAX_EXPERTS, PendingDraw,
    keys,
};
use bidchain_trading::tender::{self as tender_rules, Bid, Tender, TenderStatus};
use bidchain_trading::{AccountKey, Decode, Digest, ExpertId, Refusal, TenderId, roles};

sdk::entry!(handle);

fn handle(input: &[u8]) -> Result<(), Refusal> {
    match ExpertsCall::decode(input)? {
        ExpertsCall::Register(expert) => register(expert),
        ExpertsCall::SetStatus { id, status } => set_status(id, status),
        ExpertsCall::RequestDraw { tender } => request_draw(&tender),
        ExpertsCall::Draw { tender } => draw(&tender),
    }
}

fn index() -> Result<Vec<ExpertId>, Refusal> {
    Ok(sdk::load(&keys::index())?.unwrap_or_default())
}

/// The unified expert library is the provincial hub's: a city center, which runs tenders
/// and asks for draws, may not shape the pool it draws from.
fn register(expert: Expert) -> Result<(), Refusal> {
    sdk::require_role(roles::HUB, "register experts")?;
    expert
        .check()
        .map_err(|e| Refusal::new("invalid_expert", e))?;
    let mut ids = index()?;
    if !ids.contains(&expert.id) {
        if ids.len() >= MAX_EXPERTS {
            return Err(Refusal::new(
                "registry_full",
                format!("the registry holds {MAX_EXPERTS} experts"),
            ));
        }
        ids.push(expert.id);
        sdk::store(&keys::index(), &ids);
    }
    sdk::emit(
        "expert_registered",
        &[
            ("expert", expert.id.to_string()),
            ("region", expert.region.to_string()),
        ],
    );
    sdk::store(&keys::expert(&expert.id), &expert);
    Ok(())
}

fn load_expert(id: &ExpertId) -> Result<Expert, Refusal> {
    sdk::load(&keys::expert(id))?
        .ok_or_else(|| Refusal::new("unknown_expert", format!("no expert {id}")))
}

fn set_status(id: ExpertId, status: ExpertStatus) -> Result<(), Refusal> {
    sdk::require_role(roles::HUB, "change an expert's status")?;
    let mut expert = load_expert(&id)?;
    expert.status = status;
    sdk::store(&keys::expert(&id), &expert);
    let name = if status == ExpertStatus::Active {
        "active"
    } else {
        "suspended"
    };
    sdk::emit(
        "expert_status",
        &[("expert", id.to_string()), ("status", name.into())],
    );
    Ok(())
}

fn registry() -> Result<Vec<Expert>, Refusal> {
    let mut registry = Vec::new();
    for expert_id in index()? {
        registry.push(load_expert(&expert_id)?);
    }
    Ok(registry)
}

fn load_tender(id: &TenderId) -> Result<Tender, Refusal> {
    sdk::load_from(TENDER, &tender_rules::keys::tender(id))?
        .ok_or_else(|| Refusal::new("unknown_tender", format!("no tender {id}")))
}

/// What the tender asks for, with every unit that must be recused.
fn request_for(tender: &Tender) -> Result<DrawRequest, Refusal> {
    let params = &tender.params;
    let mut excluded_units = Vec::from([params.tenderer_unit]);
    for n in 0..tender.bidder_count {
        let bidder: AccountKey =
            sdk::load_from(TENDER, &tender_rules::keys::bidder(&params.id, n))?
                .ok_or_else(|| Refusal::new("corrupt_state", "a counted bidder is not listed"))?;
        let bid: Bid = sdk::load_from(TENDER, &tender_rules::keys::bid(&params.id, &bidder))?
            .ok_or_else(|| Refusal::new("corrupt_state", "a listed bidder has no bid"))?;
        excluded_units.push(bid.unit);
    }
    excluded_units.sort();
    excluded_units.dedup();
    Ok(DrawRequest {
        tender: params.id.clone(),
        categories: params.expert_categories.clone(),
        count: params.expert_count,
        alternates: params.alternates,
        excluded_units,
        excluded_region: params.remote.then(|| params.region.clone()),
    })
}

/// The seed of the block after `height`, if the chain still keeps it.
fn seed_after(height: u64) -> Option<Digest> {
    sdk::seed_at(height + 1)
}

fn request_draw(id: &TenderId) -> Result<(), Refusal> {
    sdk::require_role(roles::CENTER, "request a draw")?;
    let tender = load_tender(id)?;
    if sdk::caller() != tender.center {
        return Err(Refusal::new(
            "not_permitted",
            format!("only the center running tender {id} may draw its experts"),
        ));
    }
    // After opening, so that every bidder (and its unit) is known and recused.
    if !matches!(
        tender.status,
        TenderStatus::Opened | TenderStatus::Evaluating
    ) {
        return Err(Refusal::new(
            "wrong_status",
            format!(
                "tender {id} is {}: experts are drawn once it is opened",
                tender.status.name()
            ),
        ));
    }
    if sdk::get(&keys::draw(id)).is_some() {
        return Err(Refusal::new(
            "already_drawn",
            format!("tender {id} has its draw"),
        ));
    }
    let now = sdk::block_height();
    let pending: Option<PendingDraw> = sdk::load(&keys::pending(id))?;
    // A request stands until it is made, unless its seed has left the chain's history.
    if let Some(p) = pending
        && (p.height + 1 >= now || seed_after(p.height).is_some())
    {
        return Err(Refusal::new(
            "draw_requested",
            format!(
                "tender {id}'s draw was requested at height {}: make it",
                p.height
            ),
        ));
    }
    let request = request_for(&tender)?;
    let registry = registry()?;
    let qualified = experts::qualified_ids(&registry, &request);
    if (qualified.len() as u32) < request.count {
        let err = experts::TooFewExperts {
            qualified: qualified.len() as u32,
            needed: request.count,
        };
        return Err(Refusal::new(
            "too_few_experts",
            experts::too_few_message(&err),
        ));
    }
    sdk::store(
        &keys::pending(id),
        &PendingDraw {
            request,
            requested_by: sdk::caller(),
            height: now,
            registry_hash: experts::registry_hash(&registry, sdk::sha256),
            registry_size: registry.len() as u32,
            qualified,
        },
    );
    sdk::emit(
        "draw_requested",
        &[
            ("tender", id.to_string()),
            ("seed_height", (now + 1).to_string()),
        ],
    );
    Ok(())
}

fn draw(id: &TenderId) -> Result<(), Refusal> {
    let pending: PendingDraw = sdk::load(&keys::pending(id))?.ok_or_else(|| {
        Refusal::new(
            "no_request",
            format!("tender {id}'s draw was not requested"),
        )
    })?;
    if sdk::block_height() <= pending.height {
        return Err(Refusal::new(
            "too_early",
            "a draw is made in a later block than its request",
        ));
    }
    let seed = seed_after(pending.height).ok_or_else(|| {
        Refusal::new(
            "draw_expired",
            format!(
                "the seed of height {} is no longer kept: request again",
                pending.height + 1
            ),
        )
    })?;
    let request = pending.request;
    let drawn = experts::rank(&seed, &pending.qualified, &request, sdk::sha256)
        .map_err(|e| Refusal::new("too_few_experts", experts::too_few_message(&e)))?;
    let record = DrawRecord {
        requested_by: pending.requested_by,
        requested_height: pending.height,
        height: sdk::block_height(),
        time_ms: sdk::block_time_ms(),
        seed,
        registry_hash: pending.registry_hash,
        registry_size: pending.registry_size,
        qualified: pending.qualified,
        members: drawn.members,
        alternates: drawn.alternates,
        request,
    };
    sdk::emit(
        "experts_drawn",
        &[
            ("tender", id.to_string()),
            ("members", record.members.len().to_string()),
            ("alternates", record.alternates.len().to_string()),
            ("seed", seed.to_string()),
            ("seed_height", (pending.height + 1).to_string()),
        ],
    );
    sdk::delete(&keys::pending(id));
    sdk::store(&keys::draw(id), &record);
    Ok(())
}
