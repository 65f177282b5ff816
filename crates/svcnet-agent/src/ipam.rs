//! Pod IPs from the node's pod CIDR, persisted so an agent restart keeps every pod's address.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Errors of the pod IP allocator.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("invalid pod CIDR {0:?}: want an IPv4 prefix such as 10.244.1.0/24")]
    BadCidr(String),
    #[error("pod CIDR {0} is full")]
    Full(String),
    #[error("allocator state {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An IPv4 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, IpamError> {
        let bad = || IpamError::BadCidr(s.to_string());
        let (a, l) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let len: u8 = l.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&len) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - len);
        Ok(Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            len,
        })
    }

    /// The gateway: the first host address (the pod bridge's address).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }

    fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let base = u32::from(self.addr);
        let size = 1u32 << (32 - self.len);
        // Skip network, gateway and broadcast.
        (2..size - 1).map(move |i| Ipv4Addr::from(base + i))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Pod uid → IP, saved as JSON after every change.
#[derive(Debug)]
pub struct Ipam {
    cidr: Cidr,
    path: PathBuf,
    assigned: BTreeMap<String, Ipv4Addr>,
}

impl Ipam {
    /// Loads the state file (missing or unreadable content starts empty; addresses outside the
    /// CIDR are dropped).
    pub fn open(cidr: Cidr, path: PathBuf) -> Ipam {
        let assigned: BTreeMap<String, Ipv4Addr> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let assigned = assigned
            .into_iter()
            .filter(|(_, ip)| cidr.hosts().any(|h| h == *ip))
            .collect();
        Ipam {
            cidr,
            path,
            assigned,
        }
    }

    /// The pod's address: the one it already has, else the lowest free one.
    pub fn allocate(&mut self, uid: &str) -> Result<Ipv4Addr, IpamError> {
        if let Some(ip) = self.assigned.get(uid) {
            return Ok(*ip);
        }
        let used: std::collections::HashSet<Ipv4Addr> = self.assigned.values().copied().collect();
        let ip = self
            .cidr
            .hosts()
            .find(|h| !used.contains(h))
            .ok_or_else(|| IpamError::Full(self.cidr.to_string()))?;
        self.assigned.insert(uid.to_string(), ip);
        self.save()?;
        Ok(ip)
    }

    pub fn release(&mut self, uid: &str) -> Result<(), IpamError> {
        if self.assigned.remove(uid).is_some() {
            self.save()?;
        }
        Ok(())
    }

    /// Uids holding addresses (to release those of pods that are gone).
    pub fn uids(&self) -> Vec<String> {
        self.assigned.keys().cloned().collect()
    }

    fn save(&self) -> Result<(), IpamError> {
        let io = |source| IpamError::Io {
            path: self.path.clone(),
            source,
        };
        if let Some(d) = self.path.parent() {
            std::fs::create_dir_all(d).map_err(io)?;
        }
        let tmp = self.path.with_extension("tmp");
        let body = serde_json::to_vec_pretty(&self.assigned).unwrap_or_default();
        std::fs::write(&tmp, body).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing() {
        for (input, want) in [
            ("10.244.1.0/24", Ok("10.244.1.0/24")),
            ("10.244.1.7/24", Ok("10.244.1.0/24")),
            (
                "10.244.1.0",
                Err("invalid pod CIDR \"10.244.1.0\": want an IPv4 prefix such as 10.244.1.0/24"),
            ),
            (
                "10.244.1.0/31",
                Err(
                    "invalid pod CIDR \"10.244.1.0/31\": want an IPv4 prefix such as 10.244.1.0/24",
                ),
            ),
            (
                "fd00::/64",
                Err("invalid pod CIDR \"fd00::/64\": want an IPv4 prefix such as 10.244.1.0/24"),
            ),
        ] {
            let got = Cidr::parse(input)
                .map(|c| c.to_string())
                .map_err(|e| e.to_string());
            assert_eq!(
                got,
                want.map(str::to_string).map_err(str::to_string),
                "{input}"
            );
        }
    }

    #[test]
    fn allocates_persists_and_fills() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ipam.json");
        let cidr = Cidr::parse("10.9.0.0/29").expect("cidr");
        let mut ipam = Ipam::open(cidr, path.clone());
        let ips: Vec<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|u| ipam.allocate(u).expect("ip").to_string())
            .collect();
        assert_eq!(
            ips,
            ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"]
        );
        assert_eq!(
            ipam.allocate("f").map_err(|e| e.to_string()),
            Err("pod CIDR 10.9.0.0/29 is full".into())
        );
        ipam.release("b").expect("release");
        // A restarted agent sees the same assignments.
        let mut again = Ipam::open(cidr, path);
        assert_eq!(again.allocate("c").expect("ip").to_string(), "10.9.0.4");
        assert_eq!(again.allocate("g").expect("ip").to_string(), "10.9.0.3");
    }
}
