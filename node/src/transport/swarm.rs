//! The task that owns the libp2p `Swarm`: dials, connection bookkeeping, mDNS.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, mdns};
use shoal_protocol::Address;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::{TransportCounters, TransportEvent, bump, split_peer};

#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    pub(super) stream: libp2p_stream::Behaviour,
    pub(super) mdns: Toggle<mdns::tokio::Behaviour>,
}

#[derive(Debug)]
pub(super) enum SwarmCommand {
    /// Make sure there is a connection to `peer`, dialing `addr` if needed.
    Connect { peer: PeerId, addr: Multiaddr, reply: oneshot::Sender<Result<(), String>> },
    /// Dial an address whose peer id is not known yet.
    ConnectAddr { addr: Multiaddr, reply: oneshot::Sender<Result<PeerId, String>> },
    /// Close every connection to `peer`.
    Disconnect(PeerId),
    /// `peer` restarted: close its connections; some were made with its
    /// previous process.
    Restarted(PeerId),
}

/// Waits for the listener's addresses; keeps what mDNS found meanwhile.
pub(super) async fn first_listen_addrs(
    swarm: &mut Swarm<Behaviour>,
    found: &mut Vec<(PeerId, Multiaddr)>,
) -> Result<Vec<Multiaddr>, String> {
    let mut addrs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let wait = if addrs.is_empty() { deadline } else { tokio::time::Instant::now() + Duration::from_millis(50) };
        match tokio::time::timeout_at(wait, swarm.select_next_some()).await {
            Ok(SwarmEvent::NewListenAddr { address, .. }) => addrs.push(address),
            Ok(SwarmEvent::ListenerError { error, .. }) => return Err(error.to_string()),
            Ok(SwarmEvent::ListenerClosed { reason: Err(error), .. }) => return Err(error.to_string()),
            Ok(SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(list)))) => found.extend(list),
            Ok(_) => {}
            Err(_) if addrs.is_empty() => return Err("no listen address after 5 s".into()),
            Err(_) => return Ok(addrs),
        }
    }
}

pub(super) struct SwarmLoop {
    pub(super) swarm: Swarm<Behaviour>,
    pub(super) commands: mpsc::UnboundedReceiver<SwarmCommand>,
    pub(super) events: mpsc::Sender<TransportEvent>,
    pub(super) counters: Arc<TransportCounters>,
    pub(super) remotes: Arc<Mutex<HashMap<PeerId, Multiaddr>>>,
    pub(super) waiting: HashMap<PeerId, Vec<oneshot::Sender<Result<(), String>>>>,
    pub(super) waiting_addr: HashMap<libp2p::swarm::ConnectionId, oneshot::Sender<Result<PeerId, String>>>,
}

impl SwarmLoop {
    pub(super) async fn run(mut self) {
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => return,
                },
                event = self.swarm.select_next_some() => self.on_event(event),
            }
        }
    }

    fn on_command(&mut self, command: SwarmCommand) {
        match command {
            SwarmCommand::Connect { peer, addr, reply } => {
                if self.swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(()));
                    return;
                }
                self.waiting.entry(peer).or_default().push(reply);
                let opts =
                    DialOpts::peer_id(peer).addresses(vec![addr]).condition(PeerCondition::DisconnectedAndNotDialing);
                match self.swarm.dial(opts.build()) {
                    Ok(()) | Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => {}
                    Err(error) => self.fail_peer(peer, &error.to_string()),
                }
            }
            SwarmCommand::ConnectAddr { addr, reply } => {
                let opts = DialOpts::unknown_peer_id().address(addr).build();
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.waiting_addr.insert(id, reply);
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error.to_string()));
                    }
                }
            }
            SwarmCommand::Disconnect(peer) => {
                bump(&self.counters.peers_disconnected, 1);
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            SwarmCommand::Restarted(peer) => {
                debug!(%peer, "peer restarted; closing its connections");
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
    }

    fn fail_peer(&mut self, peer: PeerId, why: &str) {
        for reply in self.waiting.remove(&peer).unwrap_or_default() {
            let _ = reply.send(Err(why.to_string()));
        }
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                let (remote, _) = split_peer(endpoint.get_remote_address());
                debug!(peer = %peer_id, %remote, "connected");
                lock(&self.remotes).insert(peer_id, remote);
                for reply in self.waiting.remove(&peer_id).unwrap_or_default() {
                    let _ = reply.send(Ok(()));
                }
                if let Some(reply) = self.waiting_addr.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                self.update_gauge();
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, cause, .. } => {
                debug!(peer = %peer_id, ?cause, "connection closed");
                if num_established == 0 {
                    lock(&self.remotes).remove(&peer_id);
                }
                self.update_gauge();
            }
            SwarmEvent::OutgoingConnectionError { connection_id, peer_id, error } => {
                debug!(?peer_id, %error, "dial failed");
                if let Some(reply) = self.waiting_addr.remove(&connection_id) {
                    let _ = reply.send(Err(error.to_string()));
                }
                if let Some(peer) = peer_id.filter(|p| !self.swarm.is_connected(p)) {
                    self.fail_peer(peer, &error.to_string());
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    discovered(&self.events, peer, addr);
                }
            }
            // Non-fatal: mostly a connection attempt that failed its
            // handshake, which the drop counter already counts (see `drops`).
            SwarmEvent::ListenerError { error, .. } => debug!(%error, "listener error"),
            SwarmEvent::ListenerClosed { reason: Err(error), .. } => warn!(%error, "listener closed"),
            _ => {}
        }
    }

    fn update_gauge(&self) {
        let peers = self.swarm.network_info().num_peers() as u64;
        self.counters.connected_peers.store(peers, Ordering::Relaxed);
    }
}

pub(super) fn discovered(events: &mpsc::Sender<TransportEvent>, peer: PeerId, addr: Multiaddr) {
    let addr = addr.with_p2p(peer).unwrap_or_else(|addr| addr);
    debug!(%peer, %addr, "mDNS discovered");
    if let Ok(addr) = Address::new(addr.to_string()) {
        let _ = events.try_send(TransportEvent::Discovered { addr });
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
