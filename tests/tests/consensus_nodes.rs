//! Four real nodes (RocksDB, HTTP API, the consensus driver) in one process, linked by the
//! in-process transport: they agree block for block, a transaction sent to one is committed
//! by all, the chain goes on with one node down, stops (without forking) with two down,
//! and a restarted node catches up to the same block hashes.

// Test code: a failed unwrap or panic is a failed test, which is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bidchain_cli::client::Client;
use bidchain_cli::setup;
use bidchain_genesis::{ConsensusParams, Genesis};
use bidchain_node::config::{NodeConfig, config_path};
use bidchain_node::net::InProcessNetwork;
use bidchain_node::node::{NodeError, rpc_addr_path, run_with_network};
use bidchain_runtime::crypto::Keypair;
use bidchain_runtime::ids::{Height, Nonce};
use bidchain_runtime::time::Timestamp;
use bidchain_runtime::tx::Role;
use bidchain_tests::check_chain;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const N: usize = 4;

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), NodeError>>,
    client: Client,
}

struct Cluster {
    _dir: tempfile::TempDir,
    genesis: Genesis,
    keys: Vec<Keypair>,
    homes: Vec<PathBuf>,
    network: InProcessNetwork,
    nodes: Vec<Option<Running>>,
}

impl Cluster {
    fn new() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<Keypair> = (0..N).map(|_| Keypair::generate()).collect();
        let validators = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let spec = format!("v{i}:center:{}:/ip4/127.0.0.1/tcp/{}", k.public(), 1 + i);
                setup::parse_validator(&spec).unwrap()
            })
            .collect();
        let now = Timestamp::from_system(std::time::SystemTime::now()).as_millis();
        let consensus = ConsensusParams {
            block_interval_ms: 50,
            ..ConsensusParams::default()
        };
        let genesis = setup::new_genesis(
            "four-test",
            Timestamp(now - 1_000),
            consensus,
            validators,
            vec![],
        )
        .unwrap();
        // Validators are indexed in genesis order; the transport must use the same order.
        let set = genesis.validator_set().unwrap();
        let mut homes = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(set.index_of(&key.public()), Some(i));
            let home = dir.path().join(format!("v{i}"));
            setup::init_home(
                &home,
                &genesis,
                key,
                &format!("v{i}"),
                "127.0.0.1:0".parse().unwrap(),
            )
            .unwrap();
            let mut config = NodeConfig::load(&home).unwrap();
            config.empty_block_interval_ms = 100;
            std::fs::write(config_path(&home), config.to_toml()).unwrap();
            homes.push(home);
        }
        Cluster {
            _dir: dir,
            genesis,
            keys,
            homes,
            network: InProcessNetwork::new(N),
            nodes: (0..N).map(|_| None).collect(),
        }
    }

    async fn start(&mut self, i: usize) {
        let home = self.homes[i].clone();
        let addr_file = rpc_addr_path(&home.join("data"));
        let _ = std::fs::remove_file(&addr_file);
        let (transport, inbox) = self.network.join(i as u16);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            run_with_network(&home, Some((Box::new(transport), inbox)), async {
                let _ = stopped.await;
            })
            .await
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file) {
                break addr;
            }
            assert!(Instant::now() < deadline, "node {i} did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let client = Client::new(&format!("http://{}", addr.trim())).unwrap();
        self.nodes[i] = Some(Running { stop, task, client });
    }

    async fn stop(&mut self, i: usize) {
        let node = self.nodes[i].take().expect("node is running");
        self.network.leave(i as u16);
        let _ = node.stop.send(());
        node.task.await.unwrap().unwrap();
    }

    fn client(&self, i: usize) -> &Client {
        &self.nodes[i].as_ref().expect("node is running").client
    }

    async fn height(&self, i: usize) -> Height {
        self.client(i).status().await.unwrap().height
    }

    /// Waits until each of `nodes` has committed `height`.
    async fn wait_height(&self, nodes: &[usize], height: u64, within: Duration) {
        let deadline = Instant::now() + within;
        for &i in nodes {
            while self.height(i).await.0 < height {
                assert!(
                    Instant::now() < deadline,
                    "node {i} did not reach height {height} within {within:?} (at {})",
                    self.height(i).await.0
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Every running node holds the same block at every height up to `height`.
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
async fn four_validators_agree_survive_one_down_and_catch_up() {
    let mut cluster = Cluster::new();
    for i in 0..N {
        cluster.start(i).await;
    }
    let all = [0, 1, 2, 3];
    cluster.wait_height(&all, 3, Duration::from_secs(30)).await;

    // A transaction sent to one validator is committed by all.
    let new = Keypair::generate();
    let tx = bidchain_node::testing::create_account_tx_on(
        &cluster.genesis.chain_id,
        &cluster.keys[0],
        Nonce(0),
        &new,
        Role::Bidder,
    );
    let hash = cluster.client(2).submit(&tx).await.unwrap().tx_hash;
    for i in all {
        let receipt = cluster
            .client(i)
            .wait_included(&hash, Duration::from_secs(20))
            .await
            .unwrap();
        assert!(receipt.height.is_some(), "node {i}: {receipt:?}");
    }

    // One of four down: the other three (a quorum) go on.
    cluster.stop(3).await;
    let at = cluster.height(0).await.0;
    cluster
        .wait_height(&[0, 1, 2], at + 5, Duration::from_secs(30))
        .await;

    // It comes back and catches up to the same chain.
    cluster.start(3).await;
    let target = cluster.height(0).await.0 + 2;
    cluster
        .wait_height(&all, target, Duration::from_secs(60))
        .await;
    cluster.same_blocks(&all, target).await;

    // Two of four down: no quorum, so no new block anywhere.
    cluster.stop(2).await;
    cluster.stop(3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stalled = cluster.height(0).await.0.max(cluster.height(1).await.0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        cluster.height(0).await.0,
        stalled,
        "node 0 committed without a quorum"
    );
    assert_eq!(
        cluster.height(1).await.0,
        stalled,
        "node 1 committed without a quorum"
    );

    // One returns: a quorum again, and the chain resumes without a fork.
    cluster.start(2).await;
    cluster
        .wait_height(&[0, 1, 2], stalled + 3, Duration::from_secs(60))
        .await;
    cluster.same_blocks(&[0, 1, 2], stalled + 3).await;
    let tip = check_chain(cluster.client(0), &cluster.genesis)
        .await
        .unwrap();
    assert!(tip.0 >= stalled + 3);

    for i in [0, 1, 2] {
        cluster.stop(i).await;
    }
}
