//! `bidchain demo`: a local chain run end to end, each step checked and printed for a person
//! to follow. Exits non-zero if any step does not hold.
//!
//! It runs a local network (four validators and an observer, each a process, over libp2p)
//! through the account rules, a whole tender under the trading contracts (see
//! [`crate::demo_tender`]), a crash and an observer's sync.

// The demo prints its steps for a person to follow: printing is its interface.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bidchain_genesis::{ConsensusParams, Genesis};
use bidchain_node::api::TxStatus;
use bidchain_runtime::bounded::BoundedString;
use bidchain_runtime::crypto::Keypair;
use bidchain_runtime::ids::{AccountId, Height, Nonce};
use bidchain_runtime::proof::{Bundle, Claim};
use bidchain_runtime::receipt::TxOutcome;
use bidchain_runtime::tx::{NativeCall, Payload, Role, SignedTransaction, Transaction};
use bidchain_trading::TenderId;
use bidchain_trading::archive::ArchiveKind;

use crate::client::{Client, Refused};
use crate::demo_tender::{DEMO_TENDER, archive_file};
use crate::localnet::{Localnet, LocalnetSpec};
use crate::process::NodeProcess;
use crate::proof_cli::{DrawCheck, FileCheck, FileTarget, fetch_and_check_draw, trust_of};

const INCLUDE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct DemoOptions {
    pub dir: Option<PathBuf>,
    pub keep: bool,
}

fn step(n: u32, text: &str) {
    println!("\n[{n}] {text}");
}

fn ok(text: &str) {
    println!("    ok  {text}");
}

/// Runs the demo with this binary as the node.
pub async fn run(options: DemoOptions) -> Result<()> {
    let dir = match options.dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("bidchain-demo-{}", std::process::id())),
    };
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!(
            "{} is not empty; give --dir an empty or new directory",
            dir.display()
        );
    }
    let bin = std::env::current_exe().context("locate the bidchain binary")?;
    let result = run_in(&dir, &bin).await;
    match (&result, options.keep) {
        (Ok(()), false) => {
            let _ = std::fs::remove_dir_all(&dir);
        }
        _ => println!("\nfiles and node log kept in {}", dir.display()),
    }
    result
}

struct Parties {
    hub: Keypair,
    center: Keypair,
    bidders: Vec<Keypair>,
}

async fn run_in(dir: &Path, bin: &Path) -> Result<()> {
    step(
        1,
        "generate a local network: the provincial hub and three city centers validate, one \
         observer in another province follows",
    );
    let mut spec = LocalnetSpec::new(VALIDATORS, 1);
    spec.base_port = 0;
    spec.chain_id = "bidchain-demo".to_owned();
    spec.consensus = ConsensusParams {
        block_interval_ms: 200,
        ..ConsensusParams::default()
    };
    let mut net = Localnet::create_or_load(dir, &spec)?;
    let genesis = net.genesis.clone();
    ok(&format!(
        "chain {} genesis {}",
        genesis.chain_id,
        genesis.hash()
    ));

    step(
        2,
        "start the four validators, each its own process, over libp2p",
    );
    let mut nodes = Vec::new();
    for i in 0..VALIDATORS {
        let node = net.start_node(bin, i).await?;
        let status = node.client.status().await?;
        ensure!(
            status.genesis_hash == genesis.hash(),
            "node runs another genesis"
        );
        ok(&format!(
            "{} pid {} answers at {}",
            status.node_name,
            node.pid(),
            node.client.base()
        ));
        nodes.push(node);
    }
    let parties = Parties {
        hub: net.key(0)?,
        center: Keypair::generate(),
        bidders: (0..6).map(|_| Keypair::generate()).collect(),
    };

    let client = nodes[1].client.clone();
    let center_tx = accounts_flow(&client, &parties, &genesis).await?;
    refusals(&client, &parties, &genesis).await?;
    audit(&nodes[2].client, &genesis, &center_tx).await?;
    let trading = crate::demo_tender::TradingParties {
        hub: &parties.hub,
        center: &parties.center,
        bidders: &parties.bidders,
    };
    let n = crate::demo_tender::run(&client, &trading, 8).await?;
    let bundle = audit_tender(&nodes[3].client, &genesis, dir, n).await?;
    crash_and_catch_up(&mut net, bin, &mut nodes, &parties, n + 1).await?;
    observer_follows(&mut net, bin, &nodes, n + 2).await?;

    step(n + 3, "stop every node (SIGTERM)");
    for node in &mut nodes {
        node.stop().await?;
    }
    ok("all nodes stopped cleanly");
    audit_offline(&genesis, &bundle, n + 4)?;
    println!("\nEvery step held.");
    Ok(())
}

const VALIDATORS: usize = 4;

/// The auditor's online checks: the draw recomputed from proven inputs, and the award
/// notice's proof bundle exported to a file. Returns the file.
async fn audit_tender(client: &Client, genesis: &Genesis, dir: &Path, n: u32) -> Result<PathBuf> {
    step(
        n,
        "an auditor checks the draw from genesis (proven record and seed, ranking recomputed) \
         and exports the award notice's proof bundle",
    );
    let trust = trust_of(genesis)?;
    let tender = TenderId::new(DEMO_TENDER).map_err(|e| anyhow::anyhow!("{e}"))?;
    match fetch_and_check_draw(client, &trust, &tender).await? {
        DrawCheck::Verified { record, anchor } => ok(&format!(
            "draw verified: committee of {} and {} alternates, seed of block {}, proven at height {}",
            record.members.len(),
            record.alternates.len(),
            record.requested_height + 1,
            anchor.height
        )),
        other => bail!("the draw did not verify: {other:?}"),
    }
    let file = archive_file(ArchiveKind::AwardNotice);
    let target = FileTarget::of_bytes(&file, DEMO_TENDER, ArchiveKind::AwardNotice.name())?;
    let bytes = client.bundle(&target.proof_path()).await?;
    let path = dir.join("award-notice.bundle");
    std::fs::write(&path, &bytes)?;
    ok(&format!(
        "{} bytes written to {}",
        bytes.len(),
        path.display()
    ));
    Ok(path)
}

/// With every node stopped: the award notice verifies from the bundle file and genesis;
/// the same file with one byte changed does not.
fn audit_offline(genesis: &Genesis, bundle: &Path, n: u32) -> Result<()> {
    step(
        n,
        "with every node stopped, the auditor verifies the award notice from the bundle file \
         and genesis alone; a copy with one byte changed is refused",
    );
    let trust = trust_of(genesis)?;
    let bytes = std::fs::read(bundle)?;
    let kind = ArchiveKind::AwardNotice.name();
    let mut file = archive_file(ArchiveKind::AwardNotice);
    match FileTarget::of_bytes(&file, DEMO_TENDER, kind)?.check(&bytes, &trust) {
        FileCheck::Verified { record, anchor } => ok(&format!(
            "VERIFIED: recorded at height {}, proven at height {} by {}",
            record.height,
            anchor.height,
            anchor
                .signers
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        other => bail!("the award notice did not verify: {other:?}"),
    }
    file[0] ^= 1;
    match FileTarget::of_bytes(&file, DEMO_TENDER, kind)?.check(&bytes, &trust) {
        FileCheck::NotCovered => {
            ok("the changed copy is refused: the bundle does not cover its hash")
        }
        other => bail!("a changed file was not refused: {other:?}"),
    }
    Ok(())
}

/// A validator crashes; the others go on; it restarts and catches up.
async fn crash_and_catch_up(
    net: &mut Localnet,
    bin: &Path,
    nodes: &mut [NodeProcess],
    parties: &Parties,
    n: u32,
) -> Result<()> {
    step(
        n,
        "crash a city center's validator (SIGKILL): the other three go on; it restarts and \
         catches up, nothing lost",
    );
    let crashed = VALIDATORS - 1;
    let before = nodes[crashed].client.status().await?;
    nodes[crashed].kill()?;
    let hub = nodes[0].client.clone();
    let target = Height(hub.status().await?.height.0 + 3);
    hub.wait_height(target, INCLUDE_TIMEOUT).await?;
    ok(&format!("three validators committed up to height {target}"));
    nodes[crashed] = net.start_node(bin, crashed).await?;
    let node = &nodes[crashed].client;
    node.wait_height(target, INCLUDE_TIMEOUT).await?;
    let block = node.block(before.height).await?;
    ensure!(
        block.block_id == before.latest_block_hash,
        "block {} changed across the crash",
        before.height
    );
    ensure!(
        node.block(target).await?.block_id == hub.block(target).await?.block_id,
        "the restarted validator holds another block at {target}"
    );
    for bidder in &parties.bidders {
        node.account(&AccountId::of(&bidder.public())).await?;
    }
    ok(&format!(
        "restarted, caught up to height {target} with the same blocks"
    ));
    Ok(())
}

/// The observer syncs the chain from genesis, verifying every block.
async fn observer_follows(
    net: &mut Localnet,
    bin: &Path,
    nodes: &[NodeProcess],
    n: u32,
) -> Result<()> {
    step(
        n,
        "start the observer: it syncs the whole chain from genesis, checking every commit \
         certificate and state root, and never votes",
    );
    let mut observer = net.start_node(bin, VALIDATORS).await?;
    let hub = &nodes[0].client;
    let target = hub.status().await?.height;
    observer.client.wait_height(target, INCLUDE_TIMEOUT).await?;
    ensure!(
        observer.client.block(target).await?.block_id == hub.block(target).await?.block_id,
        "the observer holds another block at {target}"
    );
    let status = observer.client.status().await?;
    ensure!(status.role == "observer", "role is {}", status.role);
    ok(&format!(
        "observer at height {} with the validators' block hashes",
        status.height
    ));
    observer.stop().await
}

fn create_account(
    genesis: &Genesis,
    signer: &Keypair,
    nonce: Nonce,
    new: &Keypair,
    role: Role,
    label: &str,
) -> Result<SignedTransaction> {
    Ok(Transaction {
        chain_id: genesis.chain_id.clone(),
        sender: signer.public(),
        nonce,
        payload: Payload::Native(NativeCall::CreateAccount {
            key: new.public(),
            role,
            label: BoundedString::new(label)?,
        }),
    }
    .sign(signer))
}

async fn next_nonce(client: &Client, key: &Keypair) -> Result<Nonce> {
    Ok(client
        .account(&AccountId::of(&key.public()))
        .await?
        .next_nonce)
}

/// Steps 3–4: the hub opens a city center, the center registers bidders.
async fn accounts_flow(
    client: &Client,
    p: &Parties,
    genesis: &Genesis,
) -> Result<SignedTransaction> {
    step(3, "the hub opens an account for a city center");
    let tx = create_account(
        genesis,
        &p.hub,
        next_nonce(client, &p.hub).await?,
        &p.center,
        Role::Center,
        "center-nanjing",
    )?;
    let admitted = client.submit(&tx).await?;
    ok(&format!(
        "admitted: receipt of admission for tx {}",
        admitted.tx_hash
    ));
    let included = client
        .wait_included(&admitted.tx_hash, INCLUDE_TIMEOUT)
        .await?;
    ensure!(
        included.status == TxStatus::Committed,
        "center account: {:?}",
        included.result
    );
    ok(&format!(
        "committed at height {}",
        included.height.unwrap_or(Height(0))
    ));

    step(4, "the center registers six bidders (pseudonymous ids)");
    let mut hashes = Vec::new();
    let first = next_nonce(client, &p.center).await?;
    for (i, bidder) in p.bidders.iter().enumerate() {
        let tx = create_account(
            genesis,
            &p.center,
            Nonce(first.0 + i as u64),
            bidder,
            Role::Bidder,
            &format!("bidder-{i}"),
        )?;
        hashes.push(client.submit(&tx).await?.tx_hash);
    }
    for hash in &hashes {
        let included = client.wait_included(hash, INCLUDE_TIMEOUT).await?;
        ensure!(
            included.status == TxStatus::Committed,
            "bidder account: {:?}",
            included.result
        );
    }
    ok(&format!("{} bidder accounts committed", hashes.len()));
    Ok(tx)
}

/// Steps 5–6: what the chain refuses, and why.
async fn refusals(client: &Client, p: &Parties, genesis: &Genesis) -> Result<()> {
    step(
        5,
        "a center may not create an auditor: the tx is included and refused by the rule",
    );
    let auditor = Keypair::generate();
    let tx = create_account(
        genesis,
        &p.center,
        next_nonce(client, &p.center).await?,
        &auditor,
        Role::Auditor,
        "auditor",
    )?;
    let hash = client.submit(&tx).await?.tx_hash;
    let included = client.wait_included(&hash, INCLUDE_TIMEOUT).await?;
    match &included.result {
        Some(TxOutcome::Rejected { code, reason }) if code.as_str() == "not_permitted" => {
            ok(&format!(
                "rejected at height {}: {reason}",
                included.height.unwrap_or(Height(0))
            ));
        }
        other => bail!("expected a not_permitted rejection, got {other:?}"),
    }

    step(
        6,
        "a replayed transaction and garbage bytes are refused at admission",
    );
    match client.submit(&tx).await {
        Err(err) => match err.downcast_ref::<Refused>() {
            Some(refused) => ok(&format!("replay refused: {}", refused.message)),
            None => return Err(err),
        },
        Ok(_) => bail!("a replayed transaction was admitted"),
    }
    match client.submit_raw(vec![0xde, 0xad, 0xbe, 0xef]).await {
        Err(err)
            if err
                .downcast_ref::<Refused>()
                .is_some_and(|r| r.code == "malformed_tx") =>
        {
            ok("garbage refused as malformed_tx; node still answering");
        }
        other => bail!("garbage bytes were not refused as malformed: {other:?}"),
    }
    client.status().await?;
    Ok(())
}

/// Step 7: check a receipt without trusting the node.
async fn audit(client: &Client, genesis: &Genesis, tx: &SignedTransaction) -> Result<()> {
    step(
        7,
        "check the center's receipt from genesis (proof bundle: Merkle proofs + certificate)",
    );
    let trust = trust_of(genesis)?;
    let bytes = client.bundle(&format!("/txs/{}/proof", tx.hash())).await?;
    let (_, verified) = Bundle::open(&bytes, &trust)?;
    let signers: Vec<&str> = verified.signers.iter().map(|s| s.name.as_str()).collect();
    ok(&format!(
        "tx {} is in block {} at {}, certified by {} ({} bytes of proof)",
        tx.hash(),
        verified.height,
        verified.time,
        signers.join(", "),
        bytes.len()
    ));
    let mut tampered = Bundle::decode(&bytes)?;
    if let Claim::Receipt { receipt, .. } = &mut tampered.claim {
        receipt.fuel_used += 1;
    }
    ensure!(
        tampered.verify(&trust).is_err(),
        "a tampered receipt verified"
    );
    ok("a tampered copy of the receipt is refused");
    Ok(())
}
