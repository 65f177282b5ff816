//! The one trait every data-plane backend implements, the node settings they share, and the command runner they use.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::tracker::DesiredState;

/// Errors of backends and their command runner.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("running {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed: {stderr}")]
    Failed { program: String, stderr: String },
    #[error("invalid CIDR {0:?}: expected a.b.c.d/n")]
    Cidr(String),
    #[error("userspace proxy: {0}")]
    Userspace(String),
}

pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// An IPv4 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr> {
        let err = || BackendError::Cidr(s.to_string());
        let (a, l) = s.trim().split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| err())?;
        let len: u8 = l.parse().map_err(|_| err())?;
        if len > 32 {
            return Err(err());
        }
        Ok(Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & Self::mask(len)),
            len,
        })
    }

    fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask(self.len) == u32::from(self.addr)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Settings of this node that shape the rules (upstream's KubeProxyConfiguration subset).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSettings {
    /// Pod CIDR of the cluster: ClusterIP traffic from outside it is masqueraded.
    pub cluster_cidr: Option<Cidr>,
    /// Masquerade all service traffic.
    pub masquerade_all: bool,
    /// Restrict NodePorts to these prefixes (empty: every local address but 127/8).
    pub node_port_addresses: Vec<Cidr>,
}

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Whether the whole state was rendered (instead of only the changes).
    pub full: bool,
    /// Service ports whose rules changed.
    pub changed_ports: usize,
}

/// A data-plane backend: renders the whole desired state, then only changes.
pub trait Backend: Send {
    /// `nftables`, `iptables` or `userspace`.
    fn mode(&self) -> &'static str;
    /// Makes the data plane match `state`. `full` forces a complete re-render
    /// (first sync, after a failure, periodically).
    fn sync(&mut self, state: &DesiredState, full: bool) -> Result<SyncReport>;
    /// Removes everything this backend installed.
    fn cleanup(&mut self) -> Result<()>;
}

/// Runs a program with a stdin text: the only I/O of the kernel backends.
pub trait Exec: Send + std::fmt::Debug {
    fn run(&mut self, program: &str, args: &[&str], stdin: &str) -> Result<String>;
}

/// Runs real programs.
#[derive(Debug, Default)]
pub struct SystemExec;

impl Exec for SystemExec {
    fn run(&mut self, program: &str, args: &[&str], stdin: &str) -> Result<String> {
        let spawn = |source| BackendError::Spawn {
            program: program.to_string(),
            source,
        };
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn)?;
        if let Some(mut w) = child.stdin.take() {
            w.write_all(stdin.as_bytes()).map_err(spawn)?;
        }
        let out = child.wait_with_output().map_err(spawn)?;
        if !out.status.success() {
            return Err(BackendError::Failed {
                program: format!("{program} {}", args.join(" ")),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }
}

/// An in-memory fake: records every command and its stdin, answers from a script.
#[derive(Debug, Clone, Default)]
pub struct FakeExec {
    pub log: Arc<Mutex<Vec<(String, String)>>>,
    /// Commands (program + args) that fail, checked by prefix.
    pub fail: Arc<Mutex<Vec<String>>>,
}

impl FakeExec {
    /// The recorded `(command line, stdin)` pairs, taken.
    pub fn take(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.log.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Exec for FakeExec {
    fn run(&mut self, program: &str, args: &[&str], stdin: &str) -> Result<String> {
        let line = std::iter::once(program)
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((line.clone(), stdin.to_string()));
        let fail = self.fail.lock().unwrap_or_else(|e| e.into_inner());
        if fail.iter().any(|f| line.starts_with(f.as_str())) {
            return Err(BackendError::Failed {
                program: line,
                stderr: "injected failure".into(),
            });
        }
        Ok(String::new())
    }
}

/// A backend that records the states it was given (for runner and proxy tests).
#[derive(Debug, Clone, Default)]
pub struct FakeBackend {
    pub synced: Arc<Mutex<Vec<(bool, usize)>>>,
    pub fail_next: Arc<Mutex<u32>>,
}

impl Backend for FakeBackend {
    fn mode(&self) -> &'static str {
        "fake"
    }

    fn sync(&mut self, state: &DesiredState, full: bool) -> Result<SyncReport> {
        let mut f = self.fail_next.lock().unwrap_or_else(|e| e.into_inner());
        if *f > 0 {
            *f -= 1;
            return Err(BackendError::Failed {
                program: "fake".into(),
                stderr: "injected".into(),
            });
        }
        self.synced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((full, state.ports.len()));
        Ok(SyncReport {
            full,
            changed_ports: state.ports.len(),
        })
    }

    fn cleanup(&mut self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parse_and_contains() {
        let rows = [
            ("10.244.0.0/16", "10.244.3.4", Some("10.244.0.0/16"), true),
            ("10.244.1.7/24", "10.244.2.1", Some("10.244.1.0/24"), false),
            ("0.0.0.0/0", "8.8.8.8", Some("0.0.0.0/0"), true),
            ("10.0.0.1/32", "10.0.0.1", Some("10.0.0.1/32"), true),
            ("10.0.0.0/33", "10.0.0.1", None, false),
            ("10.0.0.0", "10.0.0.1", None, false),
            ("x/8", "10.0.0.1", None, false),
        ];
        for (s, ip, want, contains) in rows {
            let got = Cidr::parse(s).ok();
            assert_eq!(got.map(|c| c.to_string()).as_deref(), want, "{s}");
            if let Some(c) = got {
                assert_eq!(c.contains(ip.parse().unwrap()), contains, "{s} {ip}");
            }
        }
        assert_eq!(
            Cidr::parse("10.0.0.0").unwrap_err().to_string(),
            "invalid CIDR \"10.0.0.0\": expected a.b.c.d/n"
        );
    }
}
