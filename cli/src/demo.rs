//! `bidchain demo`: a local chain run end to end, each step checked and printed for a person
//! to follow. Exits non-zero if any step does not hold.
//!
//! Today it runs one validator (the provincial hub) and the native account rules; the
//! tender flow joins as the contracts land.

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
use bidchain_runtime::receipt::TxOutcome;
use bidchain_runtime::time::Timestamp;
use bidchain_runtime::tx::{NativeCall, Payload, Role, SignedTransaction, Transaction};

use crate::client::{Client, Refused};
use crate::process::NodeProcess;
use crate::setup;
use crate::verify::verify_receipt;

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
        "generate keys and a genesis: the provincial hub is the one validator",
    );
    let parties = Parties {
        hub: Keypair::generate(),
        center: Keypair::generate(),
        bidders: (0..3).map(|_| Keypair::generate()).collect(),
    };
    let genesis = demo_genesis(&parties.hub)?;
    let home = dir.join("hub");
    setup::init_home(&home, &genesis, &parties.hub, "hub", "127.0.0.1:0".parse()?)?;
    ok(&format!(
        "chain {} genesis {}",
        genesis.chain_id,
        genesis.hash()
    ));

    step(2, "start the validator node as its own process");
    let log = dir.join("hub.log");
    let mut node = NodeProcess::spawn(bin, &home, &log).await?;
    let status = node.client.status().await?;
    ensure!(
        status.genesis_hash == genesis.hash(),
        "node runs another genesis"
    );
    ok(&format!(
        "node pid {} answers at {} (height {})",
        node.pid(),
        node.client.base(),
        status.height
    ));

    let client = node.client.clone();
    let center_tx = accounts_flow(&client, &parties, &genesis).await?;
    refusals(&client, &parties, &genesis).await?;
    audit(&client, &genesis, &center_tx).await?;

    step(
        8,
        "crash the node (SIGKILL) and restart it: nothing committed may be lost",
    );
    let before = client.status().await?;
    node.kill()?;
    let mut node = NodeProcess::spawn(bin, &home, &log).await?;
    let after = node.client.status().await?;
    ensure!(
        after.height >= before.height,
        "height went back from {} to {}",
        before.height,
        after.height
    );
    let block = node.client.block(before.height).await?;
    ensure!(
        block.block_id == before.latest_block_hash,
        "block {} changed across the crash",
        before.height
    );
    for bidder in &parties.bidders {
        node.client
            .account(&AccountId::of(&bidder.public()))
            .await?;
    }
    ok(&format!(
        "restarted at height {} with block {} intact",
        after.height, block.block_id
    ));

    step(9, "stop the node (SIGTERM)");
    node.stop().await?;
    ok("node stopped cleanly");
    println!("\nEvery step held.");
    Ok(())
}

fn demo_genesis(hub: &Keypair) -> Result<Genesis> {
    let validator = setup::parse_validator(&format!(
        "hub:hub:{}:/ip4/127.0.0.1/tcp/26656",
        hub.public()
    ))?;
    let consensus = ConsensusParams {
        block_interval_ms: 200,
        ..ConsensusParams::default()
    };
    let now = Timestamp::from_system(std::time::SystemTime::now());
    setup::new_genesis(
        "bidchain-demo",
        Timestamp(now.as_millis() - 1_000),
        consensus,
        vec![validator],
        vec![],
    )
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

    step(4, "the center registers three bidders (pseudonymous ids)");
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
        "check the center's receipt against the genesis validator set (proof + certificate)",
    );
    let answer = client.tx(&tx.hash()).await?;
    let height = answer.height.context("receipt has no height")?;
    let block = client.block(height).await?;
    let verified = verify_receipt(genesis, &answer, &block)?;
    ok(&format!(
        "tx {} is at height {}, index {}, block time {}, certified by {}",
        tx.hash(),
        height,
        verified.receipt.index,
        block.header.time,
        verified.signers.join(", ")
    ));
    let mut tampered = answer.clone();
    tampered.index = tampered.index.map(|i| i + 1);
    ensure!(
        verify_receipt(genesis, &tampered, &block).is_err(),
        "a tampered receipt verified"
    );
    ok("a tampered copy of the receipt is refused");
    Ok(())
}
