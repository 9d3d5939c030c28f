//! Frames on streams: one writer task per destination, one reader per inbound stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{Multiaddr, PeerId, Stream};
use shoal_protocol::Address;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use tracing::{debug, warn};

use crate::crypto::Sealer;

use super::swarm::{SwarmCommand, lock};
use super::{
    CONNECT_TIMEOUT, PROTOCOL, RETRY_AFTER_FAILURE, Target, TransportCounters, TransportEvent, WRITE_TIMEOUT,
    WRITER_IDLE, bump,
};

/// One destination's outbound queue: keeps a stream open, writes frames.
pub(super) struct Writer {
    pub(super) target: Target,
    pub(super) control: libp2p_stream::Control,
    pub(super) swarm: mpsc::UnboundedSender<SwarmCommand>,
    pub(super) counters: Arc<TransportCounters>,
}

impl Writer {
    pub(super) async fn run(mut self, mut queue: mpsc::Receiver<(Multiaddr, Vec<u8>)>) {
        let mut stream: Option<Stream> = None;
        let mut failed_at: Option<tokio::time::Instant> = None;
        while let Ok(Some((addr, frame))) = timeout(WRITER_IDLE, queue.recv()).await {
            if stream.is_none() {
                if failed_at.is_some_and(|at| at.elapsed() < RETRY_AFTER_FAILURE) {
                    bump(&self.counters.outbound_dropped, 1);
                    continue;
                }
                match timeout(CONNECT_TIMEOUT, self.open(addr)).await {
                    Ok(Ok(opened)) => stream = Some(opened),
                    outcome => {
                        let why = match outcome {
                            Ok(Err(why)) => why,
                            _ => "timed out".to_string(),
                        };
                        debug!(target = ?self.target, %why, "cannot reach peer; message dropped");
                        bump(&self.counters.outbound_dropped, 1);
                        failed_at = Some(tokio::time::Instant::now());
                        continue;
                    }
                }
            }
            let Some(open) = stream.as_mut() else { continue };
            let len = u32::try_from(frame.len()).unwrap_or(u32::MAX).to_be_bytes();
            let write = async {
                open.write_all(&len).await?;
                open.write_all(&frame).await?;
                open.flush().await
            };
            match timeout(WRITE_TIMEOUT, write).await {
                Ok(Ok(())) => {
                    bump(&self.counters.frames_out, 1);
                    bump(&self.counters.bytes_out, frame.len() as u64 + 4);
                }
                _ => {
                    debug!(target = ?self.target, "stream broke; reopening on the next message");
                    bump(&self.counters.outbound_dropped, 1);
                    stream = None;
                }
            }
        }
        if let Some(mut open) = stream {
            let _ = timeout(WRITE_TIMEOUT, open.close()).await;
        }
    }

    async fn open(&mut self, addr: Multiaddr) -> Result<Stream, String> {
        let peer = match &self.target {
            Target::Peer(peer) => {
                let (reply, answer) = oneshot::channel();
                self.swarm.send(SwarmCommand::Connect { peer: *peer, addr, reply }).map_err(|e| e.to_string())?;
                answer.await.map_err(|e| e.to_string())??;
                *peer
            }
            Target::Addr(addr) => {
                let (reply, answer) = oneshot::channel();
                let command = SwarmCommand::ConnectAddr { addr: addr.clone(), reply };
                self.swarm.send(command).map_err(|e| e.to_string())?;
                answer.await.map_err(|e| e.to_string())??
            }
        };
        self.control.open_stream(peer, PROTOCOL).await.map_err(|e| e.to_string())
    }
}

/// Reads inbound streams.
#[derive(Clone)]
pub(super) struct Readers {
    pub(super) sealer: Sealer,
    pub(super) counters: Arc<TransportCounters>,
    pub(super) remotes: Arc<Mutex<HashMap<PeerId, Multiaddr>>>,
    pub(super) events: mpsc::Sender<TransportEvent>,
    pub(super) swarm: mpsc::UnboundedSender<SwarmCommand>,
    pub(super) max_frame: usize,
}

impl Readers {
    pub(super) async fn accept(self, mut incoming: libp2p_stream::IncomingStreams) {
        while let Some((peer, stream)) = incoming.next().await {
            tokio::spawn(self.clone().read(peer, stream));
        }
    }

    async fn read(self, peer: PeerId, mut stream: Stream) {
        let mut len = [0u8; 4];
        while stream.read_exact(&mut len).await.is_ok() {
            let len = u32::from_be_bytes(len) as usize;
            if len > self.max_frame {
                bump(&self.counters.frames_oversized, 1);
                warn!(%peer, len, "oversized frame; disconnecting peer");
                let _ = self.swarm.send(SwarmCommand::Disconnect(peer));
                return;
            }
            let mut frame = vec![0; len];
            if stream.read_exact(&mut frame).await.is_err() {
                return;
            }
            bump(&self.counters.frames_in, 1);
            bump(&self.counters.bytes_in, len as u64 + 4);
            let Ok(bytes) = self.sealer.open(&frame) else {
                bump(&self.counters.frames_rejected, 1);
                warn!(%peer, "frame does not open under our cluster key; disconnecting peer");
                let _ = self.swarm.send(SwarmCommand::Disconnect(peer));
                return;
            };
            let remote = lock(&self.remotes).get(&peer).cloned().unwrap_or_else(Multiaddr::empty);
            let from = remote.with_p2p(peer).unwrap_or_else(|addr| addr);
            let Ok(from) = Address::new(from.to_string()) else { continue };
            if self.events.try_send(TransportEvent::Message { from, bytes }).is_err() {
                bump(&self.counters.inbound_dropped, 1);
            }
        }
    }
}
