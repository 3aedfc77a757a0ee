//! The HTTP API (axum). Every handler answers bad input with a JSON error and a 4xx status;
//! nothing a client sends can stop the node.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bidchain_runtime::codec;
use bidchain_runtime::contract::MAX_KEY_BYTES;
use bidchain_runtime::hash::Hash;
use bidchain_runtime::ids::{AccountId, Height};
use bidchain_runtime::proof::Bundle;
use bidchain_runtime::state::{self, Overlay, StateView};
use bidchain_runtime::tx::{MAX_CONTRACT_NAME_LEN, MAX_TX_BYTES, SignedTransaction, TxHash};
use bidchain_trading::archive::{self, ArchiveKind};
use bidchain_trading::contract_names as names;
use bidchain_trading::ids::{Digest, TenderId};

use crate::api::*;
use crate::chain::Chain;
use crate::mempool::{Admissible, AdmitError};
use crate::proofs::{self, ProofError};
use crate::shared::{Shared, TxSource};
use crate::storage::Commits;

type Reply = Result<Response, ApiError>;

/// An error answer: status, stable code, message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl ToString) -> ApiError {
        ApiError {
            status,
            code,
            message: message.to_string(),
        }
    }

    fn internal(err: impl std::fmt::Display) -> ApiError {
        tracing::error!(%err, "request failed inside the node");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", err)
    }

    fn not_found(message: impl ToString) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    fn bad_request(code: &'static str, message: impl ToString) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A refused admission: 503 when the chain is behind (retry shortly), else 400.
    fn refused(err: &AdmitError) -> ApiError {
        let status = match err {
            AdmitError::Backlogged { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, err.code(), err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorResponse {
            error: self.message,
            code: self.code.to_owned(),
        };
        (self.status, axum::Json(body)).into_response()
    }
}

fn json<T: serde::Serialize>(value: T) -> Reply {
    Ok(axum::Json(value).into_response())
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/txs", post(submit_tx))
        .route(
            "/txs/batch",
            // The route's own limit replaces the router's one-transaction limit below.
            post(submit_batch).layer(DefaultBodyLimit::max(MAX_SUBMIT_BATCH_BYTES)),
        )
        .route("/txs/{hash}", get(get_tx))
        .route("/blocks/{height}", get(get_block))
        .route("/blocks/{height}/seed/proof", get(get_seed_bundle))
        .route("/accounts/{id}", get(get_account))
        .route("/txs/{hash}/proof", get(get_tx_bundle))
        .route("/contracts/{name}/state/{key}", get(get_contract_state))
        .route("/contracts/{name}/state/{key}/proof", get(get_state_bundle))
        .route("/archives/{tender}/{kind}/proof", get(get_archive_bundle))
        .route(
            "/archives/{tender}/{kind}/{sha256}/proof",
            get(get_file_bundle),
        )
        .route("/metrics", get(metrics))
        // One transaction plus slack; larger bodies are refused before they are read whole.
        .layer(DefaultBodyLimit::max(MAX_TX_BYTES + 1024))
        .with_state(shared)
}

async fn status(State(shared): State<Arc<Shared>>) -> Reply {
    let chain = &shared.chain;
    let tip = chain.tip().map_err(ApiError::internal)?;
    json(StatusResponse {
        chain_id: chain.chain_id().to_string(),
        node_name: shared.node_name.clone(),
        role: if shared.observer {
            "observer"
        } else {
            "validator"
        }
        .to_owned(),
        height: tip.height,
        latest_block_hash: tip.block_id,
        latest_block_time: tip.time,
        peers: shared.metrics.peers.load(Ordering::Relaxed),
        genesis_hash: chain.genesis().hash(),
        mempool_txs: shared.mempool().len(),
    })
}

/// Counts a refused submission and passes its error on.
fn count_refused(shared: &Shared, err: ApiError) -> ApiError {
    shared.metrics.txs_refused.fetch_add(1, Ordering::Relaxed);
    err
}

/// A submission's body. Over-long bodies are cut off by the body limit; answer them in
/// JSON like the rest.
fn submitted(shared: &Shared, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        let err = ApiError::new(e.status(), "body_too_large", e.body_text());
        count_refused(shared, err)
    })
}

async fn submit_tx(
    State(shared): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let refused = |err: ApiError| count_refused(&shared, err);
    let body = submitted(&shared, body)?;
    let tx = SignedTransaction::decode(&body)
        .map_err(|e| refused(ApiError::bad_request("malformed_tx", e)))?;
    let room = {
        let mempool = shared.mempool();
        let paced = mempool.check_pace(Instant::now());
        paced.and_then(|()| mempool.check_room(body.len()))
    };
    room.map_err(|e| refused(ApiError::refused(&e)))?;
    tx.verify_signature()
        .map_err(|e| refused(ApiError::bad_request("bad_signature", e)))?;
    let tx_hash = shared
        .admit(Admissible::new(tx), TxSource::Client)
        .map_err(|e| refused(ApiError::refused(&e)))?;
    tracing::debug!(%tx_hash, "admitted transaction");
    let body = SubmitResponse {
        tx_hash,
        status: TxStatus::Pending,
    };
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

async fn submit_batch(
    State(shared): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let refused = |err: ApiError| count_refused(&shared, err);
    let body = submitted(&shared, body)?;
    // The signature checks take milliseconds for a large batch: off the async workers,
    // at most MAX_CONCURRENT_BATCHES at once, and at most MAX_PENDING_BATCHES in this
    // handler at all (each holds its body); beyond that a batch is refused. The permits
    // go with the work, which runs on even if the client hangs up.
    let pending = shared
        .batch_pending
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            refused(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many batch submissions are waiting to be admitted; retry shortly",
            ))
        })?;
    // Refused before it is decoded while the chain is behind: a cheap answer to the
    // resends that come then.
    let paced = shared.mempool().check_pace(Instant::now());
    paced.map_err(|e| refused(ApiError::refused(&e)))?;
    let txs = codec::decode_bounded::<SubmitBatch>(&body, MAX_SUBMIT_BATCH_BYTES)
        .map_err(|e| refused(ApiError::bad_request("malformed_batch", e)))?
        .into_inner();
    // Refused whole when the mempool could not take it all; the client resends later.
    let room = shared.mempool().check_room_for(txs.len(), body.len());
    room.map_err(|e| {
        // Every transaction of the batch is refused.
        let others = txs.len().saturating_sub(1) as u64;
        shared
            .metrics
            .txs_refused
            .fetch_add(others, Ordering::Relaxed);
        refused(ApiError::refused(&e))
    })?;
    let slot = shared
        .batch_slots
        .clone()
        .acquire_owned()
        .await
        .map_err(ApiError::internal)?;
    let admission = shared.clone();
    let outcomes = tokio::task::spawn_blocking(move || {
        let outcomes = admission.admit_batch(txs, TxSource::Client);
        drop((slot, pending));
        outcomes
    })
    .await
    .map_err(ApiError::internal)?;
    let results = outcomes
        .into_iter()
        .map(|(tx_hash, outcome)| match outcome {
            Ok(()) => BatchItem {
                tx_hash,
                status: Some(TxStatus::Pending),
                refused: None,
            },
            Err(err) => {
                shared.metrics.txs_refused.fetch_add(1, Ordering::Relaxed);
                BatchItem {
                    tx_hash,
                    status: None,
                    refused: Some(ErrorResponse {
                        error: err.to_string(),
                        code: err.code().to_owned(),
                    }),
                }
            }
        })
        .collect();
    json(SubmitBatchResponse { results })
}

fn parse<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| ApiError::bad_request("bad_path", format!("{what}: {e}")))
}

async fn get_tx(State(shared): State<Arc<Shared>>, Path(hash): Path<String>) -> Reply {
    let hash: TxHash = parse(&hash, "transaction hash")?;
    let storage = shared.chain.storage();
    let Some(receipt) = storage.receipt(&hash).map_err(ApiError::internal)? else {
        if shared.mempool().contains(&hash) {
            return json(TxResponse {
                tx_hash: hash,
                status: TxStatus::Pending,
                height: None,
                index: None,
                result: None,
                events: Vec::new(),
                fuel_used: None,
            });
        }
        return Err(ApiError::not_found(format!(
            "transaction {hash} is neither pending nor committed"
        )));
    };
    let status = if receipt.outcome.is_ok() {
        TxStatus::Committed
    } else {
        TxStatus::Rejected
    };
    json(TxResponse {
        tx_hash: hash,
        status,
        height: Some(receipt.height),
        index: Some(receipt.index),
        result: Some(receipt.outcome),
        events: receipt.events.to_vec(),
        fuel_used: Some(receipt.fuel_used),
    })
}

async fn get_block(State(shared): State<Arc<Shared>>, Path(height): Path<String>) -> Reply {
    let height = Height(parse(&height, "height")?);
    let storage = shared.chain.storage();
    let missing = || ApiError::not_found(format!("no block at height {height}"));
    let block = storage
        .block(height)
        .map_err(ApiError::internal)?
        .ok_or_else(missing)?;
    let commit = storage
        .get::<Commits>(&height)
        .map_err(ApiError::internal)?
        .ok_or_else(missing)?;
    json(BlockResponse {
        block_id: block.id(),
        tx_hashes: block.txs.iter().map(SignedTransaction::hash).collect(),
        header: block.header,
        commit,
    })
}

async fn get_account(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Reply {
    let id: AccountId = parse(&id, "account id")?;
    let state = shared.chain.storage().without_filling();
    let overlay = Overlay::new(&state);
    let account = overlay.account(id).map_err(ApiError::internal)?;
    let account = account.ok_or_else(|| ApiError::not_found(format!("no account {id}")))?;
    let next_nonce = shared.mempool().next_nonce(&id).unwrap_or(account.nonce);
    json(AccountResponse {
        account_id: id,
        public_key: account.key,
        role: account.role,
        label: account.label.to_string(),
        nonce: account.nonce,
        next_nonce,
    })
}

/// One entry of a contract's storage, raw (the contract's own encoding), for clients that
/// decode it with the contract's types (`bidchain-trading` for the trading contracts).
async fn get_contract_state(
    State(shared): State<Arc<Shared>>,
    Path((name, key)): Path<(String, String)>,
) -> Reply {
    let key = contract_state_key(&name, &key)?;
    let storage = shared.chain.storage();
    let height = storage.latest_height().map_err(ApiError::internal)?;
    let value = storage
        .without_filling()
        .get(&key)
        .map_err(ApiError::internal)?;
    json(ContractStateResponse {
        contract: name,
        height,
        value: value.map(hex::encode),
    })
}

/// A bundle's bytes, as `bidchain audit export` writes them to a file.
fn bundle_reply(result: Result<Bundle, ProofError>) -> Reply {
    match result {
        Ok(bundle) => Ok((
            [("content-type", "application/octet-stream")],
            bundle.encode(),
        )
            .into_response()),
        Err(err @ (ProofError::TxNotCommitted(_) | ProofError::NoSuchBlock(_))) => {
            Err(ApiError::not_found(err))
        }
        Err(err @ ProofError::NoBlock) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_block",
            err,
        )),
        Err(err @ (ProofError::TooManyEntries(_) | ProofError::EntryTooLarge(_))) => {
            Err(ApiError::bad_request("too_large", err))
        }
        Err(err) => Err(ApiError::internal(err)),
    }
}

/// Builds a bundle off the async workers: it reads a whole block's receipts.
async fn build_bundle(
    shared: Arc<Shared>,
    build: impl FnOnce(&Chain) -> Result<Bundle, ProofError> + Send + 'static,
) -> Reply {
    let _slot = shared
        .proof_slots
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let chain_owner = Arc::clone(&shared);
    let result = tokio::task::spawn_blocking(move || build(&chain_owner.chain))
        .await
        .map_err(ApiError::internal)?;
    bundle_reply(result)
}

/// The receipt of a committed transaction with its proofs, anchored at its block.
async fn get_tx_bundle(State(shared): State<Arc<Shared>>, Path(hash): Path<String>) -> Reply {
    let hash: TxHash = parse(&hash, "transaction hash")?;
    build_bundle(shared, move |chain| proofs::receipt_bundle(chain, hash)).await
}

/// The random seed of a committed block, proven by its header.
async fn get_seed_bundle(State(shared): State<Arc<Shared>>, Path(height): Path<String>) -> Reply {
    let height = Height(parse(&height, "height")?);
    build_bundle(shared, move |chain| proofs::seed_bundle(chain, height)).await
}

fn contract_state_key(name: &str, key: &str) -> Result<Vec<u8>, ApiError> {
    if name.len() > MAX_CONTRACT_NAME_LEN || key.len() > 2 * MAX_KEY_BYTES {
        return Err(ApiError::bad_request(
            "bad_key",
            "contract name or key too long",
        ));
    }
    let key = hex::decode(key).map_err(|e| ApiError::bad_request("bad_key", e))?;
    Ok(state::contract_key(name, &key))
}

/// One contract storage entry (or its absence) with its proof, at the latest block.
async fn get_state_bundle(
    State(shared): State<Arc<Shared>>,
    Path((name, key)): Path<(String, String)>,
) -> Reply {
    let key = contract_state_key(&name, &key)?;
    build_bundle(shared, move |chain| {
        proofs::state_bundle(chain, &[key], None)
    })
    .await
}

fn archive_prefix(tender: &str, kind: &str) -> Result<(TenderId, ArchiveKind), ApiError> {
    let tender = TenderId::new(tender).map_err(|e| ApiError::bad_request("bad_path", e))?;
    let kind = ArchiveKind::parse(kind).ok_or_else(|| {
        ApiError::bad_request("bad_path", format!("unknown archive kind {kind:?}"))
    })?;
    Ok((tender, kind))
}

/// Every record of a tender's files of one kind, proven at the latest block.
async fn get_archive_bundle(
    State(shared): State<Arc<Shared>>,
    Path((tender, kind)): Path<(String, String)>,
) -> Reply {
    let (tender, kind) = archive_prefix(&tender, &kind)?;
    let prefix = state::contract_key(names::ARCHIVE, &archive::keys::records_of(&tender, kind));
    build_bundle(shared, move |chain| {
        proofs::state_bundle(chain, &[], Some(&prefix))
    })
    .await
}

/// The record of one file (or the proof that there is none), with the tender's other
/// records of that kind, proven at the latest block.
async fn get_file_bundle(
    State(shared): State<Arc<Shared>>,
    Path((tender, kind, sha256)): Path<(String, String, String)>,
) -> Reply {
    let (tender, kind) = archive_prefix(&tender, &kind)?;
    let sha256: Hash = parse(&sha256, "sha256")?;
    let record = archive::keys::record(&tender, kind, &Digest(sha256.0));
    let key = state::contract_key(names::ARCHIVE, &record);
    let prefix = state::contract_key(names::ARCHIVE, &archive::keys::records_of(&tender, kind));
    build_bundle(shared, move |chain| {
        proofs::state_bundle(chain, &[key], Some(&prefix))
    })
    .await
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Reply {
    let m = &shared.metrics;
    let height = shared
        .chain
        .storage()
        .latest_height()
        .map_err(ApiError::internal)?;
    let (mempool_len, head_wait) = {
        let mempool = shared.mempool();
        (mempool.len(), mempool.head_wait(Instant::now()))
    };
    let text = format!(
        "# TYPE bidchain_height gauge\nbidchain_height {}\n\
         # TYPE bidchain_peers gauge\nbidchain_peers {}\n\
         # TYPE bidchain_mempool_txs gauge\nbidchain_mempool_txs {}\n\
         # TYPE bidchain_mempool_head_wait_ms gauge\nbidchain_mempool_head_wait_ms {}\n\
         # TYPE bidchain_txs_admitted_total counter\nbidchain_txs_admitted_total {}\n\
         # TYPE bidchain_txs_refused_total counter\nbidchain_txs_refused_total {}\n\
         # TYPE bidchain_txs_committed_total counter\nbidchain_txs_committed_total {}\n\
         # TYPE bidchain_blocks_committed_total counter\nbidchain_blocks_committed_total {}\n\
         # TYPE bidchain_signatures_checked_total counter\nbidchain_signatures_checked_total {}\n",
        height.0,
        m.peers.load(Ordering::Relaxed),
        mempool_len,
        head_wait.as_millis(),
        m.txs_admitted.load(Ordering::Relaxed),
        m.txs_refused.load(Ordering::Relaxed),
        m.txs_committed.load(Ordering::Relaxed),
        m.blocks_committed.load(Ordering::Relaxed),
        m.signatures_checked.load(Ordering::Relaxed),
    );
    Ok(([("content-type", "text/plain; version=0.0.4")], text).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mempool::{Mempool, MempoolConfig};
    use crate::shared::MAX_PENDING_BATCHES;
    use crate::testing::{create_account_tx, genesis_for};
    use bidchain_runtime::crypto::Keypair;
    use bidchain_runtime::tx::Role;

    fn shared(dir: &std::path::Path, max_txs: usize) -> Arc<Shared> {
        let config = MempoolConfig {
            max_txs,
            ..MempoolConfig::default()
        };
        shared_with(dir, config)
    }

    fn shared_with(dir: &std::path::Path, config: MempoolConfig) -> Arc<Shared> {
        let genesis = genesis_for(&[1], &[]);
        let storage = crate::storage::Storage::open(dir, &genesis).unwrap();
        let chain = Chain::new(storage, genesis.clone(), genesis.contracts().unwrap());
        let mempool = Mempool::new(config, genesis.chain_id.clone());
        Arc::new(Shared::new(chain, mempool, "t".into(), false))
    }

    fn batch(n: u64) -> Bytes {
        let hub = Keypair::from_seed_for_tests(1);
        let txs = (0..n)
            .map(|nonce| create_account_tx(&hub, nonce, &Keypair::generate(), Role::Bidder))
            .collect();
        Bytes::from(codec::encode(&SubmitBatch::new(txs).unwrap()))
    }

    async fn code_of(reply: Reply) -> (StatusCode, String) {
        let response = match reply {
            Ok(response) => response,
            Err(err) => err.into_response(),
        };
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let code = serde_json::from_slice::<ErrorResponse>(&body).map_or(String::new(), |e| e.code);
        (status, code)
    }

    #[tokio::test]
    async fn a_batch_beyond_the_admission_slots_or_the_mempool_is_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared(dir.path(), 3);
        let held = shared
            .batch_pending
            .clone()
            .try_acquire_many_owned(u32::try_from(MAX_PENDING_BATCHES).unwrap())
            .unwrap();
        let busy = submit_batch(State(shared.clone()), Ok(batch(2))).await;
        assert_eq!(
            code_of(busy).await,
            (StatusCode::SERVICE_UNAVAILABLE, "busy".to_owned())
        );
        drop(held);
        let too_many = submit_batch(State(shared.clone()), Ok(batch(4))).await;
        assert_eq!(
            code_of(too_many).await,
            (StatusCode::BAD_REQUEST, "mempool_full".to_owned())
        );
        assert_eq!(shared.mempool().len(), 0);
        let fits = submit_batch(State(shared.clone()), Ok(batch(3))).await;
        assert_eq!(code_of(fits).await.0, StatusCode::OK);
        assert_eq!(shared.mempool().len(), 3);
        assert_eq!(shared.metrics.txs_refused.load(Ordering::Relaxed), 1 + 4);
    }

    #[tokio::test]
    async fn clients_are_told_to_retry_while_the_queue_stands() {
        let dir = tempfile::tempdir().unwrap();
        let config = MempoolConfig {
            max_wait_ms: 1,
            ..MempoolConfig::default()
        };
        let shared = shared_with(dir.path(), config);
        let hub = Keypair::from_seed_for_tests(1);
        let tx = |nonce| create_account_tx(&hub, nonce, &Keypair::generate(), Role::Bidder);
        let first = submit_tx(State(shared.clone()), Ok(Bytes::from(tx(0).encode()))).await;
        assert_eq!(code_of(first).await.0, StatusCode::ACCEPTED);
        // No block takes it: once it has waited longer than the bound, clients are refused.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let busy = submit_tx(State(shared.clone()), Ok(Bytes::from(tx(1).encode()))).await;
        assert_eq!(
            code_of(busy).await,
            (StatusCode::SERVICE_UNAVAILABLE, "busy".to_owned())
        );
        let batch = SubmitBatch::new(vec![tx(1)]).unwrap();
        let busy = submit_batch(
            State(shared.clone()),
            Ok(Bytes::from(codec::encode(&batch))),
        )
        .await;
        assert_eq!(code_of(busy).await.0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shared.mempool().len(), 1);
        // A peer's relay is still taken.
        shared.admit_peer_batch(vec![tx(1)]);
        assert_eq!(shared.mempool().len(), 2);
    }
}
