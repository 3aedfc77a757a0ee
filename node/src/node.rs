//! `Node`: loads a home directory and wires storage, mempool, block production and the
//! HTTP API together until shutdown.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bidchain_consensus::Timeouts;
use bidchain_genesis::{Genesis, GenesisError};
use tokio::sync::oneshot;

use crate::chain::{Chain, ChainError};
use crate::config::{ConfigError, NodeConfig};
use crate::driver::{Driver, DriverConfig, DriverError};
use crate::keyfile::{KeyFileError, read_key_file};
use crate::mempool::Mempool;
use crate::priority;
use crate::rpc_listener::{BoundedListener, MAX_RPC_CONNECTIONS, RPC_IDLE_TIMEOUT};
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
    #[error("p2p: {0}")]
    P2p(#[from] crate::p2p::P2pError),
    #[error("consensus: {0}")]
    Consensus(#[from] DriverError),
    #[error("the consensus thread panicked")]
    ConsensusPanicked,
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

/// Runs the node in `home` until `shutdown` completes; then finishes the step in hand,
/// stops serving and returns. `observer` makes it a non-voting observer whatever the
/// config says.
pub async fn run(
    home: &Path,
    observer: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let mut config = NodeConfig::load(home)?;
    config.observer |= observer;
    let genesis = Genesis::load(&config.resolve(home, &config.genesis_file))?;
    let key = read_key_file(&config.resolve(home, &config.key_file))?;
    let data_dir = config.resolve(home, &config.data_dir);
    std::fs::create_dir_all(&data_dir).map_err(io(format!("create {}", data_dir.display())))?;
    let storage = Storage::open(&data_dir.join("db"), &genesis)?;
    let mempool = Mempool::new(config.mempool, genesis.chain_id.clone());
    let driver_config = DriverConfig {
        observer: config.observer,
        timeouts: Timeouts::default(),
        block_interval: Duration::from_millis(genesis.consensus.block_interval_ms),
        empty_block_interval: Duration::from_millis(config.empty_block_interval_ms),
    };
    let p2p_settings = crate::p2p::settings_for(&genesis, &config)?;
    let contracts = genesis.contracts()?;
    let chain = Chain::new(storage, genesis, contracts);
    let tip = chain.tip()?;
    tracing::info!(
        node = %config.node_name,
        chain_id = %chain.chain_id(),
        genesis_hash = %chain.genesis().hash(),
        observer = config.observer,
        height = tip.height.0,
        key = %key.public(),
        "node starting"
    );
    let shared = Arc::new(Shared::new(
        chain,
        mempool,
        config.node_name.clone(),
        config.observer,
    ));

    let listener = tokio::net::TcpListener::bind(config.rpc_listen)
        .await
        .map_err(io(format!("bind RPC address {}", config.rpc_listen)))?;
    let rpc_addr = listener.local_addr().map_err(io("read RPC address"))?;
    let addr_file = rpc_addr_path(&data_dir);
    std::fs::write(&addr_file, rpc_addr.to_string()).map_err(io("write rpc.addr"))?;
    tracing::info!(%rpc_addr, "HTTP API listening");

    let stop = Arc::new(AtomicBool::new(false));
    let (driver_done_tx, driver_done) = oneshot::channel();
    let (transport, inbox, _p2p_address) =
        crate::p2p::start(&key, p2p_settings, shared.clone()).await?;
    let driver = Driver::new(shared.clone(), key, Box::new(transport), driver_config)?;
    let driver_stop = stop.clone();
    let consensus_nice = config.consensus_nice;
    let driver_thread = std::thread::Builder::new()
        .name("consensus".into())
        .spawn(move || {
            // Refused, it is logged and the node runs on.
            priority::set_this_thread(consensus_nice);
            let result = driver.run(inbox, &driver_stop);
            let _ = driver_done_tx.send(());
            result
        })
        .map_err(io("start the consensus thread"))?;

    // Serve until asked to stop, or until consensus stops on its own (a storage failure).
    let stop_serving = async move {
        tokio::select! {
            () = shutdown => {}
            _ = driver_done => {}
        }
    };
    let listener = BoundedListener::new(listener, MAX_RPC_CONNECTIONS, RPC_IDLE_TIMEOUT);
    let served = axum::serve(listener, crate::rpc::router(shared))
        .with_graceful_shutdown(stop_serving)
        .await;
    tracing::info!("shutting down");
    stop.store(true, Ordering::Relaxed);
    let driven = tokio::task::spawn_blocking(move || driver_thread.join()).await;
    let _ = std::fs::remove_file(&addr_file);
    match driven {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(err))) => return Err(NodeError::Consensus(err)),
        Ok(Err(_)) | Err(_) => return Err(NodeError::ConsensusPanicked),
    }
    served.map_err(io("serve HTTP API"))
}
