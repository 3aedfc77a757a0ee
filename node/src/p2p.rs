//! The libp2p network between validators and observers: TCP + noise + yamux, identify, and
//! two protocols on direct streams:
//!
//! - `/bidchain/msg/2`: consensus messages and relayed transactions, one-way, on one
//!   long-lived stream per peer ([`crate::msg_stream`]);
//! - `/bidchain/sync/1`: request-response: a peer's committed height, and committed blocks
//!   with their commit certificates, for a node that is behind and for observers.
//!
//! Why direct streams rather than gossipsub: the peer set is small and fixed (every validator
//! connects to every other), so a broadcast is n - 1 sends either way, one hop, no mesh to
//! form; and gossipsub's duplicate cache would drop the driver's deliberate re-sends of the
//! same vote, which is how a lost message gets through.
//!
//! Admission: a peer id is the hash of the node's ed25519 key. Only genesis validators and the
//! peers and observers named in the config may connect: libp2p's allow list refuses any
//! other right after the noise handshake, before any protocol stream opens. Everything a
//! peer sends is size-bounded and decoded strictly; undecodable bytes get the peer
//! disconnected. Signatures are checked by the driver before use.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

use bidchain_runtime::block::{Block, CommitCertificate};
use bidchain_runtime::codec;
use bidchain_runtime::crypto::{Keypair, PublicKey};
use bidchain_runtime::ids::Height;
use bincode::{Decode, Encode};
use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, allow_block_list, identify};
use tokio::sync::mpsc;

use crate::msg_stream::{
    self, Frame, MAX_INBOUND_EVENTS, MAX_INBOUND_STREAMS_PER_PEER, MESSAGE_PROTOCOL, StreamEvent,
};
use crate::net::{
    INBOX_CAPACITY, Inbound, Inbox, MAX_NET_MESSAGE_BYTES, MAX_TX_BATCH_BYTES, NetMessage,
    SyncedBlock, Transport, ValidatorIndex,
};
use crate::shared::Shared;

/// Commands from the driver waiting for the network task; beyond this, sends are dropped
/// (consensus re-sends what matters).
pub const MAX_PENDING_COMMANDS: usize = 8_192;
/// Blocks per sync response, and their encoded size (the first block always fits): small
/// enough to arrive within the timeout over a slow provincial link.
pub const MAX_SYNC_BLOCKS: u64 = 64;
/// Peer transaction batches being checked and admitted at once (each up to
/// `MAX_TX_BATCH_BYTES`); more are dropped.
pub const MAX_TX_BATCH_ADMISSIONS: usize = 2;
pub const MAX_SYNC_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Fetched runs of blocks queued for their signature checks: one being checked while the
/// next is fetched. Beyond this a run is dropped, and fetched again after `SYNC_STALL`.
const MAX_SYNC_RUNS_CHECKING: usize = 2;
/// Blocks handed to the driver and not yet committed, at most: sync waits beyond this, so
/// it neither floods the inbox live votes share nor fetches what would be dropped.
const SYNC_WINDOW_BLOCKS: u64 = 4 * MAX_SYNC_BLOCKS;
/// Sync streams open at once on one connection (both directions): each may hold a
/// response of up to its bound.
const MAX_SYNC_STREAMS: usize = 8;
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// How often peers are asked for their height (how an observer notices new blocks when it
/// misses the votes), and how often a missing peer is dialled again.
const SYNC_POLL_INTERVAL: Duration = Duration::from_millis(1_000);
/// How often the client transactions admitted here are relayed to the peers. This task
/// relays them, not the consensus thread: that one can be busy executing or writing a
/// block for longer than this, and a proposer proposes only what has reached it.
const TX_RELAY_INTERVAL: Duration = Duration::from_millis(10);
/// Client transactions relayed per tick, at most (about 100 k a second).
const MAX_TX_RELAY_PER_TICK: usize = 1_024;
const REDIAL_INTERVAL: Duration = Duration::from_millis(2_000);
/// Blocks received but not committed after this long are asked for again.
const SYNC_STALL: Duration = Duration::from_secs(5);
/// A connection with no open stream stays up this long (peers are long-lived).
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(3_600);

const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/bidchain/sync/1");
const IDENTIFY_PROTOCOL: &str = "/bidchain/1";

/// Why the network could not start.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    #[error("node key is not a valid libp2p ed25519 key: {0}")]
    Key(String),
    #[error("peer key {0} is not a valid ed25519 key")]
    PeerKey(PublicKey),
    #[error("{what} {address:?} is not a multiaddr: {reason}")]
    Address {
        what: String,
        address: String,
        reason: String,
    },
    #[error("libp2p transport: {0}")]
    Transport(String),
    #[error("cannot listen on {address}: {reason}")]
    Listen { address: Multiaddr, reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum SyncRequest {
    /// "What height have you committed?"
    Status,
    /// Committed blocks from `from` on, at most `max`.
    Blocks { from: Height, max: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum SyncResponse {
    Status { height: Height },
    Blocks(Vec<(Block, CommitCertificate)>),
}

/// What the network is told at start: where to listen, whom to dial, whom to admit.
#[derive(Clone, Debug)]
pub struct P2pSettings {
    pub listen: Multiaddr,
    pub dial: Vec<(PeerId, Multiaddr)>,
    pub allowed: BTreeSet<PeerId>,
}

/// The libp2p identity of a node key.
pub fn peer_id(key: &PublicKey) -> Result<PeerId, P2pError> {
    let key = libp2p::identity::ed25519::PublicKey::try_from_bytes(&key.0)
        .map_err(|_| P2pError::PeerKey(*key))?;
    Ok(PeerId::from_public_key(&key.into()))
}

pub fn parse_multiaddr(what: &str, address: &str) -> Result<Multiaddr, P2pError> {
    address
        .parse()
        .map_err(|e: libp2p::multiaddr::Error| P2pError::Address {
            what: what.to_owned(),
            address: address.to_owned(),
            reason: e.to_string(),
        })
}

/// A type sent on the wire, with the most bytes a peer may send of it.
pub trait Wire: Encode + Decode<()> + Send + 'static {
    const MAX_BYTES: usize;
}

impl Wire for SyncRequest {
    const MAX_BYTES: usize = 64;
}
impl Wire for SyncResponse {
    // The byte limit may be passed by the one block that is always included.
    const MAX_BYTES: usize = MAX_SYNC_RESPONSE_BYTES + MAX_NET_MESSAGE_BYTES;
}

/// One value per stream direction, in the canonical codec, read to the end of the stream.
#[derive(Debug)]
pub struct WireCodec<Req, Resp>(PhantomData<fn() -> (Req, Resp)>);

impl<Req, Resp> Default for WireCodec<Req, Resp> {
    fn default() -> Self {
        WireCodec(PhantomData)
    }
}

impl<Req, Resp> Clone for WireCodec<Req, Resp> {
    fn clone(&self) -> Self {
        WireCodec(PhantomData)
    }
}

/// What a stream carried: a value, or bytes that are not one (too long or malformed). The
/// codec hands the latter up as a value, not an error: request-response drops a failed read
/// without telling the behaviour, and a peer that sends garbage must be seen and dropped.
#[derive(Debug)]
pub enum Decoded<T> {
    Value(T),
    Malformed(String),
}

async fn read_wire<T: Wire, R: AsyncRead + Unpin + Send>(io: &mut R) -> io::Result<Decoded<T>> {
    let mut bytes = Vec::new();
    let limit = u64::try_from(T::MAX_BYTES)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    io.take(limit).read_to_end(&mut bytes).await?;
    Ok(match codec::decode_bounded(&bytes, T::MAX_BYTES) {
        Ok(value) => Decoded::Value(value),
        Err(err) => Decoded::Malformed(err.to_string()),
    })
}

async fn write_wire<T: Wire, W: AsyncWrite + Unpin + Send>(
    io: &mut W,
    value: Decoded<T>,
) -> io::Result<()> {
    let Decoded::Value(value) = value else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a malformed value is never sent",
        ));
    };
    io.write_all(&codec::encode(&value)).await?;
    io.close().await
}

impl<Req: Wire, Resp: Wire> request_response::Codec for WireCodec<Req, Resp> {
    type Protocol = StreamProtocol;
    type Request = Decoded<Req>;
    type Response = Decoded<Resp>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Decoded<Req>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_wire(io).await
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Decoded<Resp>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_wire(io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Decoded<Req>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_wire(io, req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Decoded<Resp>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_wire(io, res).await
    }
}

type SyncBehaviour = request_response::Behaviour<WireCodec<SyncRequest, SyncResponse>>;

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Behaviour {
    allowed: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    identify: identify::Behaviour,
    streams: libp2p_stream::Behaviour,
    sync: SyncBehaviour,
}

/// What the driver asks of the network task.
#[derive(Debug)]
enum Command {
    Broadcast(Box<NetMessage>),
    RequestBlocks(ValidatorIndex, Height),
}

/// The driver's side: queues commands for the network task, never blocks.
#[derive(Debug)]
pub struct P2pTransport {
    commands: mpsc::Sender<Command>,
}

impl P2pTransport {
    fn queue(&self, command: Command) {
        if let Err(err) = self.commands.try_send(command) {
            tracing::debug!(%err, "network command queue full or closed; dropped");
        }
    }
}

impl Transport for P2pTransport {
    fn broadcast(&self, message: NetMessage) {
        self.queue(Command::Broadcast(Box::new(message)));
    }

    fn request_blocks(&self, from: ValidatorIndex, height: Height) {
        self.queue(Command::RequestBlocks(from, height));
    }
}

/// Starts the network task on the current tokio runtime. It runs until the returned
/// transport is dropped (the driver stopped).
pub async fn start(
    key: &Keypair,
    settings: P2pSettings,
    shared: Arc<Shared>,
) -> Result<(P2pTransport, Inbox, Multiaddr), P2pError> {
    let mut swarm = build_swarm(key, &settings)?;
    swarm
        .listen_on(settings.listen.clone())
        .map_err(|e| P2pError::Listen {
            address: settings.listen.clone(),
            reason: e.to_string(),
        })?;
    let listening = wait_listening(&mut swarm, &settings.listen).await?;
    tracing::info!(address = %listening, peer_id = %swarm.local_peer_id(), "p2p listening");
    let (commands_tx, commands) = mpsc::channel(MAX_PENDING_COMMANDS);
    let (inbox_tx, inbox) = std::sync::mpsc::sync_channel(INBOX_CAPACITY);
    let (synced_tx, synced) = mpsc::channel(MAX_SYNC_RUNS_CHECKING);
    tokio::spawn(check_synced(synced, inbox_tx.clone(), shared.clone()));
    let mut control = swarm.behaviour().streams.new_control();
    let incoming = control
        .accept(MESSAGE_PROTOCOL)
        .map_err(|e| P2pError::Transport(e.to_string()))?;
    let (stream_events_tx, stream_events) = mpsc::channel(MAX_INBOUND_EVENTS);
    let task = NetworkTask {
        swarm,
        streams: MessageStreams {
            control,
            writers: BTreeMap::new(),
            inbound: BTreeMap::new(),
            events: stream_events_tx,
        },
        shared,
        inbox: inbox_tx,
        synced: synced_tx,
        dial: settings.dial,
        connected: BTreeSet::new(),
        validator_peers: Vec::new(),
        peer_heights: BTreeMap::new(),
        sync: SyncState {
            in_flight: None,
            received: None,
            tip: (Height::GENESIS, Instant::now()),
        },
        tx_admissions: Arc::new(tokio::sync::Semaphore::new(MAX_TX_BATCH_ADMISSIONS)),
    };
    tokio::spawn(task.run(commands, incoming, stream_events));
    Ok((
        P2pTransport {
            commands: commands_tx,
        },
        inbox,
        listening,
    ))
}

fn build_swarm(key: &Keypair, settings: &P2pSettings) -> Result<Swarm<Behaviour>, P2pError> {
    let identity = libp2p::identity::Keypair::ed25519_from_bytes(key.secret_bytes())
        .map_err(|e| P2pError::Key(e.to_string()))?;
    let transport_error = |e: &dyn std::fmt::Display| P2pError::Transport(e.to_string());
    let swarm = libp2p::SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .map_err(|e| transport_error(&e))?
        .with_behaviour(|identity| {
            let mut allowed = allow_block_list::Behaviour::default();
            for peer in &settings.allowed {
                allowed.allow_peer(*peer);
            }
            Behaviour {
                allowed,
                identify: identify::Behaviour::new(identify::Config::new(
                    IDENTIFY_PROTOCOL.to_owned(),
                    identity.public(),
                )),
                streams: libp2p_stream::Behaviour::new(),
                sync: request_response::Behaviour::new(
                    [(SYNC_PROTOCOL, ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(SYNC_TIMEOUT)
                        .with_max_concurrent_streams(MAX_SYNC_STREAMS),
                ),
            }
        })
        .map_err(|e| transport_error(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
        .build();
    Ok(swarm)
}

/// Waits for the listener to report its address (port 0 is resolved here).
async fn wait_listening(
    swarm: &mut Swarm<Behaviour>,
    requested: &Multiaddr,
) -> Result<Multiaddr, P2pError> {
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => return Ok(address),
            SwarmEvent::ListenerError { error, .. }
            | SwarmEvent::ListenerClosed {
                reason: Err(error), ..
            } => {
                return Err(P2pError::Listen {
                    address: requested.clone(),
                    reason: error.to_string(),
                });
            }
            _ => {}
        }
    }
}

/// Block sync: one request at a time, pipelined (the next is asked as soon as a batch
/// arrives, while the driver commits the last), within a window ahead of the tip.
#[derive(Debug)]
struct SyncState {
    in_flight: Option<InFlight>,
    /// The last height handed to the driver.
    received: Option<Height>,
    /// The committed tip when last looked at, and since when it has not moved.
    tip: (Height, Instant),
}

/// A blocks request: only its own response, from its peer, is used.
#[derive(Debug)]
struct InFlight {
    id: OutboundRequestId,
    peer: PeerId,
    from: Height,
}

/// The message streams ([`crate::msg_stream`]): a writer per connected peer, started on the
/// first message to it, and how many inbound streams each peer has open.
struct MessageStreams {
    control: libp2p_stream::Control,
    writers: BTreeMap<PeerId, mpsc::Sender<Frame>>,
    inbound: BTreeMap<PeerId, usize>,
    /// Where readers send what they read.
    events: mpsc::Sender<(PeerId, StreamEvent)>,
}

impl MessageStreams {
    /// Queues `frame` for `peer`, a connected peer; dropped if its queue is full.
    fn send(&mut self, peer: PeerId, frame: Frame) {
        let control = &self.control;
        let writer = self
            .writers
            .entry(peer)
            .or_insert_with(|| msg_stream::spawn_writer(control.clone(), peer));
        if writer.try_send(frame).is_err() {
            tracing::debug!(%peer, "message queue to peer full; message dropped");
        }
    }

    /// Reads a peer's new stream, unless it holds as many open as it may.
    fn accept(&mut self, peer: PeerId, stream: libp2p::Stream) {
        let open = self.inbound.entry(peer).or_default();
        if *open >= MAX_INBOUND_STREAMS_PER_PEER {
            tracing::debug!(%peer, "peer opened too many message streams; new one dropped");
            return;
        }
        *open += 1;
        tokio::spawn(msg_stream::read_from(peer, stream, self.events.clone()));
    }

    fn ended(&mut self, peer: PeerId) {
        if let Some(open) = self.inbound.get_mut(&peer) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                self.inbound.remove(&peer);
            }
        }
    }
}

struct NetworkTask {
    swarm: Swarm<Behaviour>,
    streams: MessageStreams,
    shared: Arc<Shared>,
    inbox: SyncSender<Inbound>,
    dial: Vec<(PeerId, Multiaddr)>,
    connected: BTreeSet<PeerId>,
    /// The current validator set's peer ids, in validator order (refreshed each poll).
    validator_peers: Vec<Option<PeerId>>,
    /// The committed height each peer last reported.
    peer_heights: BTreeMap<PeerId, Height>,
    sync: SyncState,
    /// Fetched runs of blocks, to [`check_synced`].
    synced: mpsc::Sender<Vec<(Block, CommitCertificate)>>,
    tx_admissions: Arc<tokio::sync::Semaphore>,
}

impl NetworkTask {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut incoming: libp2p_stream::IncomingStreams,
        mut stream_events: mpsc::Receiver<(PeerId, StreamEvent)>,
    ) {
        let mut poll = tokio::time::interval(SYNC_POLL_INTERVAL);
        let mut redial = tokio::time::interval(REDIAL_INTERVAL);
        let mut relay = tokio::time::interval(TX_RELAY_INTERVAL);
        relay.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                _ = poll.tick() => self.poll_peers(),
                _ = redial.tick() => self.dial_missing(),
                _ = relay.tick() => self.relay_txs(),
                Some((peer, stream)) = incoming.next() => self.streams.accept(peer, stream),
                Some((peer, event)) = stream_events.recv() => self.on_stream_event(peer, event),
            }
        }
        tracing::debug!("network task stopped");
    }

    fn dial_missing(&mut self) {
        for (peer, address) in self.dial.clone() {
            if peer == *self.swarm.local_peer_id() || self.connected.contains(&peer) {
                continue;
            }
            let opts = DialOpts::peer_id(peer)
                .addresses(vec![address])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(err) = self.swarm.dial(opts) {
                tracing::trace!(%peer, %err, "dial not started");
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Broadcast(message) => self.broadcast(*message),
            // The driver asks from its tip on; the sync state knows what is on its way.
            Command::RequestBlocks(from, _height) => {
                if let Some(peer) = self.validator_peer(from) {
                    self.fetch_blocks(peer);
                }
            }
        }
    }

    /// Encodes `message` once and queues it for every connected peer.
    fn broadcast(&mut self, message: NetMessage) {
        let frame = msg_stream::frame(&message);
        for peer in &self.connected {
            self.streams.send(*peer, frame.clone());
        }
    }

    /// Sends the client transactions admitted since the last tick to every peer, in
    /// batches of at most `MAX_TX_BATCH_BYTES`.
    fn relay_txs(&mut self) {
        let mut batch = Vec::new();
        let mut bytes = 0;
        for (tx, len) in self.shared.take_outbound_txs(MAX_TX_RELAY_PER_TICK) {
            if bytes + len > MAX_TX_BATCH_BYTES && !batch.is_empty() {
                self.broadcast(NetMessage::Txs(std::mem::take(&mut batch)));
                bytes = 0;
            }
            bytes += len;
            batch.push(tx);
        }
        if !batch.is_empty() {
            self.broadcast(NetMessage::Txs(batch));
        }
    }

    fn validator_peer(&mut self, index: ValidatorIndex) -> Option<PeerId> {
        if self.validator_peers.is_empty() {
            self.refresh_validator_peers();
        }
        self.validator_peers
            .get(usize::from(index))
            .copied()
            .flatten()
    }

    fn refresh_validator_peers(&mut self) {
        match self.shared.chain.validator_set() {
            Ok(set) => {
                self.validator_peers = set
                    .validators()
                    .iter()
                    .map(|v| peer_id(&v.key).ok())
                    .collect();
            }
            Err(err) => tracing::warn!(%err, "cannot read the validator set"),
        }
    }

    fn local_height(&self) -> Option<Height> {
        match self.shared.chain.storage().latest_height() {
            Ok(height) => Some(height),
            Err(err) => {
                tracing::warn!(%err, "cannot read the committed height");
                None
            }
        }
    }

    fn poll_peers(&mut self) {
        self.refresh_validator_peers();
        let peers: Vec<PeerId> = self.connected.iter().copied().collect();
        for peer in peers {
            self.swarm
                .behaviour_mut()
                .sync
                .send_request(&peer, Decoded::Value(SyncRequest::Status));
        }
    }

    /// Asks `peer` for blocks, continuing after those already received, unless those
    /// seem lost (the tip has not moved for a while: refused by the driver, or dropped).
    fn fetch_blocks(&mut self, peer: PeerId) {
        // With the signature checks a full window behind, the next poll asks again.
        if self.sync.in_flight.is_some()
            || !self.connected.contains(&peer)
            || self.synced.capacity() == 0
        {
            return;
        }
        let Some(tip) = self.local_height() else {
            return;
        };
        let now = Instant::now();
        if tip != self.sync.tip.0 {
            self.sync.tip = (tip, now);
        }
        let from = match self.sync.received {
            Some(received)
                if received > tip && now.duration_since(self.sync.tip.1) < SYNC_STALL =>
            {
                received.next()
            }
            _ => {
                self.sync.received = None;
                tip.next()
            }
        };
        if from.0 > tip.0.saturating_add(SYNC_WINDOW_BLOCKS) {
            return;
        }
        let request = SyncRequest::Blocks {
            from,
            max: MAX_SYNC_BLOCKS,
        };
        let id = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&peer, Decoded::Value(request));
        self.sync.in_flight = Some(InFlight { id, peer, from });
        tracing::debug!(%peer, from = from.0, "requested blocks");
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                if self.connected.insert(peer_id) {
                    tracing::info!(peer = %peer_id, "peer connected");
                }
                self.update_peer_gauge();
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                self.connected.remove(&peer_id);
                self.peer_heights.remove(&peer_id);
                self.streams.writers.remove(&peer_id);
                tracing::info!(peer = %peer_id, cause = ?cause, "peer disconnected");
                self.update_peer_gauge();
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                tracing::info!(from = %send_back_addr, %error, "incoming connection refused");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.on_sync_event(event),
            _ => {}
        }
    }

    fn update_peer_gauge(&self) {
        let peers = u64::try_from(self.connected.len()).unwrap_or(u64::MAX);
        self.shared.metrics.peers.store(peers, Ordering::Relaxed);
    }

    fn on_stream_event(&mut self, peer: PeerId, event: StreamEvent) {
        match event {
            StreamEvent::Message(message) => self.deliver(peer, message),
            StreamEvent::Malformed(reason) => {
                self.streams.ended(peer);
                self.malformed(peer, &reason);
            }
            StreamEvent::Ended => self.streams.ended(peer),
        }
    }

    /// Bytes that do not decode mean a broken or hostile peer: it is disconnected (it may
    /// dial again; an allowed peer is a known operator, so the log names it).
    fn malformed(&mut self, peer: PeerId, reason: &str) {
        tracing::warn!(%peer, reason, "peer sent malformed bytes; disconnecting");
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    /// Hands a peer's message to the driver. (Committed blocks only come from sync
    /// responses, which this node asked for.)
    fn deliver(&mut self, peer: PeerId, message: NetMessage) {
        let wanted = match &message {
            NetMessage::Txs(_) => true,
            // Consensus messages come straight from their signer, a validator. A proposal
            // (with its block) is only of use for the next height.
            NetMessage::Vote(_) => self.is_validator(peer),
            NetMessage::Proposal { proposal, .. } => {
                self.is_validator(peer)
                    && self
                        .local_height()
                        .is_some_and(|tip| proposal.proposal.height == tip.next())
            }
        };
        if let NetMessage::Txs(txs) = message {
            self.admit_txs(txs);
        } else if wanted {
            self.to_driver(message);
        } else {
            tracing::debug!(%peer, "message not for this node's next height, or not from a validator; dropped");
        }
    }

    /// Checks and admits a peer's transaction batch on the blocking pool, never on the
    /// consensus thread: under load, batches queued ahead of votes and proposals starved
    /// consensus. Relaying is best effort: with `MAX_TX_BATCH_ADMISSIONS` batches already
    /// being admitted, this one is dropped (its sender still holds and proposes them).
    fn admit_txs(&self, txs: Vec<bidchain_runtime::tx::SignedTransaction>) {
        let Ok(permit) = self.tx_admissions.clone().try_acquire_owned() else {
            tracing::debug!(txs = txs.len(), "transaction admission busy; batch dropped");
            return;
        };
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            shared.admit_peer_batch(txs);
            drop(permit);
        });
    }

    fn is_validator(&mut self, peer: PeerId) -> bool {
        if self.validator_peers.is_empty() {
            self.refresh_validator_peers();
        }
        self.validator_peers.contains(&Some(peer))
    }

    /// Never blocks: a full inbox drops the message (consensus re-gossips what matters).
    fn to_driver(&self, message: NetMessage) {
        match self.inbox.try_send(Inbound::Net(message)) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => tracing::debug!("consensus inbox full; message dropped"),
        }
    }

    fn on_sync_event(
        &mut self,
        event: request_response::Event<Decoded<SyncRequest>, Decoded<SyncResponse>>,
    ) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => match request {
                Decoded::Value(request) => {
                    if let Some(response) = self.serve_sync(request) {
                        let response = Decoded::Value(response);
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .sync
                            .send_response(channel, response);
                    }
                }
                Decoded::Malformed(reason) => self.malformed(peer, &reason),
            },
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => match response {
                Decoded::Value(response) => self.on_sync_response(peer, request_id, response),
                Decoded::Malformed(reason) => {
                    self.clear_in_flight(request_id);
                    self.malformed(peer, &reason);
                }
            },
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.clear_in_flight(request_id);
                tracing::debug!(%peer, %error, "sync request failed");
            }
            Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound sync request failed");
            }
            Event::ResponseSent { .. } => {}
        }
    }

    fn serve_sync(&self, request: SyncRequest) -> Option<SyncResponse> {
        let storage = self.shared.chain.storage();
        let served = match request {
            SyncRequest::Status => storage
                .latest_height()
                .map(|height| SyncResponse::Status { height }),
            SyncRequest::Blocks { from, max } => storage
                .committed_blocks(from, max.min(MAX_SYNC_BLOCKS), MAX_SYNC_RESPONSE_BYTES)
                .map(SyncResponse::Blocks),
        };
        match served {
            Ok(response) => Some(response),
            Err(err) => {
                tracing::warn!(%err, "cannot serve a sync request");
                None
            }
        }
    }

    fn clear_in_flight(&mut self, id: OutboundRequestId) -> Option<InFlight> {
        match &self.sync.in_flight {
            Some(in_flight) if in_flight.id == id => self.sync.in_flight.take(),
            _ => None,
        }
    }

    fn on_sync_response(&mut self, peer: PeerId, id: OutboundRequestId, response: SyncResponse) {
        match response {
            SyncResponse::Status { height } => {
                self.peer_heights.insert(peer, height);
                if self.local_height().is_some_and(|tip| height > tip) {
                    self.fetch_blocks(peer);
                }
            }
            SyncResponse::Blocks(blocks) => match self.clear_in_flight(id) {
                Some(asked) if asked.peer == peer => self.on_blocks(peer, asked.from, blocks),
                _ => tracing::debug!(%peer, "unasked or late blocks ignored"),
            },
        }
    }

    /// Hands fetched blocks to the signature checks on their way to the driver (which
    /// verifies each certificate against the set in force, re-executes and checks the
    /// state root) and asks for more if the peer has them. Only the run of heights asked
    /// for is used.
    fn on_blocks(&mut self, peer: PeerId, from: Height, blocks: Vec<(Block, CommitCertificate)>) {
        let mut last = None;
        let mut expected = from;
        let mut run = Vec::with_capacity(blocks.len());
        for (block, certificate) in blocks {
            let height = block.header.height;
            if height != expected {
                tracing::warn!(%peer, height = height.0, expected = expected.0, "sync response out of order; rest ignored");
                break;
            }
            run.push((block, certificate));
            last = Some(height);
            expected = height.next();
        }
        let Some(last) = last else {
            return;
        };
        if self.synced.try_send(run).is_err() {
            tracing::debug!("sync signature checks busy; blocks dropped");
            return;
        }
        self.sync.received = Some(last);
        tracing::debug!(%peer, up_to = last.0, "received blocks");
        if self.peer_heights.get(&peer).is_some_and(|h| *h > last) {
            self.fetch_blocks(peer);
        }
    }
}

/// Checks the signatures in fetched blocks on the blocking pool, a block at a time and in
/// order, and passes each to the driver: it checks the next block while the driver
/// executes one. It waits for room in the inbox (sync is bounded by its window and by
/// `MAX_SYNC_RUNS_CHECKING`, and the driver always drains). Runs until the network task
/// drops its sender.
///
/// A validator a little behind fetches blocks that consensus then commits first, and it
/// holds their transactions already: it skips blocks committed meanwhile and checks no
/// signature its mempool vouches for (under load this was a twentieth of a validator's
/// CPU, every signature of a block checked again and the block then dropped).
async fn check_synced(
    mut runs: mpsc::Receiver<Vec<(Block, CommitCertificate)>>,
    inbox: SyncSender<Inbound>,
    shared: Arc<Shared>,
) {
    while let Some(run) = runs.recv().await {
        let inbox = inbox.clone();
        let shared = shared.clone();
        let checked = tokio::task::spawn_blocking(move || {
            for (block, certificate) in run {
                if shared
                    .chain
                    .storage()
                    .latest_height()
                    .is_ok_and(|tip| block.header.height <= tip)
                {
                    continue;
                }
                let vouched = shared.signatures_checked(&block.txs);
                let synced = SyncedBlock::check(block, certificate, &vouched);
                if inbox.send(Inbound::Synced(Box::new(synced))).is_err() {
                    return;
                }
            }
        })
        .await;
        if let Err(err) = checked {
            tracing::warn!(%err, "sync signature check failed");
        }
    }
}

/// The validators' peers from genesis plus the config's: whom to dial and whom to admit.
pub fn settings_for(
    genesis: &bidchain_genesis::Genesis,
    config: &crate::config::NodeConfig,
) -> Result<P2pSettings, P2pError> {
    let mut dial = Vec::new();
    let mut allowed = BTreeSet::new();
    for v in &genesis.validators {
        let peer = peer_id(&v.public_key)?;
        let what = format!("genesis validator {} p2p address", v.name);
        dial.push((peer, parse_multiaddr(&what, &v.p2p_address)?));
        allowed.insert(peer);
    }
    for p in &config.peers {
        let peer = peer_id(&p.key)?;
        dial.push((peer, parse_multiaddr("config peer address", &p.address)?));
        allowed.insert(peer);
    }
    for key in &config.observers {
        allowed.insert(peer_id(key)?);
    }
    Ok(P2pSettings {
        listen: parse_multiaddr("p2p_listen", &config.p2p_listen)?,
        dial,
        allowed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_key_is_its_peer_id() {
        let key = Keypair::from_seed_for_tests(3);
        let identity = libp2p::identity::Keypair::ed25519_from_bytes(key.secret_bytes()).unwrap();
        assert_eq!(
            peer_id(&key.public()).unwrap(),
            identity.public().to_peer_id()
        );
    }

    #[test]
    fn sync_messages_round_trip_and_are_bounded() {
        let request = SyncRequest::Blocks {
            from: Height(7),
            max: 64,
        };
        let bytes = codec::encode(&request);
        assert!(bytes.len() <= SyncRequest::MAX_BYTES);
        let back: SyncRequest = codec::decode_bounded(&bytes, SyncRequest::MAX_BYTES).unwrap();
        assert_eq!(back, request);
        let mut long = bytes.clone();
        long.push(0);
        assert!(codec::decode_bounded::<SyncRequest>(&long, SyncRequest::MAX_BYTES).is_err());
    }
}
