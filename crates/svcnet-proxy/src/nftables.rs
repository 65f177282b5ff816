//! nftables backend: renders the desired state as `nft -f` transactions, whole or incremental.
//!
//! Rule shape (chosen so that neither per-packet cost nor update cost grows
//! with the number of Services): service dispatch is one verdict-map lookup
//! keyed by (IP, protocol, port); endpoint choice is one lookup in a shared
//! map keyed by (IP, protocol, port, `numgen random mod N`). Chains exist
//! per endpoint *count* and policy shape (`pick-all-3`, `ext-3`, ...), shared
//! by every Service with that shape, not per Service. Adding a Service is
//! therefore only map elements. ClientIP affinity needs per-Service state
//! and gets kube-proxy-shaped chains and timeout sets, for those Services only.
//!
//! Two tables of the same shape, `ip svcnet` and `ip6 svcnet` (as upstream's
//! `ip kube-proxy` / `ip6 kube-proxy`), each holding the plans of its family,
//! written in the same `nft -f` transaction.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::backend::{Backend, BackendError, Exec, NodeSettings, Result, SyncReport};
use crate::conntrack;
use crate::plan::{Family, PortKey, PortPlan, Proto, Targets};
use crate::tracker::DesiredState;

/// Our table's name, in family `ip` and in family `ip6`.
pub const TABLE: &str = "svcnet";
/// Mark bit asking for masquerade in postrouting (upstream's 0x4000).
pub const MASQ_MARK: u32 = 0x4000;

const MASQ: &str = "meta mark set meta mark | 0x00004000";

/// Element maps and sets of the table, in declaration order (spelled for
/// `ip`; [`Fam::spell`] gives the `ip6` table's declarations).
const MAPS: &[(&str, &str)] = &[
    (
        "service-ips",
        "type ipv4_addr . inet_proto . inet_service : verdict",
    ),
    (
        "service-nodeports",
        "type inet_proto . inet_service : verdict",
    ),
    (
        "eps-all",
        "typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport",
    ),
    (
        "eps-local",
        "typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport",
    ),
    (
        "np-eps-all",
        "typeof meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport",
    ),
    (
        "np-eps-local",
        "typeof meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport",
    ),
    (
        "no-endpoint-services",
        "type ipv4_addr . inet_proto . inet_service : verdict",
    ),
    (
        "no-endpoint-nodeports",
        "type inet_proto . inet_service : verdict",
    ),
    ("cluster-ips", "type ipv4_addr"),
    ("hairpin", "type ipv4_addr . ipv4_addr"),
];

/// How one family's table spells addresses, matches and rejects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fam {
    family: Family,
    /// Table family and payload protocol: `ip` or `ip6`.
    nft: &'static str,
    /// Address type of sets: `ipv4_addr` or `ipv6_addr`.
    addr: &'static str,
    /// Loopback, never a NodePort address.
    lo: &'static str,
    /// Refusal for no endpoints / unknown ports: ICMP (v4) or ICMPv6 port unreachable.
    reject: &'static str,
}

const V4: Fam = Fam {
    family: Family::V4,
    nft: "ip",
    addr: "ipv4_addr",
    lo: "127.0.0.0/8",
    reject: "reject with icmp type port-unreachable",
};

const V6: Fam = Fam {
    family: Family::V6,
    nft: "ip6",
    addr: "ipv6_addr",
    lo: "::1",
    reject: "reject with icmpv6 type port-unreachable",
};

impl Fam {
    fn of(f: Family) -> Fam {
        match f {
            Family::V4 => V4,
            Family::V6 => V6,
        }
    }

    /// An `ip`-table text (map declarations) as this family writes it.
    fn spell(self, v4: &str) -> Cow<'_, str> {
        if self.family == Family::V4 {
            return Cow::Borrowed(v4);
        }
        Cow::Owned(
            v4.replace("ipv4_addr", "ipv6_addr")
                .replace("ip daddr", "ip6 daddr")
                .replace("ip saddr", "ip6 saddr"),
        )
    }
}

/// Everything one service port contributes to its family's table.
#[derive(Debug, Clone, Default, PartialEq)]
struct Fragment {
    /// (map or set, key, value) elements.
    elems: Vec<(&'static str, String, Option<String>)>,
    /// Shared chains this port's verdicts jump to.
    shared: BTreeSet<String>,
    /// Chains of this port alone (affinity), with rules.
    own_chains: Vec<(String, Vec<String>)>,
    /// Timeout sets of this port alone (affinity): (name, timeout seconds).
    own_sets: Vec<(String, u32)>,
    /// Largest endpoint count: the pick chains up to it must exist.
    max_n: usize,
}

/// Pick chains are created up front, in the full transaction only: nft 1.0.x
/// cannot add a rule that uses a `typeof ... numgen` map it did not define
/// in the same transaction ("conflicting protocols specified: ip vs. th").
fn is_pick(chain: &str) -> bool {
    chain.starts_with("pick-") || chain.starts_with("nppick-")
}

/// How many pick chains per family a full render creates for `max_n` endpoints.
fn pick_capacity(max_n: usize) -> usize {
    max_n.max(64).next_power_of_two()
}

/// Rules of a shared chain, derived from its name (and the table's family) alone.
fn shared_rules(name: &str, s: &NodeSettings, fam: Fam) -> Vec<String> {
    let ip = fam.nft;
    let cidr = s.cluster_cidr(fam.family);
    let parts: Vec<&str> = name.split('-').collect();
    let n = |i: usize| parts.get(i).copied().unwrap_or("1");
    match parts.first().copied() {
        Some("pick") => {
            let map = if n(1) == "all" {
                "eps-all"
            } else {
                "eps-local"
            };
            vec![format!(
                "dnat {ip} to {ip} daddr . meta l4proto . th dport . numgen random mod {} map @{map}",
                n(2)
            )]
        }
        Some("nppick") => {
            let map = if n(1) == "all" {
                "np-eps-all"
            } else {
                "np-eps-local"
            };
            vec![format!(
                "dnat {ip} to meta l4proto . th dport . numgen random mod {} map @{map}",
                n(2)
            )]
        }
        Some("int") => {
            let mut r = Vec::new();
            if s.masquerade_all {
                r.push(MASQ.to_string());
            } else if let Some(c) = cidr {
                r.push(format!("{ip} saddr != {c} {MASQ}"));
            }
            r.push(format!("goto pick-all-{}", n(1)));
            r
        }
        Some("ext") | Some("npext") => {
            let pick = if parts[0] == "ext" { "pick" } else { "nppick" };
            vec![MASQ.to_string(), format!("goto {pick}-all-{}", n(1))]
        }
        Some("extl") | Some("npextl") => {
            let pick = if parts[0] == "extl" { "pick" } else { "nppick" };
            let mut r = Vec::new();
            // Pods and the node itself reach every endpoint even under Local policy (upstream's short circuit).
            if let Some(c) = cidr {
                r.push(format!("{ip} saddr {c} goto {pick}-all-{}", n(1)));
            }
            r.push(format!(
                "fib saddr type local {MASQ} goto {pick}-all-{}",
                n(1)
            ));
            if n(2) == "0" {
                r.push("drop".to_string());
            } else {
                r.push(format!("goto {pick}-loc-{}", n(2)));
            }
            r
        }
        _ => vec![fam.reject.to_string()],
    }
}

/// Chains a shared chain itself jumps to.
fn shared_deps(name: &str) -> Vec<String> {
    let parts: Vec<&str> = name.split('-').collect();
    match parts.as_slice() {
        ["int", n] => vec![format!("pick-all-{n}")],
        ["ext", n] => vec![format!("pick-all-{n}")],
        ["npext", n] => vec![format!("nppick-all-{n}")],
        ["extl", a, l] => {
            let mut v = vec![format!("pick-all-{a}")];
            if *l != "0" {
                v.push(format!("pick-loc-{l}"));
            }
            v
        }
        ["npextl", a, l] => {
            let mut v = vec![format!("nppick-all-{a}")];
            if *l != "0" {
                v.push(format!("nppick-loc-{l}"));
            }
            v
        }
        _ => vec![],
    }
}

/// A short stable id for per-port objects.
fn port_id(key: &PortKey, salt: &str) -> String {
    // FNV-1a: stable across runs and versions, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.to_string().bytes().chain(salt.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn vip(ip: impl std::fmt::Display, proto: Proto, port: u16) -> String {
    format!("{ip} . {} . {port}", proto.lower())
}

fn ep(e: &SocketAddr) -> String {
    format!("{} . {}", e.ip(), e.port())
}

/// Renders one service port.
fn fragment(p: &PortPlan, s: &NodeSettings) -> Fragment {
    let mut f = Fragment {
        max_n: [&p.internal, &p.external, &p.cluster]
            .iter()
            .map(|t| t.endpoints().len())
            .max()
            .unwrap_or(0),
        ..Fragment::default()
    };
    let proto = p.key.proto;
    let int_local = p.internal_local;
    let add_eps = |f: &mut Fragment, map: &'static str, prefix: &str, list: &[SocketAddr]| {
        for (i, e) in list.iter().enumerate() {
            f.elems.push((map, format!("{prefix} . {i}"), Some(ep(e))));
        }
    };
    for ip in &p.cluster_ips {
        f.elems.push(("cluster-ips", ip.to_string(), None));
    }
    let mut all_eps: BTreeSet<SocketAddr> = BTreeSet::new();
    all_eps.extend(p.all_endpoints());
    for e in &all_eps {
        f.elems
            .push(("hairpin", format!("{} . {}", e.ip(), e.ip()), None));
    }
    if let Some(timeout) = p.affinity {
        affinity(&mut f, p, s, timeout);
        return f;
    }
    // Internal traffic: ClusterIPs.
    for ip in &p.cluster_ips {
        let k = vip(ip, proto, p.port);
        match &p.internal {
            Targets::Endpoints(list) => {
                let (map, chain) = if int_local {
                    ("eps-local", format!("pick-loc-{}", list.len()))
                } else if s.masquerade_all || s.cluster_cidr(p.family()).is_some() {
                    ("eps-all", format!("int-{}", list.len()))
                } else {
                    ("eps-all", format!("pick-all-{}", list.len()))
                };
                add_eps(&mut f, map, &k, list);
                f.elems
                    .push(("service-ips", k, Some(format!("goto {chain}"))));
                f.shared.insert(chain);
            }
            Targets::Drop => f.elems.push(("service-ips", k, Some("drop".into()))),
            Targets::Reject => {
                f.elems
                    .push(("no-endpoint-services", k, Some("goto reject-chain".into())))
            }
        }
    }
    // External traffic: externalIPs, LoadBalancer IPs, NodePort.
    let cluster = p.cluster.endpoints();
    let ext_ips: Vec<String> = p
        .external_ips
        .iter()
        .chain(&p.lb_ips)
        .map(|ip| vip(ip, proto, p.port))
        .collect();
    let np_key = p.node_port.map(|n| format!("{} . {n}", proto.lower()));
    let targets: Vec<(String, bool)> = ext_ips
        .into_iter()
        .map(|k| (k, false))
        .chain(np_key.map(|k| (k, true)))
        .collect();
    for (k, is_np) in targets {
        let (vmap, noep, pfx) = if is_np {
            ("service-nodeports", "no-endpoint-nodeports", "np")
        } else {
            ("service-ips", "no-endpoint-services", "")
        };
        let (all_map, loc_map) = if is_np {
            ("np-eps-all", "np-eps-local")
        } else {
            ("eps-all", "eps-local")
        };
        if cluster.is_empty() {
            f.elems.push((noep, k, Some("goto reject-chain".into())));
            continue;
        }
        let chain = if p.external_local {
            let local = p.external.endpoints();
            add_eps(&mut f, loc_map, &k, local);
            add_eps(&mut f, all_map, &k, cluster);
            format!("{pfx}extl-{}-{}", cluster.len(), local.len())
        } else {
            add_eps(&mut f, all_map, &k, cluster);
            format!("{pfx}ext-{}", cluster.len())
        };
        f.elems.push((vmap, k, Some(format!("goto {chain}"))));
        f.shared.insert(chain);
    }
    f
}

/// kube-proxy-shaped affinity: a timeout set per endpoint and a chain per endpoint.
fn affinity(f: &mut Fragment, p: &PortPlan, s: &NodeSettings, timeout: u32) {
    let proto = p.key.proto;
    let fam = Fam::of(p.family());
    let ip = fam.nft;
    let cidr = s.cluster_cidr(fam.family);
    let mut kinds: Vec<(&str, &Targets, bool, Vec<String>, bool)> = vec![(
        "int",
        &p.internal,
        s.masquerade_all || cidr.is_some(),
        p.cluster_ips
            .iter()
            .map(|ip| vip(ip, proto, p.port))
            .collect(),
        false,
    )];
    let mut ext: Vec<String> = p
        .external_ips
        .iter()
        .chain(&p.lb_ips)
        .map(|ip| vip(ip, proto, p.port))
        .collect();
    let mut np: Vec<String> = Vec::new();
    if let Some(n) = p.node_port {
        np.push(format!("{} . {n}", proto.lower()));
    }
    ext.retain(|_| true);
    kinds.push(("ext", &p.external, !p.external_local, ext, false));
    kinds.push(("np", &p.external, !p.external_local, np, true));
    // The id changes with the content, so an update adds new objects before removing old ones.
    let salt = format!("{:?}{:?}{:?}{timeout}", p.internal, p.external, s);
    let id = port_id(&p.key, &salt);
    for (kind, targets, masq, keys, is_np) in kinds {
        if keys.is_empty() {
            continue;
        }
        let (vmap, noep) = if is_np {
            ("service-nodeports", "no-endpoint-nodeports")
        } else {
            ("service-ips", "no-endpoint-services")
        };
        let list = match targets {
            Targets::Endpoints(l) => l,
            Targets::Drop => {
                for k in keys {
                    f.elems.push((vmap, k, Some("drop".into())));
                }
                continue;
            }
            Targets::Reject => {
                for k in keys {
                    f.elems.push((noep, k, Some("goto reject-chain".into())));
                }
                continue;
            }
        };
        let chain = format!("aff-{id}-{kind}");
        let mut rules = Vec::new();
        if masq {
            match (kind, cidr) {
                ("int", Some(c)) if !s.masquerade_all => {
                    rules.push(format!("{ip} saddr != {c} {MASQ}"))
                }
                _ => rules.push(MASQ.to_string()),
            }
        }
        let mut vm = Vec::new();
        for (i, e) in list.iter().enumerate() {
            let set = format!("aff-{id}-{kind}-{i}");
            let epc = format!("affep-{id}-{kind}-{i}");
            rules.push(format!("{ip} saddr @{set} goto {epc}"));
            vm.push(format!("{i} : goto {epc}"));
            f.own_sets.push((set.clone(), timeout));
            f.own_chains.push((
                epc,
                vec![
                    format!("update @{set} {{ {ip} saddr }}"),
                    format!("meta l4proto {} dnat {ip} to {e}", proto.lower()),
                ],
            ));
        }
        rules.push(format!(
            "numgen random mod {} vmap {{ {} }}",
            list.len(),
            vm.join(", ")
        ));
        f.own_chains.push((chain.clone(), rules));
        for k in keys {
            f.elems.push((vmap, k, Some(format!("goto {chain}"))));
        }
    }
}

/// The fixed part of the table: hooks, dispatch and reject chains.
fn base_chains(s: &NodeSettings, fam: Fam) -> Vec<(String, Vec<String>)> {
    let l4 = "meta l4proto { tcp, udp, sctp }";
    let (ip, lo, reject) = (fam.nft, fam.lo, fam.reject);
    let np_match = if s.node_port_cidrs(fam.family).is_empty() {
        format!("fib daddr type local {ip} daddr != {lo}")
    } else {
        format!("{ip} daddr @nodeport-ips")
    };
    vec![
        (
            "nat-prerouting".into(),
            vec![
                "type nat hook prerouting priority dstnat; policy accept;".into(),
                "jump services".into(),
            ],
        ),
        (
            "nat-output".into(),
            vec![
                "type nat hook output priority -100; policy accept;".into(),
                "jump services".into(),
            ],
        ),
        (
            "nat-postrouting".into(),
            vec![
                "type nat hook postrouting priority srcnat; policy accept;".into(),
                "meta mark & 0x00004000 == 0x00004000 masquerade".into(),
                format!("ct status dnat {ip} saddr . {ip} daddr @hairpin masquerade"),
            ],
        ),
        (
            "services".into(),
            vec![
                format!("{l4} {ip} daddr . meta l4proto . th dport vmap @service-ips"),
                format!("{np_match} {l4} meta l4proto . th dport vmap @service-nodeports"),
            ],
        ),
        (
            "filter-input".into(),
            vec![
                "type filter hook input priority -10; policy accept;".into(),
                "ct state new jump reject-check".into(),
            ],
        ),
        (
            "filter-forward".into(),
            vec![
                "type filter hook forward priority -10; policy accept;".into(),
                "ct state new jump reject-check".into(),
            ],
        ),
        (
            "filter-output".into(),
            vec![
                "type filter hook output priority -10; policy accept;".into(),
                "ct state new jump reject-check".into(),
            ],
        ),
        (
            "reject-check".into(),
            vec![
                format!("{l4} {ip} daddr . meta l4proto . th dport vmap @no-endpoint-services"),
                format!("{np_match} {l4} meta l4proto . th dport vmap @no-endpoint-nodeports"),
                format!("{ip} daddr @cluster-ips {reject}"),
            ],
        ),
        ("reject-chain".into(), vec![reject.into()]),
    ]
}

fn chain_text(out: &mut String, name: &str, rules: &[String]) {
    let _ = writeln!(out, "  chain {name} {{");
    for r in rules {
        let _ = writeln!(out, "    {r}");
    }
    out.push_str("  }\n");
}

/// Ports whose plan differs between `old` and `state` (`None`: removed), in one
/// merge pass over both sorted maps: unchanged ports cost a pointer compare.
fn changed_ports<V>(
    old: &BTreeMap<PortKey, (Arc<PortPlan>, V)>,
    state: &DesiredState,
) -> Vec<(PortKey, Option<Arc<PortPlan>>)> {
    use std::cmp::Ordering;
    let mut work = Vec::new();
    let mut oi = old.iter().peekable();
    let mut ni = state.ports.iter().peekable();
    loop {
        // The same plan (one Arc) means the same key and no change: skip
        // the key comparison, which dominates a sync that changes little.
        if let (Some((_, (q, _))), Some((_, p))) = (oi.peek(), ni.peek())
            && Arc::ptr_eq(q, p)
        {
            oi.next();
            ni.next();
            continue;
        }
        let ord = match (oi.peek(), ni.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((ok, _)), Some((nk, _))) => ok.cmp(nk),
        };
        match ord {
            Ordering::Less => {
                if let Some((k, _)) = oi.next() {
                    work.push((k.clone(), None));
                }
            }
            Ordering::Greater => {
                if let Some((k, p)) = ni.next() {
                    work.push((k.clone(), Some(p.clone())));
                }
            }
            Ordering::Equal => {
                if let (Some((_, (q, _))), Some((k, p))) = (oi.next(), ni.next())
                    && !(Arc::ptr_eq(q, p) || **q == **p)
                {
                    work.push((k.clone(), Some(p.clone())));
                }
            }
        }
    }
    work
}

/// A port's previous plan and its new one (`None`: removed), for conntrack cleanup.
type Stale = (Arc<PortPlan>, Option<Arc<PortPlan>>);

/// One table's shared objects: shared chain reference counts, pick chain
/// capacity and reference counts of elements several ports may share.
#[derive(Debug, Default)]
struct TableState {
    shared: BTreeMap<String, usize>,
    /// Pick chains 1..=pick_max exist in every pick family of the table.
    pick_max: usize,
    counted: BTreeMap<(&'static str, String), usize>,
}

/// Applied state: fragments per port (both families) and each table's shared objects.
#[derive(Debug, Default)]
struct Applied {
    frags: BTreeMap<PortKey, (Arc<PortPlan>, Fragment)>,
    /// Indexed by [`Family::index`].
    tables: [TableState; 2],
}

/// Sets whose elements several ports may share.
fn is_counted(map: &str) -> bool {
    map == "cluster-ips" || map == "hairpin"
}

impl TableState {
    fn add_refs(&mut self, f: &Fragment) -> Vec<String> {
        let mut new = Vec::new();
        let mut stack: Vec<String> = f.shared.iter().cloned().collect();
        while let Some(c) = stack.pop() {
            if is_pick(&c) {
                continue;
            }
            let n = self.shared.entry(c.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                stack.extend(shared_deps(&c));
                new.push(c);
            }
        }
        new
    }

    fn drop_refs(&mut self, f: &Fragment) -> Vec<String> {
        let mut gone = Vec::new();
        let mut stack: Vec<String> = f.shared.iter().cloned().collect();
        while let Some(c) = stack.pop() {
            if is_pick(&c) {
                continue;
            }
            if let Some(n) = self.shared.get_mut(&c) {
                *n -= 1;
                if *n == 0 {
                    self.shared.remove(&c);
                    stack.extend(shared_deps(&c));
                    gone.push(c);
                }
            }
        }
        gone
    }
}

/// Renders both tables (`ip` and `ip6`) as one `nft -f` transaction (replacing any old tables).
pub fn render_full(state: &DesiredState, s: &NodeSettings) -> String {
    let mut applied = Applied::default();
    render_full_into(state, s, &Family::ALL, &mut applied)
}

/// The text that deletes one family's table, whether it exists or not.
fn drop_table(out: &mut String, fam: Fam) {
    let t = fam.nft;
    let _ = write!(out, "table {t} {TABLE} {{\n}}\ndelete table {t} {TABLE}\n");
}

fn render_full_into(
    state: &DesiredState,
    s: &NodeSettings,
    families: &[Family],
    applied: &mut Applied,
) -> String {
    let mut out = String::new();
    for family in families {
        let fam = Fam::of(*family);
        let table = &mut applied.tables[family.index()];
        let frags: Vec<(&PortKey, &Arc<PortPlan>, Fragment)> = state
            .ports
            .iter()
            .filter(|(k, _)| k.family == *family)
            .map(|(k, p)| (k, p, fragment(p, s)))
            .collect();
        table.pick_max = pick_capacity(frags.iter().map(|f| f.2.max_n).max().unwrap_or(0));
        let mut elems: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
        let mut own = String::new();
        let mut own_sets = String::new();
        for (k, p, f) in frags {
            for (map, key, val) in &f.elems {
                if is_counted(map) {
                    let n = table.counted.entry((map, key.clone())).or_insert(0);
                    *n += 1;
                    if *n > 1 {
                        continue;
                    }
                }
                let e = match val {
                    Some(v) => format!("{key} : {v}"),
                    None => key.clone(),
                };
                elems.entry(map).or_default().push(e);
            }
            for (name, t) in &f.own_sets {
                let _ = writeln!(
                    own_sets,
                    "  set {name} {{\n    type {}\n    flags dynamic,timeout\n    timeout {t}s\n  }}",
                    fam.addr
                );
            }
            for (name, rules) in &f.own_chains {
                chain_text(&mut own, name, rules);
            }
            table.add_refs(&f);
            applied.frags.insert(k.clone(), (p.clone(), f));
        }
        drop_table(&mut out, fam);
        let _ = writeln!(out, "table {} {TABLE} {{", fam.nft);
        for (name, ty) in MAPS {
            let kind = if ty.contains(':') { "map" } else { "set" };
            let _ = write!(out, "  {kind} {name} {{\n    {}\n", fam.spell(ty));
            if let Some(list) = elems.get(name) {
                // Large element lists in chunks keep nft's parser fast.
                let _ = writeln!(out, "    elements = {{ {} }}", list.join(", "));
            }
            out.push_str("  }\n");
        }
        let np = s.node_port_cidrs(*family);
        if !np.is_empty() {
            let list: Vec<String> = np.iter().map(|c| c.to_string()).collect();
            let _ = writeln!(
                out,
                "  set nodeport-ips {{\n    type {}\n    flags interval\n    elements = {{ {} }}\n  }}",
                fam.addr,
                list.join(", ")
            );
        }
        out.push_str(&own_sets);
        for (name, rules) in base_chains(s, fam) {
            chain_text(&mut out, &name, &rules);
        }
        for pick in ["pick-all", "pick-loc", "nppick-all", "nppick-loc"] {
            for n in 1..=table.pick_max {
                let name = format!("{pick}-{n}");
                chain_text(&mut out, &name, &shared_rules(&name, s, fam));
            }
        }
        for name in table.shared.keys() {
            chain_text(&mut out, name, &shared_rules(name, s, fam));
        }
        out.push_str(&own);
        out.push_str("}\n");
    }
    out
}

fn elem_cmd(out: &mut String, fam: Fam, verb: &str, map: &str, key: &str, val: &Option<String>) {
    let t = fam.nft;
    let _ = match (verb, val) {
        ("add", Some(v)) => writeln!(out, "add element {t} {TABLE} {map} {{ {key} : {v} }}"),
        _ => writeln!(out, "{verb} element {t} {TABLE} {map} {{ {key} }}"),
    };
}

/// The nftables backend.
#[derive(Debug)]
pub struct NftBackend {
    exec: Box<dyn Exec>,
    settings: NodeSettings,
    /// The families whose table this node can have (both unless the kernel lacks one).
    families: Vec<Family>,
    applied: Option<Applied>,
    /// The last transaction sent (for tests and debugging).
    pub last_script: String,
    /// Transactions go through libnftables in-process when the exec is the
    /// real system and the library loads (see [`crate::libnft`]).
    use_library: bool,
    lib: Option<crate::libnft::LibNft>,
}

impl NftBackend {
    pub fn new(exec: Box<dyn Exec>, settings: NodeSettings) -> NftBackend {
        NftBackend {
            exec,
            settings,
            families: Family::ALL.to_vec(),
            applied: None,
            last_script: String::new(),
            use_library: true,
            lib: None,
        }
    }

    /// Runs every transaction through the `nft` binary, never libnftables
    /// (for comparison in benchmarks).
    pub fn with_binary_only(mut self) -> NftBackend {
        self.use_library = false;
        self
    }

    /// Applies `self.last_script` as one transaction.
    fn apply_script(&mut self) -> Result<()> {
        if self.use_library && self.exec.is_local_system() {
            if self.lib.is_none() {
                match crate::libnft::LibNft::open() {
                    Ok(l) => self.lib = Some(l),
                    Err(e) => {
                        tracing::info!(error = %e, "libnftables not usable; running the nft binary");
                        self.use_library = false;
                    }
                }
            }
            if let Some(l) = self.lib.as_mut() {
                return l.run(&self.last_script).map(|_| ()).map_err(|stderr| {
                    BackendError::Failed {
                        program: "nft -f - (libnftables)".into(),
                        stderr,
                    }
                });
            }
        }
        self.exec
            .run("nft", &["-f", "-"], &self.last_script)
            .map(|_| ())
    }

    /// Serves only these families (from [`NftBackend::usable_families`]); the
    /// other family's plans are skipped.
    pub fn with_families(mut self, families: Vec<Family>) -> NftBackend {
        self.families = families;
        self
    }

    /// The families whose table nft can create here, with the map shape the
    /// rules need (no netfilter, or no IPv6 in the kernel, drops a family).
    pub fn usable_families(exec: &mut dyn Exec) -> Vec<Family> {
        Family::ALL
            .into_iter()
            .filter(|f| {
                let fam = Fam::of(*f);
                let t = fam.nft;
                let ty = fam.spell(
                    "typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport",
                );
                let probe = format!(
                    "table {t} svcnet-probe {{\n  map m {{\n    {ty}\n  }}\n  chain c {{\n    type nat hook prerouting priority dstnat; policy accept;\n  }}\n}}\ndelete table {t} svcnet-probe\n"
                );
                exec.run("nft", &["-f", "-"], &probe).is_ok()
            })
            .collect()
    }

    /// Does `nft` work here (for mode auto)? The IPv4 table must work.
    pub fn usable(exec: &mut dyn Exec) -> bool {
        Self::usable_families(exec).contains(&Family::V4)
    }

    /// The incremental transaction from `old` to `state`, updating `old`.
    fn render_changes(
        &self,
        old: &mut Applied,
        state: &DesiredState,
    ) -> (String, usize, Vec<Stale>) {
        let s = &self.settings;
        let mut head = String::new(); // new chains and sets
        let mut dels = String::new();
        let mut adds = String::new();
        let mut tail = String::new(); // chains and sets to delete
        let mut changed = 0;
        let mut stale = Vec::new();
        let work = changed_ports(&old.frags, state);
        for (k, new) in work {
            if !self.families.contains(&k.family) {
                continue;
            }
            changed += 1;
            let fam = Fam::of(k.family);
            let t = fam.nft;
            let table = &mut old.tables[k.family.index()];
            let new_frag = new.as_ref().map(|p| fragment(p, s)).unwrap_or_default();
            let (old_plan, old_frag) = match old.frags.remove(&k) {
                Some((p, f)) => (Some(p), f),
                None => (None, Fragment::default()),
            };
            for c in table.add_refs(&new_frag) {
                let _ = writeln!(head, "add chain {t} {TABLE} {c}");
                for r in shared_rules(&c, s, fam) {
                    let _ = writeln!(head, "add rule {t} {TABLE} {c} {r}");
                }
            }
            for (name, tmo) in &new_frag.own_sets {
                if !old_frag.own_sets.iter().any(|(n, _)| n == name) {
                    let _ = writeln!(
                        head,
                        "add set {t} {TABLE} {name} {{ type {}; flags dynamic,timeout; timeout {tmo}s; }}",
                        fam.addr
                    );
                }
            }
            // Endpoint chains first: the service chain's vmap refers to them.
            for (name, rules) in new_frag.own_chains.iter() {
                if !old_frag.own_chains.iter().any(|(n, _)| n == name) {
                    let _ = writeln!(head, "add chain {t} {TABLE} {name}");
                    for r in rules {
                        let _ = writeln!(head, "add rule {t} {TABLE} {name} {r}");
                    }
                }
            }
            let old_set: BTreeSet<_> = old_frag.elems.iter().collect();
            let new_set: BTreeSet<_> = new_frag.elems.iter().collect();
            // Sets shared between ports (cluster IPs, hairpin pairs) are reference counted.
            for e in new_frag.elems.iter().filter(|e| is_counted(e.0)) {
                let n = table.counted.entry((e.0, e.1.clone())).or_insert(0);
                *n += 1;
                if *n == 1 {
                    elem_cmd(&mut adds, fam, "add", e.0, &e.1, &e.2);
                }
            }
            for e in old_frag.elems.iter().filter(|e| is_counted(e.0)) {
                if let Some(n) = table.counted.get_mut(&(e.0, e.1.clone())) {
                    *n -= 1;
                    if *n == 0 {
                        table.counted.remove(&(e.0, e.1.clone()));
                        elem_cmd(&mut dels, fam, "delete", e.0, &e.1, &e.2);
                    }
                }
            }
            for e in old_frag
                .elems
                .iter()
                .filter(|e| !is_counted(e.0) && !new_set.contains(e))
            {
                elem_cmd(&mut dels, fam, "delete", e.0, &e.1, &e.2);
            }
            for e in new_frag
                .elems
                .iter()
                .filter(|e| !is_counted(e.0) && !old_set.contains(e))
            {
                elem_cmd(&mut adds, fam, "add", e.0, &e.1, &e.2);
            }
            for (name, _) in old_frag.own_chains.iter().rev() {
                if !new_frag.own_chains.iter().any(|(n, _)| n == name) {
                    let _ = writeln!(tail, "delete chain {t} {TABLE} {name}");
                }
            }
            for (name, _) in &old_frag.own_sets {
                if !new_frag.own_sets.iter().any(|(n, _)| n == name) {
                    let _ = writeln!(tail, "delete set {t} {TABLE} {name}");
                }
            }
            for c in table.drop_refs(&old_frag) {
                let _ = writeln!(tail, "delete chain {t} {TABLE} {c}");
            }
            if let Some(op) = old_plan {
                stale.push((op, new.clone()));
            }
            if let Some(p) = new {
                old.frags.insert(k, (p, new_frag));
            }
        }
        (format!("{head}{dels}{adds}{tail}"), changed, stale)
    }

    /// Logs once per sync how many service ports a missing family leaves unserved.
    fn warn_skipped(&self, state: &DesiredState) {
        let skipped = state
            .ports
            .keys()
            .filter(|k| !self.families.contains(&k.family))
            .count();
        if skipped > 0 {
            tracing::warn!(
                skipped,
                "nftables: service ports of an IP family this node's nft cannot serve are skipped"
            );
        }
    }
}

impl Backend for NftBackend {
    fn mode(&self) -> &'static str {
        "nftables"
    }

    fn sync(&mut self, state: &DesiredState, full: bool) -> Result<SyncReport> {
        match self.applied.take() {
            Some(mut old)
                if !full
                    && state.ports.values().all(|p| {
                        let cap = old.tables[p.family().index()].pick_max;
                        [&p.internal, &p.external, &p.cluster]
                            .iter()
                            .all(|t| t.endpoints().len() <= cap)
                    }) =>
            {
                let (script, changed, stale) = self.render_changes(&mut old, state);
                if script.is_empty() {
                    self.applied = Some(old);
                    return Ok(SyncReport {
                        full: false,
                        changed_ports: 0,
                    });
                }
                self.last_script = script;
                // On failure `applied` stays None, so the next sync is a full one.
                self.apply_script()?;
                self.applied = Some(old);
                conntrack::clear_stale(self.exec.as_mut(), &stale);
                Ok(SyncReport {
                    full: false,
                    changed_ports: changed,
                })
            }
            prev => {
                let mut applied = Applied::default();
                self.warn_skipped(state);
                self.last_script =
                    render_full_into(state, &self.settings, &self.families, &mut applied);
                let res = self.apply_script();
                // A context that ran a whole table refills its cache with every
                // element on its next command (0.4 s at 10,000 Services); a
                // fresh one reads only what that command needs.
                self.lib = None;
                res?;
                if let Some(prev) = prev {
                    let stale: Vec<_> = prev
                        .frags
                        .values()
                        .map(|(p, _)| (p.clone(), state.ports.get(&p.key).cloned()))
                        .filter(|(p, n)| n.as_ref().is_none_or(|n| **n != **p))
                        .collect();
                    conntrack::clear_stale(self.exec.as_mut(), &stale);
                }
                let n = applied.frags.len();
                self.applied = Some(applied);
                Ok(SyncReport {
                    full: true,
                    changed_ports: n,
                })
            }
        }
    }

    fn cleanup(&mut self) -> Result<()> {
        self.applied = None;
        let mut script = String::new();
        for f in &self.families {
            drop_table(&mut script, Fam::of(*f));
        }
        self.exec.run("nft", &["-f", "-"], &script)?;
        Ok(())
    }
}
