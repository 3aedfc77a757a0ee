//! A node killed with SIGKILL while transactions stream in restarts at its last committed
//! block with nothing lost or half-written.

// Test code: a failed unwrap or panic is a failed test, which is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bidchain_runtime::ids::{AccountId, Nonce};
use bidchain_runtime::tx::Role;
use bidchain_tests::{SoloNet, check_chain};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_restarts_consistent() {
    let mut net = SoloNet::start(20).await.unwrap();
    let hub_id = AccountId::of(&net.hub.public());
    for round in 0..3u64 {
        let client = net.client();
        let start_nonce = client.account(&hub_id).await.unwrap().next_nonce;
        // Stream transactions until the node dies under us.
        let running = Arc::new(AtomicBool::new(true));
        let txs: Vec<_> = (0..2_000)
            .map(|i| net.create_account(&net.hub, Nonce(start_nonce.0 + i), Role::Bidder))
            .collect();
        let submitter = {
            let (client, running) = (client.clone(), running.clone());
            tokio::spawn(async move {
                let mut sent = 0usize;
                for tx in txs {
                    if !running.load(Ordering::Relaxed) || client.submit(&tx).await.is_err() {
                        break;
                    }
                    sent += 1;
                }
                sent
            })
        };
        tokio::time::sleep(Duration::from_millis(400 + 300 * round)).await;
        let before = client.status().await.unwrap();
        net.node.kill().unwrap();
        running.store(false, Ordering::Relaxed);
        let sent = submitter.await.unwrap();
        assert!(
            sent > 0,
            "round {round}: nothing was submitted before the kill"
        );

        net.restart().await.unwrap();
        let client = net.client();
        let after = client.status().await.unwrap();
        assert!(
            after.height >= before.height,
            "round {round}: height went back"
        );
        let block = client.block(before.height).await.unwrap();
        assert_eq!(
            block.block_id, before.latest_block_hash,
            "round {round}: block changed"
        );
        let tip = check_chain(&client, &net.genesis).await.unwrap();
        // The hub's committed nonce equals the number of its transactions in blocks.
        let hub = client.account(&hub_id).await.unwrap();
        assert!(
            hub.nonce.0 >= start_nonce.0,
            "round {round}: nonce went back"
        );
        assert!(tip.0 >= before.height.0);
    }
}
