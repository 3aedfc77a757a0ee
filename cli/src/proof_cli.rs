//! Checking what the chain recorded while trusting no node: `receipt check`, `audit
//! verify`, `audit export` and `experts verify-draw`. Each takes a proof bundle (fetched
//! from any node, or from a file) and checks it against the genesis file alone.
//!
//! Exit codes: 0 verified, 1 not verified (the chain says otherwise, or the evidence does
//! not hold), 2 could not check (no node, unreadable file or genesis).

// A checker's verdict, printed, is its interface.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use bidchain_genesis::Genesis;
use bidchain_runtime::proof::{Bundle, BundleError, Claim, Trust, Verified};
use bidchain_runtime::receipt::{Receipt, TxOutcome};
use bidchain_runtime::state::contract_key;
use bidchain_runtime::tx::TxHash;
use bidchain_trading::archive::{self, ArchiveKind, ArchiveRecord};
use bidchain_trading::experts::{self, DrawRecord};
use bidchain_trading::time::format_ms;
use bidchain_trading::{Decode, Digest, TenderId};
use clap::Subcommand;

use crate::client::Client;
use crate::trading::{self, contract_names as names};
use crate::trading_cli::event_attrs;

/// What a check concluded (an `Err` instead means it could not check).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    Verified,
    NotVerified,
}

impl Verdict {
    pub fn exit_code(result: &Result<Verdict>) -> u8 {
        match result {
            Ok(Verdict::Verified) => 0,
            Ok(Verdict::NotVerified) => 1,
            Err(_) => 2,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ReceiptCommand {
    /// Check a transaction's receipt from genesis and say what the chain recorded.
    Check {
        tx_hash: TxHash,
        #[arg(long, env = "BIDCHAIN_RPC")]
        rpc: String,
        #[arg(long)]
        genesis: PathBuf,
    },
}

/// A tender's file of one archive kind.
#[derive(clap::Args, Debug)]
pub struct FileArgs {
    file: PathBuf,
    #[arg(long)]
    tender: String,
    /// tender-document, bid-file, opening-record, evaluation-report, award-notice,
    /// contract or recording.
    #[arg(long)]
    kind: String,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check that FILE is the file the chain recorded for the tender and kind.
    Verify {
        #[command(flatten)]
        file: FileArgs,
        /// Fetch the proof from this node...
        #[arg(long, env = "BIDCHAIN_RPC")]
        rpc: Option<String>,
        /// ... or read it from a file written by `audit export` (fully offline; wins over
        /// --rpc).
        #[arg(long)]
        bundle: Option<PathBuf>,
        #[arg(long)]
        genesis: PathBuf,
    },
    /// Write the proof bundle of FILE's record to OUT, for checking offline later.
    Export {
        #[command(flatten)]
        file: FileArgs,
        #[arg(long, env = "BIDCHAIN_RPC")]
        rpc: String,
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn trust(genesis: &Path) -> Result<Trust> {
    trust_of(&Genesis::load(genesis)?)
}

/// What a checker trusts: the genesis file's chain, hash and validator set.
pub fn trust_of(genesis: &Genesis) -> Result<Trust> {
    Ok(Trust {
        chain_id: genesis.chain_id.clone(),
        genesis_hash: genesis.hash(),
        validators: genesis.validator_set()?,
    })
}

/// Decodes and checks a bundle; `None` (after saying why) when it does not hold.
fn check_bundle(bytes: &[u8], trust: &Trust) -> Option<(Bundle, Verified)> {
    match Bundle::open(bytes, trust) {
        Ok(checked) => Some(checked),
        Err(err) => {
            println!("NOT VERIFIED: {err}");
            None
        }
    }
}

fn describe_anchor(verified: &Verified) -> String {
    let names: Vec<&str> = verified.signers.iter().map(|s| s.name.as_str()).collect();
    let changes = match verified.set_changes {
        0 => "the genesis validator set".to_owned(),
        n => format!("the validator set genesis leads to through {n} change(s)"),
    };
    format!(
        "block {} at {}, certified by {} of {changes}: {}",
        verified.height,
        verified.time,
        names.len(),
        names.join(", ")
    )
}

pub async fn receipt(cmd: ReceiptCommand) -> Result<Verdict> {
    let ReceiptCommand::Check {
        tx_hash,
        rpc,
        genesis,
    } = cmd;
    let trust = trust(&genesis)?;
    // A node's "not committed" proves nothing (it may be behind, or lying): that is a
    // "could not check", not a "not verified".
    let bytes = Client::new(&rpc)?
        .bundle(&format!("/txs/{tx_hash}/proof"))
        .await
        .with_context(|| format!("no proof of transaction {tx_hash} from {rpc}"))?;
    let Some((bundle, verified)) = check_bundle(&bytes, &trust) else {
        return Ok(Verdict::NotVerified);
    };
    let Claim::Receipt { receipt, .. } = &bundle.claim else {
        println!("NOT VERIFIED: the bundle does not hold a receipt");
        return Ok(Verdict::NotVerified);
    };
    if receipt.tx_hash != tx_hash {
        println!(
            "NOT VERIFIED: the bundle is for transaction {}",
            receipt.tx_hash
        );
        return Ok(Verdict::NotVerified);
    }
    print_receipt(receipt, &verified);
    Ok(Verdict::Verified)
}

fn print_receipt(receipt: &Receipt, verified: &Verified) {
    println!(
        "VERIFIED: transaction {} is in {}",
        receipt.tx_hash,
        describe_anchor(verified)
    );
    match &receipt.outcome {
        TxOutcome::Ok => println!(
            "  accepted at height {}, position {}, block time {}",
            receipt.height, receipt.index, verified.time
        ),
        TxOutcome::Rejected { code, reason } => println!(
            "  refused at height {}, block time {}: {code}: {reason}",
            receipt.height, verified.time
        ),
    }
    for event in receipt.events.iter() {
        println!("  event {}: {}", event.kind.as_str(), event_attrs(event));
        let deadline = event
            .attributes
            .iter()
            .find(|a| a.key.as_str() == "deadline");
        if let Some(deadline) = deadline {
            println!("  recorded before the deadline {}", deadline.value.as_str());
        }
    }
}

pub async fn audit(cmd: AuditCommand) -> Result<Verdict> {
    match cmd {
        AuditCommand::Verify {
            file,
            rpc,
            bundle,
            genesis,
        } => {
            let trust = trust(&genesis)?;
            let target = FileTarget::new(&file)?;
            let bytes = match (rpc, bundle) {
                (_, Some(path)) => std::fs::read(&path)
                    .with_context(|| format!("read bundle {}", path.display()))?,
                (Some(rpc), None) => Client::new(&rpc)?.bundle(&target.proof_path()).await?,
                (None, None) => return Err(anyhow!("give --rpc URL or --bundle FILE")),
            };
            Ok(target.report(&target.check(&bytes, &trust)))
        }
        AuditCommand::Export { file, rpc, out } => {
            let target = FileTarget::new(&file)?;
            let bytes = Client::new(&rpc)?.bundle(&target.proof_path()).await?;
            std::fs::write(&out, &bytes).with_context(|| format!("write {}", out.display()))?;
            println!(
                "wrote the proof bundle of {} ({} bytes) to {}",
                file.file.display(),
                bytes.len(),
                out.display()
            );
            Ok(Verdict::Verified)
        }
    }
}

/// What checking a file against its archive record found.
#[derive(Debug)]
pub enum FileCheck {
    Verified {
        record: ArchiveRecord,
        anchor: Verified,
    },
    /// The bundle itself does not hold (tampered, or not from this chain).
    BadBundle(BundleError),
    /// The bundle proves nothing about this file (another tender, kind or file).
    NotCovered,
    /// Proven absent; the tender's records of that kind the bundle lists are `others`.
    NotRecorded {
        others: Vec<ArchiveRecord>,
        anchor: Verified,
    },
    SizeDiffers {
        record: ArchiveRecord,
    },
    RecordUnreadable(String),
}

/// A file to check against a tender's archive records of one kind.
#[derive(Debug)]
pub struct FileTarget {
    pub tender: TenderId,
    pub kind: ArchiveKind,
    pub sha256: Digest,
    pub size_bytes: u64,
}

impl FileTarget {
    pub fn new(args: &FileArgs) -> Result<FileTarget> {
        let path = &args.file;
        let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        FileTarget::of_bytes(&bytes, &args.tender, &args.kind)
    }

    pub fn of_bytes(bytes: &[u8], tender: &str, kind: &str) -> Result<FileTarget> {
        let tender = TenderId::new(tender).map_err(|e| anyhow!("{e}"))?;
        let kind =
            ArchiveKind::parse(kind).with_context(|| format!("unknown archive kind {kind:?}"))?;
        Ok(FileTarget {
            tender,
            kind,
            sha256: trading::sha256(bytes),
            size_bytes: bytes.len() as u64,
        })
    }

    pub fn proof_path(&self) -> String {
        format!(
            "/archives/{}/{}/{}/proof",
            self.tender,
            self.kind.name(),
            hex::encode(self.sha256.0)
        )
    }

    /// Checks the file against a bundle's bytes.
    pub fn check(&self, bytes: &[u8], trust: &Trust) -> FileCheck {
        let (bundle, anchor) = match Bundle::open(bytes, trust) {
            Ok(checked) => checked,
            Err(err) => return FileCheck::BadBundle(err),
        };
        let key = contract_key(
            names::ARCHIVE,
            &archive::keys::record(&self.tender, self.kind, &self.sha256),
        );
        let value = match bundle.state_value(&key) {
            None => return FileCheck::NotCovered,
            Some(None) => {
                let others = self.listed_records(&bundle);
                return FileCheck::NotRecorded { others, anchor };
            }
            Some(Some(value)) => value,
        };
        match ArchiveRecord::decode(value) {
            Err(err) => FileCheck::RecordUnreadable(err.to_string()),
            Ok(record) if record.size_bytes != self.size_bytes => FileCheck::SizeDiffers { record },
            Ok(record) => FileCheck::Verified { record, anchor },
        }
    }

    /// The tender's records of this kind that the bundle proves.
    fn listed_records(&self, bundle: &Bundle) -> Vec<ArchiveRecord> {
        let prefix = contract_key(
            names::ARCHIVE,
            &archive::keys::records_of(&self.tender, self.kind),
        );
        let Claim::State { entries } = &bundle.claim else {
            return Vec::new();
        };
        entries
            .iter()
            .filter(|e| e.key.starts_with(&prefix))
            .filter_map(|e| e.value.as_ref())
            .filter_map(|v| ArchiveRecord::decode(v).ok())
            .collect()
    }

    /// Prints what `check` found, in words, and the verdict.
    pub fn report(&self, check: &FileCheck) -> Verdict {
        let (kind, tender, sha256) = (self.kind.name(), &self.tender, &self.sha256);
        match check {
            FileCheck::Verified { record, anchor } => {
                println!(
                    "VERIFIED: {kind} of tender {tender}, sha256 {sha256}, {} bytes",
                    self.size_bytes
                );
                println!(
                    "  recorded at height {}, block time {}, by {}, in transaction {}",
                    record.height,
                    format_ms(record.time_ms),
                    record.recorded_by,
                    record.tx
                );
                println!("  proven in the state of {}", describe_anchor(anchor));
                return Verdict::Verified;
            }
            FileCheck::BadBundle(err) => println!("NOT VERIFIED: {err}"),
            FileCheck::NotCovered => {
                println!("NOT VERIFIED: the bundle is for another file, tender or kind")
            }
            FileCheck::NotRecorded { others, anchor } if others.is_empty() => println!(
                "NOT VERIFIED: not recorded: as of block {} ({}), the chain holds no {kind} of tender {tender} with sha256 {sha256}",
                anchor.height, anchor.time
            ),
            FileCheck::NotRecorded { others, .. } => {
                println!(
                    "NOT VERIFIED: hash differs: the file's sha256 is {sha256}; the chain records for tender {tender} {kind}:"
                );
                for record in others {
                    println!(
                        "  sha256 {} ({} bytes) at height {}",
                        record.sha256, record.size_bytes, record.height
                    );
                }
            }
            FileCheck::SizeDiffers { record } => println!(
                "NOT VERIFIED: size differs: the file has {} bytes, the record {}",
                self.size_bytes, record.size_bytes
            ),
            FileCheck::RecordUnreadable(err) => {
                println!("NOT VERIFIED: the proven record does not decode: {err}")
            }
        }
        Verdict::NotVerified
    }
}

/// What checking a tender's draw found.
#[derive(Debug)]
pub enum DrawCheck {
    Verified {
        record: Box<DrawRecord>,
        anchor: Verified,
    },
    BadBundle(BundleError),
    NoDraw,
    RecordUnreadable(String),
    /// The seed bundle is for another block than the one after the request.
    WrongSeedBlock {
        expected: u64,
    },
    SeedDiffers {
        used: Digest,
        proven: Digest,
    },
    RankingDiffers {
        recomputed: String,
    },
}

/// The draw record a bundle proves for `tender`.
pub fn proven_draw(
    bytes: &[u8],
    trust: &Trust,
    tender: &TenderId,
) -> Result<(DrawRecord, Verified), DrawCheck> {
    let (bundle, anchor) = Bundle::open(bytes, trust).map_err(DrawCheck::BadBundle)?;
    let key = contract_key(names::EXPERTS, &experts::keys::draw(tender));
    let Some(Some(value)) = bundle.state_value(&key) else {
        return Err(DrawCheck::NoDraw);
    };
    let record =
        DrawRecord::decode(value).map_err(|e| DrawCheck::RecordUnreadable(e.to_string()))?;
    Ok((record, anchor))
}

/// Checks a draw bundle and the seed bundle of the block after its request, and
/// recomputes the ranking from the proven seed, qualified experts and request.
pub fn check_draw(draw: &[u8], seed: &[u8], trust: &Trust, tender: &TenderId) -> DrawCheck {
    let (record, anchor) = match proven_draw(draw, trust, tender) {
        Ok(proven) => proven,
        Err(check) => return check,
    };
    let expected = record.requested_height + 1;
    let seed_bundle = match Bundle::open(seed, trust) {
        Ok((bundle, _)) => bundle,
        Err(err) => return DrawCheck::BadBundle(err),
    };
    let proven = seed_bundle
        .seed()
        .filter(|_| seed_bundle.anchor.header.height.0 == expected);
    let Some(proven) = proven else {
        return DrawCheck::WrongSeedBlock { expected };
    };
    if proven.0 != record.seed.0 {
        return DrawCheck::SeedDiffers {
            used: record.seed,
            proven: Digest(proven.0),
        };
    }
    let sha256 = |b: &[u8]| trading::sha256(b).0;
    let recomputed = experts::rank(&record.seed, &record.qualified, &record.request, sha256);
    match recomputed {
        Ok(d) if d.members == record.members && d.alternates == record.alternates => {
            DrawCheck::Verified {
                record: Box::new(record),
                anchor,
            }
        }
        other => DrawCheck::RankingDiffers {
            recomputed: format!("{other:?}"),
        },
    }
}

fn report_draw(check: &DrawCheck) -> Verdict {
    match check {
        DrawCheck::Verified { record, anchor } => {
            crate::trading_cli::print_draw(record);
            println!(
                "VERIFIED: the committee and alternates are the ranking of the {} qualified experts by the seed of block {}",
                record.qualified.len(),
                record.requested_height + 1
            );
            println!("  proven in the state of {}", describe_anchor(anchor));
            return Verdict::Verified;
        }
        DrawCheck::BadBundle(err) => println!("NOT VERIFIED: {err}"),
        DrawCheck::NoDraw => println!("NOT VERIFIED: the chain holds no draw for this tender"),
        DrawCheck::RecordUnreadable(err) => {
            println!("NOT VERIFIED: the proven draw does not decode: {err}")
        }
        DrawCheck::WrongSeedBlock { expected } => {
            println!("NOT VERIFIED: the seed bundle is not for block {expected}")
        }
        DrawCheck::SeedDiffers { used, proven } => {
            println!("NOT VERIFIED: the draw used seed {used}, but the proven seed is {proven}")
        }
        DrawCheck::RankingDiffers { recomputed } => {
            println!("NOT VERIFIED: recomputing the ranking gives {recomputed}")
        }
    }
    Verdict::NotVerified
}

/// `bidchain experts verify-draw`.
pub async fn verify_draw(tender: &str, rpc: &str, genesis: &Path) -> Result<Verdict> {
    let trust = trust(genesis)?;
    let tender = TenderId::new(tender).map_err(|e| anyhow!("{e}"))?;
    let check = fetch_and_check_draw(&Client::new(rpc)?, &trust, &tender).await?;
    Ok(report_draw(&check))
}

/// Fetches the draw's bundle and its seed block's bundle from a node, and checks them.
pub async fn fetch_and_check_draw(
    client: &Client,
    trust: &Trust,
    tender: &TenderId,
) -> Result<DrawCheck> {
    let key = hex::encode(experts::keys::draw(tender));
    let draw = client
        .bundle(&format!("/contracts/{}/state/{key}/proof", names::EXPERTS))
        .await?;
    let seed_height = match proven_draw(&draw, trust, tender) {
        Ok((record, _)) => record.requested_height + 1,
        Err(check) => return Ok(check),
    };
    let seed = client
        .bundle(&format!("/blocks/{seed_height}/seed/proof"))
        .await?;
    Ok(check_draw(&draw, &seed, trust, tender))
}
