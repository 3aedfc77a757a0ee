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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
        let accepted = Arc::new(AtomicUsize::new(0));
        let txs: Vec<_> = (0..2_000)
            .map(|i| net.create_account(&net.hub, Nonce(start_nonce.0 + i), Role::Bidder))
            .collect();
        let submitter = {
            let (client, running, accepted) = (client.clone(), running.clone(), accepted.clone());
            tokio::spawn(async move {
                for tx in txs {
                    if !running.load(Ordering::Relaxed) || client.submit(&tx).await.is_err() {
                        break;
                    }
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        // Kill mid-stream: once the stream is flowing (a busy machine may take a while to
        // accept the first one), then a little later each round.
        let flowing = tokio::time::Instant::now() + Duration::from_secs(30);
        while accepted.load(Ordering::Relaxed) == 0 {
            assert!(
                tokio::time::Instant::now() < flowing,
                "round {round}: no transaction accepted in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200 + 300 * round)).await;
        let before = client.status().await.unwrap();
        net.node.kill().unwrap();
        running.store(false, Ordering::Relaxed);
        submitter.await.unwrap();

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
