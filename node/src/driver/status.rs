//! Naming a replica, and how an instance ended. Statuses themselves are
//! `shoal_protocol::ReplicaStatus`, as they are gossiped.

/// One replica of one workload: the protocol's key, so plans, statuses
/// and drivers name a replica the same way.
pub use shoal_protocol::ReplicaKey;

/// How an instance ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Exit {
    /// Exit status 0. A signal or a driver error is not a success.
    pub(crate) success: bool,
    pub(crate) detail: String,
}

impl Exit {
    pub(crate) fn failed(detail: impl Into<String>) -> Exit {
        Exit { success: false, detail: detail.into() }
    }

    /// From a process's exit code or terminating signal.
    pub(crate) fn from_code_or_signal(code: Option<i64>, signal: Option<i32>) -> Exit {
        match (code, signal) {
            (Some(code), _) => Exit { success: code == 0, detail: format!("exited with status {code}") },
            (None, Some(sig)) => {
                let name = nix::sys::signal::Signal::try_from(sig).map(|s| format!(" ({})", s.as_str()));
                Exit::failed(format!("killed by signal {sig}{}", name.unwrap_or_default()))
            }
            (None, None) => Exit::failed("exited for an unknown reason"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_read_as_people_say_them() {
        assert_eq!(
            Exit::from_code_or_signal(Some(0), None),
            Exit { success: true, detail: "exited with status 0".into() }
        );
        assert_eq!(Exit::from_code_or_signal(Some(3), None), Exit::failed("exited with status 3"));
        assert_eq!(Exit::from_code_or_signal(None, Some(9)), Exit::failed("killed by signal 9 (SIGKILL)"));
        assert_eq!(ReplicaKey::new("web", 2).dir_name(), "web-2");
    }
}
