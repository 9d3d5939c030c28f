//! The reliable path: TCP on the gossip port, for anti-entropy messages too
//! large for a datagram and for key operations.
//!
//! Outbound, each destination gets one writer task that connects on its
//! first frame, writes frames in order and closes after a second idle, so
//! one anti-entropy exchange (a few messages) shares one connection and an
//! idle mesh holds none. Inbound, each accepted connection gets a reader
//! that opens every frame under the keyring and closes the connection at
//! the first frame that does not open, is out of bounds or does not decode.
//! Both directions are bounded: 64 frames queued per destination, 32
//! inbound connections at once, every read and write under a timeout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use shoal_protocol::Address;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tracing::debug;

use super::frame::{self, FrameError, PREFIX_LEN, StreamMessage};
use super::{TransportCounters, TransportEvent, bump};
use crate::keys::{KeyOp, KeyReply, KeyStore};

const WRITER_QUEUE: usize = 64;
const MAX_INBOUND: usize = 32;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// A writer closes its connection after this long without a frame.
const WRITER_IDLE: Duration = Duration::from_secs(1);
/// A reader gives up on a connection silent for this long.
const READER_IDLE: Duration = Duration::from_secs(5);

pub(super) struct StreamConfig {
    pub(super) keys: Arc<KeyStore>,
    pub(super) counters: Arc<TransportCounters>,
    pub(super) events: mpsc::Sender<TransportEvent>,
    /// Largest sealed frame accepted (prefix excluded).
    pub(super) max_sealed: usize,
}

/// The outbound half, owned by the transport.
pub(super) struct Streams {
    shared: Arc<StreamConfig>,
    reply_to: String,
    writers: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    writer_tasks: JoinSet<()>,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams").field("writers", &self.writers.len()).finish_non_exhaustive()
    }
}

/// Counts an open connection for as long as it lives.
struct OpenGuard(Arc<StreamConfig>);

impl OpenGuard {
    fn new(shared: &Arc<StreamConfig>) -> OpenGuard {
        bump(&shared.counters.streams_open, 1);
        OpenGuard(Arc::clone(shared))
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.counters.streams_open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Streams {
    pub(super) fn start(config: StreamConfig, listener: TcpListener, tasks: &mut JoinSet<()>) -> Streams {
        let shared = Arc::new(config);
        tasks.spawn(accept(Arc::clone(&shared), listener));
        Streams { shared, reply_to: String::new(), writers: HashMap::new(), writer_tasks: JoinSet::new() }
    }

    pub(super) fn set_reply_to(&mut self, addr: String) {
        self.reply_to = addr;
    }

    pub(super) fn requester(&self) -> KeyRequester {
        KeyRequester { shared: Arc::clone(&self.shared) }
    }

    /// Queues a protocol message for `dest`.
    pub(super) fn send(&mut self, dest: SocketAddr, payload: &[u8]) {
        let message = StreamMessage::Protocol { reply_to: self.reply_to.clone(), payload: payload.to_vec() };
        let mut frame = message.seal(&self.shared.keys);
        for _ in 0..2 {
            let sender = match self.writers.get(&dest) {
                Some(sender) => sender.clone(),
                None => self.spawn_writer(dest),
            };
            match sender.try_send(frame) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => break,
                // The writer went idle and closed: start another.
                Err(mpsc::error::TrySendError::Closed(back)) => {
                    self.writers.remove(&dest);
                    frame = back;
                }
            }
        }
        bump(&self.shared.counters.outbound_dropped, 1);
    }

    fn spawn_writer(&mut self, dest: SocketAddr) -> mpsc::Sender<Vec<u8>> {
        while self.writer_tasks.try_join_next().is_some() {}
        self.writers.retain(|_, sender| !sender.is_closed());
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        self.writer_tasks.spawn(write_to(Arc::clone(&self.shared), dest, rx));
        self.writers.insert(dest, tx.clone());
        tx
    }

    /// Stops taking frames; writers finish what they hold.
    pub(super) fn close(&mut self) {
        self.writers.clear();
    }

    /// Completes when every writer has finished.
    pub(super) async fn drained(&mut self) {
        while self.writer_tasks.join_next().await.is_some() {}
    }
}

async fn connect(shared: &Arc<StreamConfig>, dest: SocketAddr) -> Result<(TcpStream, OpenGuard), RequestError> {
    let stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(dest)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(RequestError::Connect(error.to_string())),
        Err(_) => return Err(RequestError::Timeout),
    };
    let _ = stream.set_nodelay(true);
    bump(&shared.counters.streams_opened, 1);
    Ok((stream, OpenGuard::new(shared)))
}

async fn write_frame(shared: &StreamConfig, stream: &mut TcpStream, frame: &[u8]) -> Result<(), RequestError> {
    match timeout(WRITE_TIMEOUT, stream.write_all(frame)).await {
        Ok(Ok(())) => {
            bump(&shared.counters.frames_out, 1);
            bump(&shared.counters.frame_bytes_out, frame.len() as u64);
            Ok(())
        }
        Ok(Err(error)) => Err(RequestError::Io(error.to_string())),
        Err(_) => Err(RequestError::Timeout),
    }
}

/// One destination's writer: connect on the first frame, write in order,
/// close when idle. Frames it cannot write are dropped and counted.
async fn write_to(shared: Arc<StreamConfig>, dest: SocketAddr, mut queue: mpsc::Receiver<Vec<u8>>) {
    let Some(first) = queue.recv().await else { return };
    let (mut stream, _open) = match connect(&shared, dest).await {
        Ok(connected) => connected,
        Err(error) => {
            debug!(%dest, %error, "cannot open a stream; frames dropped");
            queue.close();
            let mut lost = 1;
            while queue.try_recv().is_ok() {
                lost += 1;
            }
            bump(&shared.counters.outbound_dropped, lost);
            return;
        }
    };
    let mut next = Some(first);
    while let Some(frame) = next.take() {
        if let Err(error) = write_frame(&shared, &mut stream, &frame).await {
            debug!(%dest, %error, "stream write failed; frame dropped");
            bump(&shared.counters.outbound_dropped, 1);
            break;
        }
        next = match timeout(WRITER_IDLE, queue.recv()).await {
            Ok(frame) => frame,
            // Idle: take no more, but write what raced in.
            Err(_) => {
                queue.close();
                queue.try_recv().ok()
            }
        };
    }
    let _ = timeout(WRITE_TIMEOUT, stream.shutdown()).await;
}

async fn accept(shared: Arc<StreamConfig>, listener: TcpListener) {
    let limit = Arc::new(Semaphore::new(MAX_INBOUND));
    let mut readers = JoinSet::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                debug!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while readers.try_join_next().is_some() {}
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            bump(&shared.counters.streams_refused, 1);
            continue;
        };
        bump(&shared.counters.streams_accepted, 1);
        let shared = Arc::clone(&shared);
        readers.spawn(async move {
            let _open = OpenGuard::new(&shared);
            if let Err(error) = serve(&shared, stream).await {
                debug!(%peer, %error, "inbound stream closed");
            }
            drop(permit);
        });
    }
}

/// Reads one sealed frame: `Ok(None)` at a clean end of the stream.
async fn read_frame(
    shared: &StreamConfig,
    stream: &mut TcpStream,
    idle: Duration,
) -> Result<Option<StreamMessage>, RequestError> {
    let mut prefix = [0; PREFIX_LEN];
    match timeout(idle, stream.read_exact(&mut prefix)).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Ok(Err(error)) => return Err(RequestError::Io(error.to_string())),
        Err(_) => return Err(RequestError::Timeout),
    }
    let len =
        frame::frame_len(prefix, shared.max_sealed).inspect_err(|_| bump(&shared.counters.frames_malformed, 1))?;
    let mut sealed = vec![0; len];
    match timeout(READER_IDLE, stream.read_exact(&mut sealed)).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => return Err(RequestError::Io(error.to_string())),
        Err(_) => return Err(RequestError::Timeout),
    }
    bump(&shared.counters.frames_in, 1);
    bump(&shared.counters.frame_bytes_in, (PREFIX_LEN + len) as u64);
    match StreamMessage::open(&shared.keys, &sealed) {
        Ok(message) => Ok(Some(message)),
        Err(FrameError::Open(reason)) => {
            shared.counters.frames_rejected.bump(reason);
            Err(FrameError::Open(reason).into())
        }
        Err(error) => {
            bump(&shared.counters.frames_malformed, 1);
            Err(error.into())
        }
    }
}

/// Serves one inbound connection until it ends or misbehaves.
async fn serve(shared: &Arc<StreamConfig>, mut stream: TcpStream) -> Result<(), RequestError> {
    while let Some(message) = read_frame(shared, &mut stream, READER_IDLE).await? {
        match message {
            StreamMessage::Protocol { reply_to, payload } => {
                let Ok(from) = Address::new(reply_to) else {
                    bump(&shared.counters.frames_malformed, 1);
                    return Err(RequestError::Unexpected);
                };
                if shared.events.try_send(TransportEvent::Message { from, bytes: payload }).is_err() {
                    bump(&shared.counters.inbound_dropped, 1);
                }
            }
            StreamMessage::KeyRequest(op) => {
                let keys = Arc::clone(&shared.keys);
                // Saving the keyring fsyncs: off the agent's thread.
                let reply = tokio::task::spawn_blocking(move || keys.apply(&op))
                    .await
                    .unwrap_or_else(|e| KeyReply { keys: Vec::new(), error: Some(e.to_string()) });
                let frame = StreamMessage::KeyReply(reply).seal(&shared.keys);
                write_frame(shared, &mut stream, &frame).await?;
            }
            StreamMessage::KeyReply(_) => {
                bump(&shared.counters.frames_malformed, 1);
                return Err(RequestError::Unexpected);
            }
        }
    }
    Ok(())
}

/// Why a key request to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Io(String),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the peer answered something else, or closed the connection")]
    Unexpected,
}

/// Asks peers to apply key operations, over a sealed stream each.
#[derive(Clone)]
pub struct KeyRequester {
    shared: Arc<StreamConfig>,
}

impl std::fmt::Debug for KeyRequester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyRequester")
    }
}

impl KeyRequester {
    /// Sends `op` to the agent at `dest` and waits for its answer.
    pub async fn request(&self, dest: SocketAddr, op: KeyOp) -> Result<KeyReply, RequestError> {
        let (mut stream, _open) = connect(&self.shared, dest).await?;
        let frame = StreamMessage::KeyRequest(op).seal(&self.shared.keys);
        write_frame(&self.shared, &mut stream, &frame).await?;
        match read_frame(&self.shared, &mut stream, CONNECT_TIMEOUT + WRITE_TIMEOUT).await? {
            Some(StreamMessage::KeyReply(reply)) => Ok(reply),
            _ => Err(RequestError::Unexpected),
        }
    }
}
