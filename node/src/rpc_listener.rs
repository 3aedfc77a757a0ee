//! The HTTP API's listener: at most [`MAX_RPC_CONNECTIONS`] connections open at once
//! (further ones wait in the kernel's accept queue until one closes), and a connection
//! that moves no byte either way for [`RPC_IDLE_TIMEOUT`] is closed, so that idle or
//! stalled clients cannot hold every slot. A client trickling a byte now and then still
//! holds its slot: that is a reverse proxy's job to cut. The server also polls a
//! connection while a handler runs (to see a client hang up), so a handler must answer
//! well within the idle timeout; today's take milliseconds to seconds.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Most HTTP connections open at once: twice the load generator's requests in flight
/// per node, each connection holding a socket and a small buffer.
pub const MAX_RPC_CONNECTIONS: usize = 1_024;
/// A connection that moves no byte for this long is closed (an idle keep-alive one
/// too: clients reconnect).
pub const RPC_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A TCP listener that holds back accepting past a bound on open connections.
#[derive(Debug)]
pub struct BoundedListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    idle_timeout: Duration,
}

impl BoundedListener {
    pub fn new(inner: TcpListener, max_connections: usize, idle_timeout: Duration) -> Self {
        BoundedListener {
            inner,
            slots: Arc::new(Semaphore::new(max_connections)),
            idle_timeout,
        }
    }
}

impl Listener for BoundedListener {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        // The semaphore is never closed, so this waits for a slot and gets one.
        let slot = self.slots.clone().acquire_owned().await.ok();
        let (stream, addr) = Listener::accept(&mut self.inner).await;
        let idle = Box::pin(tokio::time::sleep(self.idle_timeout));
        let connection = Connection {
            stream,
            _slot: slot,
            idle_timeout: self.idle_timeout,
            idle,
        };
        (connection, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// An accepted connection: gives its slot back when dropped, and fails its reads and
/// writes once it has been idle too long.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    _slot: Option<OwnedSemaphorePermit>,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
}

impl Connection {
    /// Passes on what the stream did: progress pushes the idle deadline back; waiting
    /// past it is an error, which makes the server close the connection.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
        moved: bool,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(result) => {
                if moved {
                    self.idle.as_mut().reset(Instant::now() + self.idle_timeout);
                }
                Poll::Ready(result)
            }
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "HTTP connection idle too long",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        let moved = buf.filled().len() > before;
        this.watch(cx, polled, moved)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        let moved = matches!(polled, Poll::Ready(Ok(n)) if n > 0);
        this.watch(cx, polled, moved)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        let moved = matches!(polled, Poll::Ready(Ok(n)) if n > 0);
        this.watch(cx, polled, moved)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_flush(cx);
        this.watch(cx, polled, false)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    const REQUEST: &[u8] = b"GET /ping HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n";

    /// Serves `/ping` on a listener of `max` connections closed after `idle` without a byte.
    async fn serve(max: usize, idle: Duration) -> SocketAddr {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let router = axum::Router::new().route("/ping", axum::routing::get(|| async { "pong" }));
        tokio::spawn(
            async move { axum::serve(BoundedListener::new(tcp, max, idle), router).await },
        );
        addr
    }

    #[tokio::test]
    async fn a_connection_past_the_bound_waits_until_an_idle_one_is_closed() {
        let idle = Duration::from_secs(2);
        let addr = serve(1, idle).await;
        // Plain blocking sockets, on a thread of their own: the server runs on this one.
        let client = move || {
            let started = std::time::Instant::now();
            // The one slot, taken by a client that says nothing.
            let mut silent = std::net::TcpStream::connect(addr).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            let mut asking = std::net::TcpStream::connect(addr).unwrap();
            asking.write_all(REQUEST).unwrap();
            asking
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let early = asking.read(&mut [0; 1]);
            // (A machine stalled past the idle limit meanwhile proves nothing either way.)
            if started.elapsed() < idle {
                assert!(early.is_err(), "answered while the only slot was held");
            }
            // The silent one is closed once idle; then the waiting request is served.
            let mut reply = String::new();
            asking
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            asking.read_to_string(&mut reply).unwrap();
            assert!(reply.ends_with("pong"), "{reply}");
            assert!(started.elapsed() >= idle);
            silent
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            assert_eq!(silent.read(&mut [0; 1]).unwrap(), 0, "closed");
        };
        tokio::task::spawn_blocking(client).await.unwrap();
    }
}
