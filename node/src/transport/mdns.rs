//! Finding agents on the LAN with mDNS (DNS-SD), through the `mdns-sd`
//! crate: each agent announces `<node id>._shoal._udp.local.` with its gossip
//! address and browses for the others; every agent it resolves is handed to
//! the agent loop as [`TransportEvent::Discovered`], which joins it.
//!
//! Discovery admits nobody: a found agent is only an address to join, and
//! what it sends must still open under the keyring.

use std::collections::HashMap;
use std::net::SocketAddr;

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use shoal_protocol::Address;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::TransportEvent;

const SERVICE: &str = "_shoal._udp.local.";

/// A running announcement and browse; stops when dropped.
pub struct Mdns {
    daemon: ServiceDaemon,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Mdns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mdns")
    }
}

impl Drop for Mdns {
    fn drop(&mut self) {
        self.task.abort();
        let _ = self.daemon.shutdown();
    }
}

/// Announces this agent (`instance`, unique in the mesh: the node id) at
/// `gossip`, and reports the others it finds. `None`, with a warning, if
/// mDNS cannot start here (no multicast interface, say): joining by address
/// still works.
pub fn start(instance: &str, gossip: SocketAddr, events: mpsc::Sender<TransportEvent>) -> Option<Mdns> {
    let started = ServiceDaemon::new().and_then(|daemon| {
        let host = format!("{instance}.local.");
        let info =
            ServiceInfo::new(SERVICE, instance, &host, gossip.ip(), gossip.port(), None::<HashMap<String, String>>)?;
        daemon.register(info)?;
        let found = daemon.browse(SERVICE)?;
        Ok((daemon, found))
    });
    let (daemon, found) = match started {
        Ok(started) => started,
        Err(error) => {
            warn!(%error, "mDNS unavailable; join with --join HOST:PORT instead");
            return None;
        }
    };
    let own = format!("{instance}.{SERVICE}");
    let task = tokio::spawn(async move {
        while let Ok(event) = found.recv_async().await {
            let ServiceEvent::ServiceResolved(service) = event else { continue };
            if service.fullname == own {
                continue;
            }
            for ip in &service.addresses {
                let addr = SocketAddr::new(ip.to_ip_addr(), service.port);
                debug!(%addr, name = %service.fullname, "mDNS found an agent");
                if let Ok(addr) = Address::new(addr.to_string()) {
                    let _ = events.try_send(TransportEvent::Discovered { addr });
                }
            }
        }
    });
    Some(Mdns { daemon, task })
}
