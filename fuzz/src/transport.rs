//! Targets for what the agent's transport parses before the protocol sees
//! anything: a datagram opened under the keyring, a byte stream cut into
//! sealed frames, and a frame's plaintext decoded. The keyring is fixed, so
//! a run is a pure function of its input. The fuzzer cannot forge a seal,
//! so what lies behind one (the frame's plaintext) has a target of its own.

use shoal_node::crypto::{ClusterKey, Keyring, OpenError, SEAL_OVERHEAD};
use shoal_node::keys::{KeyOp, KeyReply};
use shoal_node::transport::frame::{self, PREFIX_LEN, StreamMessage};

/// The largest sealed frame the targets accept, as the agent's `lan` preset
/// does (its sync budget plus the seal and room for the envelope).
pub const MAX_SEALED: usize = 32 * 1024 + SEAL_OVERHEAD + 1024;

/// The keyring every transport target opens with.
pub fn keyring() -> Keyring {
    let key = ClusterKey::parse(&"5e".repeat(32)).unwrap_or_else(|_| unreachable!("64 hex digits"));
    Keyring::new(key, [])
}

/// A datagram as it comes off the UDP socket: opened under the keyring
/// (refused for the right reason if it does not open), then decoded.
pub fn datagram_open(bytes: &[u8]) {
    match keyring().open(bytes) {
        Ok(plain) => {
            assert_eq!(plain.len() + SEAL_OVERHEAD, bytes.len(), "the seal is a fixed overhead");
            crate::wire_decode(&plain);
        }
        Err(OpenError::Malformed) => assert!(bytes.len() < SEAL_OVERHEAD || bytes[0] != 1, "well-formed refused"),
        Err(_) => {}
    }
}

/// A TCP byte stream cut into frames as the agent reads it: each length
/// checked against the bound before anything is read, each frame opened
/// and decoded; the first bad frame ends the stream.
pub fn stream_frames(bytes: &[u8]) {
    let ring = keyring();
    let mut rest = bytes;
    while rest.len() >= PREFIX_LEN {
        let (prefix, tail) = rest.split_at(PREFIX_LEN);
        let prefix: [u8; PREFIX_LEN] = prefix.try_into().unwrap_or_else(|_| unreachable!("split at PREFIX_LEN"));
        let Ok(len) = frame::frame_len(prefix, MAX_SEALED) else { return };
        assert!((SEAL_OVERHEAD..=MAX_SEALED).contains(&len), "an out-of-bounds length passed");
        let Some(sealed) = tail.get(..len) else { return };
        let Ok(plain) = ring.open(sealed) else { return };
        let Ok(_message) = frame::decode(&plain) else { return };
        rest = &tail[len..];
    }
}

/// A frame's plaintext: whatever decodes re-encodes to the same bytes.
pub fn stream_message_decode(bytes: &[u8]) {
    let Ok(message) = frame::decode(bytes) else { return };
    assert_eq!(frame::encode(&message), bytes, "a stream message does not re-encode to its bytes");
}

/// Seeds for the transport targets: the protocol seeds sealed, framed and
/// wrapped, and every stream message kind.
pub fn seeds(protocol: &[(String, Vec<u8>)]) -> Vec<crate::seeds::Seed> {
    let ring = keyring();
    let mut messages: Vec<(String, StreamMessage)> = vec![
        ("key-list".into(), StreamMessage::KeyRequest(KeyOp::List)),
        ("key-install".into(), StreamMessage::KeyRequest(KeyOp::Install { key: "ab".repeat(32) })),
        ("key-use".into(), StreamMessage::KeyRequest(KeyOp::Use { id: [1, 2, 3, 4] })),
        ("key-remove".into(), StreamMessage::KeyRequest(KeyOp::Remove { id: [4, 3, 2, 1] })),
        ("key-reply".into(), StreamMessage::KeyReply(KeyReply { keys: vec!["01020304".into()], error: None })),
        (
            "key-refused".into(),
            StreamMessage::KeyReply(KeyReply { keys: Vec::new(), error: Some("not installed".into()) }),
        ),
    ];
    let mut seeds = Vec::new();
    for (name, bytes) in protocol {
        let sealed = ring.seal(bytes);
        seeds.push(crate::seeds::Seed { target: "datagram_open", name: name.clone(), bytes: sealed });
        if name.contains("sync") {
            let wrapped = StreamMessage::Protocol { reply_to: "10.0.0.1:7946".into(), payload: bytes.clone() };
            messages.push((name.clone(), wrapped));
        }
    }
    for (name, message) in messages {
        let plain = frame::encode(&message);
        let sealed = ring.seal(&plain);
        let mut framed = u32::try_from(sealed.len()).unwrap_or(u32::MAX).to_be_bytes().to_vec();
        framed.extend_from_slice(&sealed);
        // Two frames back to back: the reader must find the second.
        let twice = [framed.clone(), framed].concat();
        seeds.push(crate::seeds::Seed { target: "stream_frames", name: name.clone(), bytes: twice });
        seeds.push(crate::seeds::Seed { target: "stream_message_decode", name, bytes: plain });
    }
    seeds
}
