//! `/bidchain/msg/2`: consensus messages and relayed transactions on one long-lived stream
//! per peer and direction, each message a frame (its length as a big-endian u32, then its
//! canonical encoding).
//!
//! Why not a request-response stream per message, as `/bidchain/msg/1` was: at 5,000 tx/s a
//! validator opened and accepted about 600 streams a second (mostly 10-ms relay batches),
//! each with its own protocol negotiation, acknowledgement, stream frames and wake-ups;
//! libp2p took an eighth of a validator's CPU. A long-lived stream carries a small message
//! in one yamux frame, and a message is encoded once for all peers. It also keeps a peer's
//! messages in order.
//!
//! Sending never waits: each peer has a bounded queue, drained by its writer task, and a
//! message for a full queue is dropped (consensus re-sends what matters; relaying is best
//! effort). A writer whose stream breaks opens another after [`STREAM_RETRY`], as long as
//! the peer is connected. Receiving: a reader task per inbound stream decodes each frame
//! (at most [`MAX_NET_MESSAGE_BYTES`]) and hands it to the network task; a frame that is
//! too long or does not decode ends the stream and gets the peer disconnected.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use libp2p::futures::io::{BufReader, BufWriter};
use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::mpsc;

use crate::net::{MAX_NET_MESSAGE_BYTES, NetMessage};

pub const MESSAGE_PROTOCOL: StreamProtocol = StreamProtocol::new("/bidchain/msg/2");

/// Encoded messages waiting for one peer's writer; beyond this, messages to that peer are
/// dropped. About eight seconds of relay batches (one each 10 ms) and votes.
pub const MAX_QUEUED_FRAMES_PER_PEER: usize = 1_024;
/// Message streams one peer may have open to this node at once: its current one, and a new
/// one it opened after its old one broke but before this side saw the old one end.
pub const MAX_INBOUND_STREAMS_PER_PEER: usize = 2;
/// Decoded messages from all readers waiting for the network task; a reader waits beyond
/// this (and its peer's stream, through yamux's window, waits for it).
pub const MAX_INBOUND_EVENTS: usize = 1_024;
/// How long a writer waits before opening a new stream after one broke or was refused.
pub const STREAM_RETRY: Duration = Duration::from_millis(500);
/// Small frames are gathered up to this size and sent as one write.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;
const READ_BUFFER_BYTES: usize = 64 * 1024;
const FRAME_LENGTH_BYTES: usize = 4;

/// One encoded message, shared by the queues of all the peers it goes to.
pub type Frame = Arc<[u8]>;

pub fn frame(message: &NetMessage) -> Frame {
    message.encode().into()
}

/// What a reader tells the network task.
#[derive(Debug)]
pub enum StreamEvent {
    Message(NetMessage),
    /// The peer sent bytes that are not a message; the stream has ended.
    Malformed(String),
    /// The stream ended: closed by the peer, or broken.
    Ended,
}

/// Starts a writer for `peer`; the returned queue feeds it. The writer ends when the queue
/// is dropped (the peer disconnected).
pub fn spawn_writer(control: libp2p_stream::Control, peer: PeerId) -> mpsc::Sender<Frame> {
    let (queue, frames) = mpsc::channel(MAX_QUEUED_FRAMES_PER_PEER);
    tokio::spawn(write_to(control, peer, frames));
    queue
}

async fn write_to(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    mut frames: mpsc::Receiver<Frame>,
) {
    loop {
        match control.open_stream(peer, MESSAGE_PROTOCOL).await {
            Ok(stream) => match pump(stream, &mut frames).await {
                Ok(()) => return,
                Err(err) => tracing::debug!(%peer, %err, "message stream broke"),
            },
            Err(err) => tracing::debug!(%peer, %err, "cannot open a message stream"),
        }
        tokio::time::sleep(STREAM_RETRY).await;
        if frames.is_closed() {
            return;
        }
    }
}

/// Writes queued frames until the queue closes (`Ok`) or the stream fails. Frames that are
/// already queued go out in one flush.
async fn pump(stream: Stream, frames: &mut mpsc::Receiver<Frame>) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, stream);
    while let Some(frame) = frames.recv().await {
        write_frame(&mut out, &frame).await?;
        while let Ok(frame) = frames.try_recv() {
            write_frame(&mut out, &frame).await?;
        }
        out.flush().await?;
    }
    out.close().await
}

async fn write_frame<W: AsyncWrite + Unpin>(out: &mut W, frame: &[u8]) -> io::Result<()> {
    let len = u32::try_from(frame.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    out.write_all(&len.to_be_bytes()).await?;
    out.write_all(frame).await
}

/// One frame's bytes, or `None` at a clean end of the stream (between frames). A length
/// over `max` is `InvalidData`, read no further.
pub async fn read_frame<R: AsyncRead + Unpin>(
    input: &mut R,
    max: usize,
) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0; FRAME_LENGTH_BYTES];
    let mut got = 0;
    while got < len.len() {
        match input.read(&mut len[got..]).await? {
            0 if got == 0 => return Ok(None),
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => got += n,
        }
    }
    let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
    if len > max {
        let reason = format!("a frame of {len} bytes, over the bound of {max}");
        return Err(io::Error::new(io::ErrorKind::InvalidData, reason));
    }
    let mut bytes = vec![0; len];
    input.read_exact(&mut bytes).await?;
    Ok(Some(bytes))
}

/// Reads `peer`'s inbound stream to its end, handing each message to `events`.
pub async fn read_from(peer: PeerId, stream: Stream, events: mpsc::Sender<(PeerId, StreamEvent)>) {
    let mut input = BufReader::with_capacity(READ_BUFFER_BYTES, stream);
    let end = loop {
        let bytes = match read_frame(&mut input, MAX_NET_MESSAGE_BYTES).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => break StreamEvent::Ended,
            Err(err) if err.kind() == io::ErrorKind::InvalidData => {
                break StreamEvent::Malformed(err.to_string());
            }
            Err(err) => {
                tracing::debug!(%peer, %err, "inbound message stream broke");
                break StreamEvent::Ended;
            }
        };
        let event = match NetMessage::decode(&bytes) {
            Ok(message) => StreamEvent::Message(message),
            Err(err) => break StreamEvent::Malformed(err.to_string()),
        };
        if events.send((peer, event)).await.is_err() {
            return;
        }
    };
    let _ = events.send((peer, end)).await;
}

#[cfg(test)]
mod tests {
    use libp2p::futures::io::Cursor;

    use super::*;

    fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn frames_round_trip_and_a_long_one_is_refused_unread() {
        block_on(async {
            let mut wire = Cursor::new(Vec::new());
            for frame in [&b"vote"[..], &[], &[7; 300]] {
                write_frame(&mut wire, frame).await.unwrap();
            }
            let mut input = Cursor::new(wire.into_inner());
            assert_eq!(read_frame(&mut input, 300).await.unwrap().unwrap(), b"vote");
            assert_eq!(read_frame(&mut input, 300).await.unwrap().unwrap(), b"");
            assert_eq!(
                read_frame(&mut input, 300).await.unwrap().unwrap(),
                [7; 300]
            );
            assert_eq!(read_frame(&mut input, 300).await.unwrap(), None);

            let mut long = Cursor::new(vec![0, 0, 1, 45, 1, 2, 3]);
            let err = read_frame(&mut long, 300).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            // A stream cut inside a frame is not a clean end.
            let mut cut = Cursor::new(vec![0, 0, 0, 9, 1, 2]);
            let err = read_frame(&mut cut, 300).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
            let mut cut = Cursor::new(vec![0, 0]);
            let err = read_frame(&mut cut, 300).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        });
    }
}
