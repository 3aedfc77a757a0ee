//! `Node`: loads a home directory and wires storage, mempool, block production and the
//! HTTP API together until shutdown.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bidchain_genesis::{Genesis, GenesisError};
use bidchain_runtime::time::Timestamp;
use tokio::sync::watch;

use crate::chain::{Chain, ChainError};
use crate::config::{ConfigError, NodeConfig};
use crate::keyfile::{KeyFileError, read_key_file};
use crate::mempool::Mempool;
use crate::producer::SoloProducer;
use crate::shared::Shared;
use crate::storage::{Storage, StorageError};

/// Why the node could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("config: {0}")]
    Config(#[from] ConfigError),
    #[error("genesis: {0}")]
    Genesis(#[from] GenesisError),
    #[error("node key: {0}")]
    Key(#[from] KeyFileError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NodeError {
    let what = what.into();
    move |source| NodeError::Io { what, source }
}

/// The file in the data dir that holds the RPC address while the node runs.
pub fn rpc_addr_path(data_dir: &Path) -> PathBuf {
    data_dir.join("rpc.addr")
}

/// Runs the node in `home` until `shutdown` completes; then finishes the block in hand,
/// stops serving and returns.
pub async fn run(
    home: &Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let config = NodeConfig::load(home)?;
    let genesis = Genesis::load(&config.resolve(home, &config.genesis_file))?;
    let key = read_key_file(&config.resolve(home, &config.key_file))?;
    let data_dir = config.resolve(home, &config.data_dir);
    std::fs::create_dir_all(&data_dir).map_err(io(format!("create {}", data_dir.display())))?;
    let storage = Storage::open(&data_dir.join("db"), &genesis)?;
    let mempool = Mempool::new(config.mempool, genesis.chain_id.clone());
    let block_interval = Duration::from_millis(genesis.consensus.block_interval_ms);
    let chain = Chain::new(storage, genesis);
    let tip = chain.tip()?;
    tracing::info!(
        node = %config.node_name,
        chain_id = %chain.chain_id(),
        genesis_hash = %chain.genesis().hash(),
        height = tip.height.0,
        key = %key.public(),
        "node starting"
    );
    let shared = Arc::new(Shared::new(chain, mempool, config.node_name.clone()));

    let listener = tokio::net::TcpListener::bind(config.rpc_listen)
        .await
        .map_err(io(format!("bind RPC address {}", config.rpc_listen)))?;
    let rpc_addr = listener.local_addr().map_err(io("read RPC address"))?;
    let addr_file = rpc_addr_path(&data_dir);
    std::fs::write(&addr_file, rpc_addr.to_string()).map_err(io("write rpc.addr"))?;
    tracing::info!(%rpc_addr, "HTTP API listening");

    let (stop_tx, stop_rx) = watch::channel(false);
    let producer = match SoloProducer::new(key, shared.clone()) {
        Ok(producer) => Some(tokio::spawn(produce_loop(
            Arc::new(producer),
            block_interval,
            Duration::from_millis(config.empty_block_interval_ms),
            stop_rx,
        ))),
        Err(err) => {
            tracing::warn!(%err, "not producing blocks; serving the stored chain read-only");
            None
        }
    };

    let served = axum::serve(listener, crate::rpc::router(shared))
        .with_graceful_shutdown(shutdown)
        .await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    if let Some(task) = producer {
        let _ = task.await;
    }
    let _ = std::fs::remove_file(&addr_file);
    served.map_err(io("serve HTTP API"))
}

/// Ticks every block interval; each tick commits a block if transactions are pending, or
/// an empty one when `empty_after` has passed without a block (zero: never).
async fn produce_loop(
    producer: Arc<SoloProducer>,
    interval: Duration,
    empty_after: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_block = Instant::now();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let force = !empty_after.is_zero() && last_block.elapsed() >= empty_after;
        let p = producer.clone();
        let produced = tokio::task::spawn_blocking(move || {
            p.produce_once(Timestamp::from_system(SystemTime::now()), force)
        })
        .await;
        match produced {
            Ok(Ok(Some(_))) => last_block = Instant::now(),
            Ok(Ok(None)) => {}
            Ok(Err(err)) => tracing::error!(%err, "block production failed; retrying next tick"),
            Err(err) => tracing::error!(%err, "block production task died; retrying next tick"),
        }
    }
}
