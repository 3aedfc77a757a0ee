//! The HTTP API end to end against a real node process.

// Test code: a failed unwrap or panic is a failed test, which is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::time::Duration;

use bidchain_cli::client::Refused;
use bidchain_cli::proof_cli::trust_of;
use bidchain_node::api::{MAX_SUBMIT_BATCH_BYTES, SubmitBatch, TxStatus};
use bidchain_node::mempool::MAX_NONCE_AHEAD;
use bidchain_runtime::codec;
use bidchain_runtime::crypto::Keypair;
use bidchain_runtime::ids::{AccountId, ChainId, Height, Nonce};
use bidchain_runtime::proof::{Bundle, Claim};
use bidchain_runtime::receipt::TxOutcome;
use bidchain_runtime::tx::{MAX_TX_BYTES, Role};
use bidchain_tests::SoloNet;

fn refusal(result: anyhow::Result<impl std::fmt::Debug>) -> Refused {
    match result {
        Ok(ok) => panic!("expected a refusal, got {ok:?}"),
        Err(err) => match err.downcast::<Refused>() {
            Ok(refused) => refused,
            Err(other) => panic!("expected a refusal, got {other:#}"),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_end_to_end() {
    let net = SoloNet::start(50).await.unwrap();
    let client = net.client();
    let status = client.status().await.unwrap();
    assert_eq!(status.chain_id, "solo-test");
    assert_eq!(status.genesis_hash, net.genesis.hash());
    assert_eq!(status.role, "validator");

    // A valid transaction: admitted with an immediate receipt, then committed with proofs.
    let tx = net.create_account(&net.hub, Nonce(0), Role::Center);
    let admitted = client.submit(&tx).await.unwrap();
    assert_eq!(admitted.tx_hash, tx.hash());
    assert_eq!(admitted.status, TxStatus::Pending);
    let included = client
        .wait_included(&tx.hash(), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(included.status, TxStatus::Committed);
    assert_eq!(included.result, Some(TxOutcome::Ok));
    let height = included.height.unwrap();
    let block = client.block(height).await.unwrap();
    assert!(block.tx_hashes.contains(&tx.hash()));
    // Its proof bundle, checked from genesis alone.
    let bytes = client
        .bundle(&format!("/txs/{}/proof", tx.hash()))
        .await
        .unwrap();
    let bundle = Bundle::decode(&bytes).unwrap();
    let verified = bundle.verify(&trust_of(&net.genesis).unwrap()).unwrap();
    assert_eq!(verified.height, height);
    assert_eq!(verified.signers[0].name, "hub");
    assert!(
        matches!(&bundle.claim, Claim::Receipt { receipt, .. } if receipt.tx_hash == tx.hash())
    );
    // A state proof of the account it created (present), and of a key never written.
    let absent = client
        .bundle("/contracts/archive/state/00ff/proof")
        .await
        .unwrap();
    let absent = Bundle::decode(&absent).unwrap();
    absent.verify(&trust_of(&net.genesis).unwrap()).unwrap();
    assert_eq!(
        absent.state_value(&bidchain_runtime::state::contract_key(
            "archive",
            &[0, 0xff]
        )),
        Some(None)
    );
    let missing = client
        .bundle(&format!("/txs/{}/proof", "00".repeat(32)))
        .await;
    assert_eq!(refusal(missing).status, 404);

    // A rule violation is included and its receipt says why.
    let bidder_tx = net.create_account(&net.bidder, Nonce(0), Role::Bidder);
    client.submit(&bidder_tx).await.unwrap();
    let rejected = client
        .wait_included(&bidder_tx.hash(), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(rejected.status, TxStatus::Rejected);
    match rejected.result {
        Some(TxOutcome::Rejected { code, reason }) => {
            assert_eq!(code.as_str(), "not_permitted");
            assert!(
                reason.contains("a bidder account may not create an account with role bidder"),
                "{reason}"
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }

    // Admission refusals, each with its own code.
    assert_eq!(refusal(client.submit(&tx).await).code, "nonce_too_low");
    assert_eq!(
        refusal(client.submit_raw(vec![1, 2, 3]).await).code,
        "malformed_tx"
    );
    let mut trailing = tx.encode();
    trailing.push(0);
    assert_eq!(
        refusal(client.submit_raw(trailing).await).code,
        "malformed_tx"
    );
    let oversized = refusal(client.submit_raw(vec![0; MAX_TX_BYTES + 4096]).await);
    assert_eq!(
        (oversized.status, oversized.code.as_str()),
        (413, "body_too_large")
    );
    let mut forged = net.create_account(&net.hub, Nonce(1), Role::Bidder);
    forged.signature.0[0] ^= 1;
    assert_eq!(refusal(client.submit(&forged).await).code, "bad_signature");
    let stranger = Keypair::generate();
    let unknown = net.create_account(&stranger, Nonce(0), Role::Bidder);
    assert_eq!(
        refusal(client.submit(&unknown).await).code,
        "unknown_sender"
    );
    let gap = net.create_account(&net.hub, Nonce(2 + MAX_NONCE_AHEAD), Role::Bidder);
    assert_eq!(refusal(client.submit(&gap).await).code, "nonce_gap");
    let mut other_chain = net.create_account(&net.hub, Nonce(1), Role::Bidder).tx;
    other_chain.chain_id = ChainId::new("another-chain").unwrap();
    let other_chain = other_chain.sign(&net.hub);
    assert_eq!(
        refusal(client.submit(&other_chain).await).code,
        "wrong_chain"
    );
    // One ahead of the next nonce is held until the gap fills; then both commit.
    let ahead = net.create_account(&net.hub, Nonce(2), Role::Bidder);
    let ahead = client.submit(&ahead).await.unwrap().tx_hash;
    let pending = net.create_account(&net.hub, Nonce(1), Role::Bidder);
    client.submit(&pending).await.unwrap();
    assert_eq!(refusal(client.submit(&pending).await).code, "duplicate");
    for hash in [pending.hash(), ahead] {
        let receipt = client
            .wait_included(&hash, Duration::from_secs(20))
            .await
            .unwrap();
        assert!(receipt.height.is_some(), "{receipt:?}");
    }

    // A batch submission: one answer per transaction, each admitted or refused on its own
    // (the forged one fails the batch signature check, the others still go in), and a
    // body larger than one transaction's limit is taken.
    let batch: Vec<_> = (3..403)
        .map(|n| net.create_account(&net.hub, Nonce(n), Role::Bidder))
        .collect();
    let mut forged_in_batch = net.create_account(&net.hub, Nonce(403), Role::Bidder);
    forged_in_batch.signature.0[0] ^= 1;
    let last = net.create_account(&net.hub, Nonce(403), Role::Bidder);
    let sent: Vec<_> = batch
        .iter()
        .chain([&forged_in_batch, &last, &pending])
        .cloned()
        .collect();
    let encoded = codec::encode(&SubmitBatch::new(sent.clone()).unwrap());
    assert!(encoded.len() > MAX_TX_BYTES + 1024);
    let answer = client.submit_batch(sent.clone()).await.unwrap();
    let hashes: Vec<_> = answer.results.iter().map(|item| item.tx_hash).collect();
    assert_eq!(hashes, sent.iter().map(|tx| tx.hash()).collect::<Vec<_>>());
    let codes: Vec<_> = answer
        .results
        .iter()
        .map(|item| match (&item.status, &item.refused) {
            (Some(TxStatus::Pending), None) => "pending",
            (None, Some(refused)) => refused.code.as_str(),
            other => panic!("an item is admitted or refused: {other:?}"),
        })
        .collect();
    assert!(
        codes[..400].iter().all(|code| *code == "pending"),
        "{codes:?}"
    );
    assert_eq!(codes[400..], ["bad_signature", "pending", "nonce_too_low"]);
    client
        .wait_included(&last.hash(), Duration::from_secs(30))
        .await
        .unwrap();
    let malformed = refusal(client.submit_batch_raw(vec![1, 2, 3]).await);
    assert_eq!(malformed.code, "malformed_batch");
    let oversized = refusal(
        client
            .submit_batch_raw(vec![0; MAX_SUBMIT_BATCH_BYTES + 1])
            .await,
    );
    assert_eq!(
        (oversized.status, oversized.code.as_str()),
        (413, "body_too_large")
    );

    // Read errors.
    let unknown_hash = Keypair::generate().public().to_string().parse().unwrap();
    assert_eq!(refusal(client.tx(&unknown_hash).await).status, 404);
    assert_eq!(refusal(client.block(Height(1_000_000)).await).status, 404);
    let raw = reqwest::get(format!("{}/blocks/not-a-height", client.base()))
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let raw = reqwest::get(format!("{}/txs/abcd", client.base()))
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);

    // Accounts and metrics.
    let hub = client
        .account(&AccountId::of(&net.hub.public()))
        .await
        .unwrap();
    assert_eq!(hub.role, Role::Hub);
    assert!(hub.next_nonce >= Nonce(1));
    let metrics = client.metrics().await.unwrap();
    assert!(metrics.contains("bidchain_height "), "{metrics}");
    assert!(metrics.contains("bidchain_txs_refused_total "), "{metrics}");

    // After all that the node is still up and the chain is consistent.
    client
        .wait_included(&pending.hash(), Duration::from_secs(20))
        .await
        .unwrap();
    bidchain_tests::check_chain(&client, &net.genesis)
        .await
        .unwrap();
}
