//! The receiving half of the datagram path: one task reads the UDP socket,
//! opens each datagram under the keyring and hands the plaintext to the
//! agent.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use nix::libc;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrLike, SockaddrStorage, recvmsg, setsockopt, sockopt};
use shoal_protocol::Address;
use tokio::io::Interest;
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
            // An ICMP error for an earlier send: `watch_errors` reads it.
            Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(error) => {
                // A socket that is going away: nothing to do but not spin.
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

/// Asks the kernel to queue ICMP errors for what `udp` sends (`IP_RECVERR`).
pub(super) fn report_errors(udp: &UdpSocket, ipv6: bool) -> io::Result<()> {
    let result =
        if ipv6 { setsockopt(udp, sockopt::Ipv6RecvErr, &true) } else { setsockopt(udp, sockopt::Ipv4RecvErr, &true) };
    result.map_err(io::Error::from)
}

/// Reads the socket's error queue: each ICMP "port unreachable" becomes a
/// [`TransportEvent::Unreachable`] naming the address the datagram went to
/// (a peer whose agent died while its host stayed up).
pub(super) async fn watch_errors(
    udp: Arc<UdpSocket>,
    counters: Arc<TransportCounters>,
    events: mpsc::Sender<TransportEvent>,
) {
    loop {
        match udp.async_io(Interest::ERROR, || next_error(&udp)).await {
            Ok(Some(dest)) => {
                bump(&counters.unreachable, 1);
                let Ok(addr) = Address::new(dest.to_string()) else { continue };
                // Advice, not data: dropped if the agent is behind.
                let _ = events.try_send(TransportEvent::Unreachable { addr });
            }
            Ok(None) => {}
            Err(error) => {
                debug!(%error, "reading the UDP error queue failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One entry of the error queue: the destination of a datagram answered by
/// "port unreachable", `None` for any other error, `WouldBlock` when empty.
fn next_error(udp: &UdpSocket) -> io::Result<Option<SocketAddr>> {
    let mut data = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut data)];
    let mut space = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in6);
    let flags = MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT;
    let message = recvmsg::<SockaddrStorage>(udp.as_raw_fd(), &mut iov, Some(&mut space), flags)?;
    let dest = message.address.as_ref().and_then(socket_addr);
    let unreachable = message.cmsgs()?.any(|cmsg| match cmsg {
        ControlMessageOwned::Ipv4RecvErr(err, _) => {
            err.ee_origin == libc::SO_EE_ORIGIN_ICMP
                && err.ee_type == ICMP_DEST_UNREACH
                && err.ee_code == ICMP_PORT_UNREACH
        }
        ControlMessageOwned::Ipv6RecvErr(err, _) => {
            err.ee_origin == libc::SO_EE_ORIGIN_ICMP6
                && err.ee_type == ICMP6_DST_UNREACH
                && err.ee_code == ICMP6_PORT_UNREACH
        }
        _ => false,
    });
    Ok(dest.filter(|_| unreachable))
}

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_PORT_UNREACH: u8 = 3;
const ICMP6_DST_UNREACH: u8 = 1;
const ICMP6_PORT_UNREACH: u8 = 4;

fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    match addr.family()? {
        nix::sys::socket::AddressFamily::Inet => addr.as_sockaddr_in().map(|a| SocketAddr::from((a.ip(), a.port()))),
        nix::sys::socket::AddressFamily::Inet6 => addr.as_sockaddr_in6().map(|a| SocketAddr::from((a.ip(), a.port()))),
        _ => None,
    }
}
