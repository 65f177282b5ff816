//! LoadBalancer address pool: which `status.loadBalancer.ingress` IP each LoadBalancer Service gets.
//!
//! Decisions are made for all Services at once, so that an address is
//! never handed out twice: Services keep the address they have (if still
//! in the pool and still wanted), then `spec.loadBalancerIP` requests are
//! honoured, then the rest get the lowest free address in creation order.
//! Services of another `loadBalancerClass` are left to their controller.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{LoadBalancerIngress, Service};

/// Errors parsing a pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Not an address, a CIDR or a `first-last` range.
    #[error(
        "invalid LoadBalancer pool entry {0:?}: want a CIDR (10.0.0.0/28), a range (172.18.0.200-172.18.0.250) or an address"
    )]
    Syntax(String),
    /// A range whose end is before its start, or mixes families.
    #[error(
        "invalid LoadBalancer pool range {0:?}: the end must not be before the start, in the same IP family"
    )]
    Range(String),
}

/// Inclusive ranges of addresses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pool {
    ranges: Vec<(IpAddr, IpAddr)>,
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn from_u128(v: u128, like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(v as u32)),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(v)),
    }
}

impl Pool {
    /// Parses comma-separated CIDRs, `first-last` ranges or single addresses.
    /// In an IPv4 CIDR the network and broadcast addresses are left out.
    pub fn parse(s: &str) -> Result<Pool, PoolError> {
        let mut ranges = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || PoolError::Syntax(part.to_owned());
            if let Some((a, b)) = part.split_once('-') {
                let a: IpAddr = a.trim().parse().map_err(|_| bad())?;
                let b: IpAddr = b.trim().parse().map_err(|_| bad())?;
                if a.is_ipv4() != b.is_ipv4() || to_u128(b) < to_u128(a) {
                    return Err(PoolError::Range(part.to_owned()));
                }
                ranges.push((a, b));
            } else if let Some((ip, len)) = part.split_once('/') {
                let ip: IpAddr = ip.parse().map_err(|_| bad())?;
                let len: u32 = len.parse().map_err(|_| bad())?;
                let bits = if ip.is_ipv4() { 32 } else { 128 };
                if len > bits {
                    return Err(bad());
                }
                let host = bits - len;
                let mask: u128 = if host >= 128 {
                    u128::MAX
                } else {
                    (1u128 << host) - 1
                };
                let first = to_u128(ip) & !mask;
                let last = first | mask;
                let (first, last) = if ip.is_ipv4() && host >= 2 {
                    (first + 1, last - 1)
                } else {
                    (first, last)
                };
                ranges.push((from_u128(first, ip), from_u128(last, ip)));
            } else {
                let ip: IpAddr = part.parse().map_err(|_| bad())?;
                ranges.push((ip, ip));
            }
        }
        Ok(Pool { ranges })
    }

    /// Whether the pool has no address.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether `ip` is in the pool.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|(a, b)| {
            a.is_ipv4() == ip.is_ipv4() && to_u128(*a) <= to_u128(ip) && to_u128(ip) <= to_u128(*b)
        })
    }

    /// The lowest address not in `used`.
    pub fn first_free(&self, used: &BTreeSet<IpAddr>) -> Option<IpAddr> {
        for (a, b) in &self.ranges {
            let mut v = to_u128(*a);
            let end = to_u128(*b);
            while v <= end {
                let ip = from_u128(v, *a);
                if !used.contains(&ip) {
                    return Some(ip);
                }
                v += 1;
            }
        }
        None
    }
}

/// Whether the controller with `class` (None = the default controller) handles `svc`.
pub fn handles(svc: &Service, class: Option<&str>) -> bool {
    let spec = svc.spec.as_ref();
    spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
        && spec.and_then(|s| s.load_balancer_class.as_deref()) == class
}

fn current_ip(svc: &Service) -> Option<IpAddr> {
    svc.status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .iter()
        .find_map(|i| i.ip.as_deref().and_then(|s| s.parse().ok()))
}

fn requested_ip(svc: &Service) -> Option<Result<IpAddr, String>> {
    let r = svc
        .spec
        .as_ref()?
        .load_balancer_ip
        .as_deref()
        .filter(|s| !s.is_empty())?;
    Some(r.parse().map_err(|_| r.to_owned()))
}

/// The decision for one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    /// Set the ingress to this address.
    Ip(IpAddr),
    /// Clear any ingress this controller set (no longer a LoadBalancer of ours).
    Release,
    /// Leave it `<pending>`, with a warning for the user.
    Pending(String),
}

/// Assignments for every Service (`ns/name` → decision), given the pool and
/// this controller's class. Services another controller handles are absent.
pub fn assign(
    services: &[&Service],
    pool: &Pool,
    class: Option<&str>,
) -> BTreeMap<String, Assignment> {
    let mut out = BTreeMap::new();
    let mut used: BTreeSet<IpAddr> = BTreeSet::new();
    let key = |s: &Service| crate::cache::key_of(s);
    let mut ours: Vec<&Service> = Vec::new();
    for s in services {
        if handles(s, class) {
            ours.push(s);
        } else if class.is_none()
            || s.spec
                .as_ref()
                .and_then(|x| x.load_balancer_class.as_deref())
                == class
        {
            // Not (or no longer) a LoadBalancer: give its address back.
            if current_ip(s).is_some_and(|ip| pool.contains(ip)) {
                out.insert(key(s), Assignment::Release);
            }
        }
    }
    ours.sort_by_key(|s| (s.metadata.creation_timestamp.as_ref().map(|t| t.0), key(s)));
    // 1. Keep what is already assigned and still consistent with the request.
    let mut pending: Vec<&Service> = Vec::new();
    for s in &ours {
        match (current_ip(s), requested_ip(s)) {
            (Some(ip), req)
                if pool.contains(ip)
                    && !used.contains(&ip)
                    && req.as_ref().is_none_or(|r| r == &Ok(ip)) =>
            {
                used.insert(ip);
                out.insert(key(s), Assignment::Ip(ip));
            }
            _ => pending.push(s),
        }
    }
    // 2. Requests, then 3. the rest.
    let (requests, rest): (Vec<&Service>, Vec<&Service>) =
        pending.into_iter().partition(|s| requested_ip(s).is_some());
    for s in requests {
        let a = match requested_ip(s) {
            Some(Ok(ip)) if !pool.contains(ip) => Assignment::Pending(format!(
                "requested loadBalancerIP {ip} is not in the address pool"
            )),
            Some(Ok(ip)) if used.contains(&ip) => Assignment::Pending(format!(
                "requested loadBalancerIP {ip} is already allocated"
            )),
            Some(Ok(ip)) => {
                used.insert(ip);
                Assignment::Ip(ip)
            }
            Some(Err(raw)) => Assignment::Pending(format!(
                "requested loadBalancerIP {raw:?} is not an IP address"
            )),
            None => continue,
        };
        out.insert(key(s), a);
    }
    for s in rest {
        let a = if pool.is_empty() {
            Assignment::Pending("no LoadBalancer address pool is configured".into())
        } else {
            match pool.first_free(&used) {
                Some(ip) => {
                    used.insert(ip);
                    Assignment::Ip(ip)
                }
                None => Assignment::Pending("no addresses left in the LoadBalancer pool".into()),
            }
        };
        out.insert(key(s), a);
    }
    out
}

/// The ingress list for an address.
pub fn ingress(ip: IpAddr) -> Vec<LoadBalancerIngress> {
    vec![LoadBalancerIngress {
        ip: Some(ip.to_string()),
        ip_mode: Some("VIP".into()),
        ..Default::default()
    }]
}

/// The ingress currently in the Service status (empty when none).
pub fn current_ingress(svc: &Service) -> Vec<LoadBalancerIngress> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{LoadBalancerStatus, ServiceSpec, ServiceStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    #[test]
    fn parse_pools() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        type Row = (&'static str, Result<Vec<(IpAddr, IpAddr)>, PoolError>);
        let cases: Vec<Row> = vec![
            (
                "172.18.0.200-172.18.0.250",
                Ok(vec![(ip("172.18.0.200"), ip("172.18.0.250"))]),
            ),
            ("10.0.0.0/30", Ok(vec![(ip("10.0.0.1"), ip("10.0.0.2"))])),
            ("10.0.0.7/32", Ok(vec![(ip("10.0.0.7"), ip("10.0.0.7"))])),
            (
                "10.0.0.5, fd00::1-fd00::3",
                Ok(vec![
                    (ip("10.0.0.5"), ip("10.0.0.5")),
                    (ip("fd00::1"), ip("fd00::3")),
                ]),
            ),
            ("", Ok(vec![])),
            (
                "10.0.0.9-10.0.0.1",
                Err(PoolError::Range("10.0.0.9-10.0.0.1".into())),
            ),
            (
                "10.0.0.1-fd00::1",
                Err(PoolError::Range("10.0.0.1-fd00::1".into())),
            ),
            ("10.0.0.0/33", Err(PoolError::Syntax("10.0.0.0/33".into()))),
            ("pool", Err(PoolError::Syntax("pool".into()))),
        ];
        for (input, want) in cases {
            assert_eq!(Pool::parse(input).map(|p| p.ranges), want, "{input:?}");
        }
        assert_eq!(
            PoolError::Syntax("x".into()).to_string(),
            "invalid LoadBalancer pool entry \"x\": want a CIDR (10.0.0.0/28), a range (172.18.0.200-172.18.0.250) or an address"
        );
    }

    fn svc(
        name: &str,
        type_: &str,
        class: Option<&str>,
        requested: Option<&str>,
        current: Option<&str>,
        age: i64,
    ) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                creation_timestamp: Some(Time(
                    jiff::Timestamp::from_second(1_700_000_000 + age)
                        .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                )),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                type_: Some(type_.into()),
                load_balancer_class: class.map(Into::into),
                load_balancer_ip: requested.map(Into::into),
                ..Default::default()
            }),
            status: current.map(|c| ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(vec![LoadBalancerIngress {
                        ip: Some(c.into()),
                        ..Default::default()
                    }]),
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn assignments() {
        let pool = Pool::parse("10.1.0.1-10.1.0.3").unwrap_or_default();
        let ip = |s: &str| Assignment::Ip(s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])));
        let pending = |s: &str| Assignment::Pending(s.into());
        type Case = (&'static str, Vec<Service>, Vec<(&'static str, Assignment)>);
        let cases: Vec<Case> = vec![
            (
                "first free in creation order",
                vec![
                    svc("b", "LoadBalancer", None, None, None, 2),
                    svc("a", "LoadBalancer", None, None, None, 1),
                ],
                vec![("ns/a", ip("10.1.0.1")), ("ns/b", ip("10.1.0.2"))],
            ),
            (
                "existing kept",
                vec![
                    svc("a", "LoadBalancer", None, None, None, 1),
                    svc("b", "LoadBalancer", None, None, Some("10.1.0.1"), 2),
                ],
                vec![("ns/a", ip("10.1.0.2")), ("ns/b", ip("10.1.0.1"))],
            ),
            (
                "request honoured",
                vec![
                    svc("a", "LoadBalancer", None, None, None, 1),
                    svc("b", "LoadBalancer", None, Some("10.1.0.1"), None, 2),
                ],
                vec![("ns/a", ip("10.1.0.2")), ("ns/b", ip("10.1.0.1"))],
            ),
            (
                "request outside the pool",
                vec![svc("a", "LoadBalancer", None, Some("192.0.2.1"), None, 1)],
                vec![(
                    "ns/a",
                    pending("requested loadBalancerIP 192.0.2.1 is not in the address pool"),
                )],
            ),
            (
                "request taken",
                vec![
                    svc("a", "LoadBalancer", None, None, Some("10.1.0.3"), 1),
                    svc("b", "LoadBalancer", None, Some("10.1.0.3"), None, 2),
                ],
                vec![
                    ("ns/a", ip("10.1.0.3")),
                    (
                        "ns/b",
                        pending("requested loadBalancerIP 10.1.0.3 is already allocated"),
                    ),
                ],
            ),
            (
                "changed request moves",
                vec![svc(
                    "a",
                    "LoadBalancer",
                    None,
                    Some("10.1.0.2"),
                    Some("10.1.0.1"),
                    1,
                )],
                vec![("ns/a", ip("10.1.0.2"))],
            ),
            (
                "pool exhausted",
                (0..4)
                    .map(|i| svc(&format!("s{i}"), "LoadBalancer", None, None, None, i))
                    .collect(),
                vec![
                    ("ns/s0", ip("10.1.0.1")),
                    ("ns/s1", ip("10.1.0.2")),
                    ("ns/s2", ip("10.1.0.3")),
                    (
                        "ns/s3",
                        pending("no addresses left in the LoadBalancer pool"),
                    ),
                ],
            ),
            (
                "other class ignored",
                vec![svc(
                    "a",
                    "LoadBalancer",
                    Some("example.com/lb"),
                    None,
                    None,
                    1,
                )],
                vec![],
            ),
            (
                "type change releases",
                vec![
                    svc("a", "NodePort", None, None, Some("10.1.0.1"), 1),
                    svc("b", "ClusterIP", None, None, None, 2),
                ],
                vec![("ns/a", Assignment::Release)],
            ),
        ];
        for (name, services, want) in cases {
            let refs: Vec<&Service> = services.iter().collect();
            let got = assign(&refs, &pool, None);
            let want: BTreeMap<String, Assignment> =
                want.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            assert_eq!(got, want, "{name}");
        }
        let none = assign(
            &[&svc("a", "LoadBalancer", None, None, None, 1)],
            &Pool::default(),
            None,
        );
        assert_eq!(
            none.get("ns/a"),
            Some(&pending("no LoadBalancer address pool is configured"))
        );
        let classed = assign(
            &[&svc("a", "LoadBalancer", Some("x"), None, None, 1)],
            &pool,
            Some("x"),
        );
        assert_eq!(classed.get("ns/a"), Some(&ip("10.1.0.1")));
    }
}
