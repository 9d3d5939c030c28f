//! The receiving half of the datagram path: one task reads the UDP socket,
//! opens each datagram under the keyring and hands the plaintext to the
//! agent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shoal_protocol::Address;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::debug;

use super::{TransportCounters, TransportEvent, bump};
use crate::keys::KeyStore;

/// Larger than any datagram IPv4 or IPv6 can carry, so none is truncated.
const RECEIVE_BUFFER: usize = 65_536;

pub(super) async fn receive(
    udp: Arc<UdpSocket>,
    keys: Arc<KeyStore>,
    counters: Arc<TransportCounters>,
    events: mpsc::Sender<TransportEvent>,
) {
    let mut buffer = vec![0; RECEIVE_BUFFER];
    loop {
        let (len, source) = match udp.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                // An ICMP error for an earlier send, or a socket that is
                // going away: nothing to do but not spin.
                debug!(%error, "UDP receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        bump(&counters.datagrams_in, 1);
        bump(&counters.datagram_bytes_in, len as u64);
        match keys.open(&buffer[..len]) {
            Ok(bytes) => deliver(&events, &counters, source, bytes),
            Err(reason) => {
                counters.datagrams_rejected.bump(reason);
                debug!(%source, %reason, "datagram dropped");
            }
        }
    }
}

fn deliver(events: &mpsc::Sender<TransportEvent>, counters: &TransportCounters, source: SocketAddr, bytes: Vec<u8>) {
    let Ok(from) = Address::new(source.to_string()) else { return };
    if events.try_send(TransportEvent::Message { from, bytes }).is_err() {
        bump(&counters.inbound_dropped, 1);
    }
}
