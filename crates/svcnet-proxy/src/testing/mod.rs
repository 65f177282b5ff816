//! Test support: packets, trace outcomes, and interpreters of the generated nftables and iptables rules.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use crate::plan::Proto;

pub(crate) mod ipt_trace;
pub(crate) mod nft_trace;

/// The first packet of a new connection.
#[derive(Debug, Clone)]
pub(crate) struct Packet {
    pub(crate) src: IpAddr,
    pub(crate) proto: Proto,
    pub(crate) dst: IpAddr,
    pub(crate) dport: u16,
    /// Sent by a process of this node (output hook) rather than received (prerouting).
    pub(crate) local_origin: bool,
    /// The destination is an address of this node.
    pub(crate) dst_local: bool,
}

/// Every way a traced packet may end: DNAT targets (with masquerade) or plain verdicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    targets: BTreeSet<String>,
    plain: BTreeSet<String>,
}

impl Outcome {
    pub(crate) fn from_parts(targets: BTreeSet<String>, mut plain: BTreeSet<String>) -> Outcome {
        if !targets.is_empty() {
            plain.remove("ACCEPT");
        }
        Outcome { targets, plain }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<&str> = self
            .targets
            .iter()
            .chain(&self.plain)
            .map(String::as_str)
            .collect();
        write!(f, "{}", all.join(", "))
    }
}
