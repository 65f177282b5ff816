//! IPv4 prefixes (`a.b.c.d/n`): parsing, display and the sub-prefix arithmetic the lab plan needs.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a prefix string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("invalid CIDR {0:?}: expected an IPv4 prefix such as 172.18.0.0/24")]
    Syntax(String),
    #[error("invalid CIDR {0:?}: the prefix length must be between 0 and 32")]
    Length(String),
    #[error("invalid CIDR {input:?}: host bits are set (did you mean {network}?)")]
    HostBits { input: String, network: String },
}

/// An IPv4 network prefix with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    len: u8,
}

impl Ipv4Net {
    /// A prefix from a network address and length; `None` when host bits are set or len > 32.
    pub fn new(addr: Ipv4Addr, len: u8) -> Option<Self> {
        if len > 32 || u32::from(addr) & !mask(len) != 0 {
            return None;
        }
        Some(Ipv4Net { addr, len })
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Number of addresses in the prefix (2^(32-len)), saturating at u32::MAX for /0.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.len))
    }

    /// The `offset`-th address of the prefix, if it lies inside it.
    pub fn host(&self, offset: u32) -> Option<Ipv4Addr> {
        (u64::from(offset) < self.size()).then(|| Ipv4Addr::from(u32::from(self.addr) + offset))
    }

    /// The `index`-th sub-prefix of length `len` (e.g. the i-th /24 of a /16).
    pub fn subnet(&self, len: u8, index: u32) -> Option<Ipv4Net> {
        if len < self.len || len > 32 {
            return None;
        }
        let count = 1u64 << (len - self.len);
        if u64::from(index) >= count {
            return None;
        }
        let step = 1u64 << (32 - u32::from(len));
        let base = u64::from(u32::from(self.addr)) + u64::from(index) * step;
        Ipv4Net::new(Ipv4Addr::from(u32::try_from(base).ok()?), len)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.len) == u32::from(self.addr)
    }

    /// True when the two prefixes share any address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Net {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| CidrError::Syntax(s.into()))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| CidrError::Syntax(s.into()))?;
        // Reject "+1" and similar forms that u8's parser would accept.
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CidrError::Syntax(s.into()));
        }
        let len: u8 = len.parse().map_err(|_| CidrError::Length(s.into()))?;
        if len > 32 {
            return Err(CidrError::Length(s.into()));
        }
        let network = Ipv4Addr::from(u32::from(ip) & mask(len));
        if network != ip {
            return Err(CidrError::HostBits {
                input: s.into(),
                network: format!("{network}/{len}"),
            });
        }
        Ok(Ipv4Net { addr: ip, len })
    }
}

impl TryFrom<String> for Ipv4Net {
    type Error = CidrError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Ipv4Net> for String {
    fn from(n: Ipv4Net) -> String {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("172.18.0.0/24", Ok("172.18.0.0/24")),
            ("10.244.0.0/16", Ok("10.244.0.0/16")),
            ("0.0.0.0/0", Ok("0.0.0.0/0")),
            ("10.0.0.7/32", Ok("10.0.0.7/32")),
            (
                "10.244.1.0/16",
                Err(
                    "invalid CIDR \"10.244.1.0/16\": host bits are set (did you mean 10.244.0.0/16?)",
                ),
            ),
            (
                "10.0.0.0/33",
                Err("invalid CIDR \"10.0.0.0/33\": the prefix length must be between 0 and 32"),
            ),
            (
                "10.0.0.0/999",
                Err("invalid CIDR \"10.0.0.0/999\": the prefix length must be between 0 and 32"),
            ),
            (
                "10.0.0.0",
                Err("invalid CIDR \"10.0.0.0\": expected an IPv4 prefix such as 172.18.0.0/24"),
            ),
            (
                "10.0.0.0/+8",
                Err("invalid CIDR \"10.0.0.0/+8\": expected an IPv4 prefix such as 172.18.0.0/24"),
            ),
            (
                "fd00::/8",
                Err("invalid CIDR \"fd00::/8\": expected an IPv4 prefix such as 172.18.0.0/24"),
            ),
            (
                "",
                Err("invalid CIDR \"\": expected an IPv4 prefix such as 172.18.0.0/24"),
            ),
        ];
        for (input, want) in cases {
            let got = input
                .parse::<Ipv4Net>()
                .map(|n| n.to_string())
                .map_err(|e| e.to_string());
            assert_eq!(
                got,
                want.map(String::from).map_err(String::from),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn arithmetic_table() {
        let pods: Ipv4Net = "10.244.0.0/16".parse().unwrap();
        let cases: &[(u8, u32, Option<&str>)] = &[
            (24, 0, Some("10.244.0.0/24")),
            (24, 3, Some("10.244.3.0/24")),
            (24, 255, Some("10.244.255.0/24")),
            (24, 256, None),
            (15, 0, None),
            (16, 0, Some("10.244.0.0/16")),
            (16, 1, None),
        ];
        for (len, i, want) in cases {
            assert_eq!(
                pods.subnet(*len, *i).map(|n| n.to_string()).as_deref(),
                *want,
                "/{len} #{i}"
            );
        }
        let nodes: Ipv4Net = "172.18.0.0/24".parse().unwrap();
        assert_eq!(nodes.host(10), Some(Ipv4Addr::new(172, 18, 0, 10)));
        assert_eq!(nodes.host(255), Some(Ipv4Addr::new(172, 18, 0, 255)));
        assert_eq!(nodes.host(256), None);
        assert!(nodes.contains(Ipv4Addr::new(172, 18, 0, 200)));
        assert!(!nodes.contains(Ipv4Addr::new(172, 18, 1, 0)));
        let all: Ipv4Net = "0.0.0.0/0".parse().unwrap();
        assert_eq!(all.size(), 1 << 32);
        assert!(all.overlaps(&nodes) && nodes.overlaps(&all));
        assert!(!nodes.overlaps(&pods));
    }
}
