//! A client of a node's HTTP API.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bidchain_node::api::*;
use bidchain_runtime::crypto::Keypair;
use bidchain_runtime::ids::{AccountId, ChainId, Height};
use bidchain_runtime::proof::MAX_BUNDLE_BYTES;
use bidchain_runtime::tx::{Payload, SignedTransaction, Transaction, TxHash};
use serde::de::DeserializeOwned;

/// Longest a single request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle connection to a node is kept for reuse.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`Client::sign_and_submit`] keeps resending what the node refuses as `busy`.
const SUBMIT_BUSY_RETRY: Duration = Duration::from_secs(10);
/// The wait before each resend after `busy`.
const BUSY_BACKOFF: Duration = Duration::from_millis(200);

#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

/// A refusal from the node: its code and message.
#[derive(Debug, thiserror::Error)]
#[error("node refused ({code}): {message}")]
pub struct Refused {
    pub code: String,
    pub message: String,
    pub status: u16,
}

impl Refused {
    /// Whether this refusal asks to retry shortly (the node is behind, or its admission
    /// is full).
    pub fn is_busy(err: &anyhow::Error) -> bool {
        err.downcast_ref::<Refused>()
            .is_some_and(|r| r.code == "busy")
    }
}

/// A resend after `busy` waits at most this many times the first wait: the waits double
/// up to it, so that many clients refused at once do not all come back at once.
const MAX_BACKOFF_FACTOR: u32 = 8;

/// Sends until answered with anything but `busy`, resending after `backoff` (doubling,
/// up to [`MAX_BACKOFF_FACTOR`] times) for at most `give_up`; `on_resend` is called at
/// each resend.
pub async fn while_busy<T, Fut>(
    give_up: Duration,
    backoff: Duration,
    mut on_resend: impl FnMut(),
    mut send: impl FnMut() -> Fut,
) -> Result<T>
where
    Fut: std::future::Future<Output = Result<T>>,
{
    let start = Instant::now();
    let mut wait = backoff;
    loop {
        match send().await {
            Err(err) if Refused::is_busy(&err) && start.elapsed() < give_up => {
                on_resend();
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(backoff * MAX_BACKOFF_FACTOR);
            }
            answer => return answer,
        }
    }
}

impl Client {
    pub fn new(base: &str) -> Result<Client> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            // Shorter than the node's idle limit (60 s): a connection is not reused just
            // as the node closes it.
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build()?;
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn decode<T: DeserializeOwned>(&self, response: reqwest::Response) -> Result<T> {
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .context("reading the node's answer")?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .context("the node's answer is not the expected JSON");
        }
        match serde_json::from_slice::<ErrorResponse>(&bytes) {
            Ok(err) => Err(Refused {
                code: err.code,
                message: err.error,
                status: status.as_u16(),
            }
            .into()),
            Err(_) => Err(anyhow!(
                "node answered HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            )),
        }
    }

    /// `GET path`, the answer not yet read.
    async fn send_get(&self, path: &str) -> Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        self.http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let response = self.send_get(path).await?;
        self.decode(response).await
    }

    /// A proof bundle's bytes (`GET .../proof`); a refusal comes back as [`Refused`].
    pub async fn bundle(&self, path: &str) -> Result<Vec<u8>> {
        let mut response = self.send_get(path).await?;
        let status = response.status();
        if !status.is_success() {
            // `decode` turns an error answer into `Refused`.
            let err = self.decode::<serde_json::Value>(response).await.err();
            return Err(err.unwrap_or_else(|| anyhow!("node answered HTTP {status}")));
        }
        // A node is not trusted: read no more than a bundle may hold.
        let limit = MAX_BUNDLE_BYTES + 1;
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            bail!("the node's bundle is larger than {MAX_BUNDLE_BYTES} bytes");
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.context("reading the bundle")? {
            if bytes.len() + chunk.len() > limit {
                bail!("the node's bundle is larger than {MAX_BUNDLE_BYTES} bytes");
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    pub async fn status(&self) -> Result<StatusResponse> {
        self.get("/status").await
    }

    /// The node's `/metrics` text (Prometheus' format), over the client's pooled
    /// connections: benchmarks poll it many times a second.
    pub async fn metrics(&self) -> Result<String> {
        let response = self.send_get("/metrics").await?;
        let status = response.status();
        let text = response
            .text()
            .await
            .context("reading the node's metrics")?;
        if !status.is_success() {
            bail!("node answered HTTP {status}: {text}");
        }
        Ok(text)
    }

    pub async fn submit(&self, tx: &SignedTransaction) -> Result<SubmitResponse> {
        self.submit_raw(tx.encode()).await
    }

    pub async fn submit_raw(&self, body: Vec<u8>) -> Result<SubmitResponse> {
        self.post_bytes("/txs", body).await
    }

    /// Submits up to [`MAX_SUBMIT_BATCH_TXS`] transactions in one request: one answer per
    /// transaction, in order (admitted or refused each on its own).
    pub async fn submit_batch(&self, txs: Vec<SignedTransaction>) -> Result<SubmitBatchResponse> {
        let batch = SubmitBatch::new(txs).map_err(|e| anyhow!("batch too long: {e}"))?;
        self.submit_batch_raw(bidchain_runtime::codec::encode(&batch))
            .await
    }

    pub async fn submit_batch_raw(&self, body: Vec<u8>) -> Result<SubmitBatchResponse> {
        self.post_bytes("/txs/batch", body).await
    }

    async fn post_bytes<T: DeserializeOwned>(&self, path: &str, body: Vec<u8>) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .post(&url)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        self.decode(response).await
    }

    pub async fn tx(&self, hash: &TxHash) -> Result<TxResponse> {
        self.get(&format!("/txs/{hash}")).await
    }

    pub async fn block(&self, height: Height) -> Result<BlockResponse> {
        self.get(&format!("/blocks/{}", height.0)).await
    }

    pub async fn account(&self, id: &AccountId) -> Result<AccountResponse> {
        self.get(&format!("/accounts/{id}")).await
    }

    /// `contract`'s storage entry at `key`, decoded with the trading types.
    pub async fn contract_state<T: bidchain_trading::Decode>(
        &self,
        contract: &str,
        key: &[u8],
    ) -> Result<Option<T>> {
        let path = format!("/contracts/{contract}/state/{}", hex::encode(key));
        let answer: ContractStateResponse = self.get(&path).await?;
        let Some(value) = answer.value else {
            return Ok(None);
        };
        let bytes = hex::decode(&value).context("contract state is not hex")?;
        let value = T::decode(&bytes)
            .map_err(|e| anyhow!("contract {contract} entry does not decode: {e}"))?;
        Ok(Some(value))
    }

    /// Signs `payload` with `key` at the account's next nonce (pending transactions
    /// counted) and submits it, resending it for a while if the node is `busy`.
    pub async fn sign_and_submit(&self, key: &Keypair, payload: Payload) -> Result<SubmitResponse> {
        let status = self.status().await?;
        let nonce = self
            .account(&AccountId::of(&key.public()))
            .await?
            .next_nonce;
        let tx = Transaction {
            chain_id: ChainId::new(&status.chain_id)?,
            sender: key.public(),
            nonce,
            payload,
        }
        .sign(key);
        let resend = || tracing::info!("the node is behind (busy); resending shortly");
        while_busy(SUBMIT_BUSY_RETRY, BUSY_BACKOFF, resend, || self.submit(&tx)).await
    }

    /// Polls until the transaction is in a block (committed or rejected by the rules).
    pub async fn wait_included(&self, hash: &TxHash, timeout: Duration) -> Result<TxResponse> {
        let start = Instant::now();
        loop {
            match self.tx(hash).await {
                Ok(tx) if tx.status != TxStatus::Pending => return Ok(tx),
                Ok(_) => {}
                Err(err) if start.elapsed() >= timeout => return Err(err),
                Err(_) => {}
            }
            if start.elapsed() >= timeout {
                bail!("transaction {hash} still not in a block after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `/status` until the node's height reaches `height`.
    pub async fn wait_height(&self, height: Height, timeout: Duration) -> Result<StatusResponse> {
        let start = Instant::now();
        loop {
            let status = self.status().await?;
            if status.height >= height {
                return Ok(status);
            }
            if start.elapsed() >= timeout {
                bail!(
                    "{} is at height {}, not {height}, after {timeout:?}",
                    self.base,
                    status.height
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `/status` until the node answers.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<StatusResponse> {
        let start = Instant::now();
        loop {
            match self.status().await {
                Ok(status) => return Ok(status),
                Err(err) if start.elapsed() >= timeout => {
                    return Err(
                        err.context(format!("node at {} not ready after {timeout:?}", self.base))
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}
