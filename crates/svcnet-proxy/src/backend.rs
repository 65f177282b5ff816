//! The one trait every data-plane backend implements, the node settings they share, and the command runner they use.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::plan::Family;
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
    #[error("invalid CIDR {0:?}: expected a.b.c.d/n or an IPv6 prefix such as fd00::/64")]
    Cidr(String),
    #[error("userspace proxy: {0}")]
    Userspace(String),
}

pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// An IPv4 or IPv6 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr> {
        let err = || BackendError::Cidr(s.to_string());
        let (a, l) = s.trim().split_once('/').ok_or_else(err)?;
        let addr: IpAddr = a.parse().map_err(|_| err())?;
        let len: u8 = l.parse().map_err(|_| err())?;
        let addr = match addr {
            IpAddr::V4(v4) if len <= 32 => {
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & Self::mask4(len)))
            }
            IpAddr::V6(v6) if len <= 128 => {
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & Self::mask6(len)))
            }
            _ => return Err(err()),
        };
        Ok(Cidr { addr, len })
    }

    fn mask4(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        }
    }

    fn mask6(len: u8) -> u128 {
        if len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(len))
        }
    }

    pub fn family(&self) -> Family {
        Family::of(self.addr)
    }

    /// Whether `ip` is inside; an address of the other family never is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => u32::from(b) & Self::mask4(self.len) == u32::from(a),
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                u128::from(b) & Self::mask6(self.len) == u128::from(a)
            }
            _ => false,
        }
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
    /// Pod CIDRs of the cluster, at most one per family (upstream's
    /// comma-separated clusterCIDR): ClusterIP traffic from outside the
    /// family's CIDR is masqueraded.
    pub cluster_cidrs: Vec<Cidr>,
    /// Masquerade all service traffic.
    pub masquerade_all: bool,
    /// Restrict NodePorts to these prefixes, per family: a family with none
    /// of its own here serves NodePorts on every local address of that
    /// family but loopback (upstream's per-family NodePortAddresses).
    pub node_port_addresses: Vec<Cidr>,
}

impl NodeSettings {
    /// The pod CIDR of one family.
    pub fn cluster_cidr(&self, f: Family) -> Option<Cidr> {
        self.cluster_cidrs.iter().copied().find(|c| c.family() == f)
    }

    /// The NodePort prefixes of one family (empty: every local address).
    pub fn node_port_cidrs(&self, f: Family) -> Vec<Cidr> {
        self.node_port_addresses
            .iter()
            .copied()
            .filter(|c| c.family() == f)
            .collect()
    }
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
    /// Whether this runs real programs in the caller's network namespace, so
    /// that nftables scripts may go through libnftables in-process instead.
    fn is_local_system(&self) -> bool {
        false
    }
}

/// Runs real programs.
#[derive(Debug, Default)]
pub struct SystemExec;

impl Exec for SystemExec {
    fn is_local_system(&self) -> bool {
        true
    }

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
            ("10.0.0.0/8", "fd00::1", Some("10.0.0.0/8"), false),
            (
                "fd00:10:244:1::7/64",
                "fd00:10:244:1::2",
                Some("fd00:10:244:1::/64"),
                true,
            ),
            (
                "fd00:10:244::/56",
                "fd00:10:244:2::2",
                Some("fd00:10:244::/56"),
                true,
            ),
            (
                "fd00:10:244::/56",
                "fd00:10:245::2",
                Some("fd00:10:244::/56"),
                false,
            ),
            ("fd00::/64", "10.0.0.1", Some("fd00::/64"), false),
            ("::/0", "2001:db8::1", Some("::/0"), true),
            ("fd00::/129", "fd00::1", None, false),
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
            "invalid CIDR \"10.0.0.0\": expected a.b.c.d/n or an IPv6 prefix such as fd00::/64"
        );
    }
}
