//! Helpers for the integration tests: real `bidchain` node processes on 127.0.0.1, and a
//! chain-consistency check that trusts nothing but the genesis.

// Test code: a failed unwrap or panic is a failed test, which is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use bidchain_cli::client::Client;
use bidchain_cli::process::{NodeProcess, locate_bidchain};
use bidchain_cli::setup;
use bidchain_genesis::{ConsensusParams, Genesis};
use bidchain_runtime::block::tx_leaf;
use bidchain_runtime::crypto::Keypair;
use bidchain_runtime::ids::{Height, Nonce};
use bidchain_runtime::merkle;
use bidchain_runtime::proof::Bundle;
use bidchain_runtime::time::Timestamp;
use bidchain_runtime::tx::{NativeCall, Payload, Role, SignedTransaction, Transaction};

/// The `bidchain` binary next to this test executable (see [`locate_bidchain`]).
pub fn bidchain_bin() -> PathBuf {
    match locate_bidchain() {
        Ok(bin) => bin,
        Err(err) => panic!("{err:#}"),
    }
}

/// One validator (the hub) with one genesis bidder account, running as a real process.
#[derive(Debug)]
pub struct SoloNet {
    pub dir: tempfile::TempDir,
    pub genesis: Genesis,
    pub hub: Keypair,
    pub bidder: Keypair,
    pub node: NodeProcess,
}

impl SoloNet {
    pub async fn start(block_interval_ms: u64) -> Result<SoloNet> {
        let dir = tempfile::tempdir()?;
        let hub = Keypair::generate();
        let bidder = Keypair::generate();
        let validator =
            setup::parse_validator(&format!("hub:hub:{}:/ip4/127.0.0.1/tcp/1", hub.public()))?;
        let account = setup::parse_account(&format!("bidder-0:bidder:{}", bidder.public()))?;
        let consensus = ConsensusParams {
            block_interval_ms,
            ..ConsensusParams::default()
        };
        let now = Timestamp::from_system(std::time::SystemTime::now()).as_millis();
        let genesis = setup::new_genesis(
            "solo-test",
            Timestamp(now - 1_000),
            consensus,
            vec![validator],
            vec![account],
        )?;
        let home = dir.path().join("hub");
        setup::init_home(&home, &genesis, &hub, &setup::loopback_config("hub"))?;
        let node = NodeProcess::spawn(&bidchain_bin(), &home, &dir.path().join("hub.log")).await?;
        Ok(SoloNet {
            dir,
            genesis,
            hub,
            bidder,
            node,
        })
    }

    pub async fn restart(&mut self) -> Result<()> {
        let log = self.dir.path().join("hub.log");
        self.node = NodeProcess::spawn(&bidchain_bin(), &self.node.home.clone(), &log).await?;
        Ok(())
    }

    pub fn client(&self) -> Client {
        self.node.client.clone()
    }

    /// `signer` creates a fresh account with `role`.
    pub fn create_account(&self, signer: &Keypair, nonce: Nonce, role: Role) -> SignedTransaction {
        let new = Keypair::generate();
        Transaction {
            chain_id: self.genesis.chain_id.clone(),
            sender: signer.public(),
            nonce,
            payload: Payload::Native(NativeCall::CreateAccount {
                key: new.public(),
                role,
                label: bidchain_runtime::BoundedString::truncating("test"),
            }),
        }
        .sign(signer)
    }
}

/// Walks the whole chain from height 1 and checks each block against its parent, its
/// roots, its certificate (against the genesis validator set) and the receipts served for
/// its transactions. Returns the tip height.
pub async fn check_chain(client: &Client, genesis: &Genesis) -> Result<Height> {
    let tip = client.status().await?.height;
    let validators = genesis.validator_set()?;
    let trust = bidchain_cli::proof_cli::trust_of(genesis)?;
    let mut prev_id = genesis.block_id();
    let mut prev_time = genesis.genesis_time;
    for h in 1..=tip.0 {
        let block = client
            .block(Height(h))
            .await
            .with_context(|| format!("block {h}"))?;
        let header = &block.header;
        ensure!(
            header.id() == block.block_id,
            "block {h}: id does not match header"
        );
        ensure!(
            header.prev_block_id == prev_id,
            "block {h}: does not link to block {}",
            h - 1
        );
        ensure!(header.time > prev_time, "block {h}: time did not increase");
        block
            .commit
            .verify(&genesis.chain_id, Height(h), &block.block_id, &validators)?;
        let leaves: Vec<_> = block.tx_hashes.iter().map(tx_leaf).collect();
        ensure!(
            merkle::root(&leaves) == header.tx_root,
            "block {h}: tx root mismatch"
        );
        for (i, hash) in block.tx_hashes.iter().enumerate() {
            let tx = client.tx(hash).await?;
            ensure!(
                tx.height == Some(Height(h)),
                "tx {hash}: receipt height {:?} != {h}",
                tx.height
            );
            ensure!(
                tx.index == Some(i as u32),
                "tx {hash}: receipt index mismatch"
            );
            let bundle = client.bundle(&format!("/txs/{hash}/proof")).await?;
            let (_, verified) = Bundle::open(&bundle, &trust)?;
            ensure!(
                verified.height == Height(h),
                "tx {hash}: proven at another height"
            );
        }
        prev_id = block.block_id;
        prev_time = header.time;
    }
    Ok(tip)
}
