//! ClusterIP and NodePort allocators: bitmaps over a range with a static band, snapshots, and upstream's error texts.
//!
//! Both allocators follow upstream's bitmap allocator with an offset
//! (KEP-3070): the bottom of the range is a "static" band that dynamic
//! allocation avoids until the upper band is full, so that users who pick
//! an address or port by hand rarely collide with an automatic one.
//! Randomness comes from the caller, so this module stays pure and testable.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

pub mod service;

/// Everything an allocator can refuse; `Display` is upstream's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// The requested IP is taken.
    #[error("provided IP is already allocated")]
    IpAllocated,
    /// The requested IP is outside the usable part of the CIDR.
    #[error("the provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}")]
    IpNotInRange { ip: IpAddr, range: String },
    /// Nothing left to hand out.
    #[error("range is full")]
    Full,
    /// The requested port is taken.
    #[error("provided port is already allocated")]
    PortAllocated,
    /// The requested port is outside the range.
    #[error("provided port is not in the valid range. The range of valid ports is {range}")]
    PortNotInRange { range: String },
    /// A snapshot of another CIDR was offered to an IP allocator.
    #[error("the provided network does not match the current range")]
    MismatchedNetwork,
    /// A snapshot of another port range was offered to a port allocator.
    #[error("the provided port range does not match the current port range")]
    MismatchedPortRange,
    /// The CIDR text does not parse.
    #[error("invalid CIDR address: {0}")]
    InvalidCidr(String),
    /// The port range text does not parse.
    #[error("invalid port range {text:?}: {reason}")]
    InvalidPortRange { text: String, reason: String },
    /// An IPv4 range too large for a bitmap; upstream refuses the same.
    #[error(
        "specified service CIDR {0} is too large; for 32-bit addresses, the mask must be >= 12"
    )]
    RangeTooLarge(String),
    /// The snapshot bitmap cannot be decoded or marks items outside the range.
    #[error("restoring snapshot encountered {0}")]
    CorruptSnapshot(String),
}

/// Result alias for this module.
pub type Result<T, E = AllocError> = std::result::Result<T, E>;

/// The persisted state of one allocator, shaped like upstream's
/// `RangeAllocation` (`range` + base64 `data` of a big-endian bitmap), so the
/// bytes mean the same thing as in a real cluster's etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocSnapshot {
    /// The range the bitmap covers: a canonical CIDR or `30000-32767`.
    pub range: String,
    /// Base64 (standard alphabet, padded) of the big-endian bitmap bytes.
    pub data: String,
}

/// A field error the registry reports for an allocation failure, without
/// depending on the field_errors module: the API server converts it.
#[derive(Debug, Clone, PartialEq)]
pub struct AllocFieldError {
    /// Field path, e.g. `spec.clusterIPs` or `spec.ports[0].nodePort`.
    pub field: String,
    /// The bad value as upstream's Go `%#v` prints it, e.g. `[]string{"10.96.0.5"}`.
    pub value: String,
    /// The same bad value as JSON, for servers that render values as JSON.
    pub bad_value: serde_json::Value,
    /// Human-readable reason.
    pub detail: String,
}

impl fmt::Display for AllocFieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: Invalid value: {}: {}",
            self.field, self.value, self.detail
        )
    }
}

/// A problem found while rebuilding an allocator from stored Services,
/// worded like upstream's repair controller events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairEvent {
    /// Position of the offending item in the rebuild input.
    pub index: usize,
    /// Event reason, e.g. `ClusterIPAlreadyAllocated`.
    pub reason: &'static str,
    /// Event message, e.g. `Cluster IP [IPv4]:10.96.0.5 was assigned to
    /// multiple services; please recreate service`.
    pub message: String,
}

/// The field error upstream returns when a requested ClusterIP cannot be
/// allocated: `spec.clusterIPs: Invalid value: []string{"10.96.0.5"}: failed
/// to allocate IP 10.96.0.5: provided IP is already allocated`.
pub fn cluster_ip_field_error(
    cluster_ips: &[String],
    ip: &str,
    err: &AllocError,
) -> AllocFieldError {
    let quoted: Vec<String> = cluster_ips.iter().map(|s| go_quote(s)).collect();
    AllocFieldError {
        field: "spec.clusterIPs".to_owned(),
        value: format!("[]string{{{}}}", quoted.join(", ")),
        bad_value: serde_json::Value::from(cluster_ips.to_vec()),
        detail: format!("failed to allocate IP {ip}: {err}"),
    }
}

/// The field error upstream returns when a requested NodePort cannot be
/// allocated: `spec.ports[0].nodePort: Invalid value: 32233: provided port is
/// already allocated`.
pub fn node_port_field_error(
    port_index: usize,
    node_port: i32,
    err: &AllocError,
) -> AllocFieldError {
    AllocFieldError {
        field: format!("spec.ports[{port_index}].nodePort"),
        value: node_port.to_string(),
        bad_value: serde_json::Value::from(node_port),
        detail: err.to_string(),
    }
}

/// The internal-error message upstream returns when no ClusterIP is left.
pub fn cluster_ip_internal_message(err: &AllocError) -> String {
    format!("failed to allocate a serviceIP: {err}")
}

/// The internal-error message upstream returns when no NodePort is left.
pub fn node_port_internal_message(err: &AllocError) -> String {
    format!("failed to allocate a nodePort: {err}")
}

/// The internal-error message upstream returns when a requested
/// healthCheckNodePort cannot be reserved.
pub fn health_check_node_port_message(port: i32, err: &AllocError) -> String {
    format!("failed to allocate requested HealthCheck NodePort {port}: {err}")
}

/// Go's `%q` for the characters a Service field can hold.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Static band size: `min(max(lo, size/step), hi)`, 0 for ranges of `lo` or less.
fn static_band(size: u128, lo: u128, step: u128, hi: u128) -> usize {
    if size <= lo {
        return 0;
    }
    // The clamp keeps the value ≤ 256, so the cast cannot truncate.
    (size / step).clamp(lo, hi) as usize
}

/// A fixed-size bitmap with a static band at the bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bitmap {
    words: Vec<u64>,
    max: usize,
    count: usize,
    offset: usize,
}

impl Bitmap {
    fn new(max: usize, offset: usize) -> Self {
        Bitmap {
            words: vec![0; max.div_ceil(64)],
            max,
            count: 0,
            offset: offset.min(max),
        }
    }

    fn has(&self, i: usize) -> bool {
        i < self.max && self.words[i / 64] & (1 << (i % 64)) != 0
    }

    /// Sets bit `i`; false when it was already set.
    fn set(&mut self, i: usize) -> bool {
        if self.has(i) {
            return false;
        }
        self.words[i / 64] |= 1 << (i % 64);
        self.count += 1;
        true
    }

    fn clear(&mut self, i: usize) {
        if self.has(i) {
            self.words[i / 64] &= !(1 << (i % 64));
            self.count -= 1;
        }
    }

    /// First free bit scanning `len` bits from `base + start`, wrapping inside `[base, base+len)`.
    fn scan(&self, base: usize, len: usize, start: usize) -> Option<usize> {
        (0..len)
            .map(|i| base + (start + i) % len)
            .find(|&at| !self.has(at))
    }

    /// Upstream's random scan with offset: a random start in the upper band,
    /// then a random start in the static band.
    fn allocate_next(&mut self, rng: &mut impl FnMut() -> u64) -> Option<usize> {
        if self.count >= self.max {
            return None;
        }
        let upper = self.max - self.offset;
        let mut found = None;
        if upper > 0 {
            let start = (rng() % upper as u64) as usize;
            found = self.scan(self.offset, upper, start);
        }
        if found.is_none() && self.offset > 0 {
            let start = (rng() % self.offset as u64) as usize;
            found = self.scan(0, self.offset, start);
        }
        let at = found?;
        self.set(at);
        Some(at)
    }

    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.max).filter(|&i| self.has(i))
    }

    /// Big-endian bytes without leading zeros, like Go's `big.Int.Bytes()`.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.words.len() * 8);
        for w in self.words.iter().rev() {
            out.extend_from_slice(&w.to_be_bytes());
        }
        let first = out.iter().position(|&b| b != 0).unwrap_or(out.len());
        out.split_off(first)
    }

    fn restore_bytes(&mut self, data: &[u8]) -> Result<()> {
        let mut words = vec![0u64; self.words.len()];
        for (pos, &byte) in data.iter().rev().enumerate() {
            if byte == 0 {
                continue;
            }
            let bit0 = pos * 8;
            for b in 0..8 {
                if byte & (1 << b) != 0 {
                    let i = bit0 + b;
                    if i >= self.max {
                        return Err(AllocError::CorruptSnapshot(format!(
                            "item {i} is outside a range of {} items",
                            self.max
                        )));
                    }
                    words[i / 64] |= 1 << (i % 64);
                }
            }
        }
        self.count = words.iter().map(|w| w.count_ones() as usize).sum();
        self.words = words;
        Ok(())
    }
}

/// Allocates ClusterIPs from one CIDR (IPv4 or IPv6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAllocator {
    cidr: String,
    /// First usable address (network + 1) as an integer.
    base: u128,
    network: u128,
    prefix: u8,
    v6: bool,
    bits: Bitmap,
}

/// IPv6 ranges are capped like upstream's bitmap allocator: 2^16 addresses.
const IPV6_MAX: u128 = 65536;

impl IpAllocator {
    /// An allocator over `cidr`, e.g. `10.96.0.0/16` or `fd00:10:96::/112`.
    /// Host bits in the address are masked off, as Go's `ParseCIDR` does.
    pub fn new(cidr: &str) -> Result<Self> {
        let invalid = || AllocError::InvalidCidr(cidr.to_owned());
        let (addr, len) = cidr.trim().split_once('/').ok_or_else(invalid)?;
        let ip: IpAddr = addr.parse().map_err(|_| invalid())?;
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let prefix: u8 = len.parse().map_err(|_| invalid())?;
        let (v6, width, value) = match ip {
            IpAddr::V4(a) => (false, 32u8, u128::from(u32::from(a))),
            IpAddr::V6(a) => (true, 128u8, u128::from(a)),
        };
        if prefix > width {
            return Err(invalid());
        }
        let host_bits = u32::from(width - prefix);
        if !v6 && host_bits > 20 {
            return Err(AllocError::RangeTooLarge(cidr.to_owned()));
        }
        let mask = if host_bits >= 128 {
            0
        } else {
            (u128::MAX >> host_bits) << host_bits
        };
        let mask = if v6 {
            mask
        } else {
            mask & u128::from(u32::MAX)
        };
        let network = value & mask;
        let size = if host_bits >= 128 {
            u128::MAX
        } else {
            1u128 << host_bits
        };
        // Usable: minus the network address, and for IPv4 the broadcast.
        let mut max = if v6 {
            size.min(IPV6_MAX)
        } else {
            size.saturating_sub(1)
        };
        max = max.saturating_sub(1);
        let offset = static_band(size, 16, 16, 256);
        let canonical = format!("{}/{prefix}", int_to_ip(network, v6));
        Ok(IpAllocator {
            cidr: canonical,
            base: network + 1,
            network,
            prefix,
            v6,
            // max ≤ 2^32, fits usize on the 64-bit hosts we build for.
            bits: Bitmap::new(usize::try_from(max).map_err(|_| invalid())?, offset),
        })
    }

    /// Rebuilds an allocator from a snapshot of the same range.
    pub fn restore(snap: &AllocSnapshot) -> Result<Self> {
        let mut a = IpAllocator::new(&snap.range)?;
        if a.cidr != snap.range.trim() {
            return Err(AllocError::MismatchedNetwork);
        }
        a.bits.restore_bytes(&base64_decode(&snap.data)?)?;
        Ok(a)
    }

    /// Restores `snap` into this allocator; refuses a snapshot of another CIDR.
    pub fn restore_into(&mut self, snap: &AllocSnapshot) -> Result<()> {
        let other = IpAllocator::new(&snap.range).map_err(|_| AllocError::MismatchedNetwork)?;
        if other.cidr != self.cidr {
            return Err(AllocError::MismatchedNetwork);
        }
        self.bits.restore_bytes(&base64_decode(&snap.data)?)
    }

    /// Rebuilds the allocator from the ClusterIPs of stored Services (of
    /// this family), reporting duplicates and out-of-range IPs like
    /// upstream's repair controller instead of failing.
    pub fn rebuild(
        cidr: &str,
        ips: impl IntoIterator<Item = IpAddr>,
    ) -> Result<(Self, Vec<RepairEvent>)> {
        let mut a = IpAllocator::new(cidr)?;
        let family = if a.v6 { "IPv6" } else { "IPv4" };
        let mut events = Vec::new();
        for (index, ip) in ips.into_iter().enumerate() {
            match a.allocate(ip) {
                Ok(()) => {}
                Err(AllocError::IpAllocated) => events.push(RepairEvent {
                    index,
                    reason: "ClusterIPAlreadyAllocated",
                    message: format!(
                        "Cluster IP [{family}]:{ip} was assigned to multiple services; please recreate service"
                    ),
                }),
                Err(_) => events.push(RepairEvent {
                    index,
                    reason: "ClusterIPOutOfRange",
                    message: format!(
                        "Cluster IP [{family}]:{ip} is not within the service CIDR {}; please recreate service",
                        a.cidr
                    ),
                }),
            }
        }
        Ok((a, events))
    }

    /// The current state, to persist with the Services that own it.
    pub fn snapshot(&self) -> AllocSnapshot {
        AllocSnapshot {
            range: self.cidr.clone(),
            data: base64_encode(&self.bits.to_bytes()),
        }
    }

    fn offset_of(&self, ip: IpAddr) -> Option<usize> {
        let value = match (ip, self.v6) {
            (IpAddr::V4(a), false) => u128::from(u32::from(a)),
            (IpAddr::V6(a), false) => u128::from(u32::from(a.to_ipv4_mapped()?)),
            (IpAddr::V6(a), true) => u128::from(a),
            (IpAddr::V4(_), true) => return None,
        };
        let width = if self.v6 { 128 } else { 32 };
        let host_bits = width - u32::from(self.prefix);
        let in_net = host_bits >= 128 || value >> host_bits == self.network >> host_bits;
        if !in_net || value < self.base {
            return None;
        }
        let off = value - self.base;
        (off < self.bits.max as u128).then_some(off as usize)
    }

    /// Reserves a specific IP (a user-requested ClusterIP).
    pub fn allocate(&mut self, ip: IpAddr) -> Result<()> {
        let off = self.offset_of(ip).ok_or_else(|| AllocError::IpNotInRange {
            ip,
            range: self.cidr.clone(),
        })?;
        if self.bits.set(off) {
            Ok(())
        } else {
            Err(AllocError::IpAllocated)
        }
    }

    /// Reserves a free IP: random in the upper band, the static band only
    /// when the upper band is full. `rng` supplies the randomness.
    pub fn allocate_next(&mut self, rng: &mut impl FnMut() -> u64) -> Result<IpAddr> {
        let off = self.bits.allocate_next(rng).ok_or(AllocError::Full)?;
        Ok(int_to_ip(self.base + off as u128, self.v6))
    }

    /// Releases an IP; releasing a free or out-of-range IP is a no-op.
    pub fn release(&mut self, ip: IpAddr) {
        if let Some(off) = self.offset_of(ip) {
            self.bits.clear(off);
        }
    }

    /// Whether `ip` is allocated.
    pub fn has(&self, ip: IpAddr) -> bool {
        self.offset_of(ip).is_some_and(|off| self.bits.has(off))
    }

    /// Whether `ip` is inside the usable range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.offset_of(ip).is_some()
    }

    /// How many IPs are allocated.
    pub fn used(&self) -> usize {
        self.bits.count
    }

    /// How many IPs are left.
    pub fn free(&self) -> usize {
        self.bits.max - self.bits.count
    }

    /// How many IPs the allocator manages in total.
    pub fn size(&self) -> usize {
        self.bits.max
    }

    /// Size of the static band at the bottom of the range.
    pub fn static_band_size(&self) -> usize {
        self.bits.offset
    }

    /// The canonical CIDR, e.g. `10.96.0.0/16`.
    pub fn cidr(&self) -> &str {
        &self.cidr
    }

    /// Whether this is an IPv6 range.
    pub fn is_ipv6(&self) -> bool {
        self.v6
    }

    /// The first usable IP (network + 1): the `kubernetes` Service's ClusterIP.
    pub fn first_ip(&self) -> IpAddr {
        int_to_ip(self.base, self.v6)
    }

    /// The IP at `index` in the usable range (0 is the first IP), if any;
    /// e.g. index 9 of 10.96.0.0/16 is 10.96.0.10, the cluster DNS address.
    pub fn ip_at(&self, index: usize) -> Option<IpAddr> {
        (index < self.bits.max).then(|| int_to_ip(self.base + index as u128, self.v6))
    }

    /// All allocated IPs in ascending order.
    pub fn allocated(&self) -> Vec<IpAddr> {
        self.bits
            .iter()
            .map(|off| int_to_ip(self.base + off as u128, self.v6))
            .collect()
    }
}

fn int_to_ip(v: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(v))
    } else {
        // IPv4 values never exceed u32 (network and offsets stay inside the /0).
        IpAddr::V4(Ipv4Addr::from(v as u32))
    }
}

/// A contiguous range of ports, printed as `30000-32767`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub base: u16,
    /// Number of ports (at least 1).
    pub size: u32,
}

impl PortRange {
    /// Parses `30000-32767`, `30000+2767` (base plus offset) or a single port.
    pub fn parse(text: &str) -> Result<Self> {
        let value = text.trim();
        let bad = |reason: &str| AllocError::InvalidPortRange {
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        let num = |s: &str| -> Result<u32> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("not a number"));
            }
            s.parse::<u32>()
                .map_err(|_| bad("the port range cannot be greater than 65535"))
        };
        let (low, high) = match (value.find('-'), value.find('+')) {
            (None, None) => {
                let p = num(value)?;
                (p, p)
            }
            (Some(i), None) => (num(&value[..i])?, num(&value[i + 1..])?),
            (None, Some(i)) => {
                let low = num(&value[..i])?;
                (low, low.saturating_add(num(&value[i + 1..])?))
            }
            (Some(_), Some(_)) => return Err(bad("unable to parse port range")),
        };
        if low > 65535 || high > 65535 {
            return Err(bad("the port range cannot be greater than 65535"));
        }
        if high < low {
            return Err(bad("end port cannot be less than start port"));
        }
        Ok(PortRange {
            base: low as u16,
            size: high - low + 1,
        })
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: i32) -> bool {
        let p = i64::from(port);
        let base = i64::from(self.base);
        p >= base && p < base + i64::from(self.size)
    }

    /// Last port of the range.
    pub fn last(&self) -> u16 {
        // size ≥ 1 and base + size - 1 ≤ 65535 by construction.
        (u32::from(self.base) + self.size - 1) as u16
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.base, self.last())
    }
}

/// Allocates NodePorts from a port range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortAllocator {
    range: PortRange,
    bits: Bitmap,
}

impl PortAllocator {
    /// An allocator over `range`.
    pub fn new(range: PortRange) -> Self {
        let offset = static_band(u128::from(range.size), 16, 32, 128);
        PortAllocator {
            range,
            bits: Bitmap::new(range.size as usize, offset),
        }
    }

    /// Rebuilds an allocator from a snapshot of the same range.
    pub fn restore(snap: &AllocSnapshot) -> Result<Self> {
        let range = PortRange::parse(&snap.range)?;
        let mut a = PortAllocator::new(range);
        if range.to_string() != snap.range.trim() {
            return Err(AllocError::MismatchedPortRange);
        }
        a.bits.restore_bytes(&base64_decode(&snap.data)?)?;
        Ok(a)
    }

    /// Restores `snap` into this allocator; refuses a snapshot of another range.
    pub fn restore_into(&mut self, snap: &AllocSnapshot) -> Result<()> {
        if snap.range.trim() != self.range.to_string() {
            return Err(AllocError::MismatchedPortRange);
        }
        self.bits.restore_bytes(&base64_decode(&snap.data)?)
    }

    /// Rebuilds the allocator from the node ports of stored Services,
    /// reporting duplicates and out-of-range ports like upstream's repair
    /// controller instead of failing.
    pub fn rebuild(
        range: PortRange,
        ports: impl IntoIterator<Item = i32>,
    ) -> (Self, Vec<RepairEvent>) {
        let mut a = PortAllocator::new(range);
        let mut events = Vec::new();
        for (index, port) in ports.into_iter().enumerate() {
            match a.allocate(port) {
                Ok(()) => {}
                Err(AllocError::PortAllocated) => events.push(RepairEvent {
                    index,
                    reason: "PortAlreadyAllocated",
                    message: format!(
                        "Port {port} was assigned to multiple services; please recreate service"
                    ),
                }),
                Err(_) => events.push(RepairEvent {
                    index,
                    reason: "PortOutOfRange",
                    message: format!(
                        "Port {port} is not within the port range {range}; please recreate service"
                    ),
                }),
            }
        }
        (a, events)
    }

    /// The current state, to persist with the Services that own it.
    pub fn snapshot(&self) -> AllocSnapshot {
        AllocSnapshot {
            range: self.range.to_string(),
            data: base64_encode(&self.bits.to_bytes()),
        }
    }

    fn offset_of(&self, port: i32) -> Option<usize> {
        self.range
            .contains(port)
            .then(|| (i64::from(port) - i64::from(self.range.base)) as usize)
    }

    /// Reserves a specific port (a user-requested nodePort).
    pub fn allocate(&mut self, port: i32) -> Result<()> {
        let off = self
            .offset_of(port)
            .ok_or_else(|| AllocError::PortNotInRange {
                range: self.range.to_string(),
            })?;
        if self.bits.set(off) {
            Ok(())
        } else {
            Err(AllocError::PortAllocated)
        }
    }

    /// Reserves a free port: random in the upper band, the static band only
    /// when the upper band is full.
    pub fn allocate_next(&mut self, rng: &mut impl FnMut() -> u64) -> Result<i32> {
        let off = self.bits.allocate_next(rng).ok_or(AllocError::Full)?;
        Ok(i32::from(self.range.base) + off as i32)
    }

    /// Releases a port; releasing a free or out-of-range port is a no-op.
    pub fn release(&mut self, port: i32) {
        if let Some(off) = self.offset_of(port) {
            self.bits.clear(off);
        }
    }

    /// Whether `port` is allocated.
    pub fn has(&self, port: i32) -> bool {
        self.offset_of(port).is_some_and(|off| self.bits.has(off))
    }

    /// How many ports are allocated.
    pub fn used(&self) -> usize {
        self.bits.count
    }

    /// How many ports are left.
    pub fn free(&self) -> usize {
        self.bits.max - self.bits.count
    }

    /// Size of the static band at the bottom of the range.
    pub fn static_band_size(&self) -> usize {
        self.bits.offset
    }

    /// The range this allocator covers.
    pub fn range(&self) -> PortRange {
        self.range
    }

    /// All allocated ports in ascending order.
    pub fn allocated(&self) -> Vec<i32> {
        self.bits
            .iter()
            .map(|off| i32::from(self.range.base) + off as i32)
            .collect()
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard padded base64, as Go's `encoding/json` writes `[]byte`.
fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Result<Vec<u8>> {
    let corrupt = || AllocError::CorruptSnapshot("data is not valid base64".to_owned());
    let bytes = text.trim().as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return Err(corrupt());
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (ci, chunk) in bytes.chunks(4).enumerate() {
        let last = ci + 1 == bytes.len() / 4;
        let pad = chunk.iter().rev().take_while(|&&b| b == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return Err(corrupt());
        }
        let mut n = 0u32;
        for (i, &b) in chunk[..4 - pad].iter().enumerate() {
            let v = B64.iter().position(|&c| c == b).ok_or_else(corrupt)?;
            n |= (v as u32) << (18 - 6 * i);
        }
        for i in 0..3 - pad {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test IP")
    }

    /// A deterministic xorshift source for tests.
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed | 1;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn ip_allocator_sizes() {
        // (cidr, canonical, size, static band, first ip)
        let cases = [
            ("10.96.0.0/16", "10.96.0.0/16", 65534, 256, "10.96.0.1"),
            ("10.96.0.0/24", "10.96.0.0/24", 254, 16, "10.96.0.1"),
            ("10.96.0.0/28", "10.96.0.0/28", 14, 0, "10.96.0.1"),
            ("10.96.0.0/27", "10.96.0.0/27", 30, 16, "10.96.0.1"),
            ("10.96.0.0/20", "10.96.0.0/20", 4094, 256, "10.96.0.1"),
            ("10.96.0.0/22", "10.96.0.0/22", 1022, 64, "10.96.0.1"),
            ("10.96.3.7/16", "10.96.0.0/16", 65534, 256, "10.96.0.1"),
            ("10.0.0.0/31", "10.0.0.0/31", 0, 0, "10.0.0.1"),
            ("10.0.0.0/32", "10.0.0.0/32", 0, 0, "10.0.0.1"),
            ("10.0.0.0/12", "10.0.0.0/12", 1048574, 256, "10.0.0.1"),
            (
                "fd00:10:96::/112",
                "fd00:10:96::/112",
                65535,
                256,
                "fd00:10:96::1",
            ),
            (
                "fd00:10:96::/64",
                "fd00:10:96::/64",
                65535,
                256,
                "fd00:10:96::1",
            ),
            ("fd00::/120", "fd00::/120", 255, 16, "fd00::1"),
            ("fd00::/124", "fd00::/124", 15, 0, "fd00::1"),
        ];
        for (cidr, canonical, size, band, first) in cases {
            let a = IpAllocator::new(cidr).expect(cidr);
            assert_eq!(a.cidr(), canonical, "{cidr}");
            assert_eq!(a.size(), size, "{cidr}");
            assert_eq!(a.free(), size, "{cidr}");
            assert_eq!(a.static_band_size(), band, "{cidr}");
            assert_eq!(a.first_ip(), ip(first), "{cidr}");
        }
    }

    #[test]
    fn invalid_cidrs() {
        for cidr in [
            "",
            "10.96.0.0",
            "10.96.0.0/33",
            "10.96.0/16",
            "fd00::/129",
            "10.96.0.0/-1",
            "x/8",
            "10.96.0.0/ 8",
        ] {
            assert_eq!(
                IpAllocator::new(cidr).expect_err(cidr).to_string(),
                format!("invalid CIDR address: {cidr}")
            );
        }
    }

    #[test]
    fn too_large_ipv4() {
        assert_eq!(
            IpAllocator::new("10.0.0.0/11")
                .expect_err("too large")
                .to_string(),
            "specified service CIDR 10.0.0.0/11 is too large; for 32-bit addresses, the mask must be >= 12"
        );
        assert_eq!(IpAllocator::new("::/0").expect("capped").size(), 65535);
    }

    #[test]
    fn ip_error_texts() {
        let mut a = IpAllocator::new("10.96.0.0/16").expect("cidr");
        a.allocate(ip("10.96.0.5")).expect("first");
        let cases: [(&str, &str); 6] = [
            ("10.96.0.5", "provided IP is already allocated"),
            (
                "10.97.0.5",
                "the provided IP (10.97.0.5) is not in the valid range. The range of valid IPs is 10.96.0.0/16",
            ),
            (
                "10.96.0.0",
                "the provided IP (10.96.0.0) is not in the valid range. The range of valid IPs is 10.96.0.0/16",
            ),
            (
                "10.96.255.255",
                "the provided IP (10.96.255.255) is not in the valid range. The range of valid IPs is 10.96.0.0/16",
            ),
            (
                "fd00::5",
                "the provided IP (fd00::5) is not in the valid range. The range of valid IPs is 10.96.0.0/16",
            ),
            ("::ffff:10.96.0.5", "provided IP is already allocated"),
        ];
        for (req, want) in cases {
            assert_eq!(
                a.allocate(ip(req)).expect_err(req).to_string(),
                want,
                "{req}"
            );
        }
        // The broadcast neighbour and the first address are fine.
        a.allocate(ip("10.96.255.254")).expect("last usable");
        a.allocate(ip("10.96.0.1")).expect("first usable");
    }

    #[test]
    fn ipv6_cap_and_range_errors() {
        let mut a = IpAllocator::new("fd00:10:96::/64").expect("cidr");
        a.allocate(ip("fd00:10:96::ffff")).expect("last capped");
        assert_eq!(
            a.allocate(ip("fd00:10:96::1:0"))
                .expect_err("beyond cap")
                .to_string(),
            "the provided IP (fd00:10:96::1:0) is not in the valid range. The range of valid IPs is fd00:10:96::/64"
        );
        assert!(!a.has(ip("10.0.0.1")));
    }

    #[test]
    fn field_error_texts() {
        let cases = [
            (
                cluster_ip_field_error(
                    &["10.96.0.5".to_owned()],
                    "10.96.0.5",
                    &AllocError::IpAllocated,
                ),
                r#"spec.clusterIPs: Invalid value: []string{"10.96.0.5"}: failed to allocate IP 10.96.0.5: provided IP is already allocated"#,
            ),
            (
                cluster_ip_field_error(
                    &["10.97.0.1".to_owned(), "fd00::1".to_owned()],
                    "10.97.0.1",
                    &AllocError::IpNotInRange {
                        ip: ip("10.97.0.1"),
                        range: "10.96.0.0/16".to_owned(),
                    },
                ),
                r#"spec.clusterIPs: Invalid value: []string{"10.97.0.1", "fd00::1"}: failed to allocate IP 10.97.0.1: the provided IP (10.97.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/16"#,
            ),
            (
                node_port_field_error(0, 32233, &AllocError::PortAllocated),
                "spec.ports[0].nodePort: Invalid value: 32233: provided port is already allocated",
            ),
            (
                node_port_field_error(
                    1,
                    80,
                    &AllocError::PortNotInRange {
                        range: "30000-32767".to_owned(),
                    },
                ),
                "spec.ports[1].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
        let e = cluster_ip_field_error(&["a\"b".to_owned()], "a\"b", &AllocError::IpAllocated);
        assert_eq!(e.value, r#"[]string{"a\"b"}"#);
        assert_eq!(e.bad_value, serde_json::json!(["a\"b"]));
        assert_eq!(
            cluster_ip_internal_message(&AllocError::Full),
            "failed to allocate a serviceIP: range is full"
        );
        assert_eq!(
            node_port_internal_message(&AllocError::Full),
            "failed to allocate a nodePort: range is full"
        );
        assert_eq!(
            health_check_node_port_message(30001, &AllocError::PortAllocated),
            "failed to allocate requested HealthCheck NodePort 30001: provided port is already allocated"
        );
    }

    #[test]
    fn port_range_parse() {
        let ok = [
            ("30000-32767", "30000-32767", 2768),
            ("30000+2767", "30000-32767", 2768),
            (" 80 ", "80-80", 1),
            ("0-65535", "0-65535", 65536),
        ];
        for (text, shown, size) in ok {
            let r = PortRange::parse(text).expect(text);
            assert_eq!(r.to_string(), shown, "{text}");
            assert_eq!(r.size, size, "{text}");
        }
        let bad = [
            ("", "invalid port range \"\": not a number"),
            ("a-b", "invalid port range \"a-b\": not a number"),
            (
                "30000-65536",
                "invalid port range \"30000-65536\": the port range cannot be greater than 65535",
            ),
            (
                "32767-30000",
                "invalid port range \"32767-30000\": end port cannot be less than start port",
            ),
            (
                "1+2-3",
                "invalid port range \"1+2-3\": unable to parse port range",
            ),
            (
                "65000+1000",
                "invalid port range \"65000+1000\": the port range cannot be greater than 65535",
            ),
        ];
        for (text, want) in bad {
            assert_eq!(PortRange::parse(text).expect_err(text).to_string(), want);
        }
    }

    #[test]
    fn port_allocator_bands_and_errors() {
        let cases = [
            ("30000-32767", 86),
            ("30000-30015", 0),
            ("30000-30100", 16),
            ("1-65535", 128),
        ];
        for (range, band) in cases {
            let a = PortAllocator::new(PortRange::parse(range).expect(range));
            assert_eq!(a.static_band_size(), band, "{range}");
        }
        let mut a = PortAllocator::new(PortRange::parse("30000-32767").expect("range"));
        a.allocate(32233).expect("first");
        let errs = [
            (32233, "provided port is already allocated"),
            (
                80,
                "provided port is not in the valid range. The range of valid ports is 30000-32767",
            ),
            (
                32768,
                "provided port is not in the valid range. The range of valid ports is 30000-32767",
            ),
            (
                -1,
                "provided port is not in the valid range. The range of valid ports is 30000-32767",
            ),
        ];
        for (port, want) in errs {
            assert_eq!(
                a.allocate(port).expect_err("err").to_string(),
                want,
                "{port}"
            );
        }
        a.allocate(30000).expect("first port");
        a.allocate(32767).expect("last port");
        assert_eq!(a.used(), 3);
        assert_eq!(a.free(), 2765);
    }

    #[test]
    fn small_range_full() {
        let mut a = IpAllocator::new("192.168.1.0/29").expect("cidr");
        let mut r = rng(7);
        let mut got: Vec<IpAddr> = (0..6)
            .map(|_| a.allocate_next(&mut r).expect("free"))
            .collect();
        got.sort();
        let want: Vec<IpAddr> = (1..=6).map(|i| ip(&format!("192.168.1.{i}"))).collect();
        assert_eq!(got, want);
        assert_eq!(
            a.allocate_next(&mut r).expect_err("full").to_string(),
            "range is full"
        );
        a.release(ip("192.168.1.3"));
        assert_eq!(a.allocate_next(&mut r), Ok(ip("192.168.1.3")));
    }

    #[test]
    fn snapshot_is_upstream_shaped() {
        let mut a = IpAllocator::new("10.96.0.0/16").expect("cidr");
        a.allocate(ip("10.96.0.1")).expect("1");
        a.allocate(ip("10.96.0.10")).expect("10");
        // Offsets 0 and 9 → bits 0 and 9 → big-endian bytes 0x02 0x01.
        let snap = a.snapshot();
        assert_eq!(
            snap,
            AllocSnapshot {
                range: "10.96.0.0/16".to_owned(),
                data: "AgE=".to_owned()
            }
        );
        assert_eq!(
            serde_json::to_string(&snap).expect("json"),
            r#"{"range":"10.96.0.0/16","data":"AgE="}"#
        );
        let b = IpAllocator::restore(&snap).expect("restore");
        assert_eq!(b, a);
        assert_eq!(
            IpAllocator::new("10.96.0.0/16")
                .expect("cidr")
                .snapshot()
                .data,
            ""
        );
    }

    #[test]
    fn restore_refusals() {
        let a = IpAllocator::new("10.96.0.0/24").expect("cidr");
        let mut other = IpAllocator::new("10.96.0.0/16").expect("cidr");
        let cases = [(
            AllocSnapshot {
                range: "10.96.0.0/24".to_owned(),
                data: "!!!!".to_owned(),
            },
            "restoring snapshot encountered data is not valid base64",
        )];
        for (snap, want) in cases {
            assert_eq!(
                IpAllocator::restore(&snap).expect_err(want).to_string(),
                want
            );
        }
        // 32 bytes with the top bit set mark item 255: beyond the 254 usable.
        let mut data = vec![0u8; 32];
        data[0] = 0x80;
        let snap = AllocSnapshot {
            range: "10.96.0.0/24".to_owned(),
            data: base64_encode(&data),
        };
        assert_eq!(
            IpAllocator::restore(&snap)
                .expect_err("corrupt")
                .to_string(),
            "restoring snapshot encountered item 255 is outside a range of 254 items"
        );
        assert_eq!(
            other.restore_into(&a.snapshot()),
            Err(AllocError::MismatchedNetwork)
        );
        assert_eq!(
            IpAllocator::restore(&AllocSnapshot {
                range: "10.96.0.5/24".to_owned(),
                data: String::new()
            }),
            Err(AllocError::MismatchedNetwork)
        );
        let mut p = PortAllocator::new(PortRange::parse("30000-32767").expect("range"));
        let q = PortAllocator::new(PortRange::parse("30000-30100").expect("range"));
        assert_eq!(
            p.restore_into(&q.snapshot())
                .expect_err("mismatch")
                .to_string(),
            "the provided port range does not match the current port range"
        );
    }

    #[test]
    fn rebuild_reports_like_repair() {
        let (a, events) = IpAllocator::rebuild(
            "10.96.0.0/16",
            [
                ip("10.96.0.1"),
                ip("10.96.0.10"),
                ip("10.96.0.10"),
                ip("10.97.0.1"),
            ],
        )
        .expect("cidr");
        assert_eq!(a.allocated(), vec![ip("10.96.0.1"), ip("10.96.0.10")]);
        assert_eq!(a.ip_at(9), Some(ip("10.96.0.10")));
        assert_eq!(a.ip_at(65534), None);
        let got: Vec<(usize, &str, &str)> = events
            .iter()
            .map(|e| (e.index, e.reason, e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    2,
                    "ClusterIPAlreadyAllocated",
                    "Cluster IP [IPv4]:10.96.0.10 was assigned to multiple services; please recreate service"
                ),
                (
                    3,
                    "ClusterIPOutOfRange",
                    "Cluster IP [IPv4]:10.97.0.1 is not within the service CIDR 10.96.0.0/16; please recreate service"
                ),
            ]
        );
        let range = PortRange::parse("30000-32767").expect("range");
        let (p, events) = PortAllocator::rebuild(range, [30001, 30001, 80]);
        assert_eq!(p.allocated(), vec![30001]);
        let got: Vec<(usize, &str, &str)> = events
            .iter()
            .map(|e| (e.index, e.reason, e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    1,
                    "PortAlreadyAllocated",
                    "Port 30001 was assigned to multiple services; please recreate service"
                ),
                (
                    2,
                    "PortOutOfRange",
                    "Port 80 is not within the port range 30000-32767; please recreate service"
                ),
            ]
        );
    }

    #[test]
    fn base64_round_trip() {
        for len in 0..20 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&data)), Ok(data));
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert!(base64_decode("Zm8=Zm8=").is_err());
        assert!(base64_decode("Zm8").is_err());
    }

    proptest! {
        #[test]
        fn never_double_allocates(seed in any::<u64>(), n in 1usize..300) {
            let mut a = IpAllocator::new("10.0.0.0/23").expect("cidr");
            let mut r = rng(seed);
            let mut seen = std::collections::HashSet::new();
            for _ in 0..n {
                let got = a.allocate_next(&mut r).expect("room");
                prop_assert!(seen.insert(got));
                prop_assert!(a.has(got));
                prop_assert_eq!(a.allocate(got), Err(AllocError::IpAllocated));
            }
            prop_assert_eq!(a.used(), n);
        }

        #[test]
        fn dynamic_avoids_static_band_until_upper_full(seed in any::<u64>()) {
            let mut p = PortAllocator::new(PortRange::parse("30000-30255").expect("range"));
            let band = p.static_band_size();
            prop_assert_eq!(band, 16);
            let mut r = rng(seed);
            for _ in 0..(256 - band) {
                let port = p.allocate_next(&mut r).expect("room");
                prop_assert!(port >= 30000 + band as i32, "{} in static band", port);
            }
            for _ in 0..band {
                let port = p.allocate_next(&mut r).expect("room");
                prop_assert!(port < 30000 + band as i32);
            }
            prop_assert_eq!(p.allocate_next(&mut r), Err(AllocError::Full));
        }

        #[test]
        fn release_then_reuse(seed in any::<u64>(), pick in 0usize..254) {
            let mut a = IpAllocator::new("10.1.0.0/24").expect("cidr");
            let mut r = rng(seed);
            let all: Vec<IpAddr> = (0..254).map(|_| a.allocate_next(&mut r).expect("room")).collect();
            prop_assert_eq!(a.allocate_next(&mut r), Err(AllocError::Full));
            let victim = all[pick];
            a.release(victim);
            prop_assert!(!a.has(victim));
            prop_assert_eq!(a.free(), 1);
            prop_assert_eq!(a.allocate_next(&mut r), Ok(victim));
            a.release(victim);
            prop_assert_eq!(a.allocate(victim), Ok(()));
        }

        #[test]
        fn snapshot_round_trip(seed in any::<u64>(), n in 0usize..500, v6 in any::<bool>()) {
            let cidr = if v6 { "fd00::/118" } else { "10.2.0.0/22" };
            let mut a = IpAllocator::new(cidr).expect("cidr");
            let mut r = rng(seed);
            for _ in 0..n {
                a.allocate_next(&mut r).expect("room");
            }
            let snap = a.snapshot();
            let json = serde_json::to_string(&snap).expect("json");
            let back: AllocSnapshot = serde_json::from_str(&json).expect("parse");
            let b = IpAllocator::restore(&back).expect("restore");
            prop_assert_eq!(b.used(), n);
            prop_assert_eq!(b.allocated(), a.allocated());

            let mut p = PortAllocator::new(PortRange::parse("30000-32767").expect("range"));
            for _ in 0..n {
                p.allocate_next(&mut r).expect("room");
            }
            let q = PortAllocator::restore(&p.snapshot()).expect("restore");
            prop_assert_eq!(q.allocated(), p.allocated());
        }

        #[test]
        fn allocate_all_then_full(seed in any::<u64>()) {
            let mut p = PortAllocator::new(PortRange::parse("30000+99").expect("range"));
            let mut r = rng(seed);
            let mut got: Vec<i32> = (0..100).map(|_| p.allocate_next(&mut r).expect("room")).collect();
            got.sort_unstable();
            prop_assert_eq!(got, (30000..30100).collect::<Vec<_>>());
            prop_assert_eq!(p.allocate_next(&mut r).map_err(|e| e.to_string()), Err("range is full".to_owned()));
            prop_assert_eq!(p.free(), 0);
        }
    }
}
