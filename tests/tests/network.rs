//! Four validators and an observer as separate `bidchain node` processes on 127.0.0.1,
//! talking libp2p: they agree; one killed (SIGKILL), the other three go on; it restarts and
//! catches up to the same blocks; two of four killed, no block and no fork, and once one
//! returns the chain resumes; an observer started late syncs the whole chain from genesis;
//! a stranger with a valid key but not on the allow list gets nothing in or out; an allowed
//! peer that sends garbage is disconnected while the chain goes on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use bidchain_cli::client::Client;
use bidchain_cli::localnet::{Localnet, LocalnetSpec, NodeRole};
use bidchain_cli::process::NodeProcess;
use bidchain_cli::setup;
use bidchain_genesis::ConsensusParams;
use bidchain_node::api::TxStatus;
use bidchain_node::config::PeerConfig;
use bidchain_node::msg_stream::MESSAGE_PROTOCOL;
use bidchain_runtime::crypto::Keypair;
use bidchain_runtime::ids::{Height, Nonce};
use bidchain_runtime::tx::Role;
use bidchain_tests::{bidchain_bin, check_chain};
use libp2p::futures::{AsyncWriteExt, StreamExt};
use libp2p::swarm::SwarmEvent;

const VALIDATORS: usize = 4;
const OBSERVER: usize = 4;

struct Net {
    _dir: tempfile::TempDir,
    net: Localnet,
    nodes: Vec<Option<NodeProcess>>,
}

impl Net {
    async fn new() -> Net {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = LocalnetSpec::new(VALIDATORS, 1);
        spec.base_port = 0;
        spec.empty_block_interval_ms = 100;
        spec.consensus = ConsensusParams {
            block_interval_ms: 50,
            ..ConsensusParams::default()
        };
        let net = Localnet::create_or_load(&dir.path().join("net"), &spec).unwrap();
        let nodes = (0..net.nodes.len()).map(|_| None).collect();
        Net {
            _dir: dir,
            net,
            nodes,
        }
    }

    async fn start(&mut self, i: usize) {
        let process = self.net.start_node(&bidchain_bin(), i).await.unwrap();
        self.nodes[i] = Some(process);
    }

    fn kill(&mut self, i: usize) {
        self.nodes[i].take().expect("running").kill().unwrap();
    }

    fn client(&self, i: usize) -> &Client {
        &self.nodes[i].as_ref().expect("running").client
    }

    async fn height(&self, i: usize) -> u64 {
        self.client(i).status().await.unwrap().height.0
    }

    async fn wait_height(&self, nodes: &[usize], height: u64, within: Duration) {
        let deadline = Instant::now() + within;
        for &i in nodes {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(err) = self.client(i).wait_height(Height(height), left).await {
                let log = self.net.log_path(i).unwrap();
                panic!("node {i}: {err:#}; log {}", log.display());
            }
        }
    }

    async fn same_blocks(&self, nodes: &[usize], height: u64) {
        for h in 1..=height {
            let first = self
                .client(nodes[0])
                .block(Height(h))
                .await
                .unwrap()
                .block_id;
            for &i in &nodes[1..] {
                let id = self.client(i).block(Height(h)).await.unwrap().block_id;
                assert_eq!(id, first, "nodes {} and {i} differ at height {h}", nodes[0]);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validators_over_libp2p_survive_crashes_and_an_observer_syncs() {
    let mut net = Net::new().await;
    assert_eq!(net.net.nodes[OBSERVER].role, NodeRole::Observer);
    for i in 0..VALIDATORS {
        net.start(i).await;
    }
    let all = [0, 1, 2, 3];
    net.wait_height(&all, 3, Duration::from_secs(30)).await;

    // A transaction sent to one validator is committed by all.
    let hub = net.net.key(0).unwrap();
    let tx = bidchain_node::testing::create_account_tx_on(
        &net.net.genesis.chain_id,
        &hub,
        Nonce(0),
        &Keypair::generate(),
        Role::Bidder,
    );
    let hash = net.client(2).submit(&tx).await.unwrap().tx_hash;
    for i in all {
        let receipt = net
            .client(i)
            .wait_included(&hash, Duration::from_secs(20))
            .await
            .unwrap();
        assert!(receipt.height.is_some(), "node {i}: {receipt:?}");
    }

    // One of four killed: the other three (a quorum) go on.
    net.kill(3);
    let at = net.height(0).await;
    net.wait_height(&[0, 1, 2], at + 5, Duration::from_secs(30))
        .await;

    // It restarts and catches up to the same chain.
    net.start(3).await;
    let target = net.height(0).await + 2;
    net.wait_height(&all, target, Duration::from_secs(60)).await;
    net.same_blocks(&all, target).await;

    // Two of four killed: no quorum, so no new block anywhere.
    net.kill(2);
    net.kill(3);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let stalled = net.height(0).await.max(net.height(1).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        net.height(0).await,
        stalled,
        "node 0 committed without a quorum"
    );
    assert_eq!(
        net.height(1).await,
        stalled,
        "node 1 committed without a quorum"
    );
    client_txs_are_relayed_without_a_quorum(&net, &hub).await;

    // One returns: a quorum again, and the chain resumes without a fork.
    net.start(2).await;
    net.wait_height(&[0, 1, 2], stalled + 3, Duration::from_secs(60))
        .await;
    net.same_blocks(&[0, 1, 2], stalled + 3).await;

    // An observer started late syncs from genesis, verifying, and keeps following.
    net.start(OBSERVER).await;
    let status = net.client(OBSERVER).status().await.unwrap();
    assert_eq!(status.role, "observer");
    let target = net.height(0).await + 2;
    net.wait_height(&[OBSERVER], target, Duration::from_secs(60))
        .await;
    net.same_blocks(&[0, OBSERVER], target).await;
    let tip = check_chain(net.client(OBSERVER), &net.net.genesis)
        .await
        .unwrap();
    assert!(tip.0 >= target);

    stranger_is_refused(&net).await;

    // The observer's key is allowed: use it to send garbage as a listed peer would.
    net.nodes[OBSERVER].take().unwrap().stop().await.unwrap();
    let observer_key = net.net.key(OBSERVER).unwrap();
    garbage_gets_a_peer_disconnected(&net, &observer_key).await;
    let at = net.height(0).await;
    net.wait_height(&[0, 1, 2], at + 2, Duration::from_secs(30))
        .await;
}

/// With no quorum nothing commits, so a transaction sent to node 1 that node 0 holds as
/// pending was relayed to it. The hub's next nonce is 1.
async fn client_txs_are_relayed_without_a_quorum(net: &Net, hub: &Keypair) {
    let tx = bidchain_node::testing::create_account_tx_on(
        &net.net.genesis.chain_id,
        hub,
        Nonce(1),
        &Keypair::generate(),
        Role::Bidder,
    );
    let hash = net.client(1).submit(&tx).await.unwrap().tx_hash;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match net.client(0).tx(&hash).await {
            Ok(found) => {
                assert_eq!(found.status, TxStatus::Pending, "{found:?}");
                return;
            }
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("node 0 never heard of node 1's client transaction: {err:#}"),
        }
    }
}

/// An allowed peer sends a frame that does not decode: validator 0 disconnects it, logs it,
/// and goes on.
async fn garbage_gets_a_peer_disconnected(net: &Net, key: &Keypair) {
    let identity = libp2p::identity::Keypair::ed25519_from_bytes(key.secret_bytes()).unwrap();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .build();
    let control = swarm.behaviour().new_control();
    let target = bidchain_node::p2p::peer_id(&net.net.nodes[0].public_key).unwrap();
    let address: libp2p::Multiaddr = net.net.nodes[0].p2p_address.parse().unwrap();
    swarm.dial(address).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut sent = false;
    loop {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .expect("validator 0 kept a peer that sent garbage");
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == target && !sent => {
                // A frame of five bytes that are no message.
                let mut control = control.clone();
                tokio::spawn(async move {
                    let mut stream = control.open_stream(target, MESSAGE_PROTOCOL).await?;
                    stream
                        .write_all(&[0, 0, 0, 5, 0xff, 0x13, 0x37, 0x00, 0x42])
                        .await?;
                    stream.flush().await?;
                    // Held open: the validator, not this side, must end it.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    anyhow::Ok(())
                });
                sent = true;
            }
            SwarmEvent::ConnectionClosed { peer_id, .. } if peer_id == target && sent => break,
            _ => {}
        }
    }
    let log = std::fs::read_to_string(net.net.log_path(0).unwrap()).unwrap();
    assert!(
        log.contains("peer sent malformed bytes; disconnecting"),
        "validator 0 did not log the garbage"
    );
}

/// A node with a valid key that nobody listed dials validator 0: the connection is refused,
/// so it learns no block, and a transaction submitted to it never reaches the validators.
async fn stranger_is_refused(net: &Net) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("stranger");
    let key = Keypair::generate();
    let mut config = setup::loopback_config("stranger");
    config.observer = true;
    config.peers.push(PeerConfig {
        key: net.net.nodes[0].public_key,
        address: net.net.nodes[0].p2p_address.clone(),
    });
    setup::init_home(&home, &net.net.genesis, &key, &config).unwrap();
    let stranger = NodeProcess::spawn(&bidchain_bin(), &home, &dir.path().join("stranger.log"))
        .await
        .unwrap();
    let tx = bidchain_node::testing::create_account_tx_on(
        &net.net.genesis.chain_id,
        &net.net.key(1).unwrap(),
        Nonce(0),
        &Keypair::generate(),
        Role::Bidder,
    );
    stranger.client.submit(&tx).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status = stranger.client.status().await.unwrap();
    assert_eq!(status.height, Height(0), "a stranger synced blocks");
    // The stranger's own peer count is no witness: as the dialer it sees each connection
    // come up before the validator drops it, and it redials. A validator never admits it.
    let stranger_id = bidchain_node::p2p::peer_id(&key.public())
        .unwrap()
        .to_string();
    for i in 0..3 {
        let log = std::fs::read_to_string(net.net.log_path(i).unwrap()).unwrap();
        assert!(
            !log.lines()
                .any(|l| l.contains("peer connected") && l.contains(&stranger_id)),
            "validator {i} admitted the stranger"
        );
    }
    let seen = net.client(0).tx(&tx.hash()).await;
    assert!(
        seen.is_err(),
        "a stranger's transaction reached a validator: {seen:?}"
    );
    let log = std::fs::read_to_string(net.net.log_path(0).unwrap()).unwrap();
    assert!(
        log.contains("incoming connection refused"),
        "validator 0 did not log the refusal"
    );
}
