//! API tokens: who may read and who may write.
//!
//! An API bound beyond loopback requires a token file (`--api-token-file`),
//! one token a line with its role:
//!
//! ```text
//! # role   token                              (a name after it is a comment)
//! admin    3b5e0f4c9a8d7e6f1a2b3c4d5e6f7a8b   alice
//! read     9f8e7d6c5b4a39281706f5e4d3c2b1a0   dashboards
//! ```
//!
//! `admin` tokens may do everything; `read` tokens may only `GET`. A token
//! is 16 to 256 visible ASCII characters (`shoal token` prints a random
//! one). Requests carry it as `Authorization: Bearer TOKEN`.
//!
//! Only SHA-256 digests of the tokens are kept, compared in constant time,
//! and never logged. Wrong tokens are counted per source address: after
//! [`FailureLimiter::MAX_FAILURES`] within [`FailureLimiter::WINDOW`], that
//! address gets 429 for the rest of the window, whatever it sends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// `GET` only: the members, the workloads, the metrics, the web view.
    Read,
    /// Everything, including submit, delete, leave and key changes.
    Admin,
}

/// Why a token file is unusable. Nothing was loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read the token file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("token file {path}, line {line}: {why}")]
    Line { path: PathBuf, line: usize, why: String },
    #[error("token file {path} holds no token: add a line such as `admin TOKEN` (`shoal token` prints one)")]
    Empty { path: PathBuf },
}

/// The tokens an agent accepts: digests and roles, never the tokens.
#[derive(Clone)]
pub struct Tokens {
    entries: Vec<([u8; 32], Role)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let admins = self.entries.iter().filter(|(_, r)| *r == Role::Admin).count();
        f.debug_struct("Tokens").field("admin", &admins).field("read", &(self.entries.len() - admins)).finish()
    }
}

/// Shortest and longest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;
pub const MAX_TOKEN_LEN: usize = 256;

impl Tokens {
    /// Reads a token file (the format is in the module docs).
    pub fn from_file(path: &Path) -> Result<Tokens, TokenFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TokenFileError::Read { path: path.to_path_buf(), source })?;
        Tokens::parse(&text)
            .map_err(|(line, why)| TokenFileError::Line { path: path.to_path_buf(), line, why })?
            .ok_or(TokenFileError::Empty { path: path.to_path_buf() })
    }

    /// Parses the file's text: `None` if it holds no token, or the first
    /// bad line's number and what is wrong with it.
    pub fn parse(text: &str) -> Result<Option<Tokens>, (usize, String)> {
        let mut entries = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(role), Some(token)) = (words.next(), words.next()) else {
                return Err((index + 1, "expected `ROLE TOKEN`, e.g. `admin TOKEN` or `read TOKEN`".into()));
            };
            let role = match role {
                "admin" => Role::Admin,
                "read" => Role::Read,
                other => return Err((index + 1, format!("unknown role {other:?}: use admin or read"))),
            };
            check_token(token).map_err(|why| (index + 1, why))?;
            entries.push((digest(token), role));
        }
        Ok(if entries.is_empty() { None } else { Some(Tokens { entries }) })
    }

    /// The role of `token`, if it is one of ours. Compares every digest in
    /// constant time, so the answer's timing says nothing of the tokens.
    pub fn role(&self, token: &str) -> Option<Role> {
        let presented = digest(token);
        let mut found = None;
        for (known, role) in &self.entries {
            let difference = known.iter().zip(&presented).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if difference == 0 {
                found = found.max(Some(*role));
            }
        }
        found
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether `token` could be a token: 16 to 256 visible ASCII characters.
pub fn check_token(token: &str) -> Result<(), String> {
    if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&token.len()) {
        return Err(format!(
            "a token is {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} characters, this one has {} (`shoal token` prints one)",
            token.len()
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a token is visible ASCII only, without spaces".into());
    }
    Ok(())
}

/// A new random token: 32 hex digits (128 bits).
pub fn generate_token() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Counts wrong tokens per source address, and refuses an address that
/// sent too many within a window.
#[derive(Debug, Default)]
pub struct FailureLimiter {
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailureLimiter {
    /// Wrong tokens an address may send within [`Self::WINDOW`].
    pub const MAX_FAILURES: u32 = 10;
    /// The window; an address over the limit waits until it ends.
    pub const WINDOW: Duration = Duration::from_secs(60);
    /// Addresses remembered at most (oldest windows dropped first).
    const MAX_ADDRESSES: usize = 4096;

    /// How long `ip` must wait before it may try again, if it must.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (since, count) = seen.get(&ip)?;
        let ends = *since + Self::WINDOW;
        (*count >= Self::MAX_FAILURES && ends > now).then(|| ends - now)
    }

    /// Notes a wrong token from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= Self::MAX_ADDRESSES && !seen.contains_key(&ip) {
            seen.retain(|_, (since, _)| *since + Self::WINDOW > now);
            if seen.len() >= Self::MAX_ADDRESSES {
                let oldest = seen.iter().min_by_key(|(_, (since, _))| *since).map(|(ip, _)| *ip);
                if let Some(oldest) = oldest {
                    seen.remove(&oldest);
                }
            }
        }
        let entry = seen.entry(ip).or_insert((now, 0));
        if entry.0 + Self::WINDOW <= now {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "0123456789abcdef0123456789abcdef";
    const READER: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn the_file_gives_each_token_its_role() -> Result<(), String> {
        let text = format!("# tokens\n\nadmin {ADMIN} alice\n  read\t{READER}\n");
        let tokens = Tokens::parse(&text).map_err(|e| e.1)?.ok_or("no tokens")?;
        assert_eq!(tokens.role(ADMIN), Some(Role::Admin));
        assert_eq!(tokens.role(READER), Some(Role::Read));
        assert_eq!(tokens.role("0123456789abcdef0123456789abcdee"), None);
        assert_eq!(tokens.role(""), None);
        assert!(!format!("{tokens:?}").contains(ADMIN), "Debug never shows a token");
        Ok(())
    }

    #[test]
    fn bad_lines_are_refused_by_number() {
        assert_eq!(Tokens::parse("# nothing\n").map(|t| t.is_none()), Ok(true));
        let refused = |text: &str| Tokens::parse(text).err();
        assert_eq!(refused(&format!("admin {ADMIN}\nroot {READER}\n")).map(|e| e.0), Some(2));
        assert!(refused("admin short").is_some_and(|e| e.1.contains("16 to 256")));
        assert!(refused("admin").is_some_and(|e| e.1.contains("ROLE TOKEN")));
        assert!(refused(&format!("admin {ADMIN}é")).is_some_and(|e| e.1.contains("visible ASCII")));
    }

    #[test]
    fn an_address_is_refused_after_too_many_wrong_tokens() {
        let limiter = FailureLimiter::default();
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let start = Instant::now();
        for _ in 0..FailureLimiter::MAX_FAILURES - 1 {
            limiter.failed(ip, start);
        }
        assert_eq!(limiter.blocked(ip, start), None);
        limiter.failed(ip, start);
        assert_eq!(limiter.blocked(ip, start), Some(FailureLimiter::WINDOW));
        assert_eq!(limiter.blocked(other, start), None, "others are not affected");
        let later = start + FailureLimiter::WINDOW;
        assert_eq!(limiter.blocked(ip, later), None, "the window ends");
        limiter.failed(ip, later);
        assert_eq!(limiter.blocked(ip, later), None, "and the count starts again");
    }

    #[test]
    fn generated_tokens_are_valid() {
        let token = generate_token();
        assert_eq!(check_token(&token), Ok(()));
        assert_ne!(token, generate_token());
    }
}
