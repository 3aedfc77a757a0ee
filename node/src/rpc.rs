//! The HTTP API (axum). Every handler answers bad input with a JSON error and a 4xx status;
//! nothing a client sends can stop the node.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bidchain_runtime::block;
use bidchain_runtime::contract::MAX_KEY_BYTES;
use bidchain_runtime::ids::{AccountId, Height};
use bidchain_runtime::merkle;
use bidchain_runtime::state::{self, Overlay, StateView};
use bidchain_runtime::tx::{MAX_CONTRACT_NAME_LEN, MAX_TX_BYTES, SignedTransaction, TxHash};

use crate::api::*;
use crate::chain::receipts_root;
use crate::shared::{Shared, TxSource};
use crate::storage::{Commits, Receipts, TxIndex};

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
        .route("/txs/{hash}", get(get_tx))
        .route("/blocks/{height}", get(get_block))
        .route("/accounts/{id}", get(get_account))
        .route("/contracts/{name}/state/{key}", get(get_contract_state))
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

async fn submit_tx(
    State(shared): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let refused = |err: ApiError| {
        shared.metrics.txs_refused.fetch_add(1, Ordering::Relaxed);
        err
    };
    // Over-long bodies are cut off by the body limit; answer them in JSON like the rest.
    let body =
        body.map_err(|e| refused(ApiError::new(e.status(), "body_too_large", e.body_text())))?;
    let tx = SignedTransaction::decode(&body)
        .map_err(|e| refused(ApiError::bad_request("malformed_tx", e)))?;
    tx.verify_signature()
        .map_err(|e| refused(ApiError::bad_request("bad_signature", e)))?;
    let tx_hash = shared
        .admit(tx, body.len(), TxSource::Client)
        .map_err(|e| refused(ApiError::bad_request(e.code(), e)))?;
    tracing::debug!(%tx_hash, "admitted transaction");
    let body = SubmitResponse {
        tx_hash,
        status: TxStatus::Pending,
    };
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
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
    let Some(receipt) = storage.get::<Receipts>(&hash).map_err(ApiError::internal)? else {
        if shared.mempool().contains(&hash) {
            return json(TxResponse {
                tx_hash: hash,
                status: TxStatus::Pending,
                height: None,
                index: None,
                result: None,
                events: Vec::new(),
                fuel_used: None,
                proof: None,
            });
        }
        return Err(ApiError::not_found(format!(
            "transaction {hash} is neither pending nor committed"
        )));
    };
    let proof = tx_proof(&shared, hash)?;
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
        proof: Some(proof),
    })
}

/// Inclusion proofs of a committed transaction and of its receipt.
fn tx_proof(shared: &Shared, hash: TxHash) -> Result<TxProof, ApiError> {
    let storage = shared.chain.storage();
    let location = storage.get::<TxIndex>(&hash).map_err(ApiError::internal)?;
    let location = location.ok_or_else(|| ApiError::internal("receipt without tx index"))?;
    let block = storage.block(location.height).map_err(ApiError::internal)?;
    let block = block.ok_or_else(|| ApiError::internal("tx index points at a missing block"))?;
    let index = location.index as usize;
    let tx = merkle::prove(&block.tx_leaves(), index).map_err(ApiError::internal)?;
    let mut receipts = Vec::with_capacity(block.txs.len());
    for stx in block.txs.iter() {
        let receipt = storage
            .get::<Receipts>(&stx.hash())
            .map_err(ApiError::internal)?;
        receipts.push(receipt.ok_or_else(|| ApiError::internal("block tx without receipt"))?);
    }
    let leaves: Vec<_> = receipts.iter().map(|r| r.leaf_hash()).collect();
    let receipt = merkle::prove(&leaves, index).map_err(ApiError::internal)?;
    Ok(TxProof {
        block_id: block.id(),
        tx_root: merkle::root(&block::tx_leaves(&block.txs)),
        tx,
        receipts_root: receipts_root(&receipts),
        receipt,
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
    let overlay = Overlay::new(shared.chain.storage());
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
    if name.len() > MAX_CONTRACT_NAME_LEN || key.len() > 2 * MAX_KEY_BYTES {
        return Err(ApiError::bad_request(
            "bad_key",
            "contract name or key too long",
        ));
    }
    let key = hex::decode(&key).map_err(|e| ApiError::bad_request("bad_key", e))?;
    let storage = shared.chain.storage();
    let height = storage.latest_height().map_err(ApiError::internal)?;
    let value =
        StateView::get(storage, &state::contract_key(&name, &key)).map_err(ApiError::internal)?;
    json(ContractStateResponse {
        contract: name,
        height,
        value: value.map(hex::encode),
    })
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Reply {
    let m = &shared.metrics;
    let height = shared
        .chain
        .storage()
        .latest_height()
        .map_err(ApiError::internal)?;
    let text = format!(
        "# TYPE bidchain_height gauge\nbidchain_height {}\n\
         # TYPE bidchain_peers gauge\nbidchain_peers {}\n\
         # TYPE bidchain_mempool_txs gauge\nbidchain_mempool_txs {}\n\
         # TYPE bidchain_txs_admitted_total counter\nbidchain_txs_admitted_total {}\n\
         # TYPE bidchain_txs_refused_total counter\nbidchain_txs_refused_total {}\n\
         # TYPE bidchain_txs_committed_total counter\nbidchain_txs_committed_total {}\n\
         # TYPE bidchain_blocks_committed_total counter\nbidchain_blocks_committed_total {}\n",
        height.0,
        m.peers.load(Ordering::Relaxed),
        shared.mempool().len(),
        m.txs_admitted.load(Ordering::Relaxed),
        m.txs_refused.load(Ordering::Relaxed),
        m.txs_committed.load(Ordering::Relaxed),
        m.blocks_committed.load(Ordering::Relaxed),
    );
    Ok(([("content-type", "text/plain; version=0.0.4")], text).into_response())
}
