//! The `bidchain tender|bid|experts|archive` commands: each builds one contract call from
//! what a person has (names, files, times), sends it and prints the chain's receipt in
//! words. A refused call exits non-zero with the contract's reason.

// Commands print their results: that is their interface.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bidchain_node::api::{TxResponse, TxStatus};
use bidchain_node::keyfile::read_key_file;
use bidchain_runtime::crypto::PublicKey;
use bidchain_runtime::receipt::{Event, TxOutcome};
use bidchain_runtime::time::Timestamp;
use bidchain_runtime::tx::Payload;
use bidchain_trading::archive::{self, ArchiveCall, ArchiveKind, ArchiveRecord};
use bidchain_trading::experts::{self, DrawRecord, Expert, ExpertStatus, ExpertsCall};
use bidchain_trading::tender::{self, Bid, CollusionFlag, Tender, TenderCall, TenderParams};
use bidchain_trading::time::format_ms;
use bidchain_trading::{AccountKey, Encode, Label, TenderId};
use clap::Subcommand;

use crate::client::Client;
use crate::trading::{self, contract_names as names};

/// How long a command waits for its transaction's block.
const INCLUSION_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Subcommand, Debug)]
pub enum TenderCommand {
    /// Create a tender (a center).
    Create {
        #[command(flatten)]
        send: Send,
        #[arg(long)]
        id: String,
        /// The tender document (its SHA-256 goes on chain).
        #[arg(long)]
        document: PathBuf,
        #[arg(long)]
        category: String,
        #[arg(long)]
        region: String,
        /// The tenderer's unit (name or credit code; hashed).
        #[arg(long)]
        tenderer_unit: String,
        /// Bid deadline, RFC 3339.
        #[arg(long)]
        deadline: String,
        /// Opening time, RFC 3339 (at or after the deadline).
        #[arg(long)]
        opening: String,
        /// How long after opening bidders may reveal, e.g. `30m`.
        #[arg(long, default_value = "30m")]
        decryption_window: humantime::Duration,
        #[arg(long, default_value_t = tender::MIN_BIDDERS)]
        min_bidders: u32,
        /// Committee size: odd, at least 5.
        #[arg(long, default_value_t = 5)]
        experts: u32,
        #[arg(long, default_value_t = 2)]
        alternates: u32,
        /// Expert categories to draw from (repeat).
        #[arg(long = "expert-category", required = true)]
        expert_categories: Vec<String>,
        /// Remote evaluation: no experts from the tender's region.
        #[arg(long)]
        remote: bool,
    },
    /// Open a tender at or after its opening time (its center).
    Open {
        #[command(flatten)]
        send: Send,
        #[arg(long)]
        id: String,
    },
    /// Close the decryption window: revoke unrevealed bids (its center).
    CloseReveal {
        #[command(flatten)]
        send: Send,
        #[arg(long)]
        id: String,
    },
    /// Award the tender to a consistent bid (its center).
    Award {
        #[command(flatten)]
        send: Send,
        #[arg(long)]
        id: String,
        /// The winning bidder's public key.
        #[arg(long)]
        winner: PublicKey,
    },
    /// Record which unit a bidder account bids for (a center).
    RegisterBidder {
        #[command(flatten)]
        send: Send,
        /// The bidder's public key.
        #[arg(long)]
        bidder: PublicKey,
        /// Its unit (name or credit code; hashed).
        #[arg(long)]
        unit: String,
    },
    /// Show a tender, its bids and its collusion flags.
    Show {
        #[arg(long)]
        id: String,
        #[arg(long, env = "BIDCHAIN_RPC")]
        rpc: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum BidCommand {
    /// Seal a bid before the deadline (a bidder).
    Submit(SealArgs),
    /// Replace a sealed bid before the deadline.
    Replace(SealArgs),
    /// Withdraw a sealed bid before the deadline.
    Withdraw {
        #[command(flatten)]
        send: Send,
        #[arg(long)]
        tender: String,
    },
    /// Reveal the plaintext bid file at opening.
    Reveal {
        #[command(flatten)]
        send: Send,
        #[arg(long)]
        tender: String,
        /// The plaintext bid file that was sealed.
        #[arg(long)]
        file: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
pub struct SealArgs {
    #[command(flatten)]
    send: Send,
    #[arg(long)]
    tender: String,
    /// The plaintext bid file (only a salted commitment to its hash goes on chain).
    #[arg(long)]
    file: PathBuf,
    /// The encrypted bid file (its SHA-256 goes on chain).
    #[arg(long)]
    cipher_file: PathBuf,
    /// 文件制作机器码 from the bid file.
    #[arg(long)]
    machine_code: String,
    /// 文件创建标识码 from the bid file.
    #[arg(long)]
    file_creation_id: String,
    /// Pricing-software dongle serial.
    #[arg(long)]
    dongle_serial: String,
    /// MAC + CPU serial + disk serial of the making computer, as one string.
    #[arg(long)]
    hardware: String,
}

#[derive(Subcommand, Debug)]
pub enum ExpertsCommand {
    /// Register or update an expert (the hub).
    Register {
        #[command(flatten)]
        send: Send,
        /// The expert's id in the expert library (hashed).
        #[arg(long)]
        expert: String,
        #[arg(long = "category", required = true)]
        categories: Vec<String>,
        #[arg(long)]
        region: String,
        /// The expert's employer unit (hashed).
        #[arg(long)]
        unit: String,
    },
    /// Suspend or reinstate an expert (the hub).
    SetStatus {
        #[command(flatten)]
        send: Send,
        #[arg(long)]
        expert: String,
        /// `active` or `suspended`.
        #[arg(long)]
        status: String,
    },
    /// Draw a tender's committee and alternates (its center, once it is opened): requests
    /// the draw, then makes it in a later block with the seed of the block after the request.
    Draw {
        #[command(flatten)]
        send: Send,
        #[arg(long)]
        tender: String,
    },
    /// Show a tender's recorded draw.
    ShowDraw {
        #[arg(long)]
        tender: String,
        #[arg(long, env = "BIDCHAIN_RPC")]
        rpc: String,
    },
    /// Check a tender's draw from genesis: prove the record and the seed, recompute the
    /// ranking. Exit 0 verified, 1 not verified, 2 could not check.
    VerifyDraw {
        #[arg(long)]
        tender: String,
        #[arg(long, env = "BIDCHAIN_RPC")]
        rpc: String,
        #[arg(long)]
        genesis: std::path::PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum ArchiveCommand {
    /// Record a file of a tender's archive (its center).
    Record {
        #[command(flatten)]
        send: Send,
        #[arg(long)]
        tender: String,
        /// tender-document, bid-file, opening-record, evaluation-report, award-notice,
        /// contract or recording.
        #[arg(long)]
        kind: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// List a tender's archive records.
    Show {
        #[arg(long)]
        tender: String,
        #[arg(long, env = "BIDCHAIN_RPC")]
        rpc: String,
    },
}

/// Who sends, and where.
#[derive(clap::Args, Debug)]
pub struct Send {
    /// Key file of the sending account.
    #[arg(long)]
    key: PathBuf,
    #[arg(long, env = "BIDCHAIN_RPC")]
    rpc: String,
}

fn tender_id(text: &str) -> Result<TenderId> {
    TenderId::new(text).map_err(|e| anyhow::anyhow!("{e}"))
}

fn label(text: &str) -> Result<Label> {
    Label::new(text).map_err(|e| anyhow::anyhow!("{text:?}: {e}"))
}

fn time_ms(text: &str) -> Result<u64> {
    Ok(Timestamp::parse_rfc3339(text)?.as_millis())
}

fn file_digest(path: &Path) -> Result<(bidchain_trading::Digest, u64)> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    Ok((trading::sha256(&bytes), bytes.len() as u64))
}

/// Sends `call` to `contract`, waits for its block and prints the receipt; a refusal is an
/// error carrying the contract's code and reason.
async fn send<C: Encode>(send: &Send, contract: &str, call: &C) -> Result<TxResponse> {
    let key = read_key_file(&send.key)?;
    let client = Client::new(&send.rpc)?;
    let payload = Payload::call(contract, call.encode()).context("call too large")?;
    let admitted = client.sign_and_submit(&key, payload).await?;
    let receipt = client
        .wait_included(&admitted.tx_hash, INCLUSION_TIMEOUT)
        .await?;
    print_receipt(&receipt);
    match &receipt.result {
        Some(TxOutcome::Rejected { code, reason }) => {
            bail!("the chain refused it ({code}): {reason}")
        }
        _ => Ok(receipt),
    }
}

/// A receipt in words: where it landed and what the contract said.
pub fn print_receipt(receipt: &TxResponse) {
    let height = receipt.height.map_or(0, |h| h.0);
    match (&receipt.status, &receipt.result) {
        (TxStatus::Rejected, Some(TxOutcome::Rejected { code, reason })) => {
            println!(
                "tx {} refused at height {height} ({code}): {reason}",
                receipt.tx_hash
            );
        }
        _ => println!("tx {} committed at height {height}", receipt.tx_hash),
    }
    for event in &receipt.events {
        println!("  {} {}", event.kind.as_str(), event_attrs(event));
    }
}

/// An event's attributes as `key=value` words.
pub fn event_attrs(event: &Event) -> String {
    let attrs: Vec<String> = event
        .attributes
        .iter()
        .map(|a| format!("{}={}", a.key.as_str(), a.value.as_str()))
        .collect();
    attrs.join(" ")
}

pub async fn tender(cmd: TenderCommand) -> Result<()> {
    match cmd {
        TenderCommand::Create {
            send: s,
            id,
            document,
            category,
            region,
            tenderer_unit,
            deadline,
            opening,
            decryption_window,
            min_bidders,
            experts,
            alternates,
            expert_categories,
            remote,
        } => {
            let params = TenderParams {
                id: tender_id(&id)?,
                document_hash: file_digest(&document)?.0,
                category: label(&category)?,
                region: label(&region)?,
                tenderer_unit: trading::unit_id(&tenderer_unit),
                deadline_ms: time_ms(&deadline)?,
                opening_ms: time_ms(&opening)?,
                decryption_window_ms: u64::try_from(decryption_window.as_millis())?,
                min_bidders,
                expert_count: experts,
                alternates,
                expert_categories: expert_categories
                    .iter()
                    .map(|c| label(c))
                    .collect::<Result<_>>()?,
                remote,
            };
            params.check().map_err(|e| anyhow::anyhow!("{e}"))?;
            send(&s, names::TENDER, &TenderCall::Create(params)).await?;
        }
        TenderCommand::Open { send: s, id } => {
            send(
                &s,
                names::TENDER,
                &TenderCall::Open {
                    tender: tender_id(&id)?,
                },
            )
            .await?;
        }
        TenderCommand::CloseReveal { send: s, id } => {
            let call = TenderCall::CloseReveal {
                tender: tender_id(&id)?,
            };
            send(&s, names::TENDER, &call).await?;
        }
        TenderCommand::Award {
            send: s,
            id,
            winner,
        } => {
            let call = TenderCall::Award {
                tender: tender_id(&id)?,
                winner: trading::account_key(&winner),
            };
            send(&s, names::TENDER, &call).await?;
        }
        TenderCommand::RegisterBidder {
            send: s,
            bidder,
            unit,
        } => {
            let call = TenderCall::RegisterBidder {
                bidder: trading::account_key(&bidder),
                unit: trading::unit_id(&unit),
            };
            send(&s, names::TENDER, &call).await?;
        }
        TenderCommand::Show { id, rpc } => {
            show_tender(&Client::new(&rpc)?, &tender_id(&id)?).await?
        }
    }
    Ok(())
}

async fn show_tender(client: &Client, id: &TenderId) -> Result<()> {
    let tender: Tender = client
        .contract_state(names::TENDER, &tender::keys::tender(id))
        .await?
        .with_context(|| format!("no tender {id}"))?;
    let p = &tender.params;
    println!("tender {id}: {}", tender.status.name());
    println!(
        "  deadline {}  opening {}",
        format_ms(p.deadline_ms),
        format_ms(p.opening_ms)
    );
    if let Some(reason) = &tender.failure {
        println!("  failed: {reason}");
    }
    if let Some(winner) = &tender.winner {
        println!("  awarded to {winner}");
    }
    for n in 0..tender.bidder_count {
        let bidder: AccountKey = client
            .contract_state(names::TENDER, &tender::keys::bidder(id, n))
            .await?
            .with_context(|| format!("tender {id} counts bidder {n} but does not list it"))?;
        let bid: Option<Bid> = client
            .contract_state(names::TENDER, &tender::keys::bid(id, &bidder))
            .await?;
        if let Some(bid) = bid {
            println!(
                "  bid {} v{} {}",
                bidder.short(),
                bid.version,
                bid.status.name()
            );
        }
    }
    for flag in collusion_flags(client, id).await? {
        println!(
            "  collusion flag: {} shared by {} and {}",
            flag.field.name(),
            flag.first.short(),
            flag.second.short()
        );
    }
    Ok(())
}

/// A tender's collusion flags as the chain stores them.
pub async fn collusion_flags(client: &Client, id: &TenderId) -> Result<Vec<CollusionFlag>> {
    let count: u32 = client
        .contract_state(names::TENDER, &tender::keys::flag_count(id))
        .await?
        .unwrap_or(0);
    let mut flags = Vec::new();
    for i in 0..count {
        let flag = client
            .contract_state(names::TENDER, &tender::keys::flag(id, i))
            .await?
            .with_context(|| format!("flag {i} of tender {id} is missing"))?;
        flags.push(flag);
    }
    Ok(flags)
}

pub async fn bid(cmd: BidCommand) -> Result<()> {
    match cmd {
        BidCommand::Submit(args) => seal(args, false).await,
        BidCommand::Replace(args) => seal(args, true).await,
        BidCommand::Withdraw { send: s, tender } => {
            let call = TenderCall::Withdraw {
                tender: tender_id(&tender)?,
            };
            send(&s, names::TENDER, &call).await.map(drop)
        }
        BidCommand::Reveal {
            send: s,
            tender,
            file,
        } => {
            let key = read_key_file(&s.key)?;
            let tender = tender_id(&tender)?;
            let file_hash = file_digest(&file)?.0;
            let salt = trading::bid_salt(&key, &tender, &file_hash);
            let call = TenderCall::Reveal {
                tender,
                file_hash,
                salt,
            };
            send(&s, names::TENDER, &call).await.map(drop)
        }
    }
}

async fn seal(args: SealArgs, replace: bool) -> Result<()> {
    let key = read_key_file(&args.send.key)?;
    let tender = tender_id(&args.tender)?;
    let bid = trading::sealed_bid(
        &key,
        &tender,
        &file_digest(&args.file)?.0,
        file_digest(&args.cipher_file)?.0,
        trading::fingerprints(
            &args.machine_code,
            &args.file_creation_id,
            &args.dongle_serial,
            &args.hardware,
        ),
    );
    let call = if replace {
        TenderCall::Replace { tender, bid }
    } else {
        TenderCall::Submit { tender, bid }
    };
    send(&args.send, names::TENDER, &call).await.map(drop)
}

pub async fn experts(cmd: ExpertsCommand) -> Result<()> {
    match cmd {
        ExpertsCommand::Register {
            send: s,
            expert,
            categories,
            region,
            unit,
        } => {
            let expert = Expert {
                id: trading::expert_id(&expert),
                categories: categories.iter().map(|c| label(c)).collect::<Result<_>>()?,
                region: label(&region)?,
                unit: trading::unit_id(&unit),
                status: ExpertStatus::Active,
            };
            send(&s, names::EXPERTS, &ExpertsCall::Register(expert))
                .await
                .map(drop)
        }
        ExpertsCommand::SetStatus {
            send: s,
            expert,
            status,
        } => {
            let status = match status.as_str() {
                "active" => ExpertStatus::Active,
                "suspended" => ExpertStatus::Suspended,
                other => bail!("status {other:?}: expected active or suspended"),
            };
            let call = ExpertsCall::SetStatus {
                id: trading::expert_id(&expert),
                status,
            };
            send(&s, names::EXPERTS, &call).await.map(drop)
        }
        ExpertsCommand::Draw { send: s, tender } => {
            // Requested in one block, made in a later one with the seed of the block after
            // the request.
            let tender = tender_id(&tender)?;
            let call = ExpertsCall::RequestDraw {
                tender: tender.clone(),
            };
            send(&s, names::EXPERTS, &call).await?;
            send(&s, names::EXPERTS, &ExpertsCall::Draw { tender }).await?;
            Ok(())
        }
        ExpertsCommand::VerifyDraw { .. } => {
            anyhow::bail!("verify-draw is dispatched by main, with its own exit codes")
        }
        ExpertsCommand::ShowDraw { tender, rpc } => {
            let id = tender_id(&tender)?;
            let record: DrawRecord = Client::new(&rpc)?
                .contract_state(names::EXPERTS, &experts::keys::draw(&id))
                .await?
                .with_context(|| format!("tender {id} has no draw"))?;
            print_draw(&record);
            Ok(())
        }
    }
}

pub fn print_draw(record: &DrawRecord) {
    println!(
        "draw for {} at height {} ({}), seed {}, registry {} experts ({})",
        record.request.tender,
        record.height,
        format_ms(record.time_ms),
        record.seed,
        record.registry_size,
        record.registry_hash.short()
    );
    let ids = |ids: &[bidchain_trading::ExpertId]| {
        ids.iter()
            .map(|id| id.short())
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("  committee:  {}", ids(&record.members));
    println!("  alternates: {}", ids(&record.alternates));
}

pub async fn archive(cmd: ArchiveCommand) -> Result<()> {
    match cmd {
        ArchiveCommand::Record {
            send: s,
            tender,
            kind,
            file,
        } => {
            let kind = ArchiveKind::parse(&kind)
                .with_context(|| format!("unknown archive kind {kind:?}"))?;
            let (sha256, size_bytes) = file_digest(&file)?;
            let call = ArchiveCall::Record {
                tender: tender_id(&tender)?,
                kind,
                sha256,
                size_bytes,
            };
            send(&s, names::ARCHIVE, &call).await.map(drop)
        }
        ArchiveCommand::Show { tender, rpc } => {
            let id = tender_id(&tender)?;
            let client = Client::new(&rpc)?;
            let index: Vec<(ArchiveKind, bidchain_trading::Digest)> = client
                .contract_state(names::ARCHIVE, &archive::keys::index(&id))
                .await?
                .unwrap_or_default();
            for (kind, hash) in index {
                let record: Option<ArchiveRecord> = client
                    .contract_state(names::ARCHIVE, &archive::keys::record(&id, kind, &hash))
                    .await?;
                if let Some(r) = record {
                    println!(
                        "{:<18} {} {:>10} bytes  height {}  {}",
                        kind.name(),
                        hash,
                        r.size_bytes,
                        r.height,
                        format_ms(r.time_ms)
                    );
                }
            }
            Ok(())
        }
    }
}
