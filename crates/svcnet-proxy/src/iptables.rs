//! iptables backend: kube-proxy-shaped rules loaded with `iptables-restore`, whole or for changed Services only.
//!
//! Shape (as upstream): `SVCNET-SERVICES` is a linear list of (VIP, port)
//! matches jumping to a chain per service port (`SVCNET-SVC-*`, `-SVL-*`
//! for node-local endpoints, `-EXT-*` for external traffic) which picks an
//! endpoint chain (`SVCNET-SEP-*`) with `statistic --mode random`;
//! affinity uses `recent`. Rejects and drops live in the filter table.
//!
//! IPv6 plans get the same shape through `ip6tables-restore` (or
//! `ip6tables-legacy-restore` when the IPv4 side uses the legacy variant);
//! a family whose binary or kernel support is missing is skipped with a
//! warning, not a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::backend::{Backend, Exec, NodeSettings, Result, SyncReport};
use crate::conntrack;
use crate::plan::{Family, PortKey, PortPlan, Targets};
use crate::tracker::DesiredState;

const SERVICES: &str = "SVCNET-SERVICES";
const NODEPORTS: &str = "SVCNET-NODEPORTS";
const POSTROUTING: &str = "SVCNET-POSTROUTING";
const MARK_MASQ: &str = "SVCNET-MARK-MASQ";
const FILTER: &str = "SVCNET-FILTER";

/// Chains and rules of one service port.
#[derive(Debug, Clone, Default, PartialEq)]
struct Fragment {
    /// Rules for the nat `SVCNET-SERVICES` and `SVCNET-NODEPORTS` lists.
    services: Vec<String>,
    nodeports: Vec<String>,
    /// Rules for the filter list.
    filter: Vec<String>,
    /// Own nat chains with their rules.
    chains: BTreeMap<String, Vec<String>>,
}

fn hash(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016X}")
}

/// Host prefix length of one family (`/32`, `/128`).
fn host_len(f: Family) -> u8 {
    match f {
        Family::V4 => 32,
        Family::V6 => 128,
    }
}

/// Loopback, never a NodePort address.
fn loopback(f: Family) -> &'static str {
    match f {
        Family::V4 => "127.0.0.0/8",
        Family::V6 => "::1/128",
    }
}

/// The iptables program of a family: `iptables` → `ip6tables`, `iptables-legacy` → `ip6tables-legacy`.
pub fn binary_for(v4: &str, f: Family) -> String {
    match f {
        Family::V4 => v4.to_string(),
        Family::V6 => v4.replacen("iptables", "ip6tables", 1),
    }
}

fn sep_name(key: &PortKey, ep: &SocketAddr) -> String {
    format!("SVCNET-SEP-{}", hash(&format!("{key}{ep}")))
}

/// The endpoint-choice chain body: affinity checks, then random choice.
fn pick_rules(key: &PortKey, eps: &[SocketAddr], affinity: Option<u32>) -> Vec<String> {
    let mut r = Vec::new();
    if let Some(t) = affinity {
        for e in eps {
            let sep = sep_name(key, e);
            r.push(format!(
                "-m recent --name {sep} --rcheck --seconds {t} --reap -j {sep}"
            ));
        }
    }
    let n = eps.len();
    for (i, e) in eps.iter().enumerate() {
        let sep = sep_name(key, e);
        if i + 1 == n {
            r.push(format!("-j {sep}"));
        } else {
            let prob = 1.0 / (n - i) as f64;
            r.push(format!(
                "-m statistic --mode random --probability {prob:.10} -j {sep}"
            ));
        }
    }
    r
}

fn fragment(p: &PortPlan, s: &NodeSettings) -> Fragment {
    let mut f = Fragment::default();
    let key = &p.key;
    let id = hash(&key.to_string());
    let proto = p.key.proto.lower();
    let svc = format!("SVCNET-SVC-{id}");
    let svl = format!("SVCNET-SVL-{id}");
    let ext = format!("SVCNET-EXT-{id}");
    let fam = p.family();
    let host = host_len(fam);
    let m = |ip: &dyn std::fmt::Display, port: u16| {
        format!("-d {ip}/{host} -p {proto} -m {proto} --dport {port}")
    };
    let cidr = s.cluster_cidr(fam);
    let mut seps: BTreeSet<SocketAddr> = BTreeSet::new();
    // Cluster-policy chain.
    if let Targets::Endpoints(list) = &p.cluster {
        let mut rules = Vec::new();
        if s.masquerade_all {
            rules.push(format!("-j {MARK_MASQ}"));
        } else if let Some(c) = cidr {
            rules.push(format!("! -s {c} -j {MARK_MASQ}"));
        }
        rules.extend(pick_rules(key, list, p.affinity));
        f.chains.insert(svc.clone(), rules);
        seps.extend(list.iter().copied());
    }
    let local_list: Option<&Vec<SocketAddr>> = match (&p.internal, &p.external) {
        (Targets::Endpoints(l), _) if p.internal_local => Some(l),
        (_, Targets::Endpoints(l)) if p.external_local => Some(l),
        _ => None,
    };
    if let Some(l) = local_list {
        f.chains.insert(svl.clone(), pick_rules(key, l, p.affinity));
        seps.extend(l.iter().copied());
    }
    for ip in &p.cluster_ips {
        match &p.internal {
            Targets::Endpoints(_) => {
                let target = if p.internal_local { &svl } else { &svc };
                f.services.push(format!("{} -j {target}", m(ip, p.port)));
            }
            Targets::Drop => f.filter.push(format!("{} -j DROP", m(ip, p.port))),
            Targets::Reject => f.filter.push(format!("{} -j REJECT", m(ip, p.port))),
        }
    }
    if p.has_external() {
        if p.cluster.endpoints().is_empty() {
            for ip in p.external_ips.iter().chain(&p.lb_ips) {
                f.filter.push(format!("{} -j REJECT", m(ip, p.port)));
            }
            if let Some(np) = p.node_port {
                f.filter.push(format!(
                    "-m addrtype --dst-type LOCAL -p {proto} -m {proto} --dport {np} -j REJECT"
                ));
            }
        } else {
            let mut rules = Vec::new();
            if p.external_local {
                if let Some(c) = cidr {
                    rules.push(format!("-s {c} -j {svc}"));
                }
                rules.push(format!("-m addrtype --src-type LOCAL -j {MARK_MASQ}"));
                rules.push(format!("-m addrtype --src-type LOCAL -j {svc}"));
                if p.external.endpoints().is_empty() {
                    // Nothing local: leave it un-NATed for the filter table to drop.
                    for ip in p.external_ips.iter().chain(&p.lb_ips) {
                        f.filter.push(format!("{} -j DROP", m(ip, p.port)));
                    }
                    if let Some(np) = p.node_port {
                        f.filter.push(format!("-m addrtype --dst-type LOCAL -p {proto} -m {proto} --dport {np} -j DROP"));
                    }
                } else {
                    rules.push(format!("-j {svl}"));
                }
            } else {
                rules.push(format!("-j {MARK_MASQ}"));
                rules.push(format!("-j {svc}"));
            }
            f.chains.insert(ext.clone(), rules);
            for ip in p.external_ips.iter().chain(&p.lb_ips) {
                f.services.push(format!("{} -j {ext}", m(ip, p.port)));
            }
            if let Some(np) = p.node_port {
                f.nodeports
                    .push(format!("-p {proto} -m {proto} --dport {np} -j {ext}"));
            }
        }
    }
    for e in seps {
        let sep = sep_name(key, &e);
        let mut rules = vec![format!("-s {}/{host} -j {MARK_MASQ}", e.ip())];
        let recent = if p.affinity.is_some() {
            format!("-m recent --name {sep} --set ")
        } else {
            String::new()
        };
        rules.push(format!(
            "-p {proto} -m {proto} {recent}-j DNAT --to-destination {e}"
        ));
        f.chains.insert(sep, rules);
    }
    f
}

fn lists(
    frags: &BTreeMap<PortKey, (Arc<PortPlan>, Fragment)>,
    s: &NodeSettings,
    fam: Family,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut services = Vec::new();
    let mut nodeports = Vec::new();
    let mut filter = Vec::new();
    let mut cluster_ips = BTreeSet::new();
    for (p, f) in frags.values() {
        services.extend(f.services.iter().cloned());
        nodeports.extend(f.nodeports.iter().cloned());
        filter.extend(f.filter.iter().cloned());
        cluster_ips.extend(p.cluster_ips.iter().copied());
    }
    let np = s.node_port_cidrs(fam);
    if np.is_empty() {
        services.push(format!(
            "! -d {} -m addrtype --dst-type LOCAL -j {NODEPORTS}",
            loopback(fam)
        ));
    } else {
        for c in &np {
            services.push(format!("-d {c} -j {NODEPORTS}"));
        }
    }
    // Traffic to a ClusterIP on a port it does not have.
    for ip in cluster_ips {
        filter.push(format!("-d {ip}/{} -j REJECT", host_len(fam)));
    }
    (services, nodeports, filter)
}

fn chain_block(out: &mut String, name: &str, rules: &[String]) {
    for r in rules {
        let _ = writeln!(out, "-A {name} {r}");
    }
}

/// Renders one family's whole ruleset as one `iptables-restore --noflush`
/// (or `ip6tables-restore`) input.
pub fn render_full(state: &DesiredState, s: &NodeSettings, fam: Family) -> String {
    let frags: BTreeMap<PortKey, (Arc<PortPlan>, Fragment)> = state
        .ports
        .iter()
        .filter(|(k, _)| k.family == fam)
        .map(|(k, p)| (k.clone(), (p.clone(), fragment(p, s))))
        .collect();
    render(&frags, s, fam, None, &BTreeSet::new())
}

/// `only`: render just these chains (partial restore), plus the lists.
fn render(
    frags: &BTreeMap<PortKey, (Arc<PortPlan>, Fragment)>,
    s: &NodeSettings,
    fam: Family,
    only: Option<&BTreeSet<String>>,
    delete: &BTreeSet<String>,
) -> String {
    let (services, nodeports, filter) = lists(frags, s, fam);
    let mut out = String::from("*nat\n");
    let fixed = [SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ];
    let mut decl = String::new();
    let mut body = String::new();
    for c in fixed {
        if only.is_none() || c == SERVICES || c == NODEPORTS {
            let _ = writeln!(decl, ":{c} - [0:0]");
        }
    }
    if only.is_none() {
        chain_block(&mut body, MARK_MASQ, &["-j MARK --or-mark 0x4000".into()]);
        chain_block(
            &mut body,
            POSTROUTING,
            &[
                "-m mark ! --mark 0x4000/0x4000 -j RETURN".into(),
                "-j MARK --xor-mark 0x4000".into(),
                "-j MASQUERADE".into(),
            ],
        );
    }
    for (_, f) in frags.values() {
        for (name, rules) in &f.chains {
            if only.is_none_or(|o| o.contains(name)) {
                let _ = writeln!(decl, ":{name} - [0:0]");
                chain_block(&mut body, name, rules);
            }
        }
    }
    chain_block(&mut body, SERVICES, &services);
    chain_block(&mut body, NODEPORTS, &nodeports);
    out.push_str(&decl);
    out.push_str(&body);
    // A chain must be empty and unreferenced before -X: flush them all first.
    for c in delete {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    for c in delete {
        let _ = writeln!(out, "-X {c}");
    }
    out.push_str("COMMIT\n*filter\n");
    let _ = writeln!(out, ":{FILTER} - [0:0]");
    chain_block(&mut out, FILTER, &filter);
    out.push_str("COMMIT\n");
    out
}

/// Jump rules from the built-in chains: (table, chain, rule args).
const HOOKS: &[(&str, &str, &str)] = &[
    (
        "nat",
        "PREROUTING",
        "-m comment --comment svcnet -j SVCNET-SERVICES",
    ),
    (
        "nat",
        "OUTPUT",
        "-m comment --comment svcnet -j SVCNET-SERVICES",
    ),
    (
        "nat",
        "POSTROUTING",
        "-m comment --comment svcnet -j SVCNET-POSTROUTING",
    ),
    (
        "filter",
        "INPUT",
        "-m conntrack --ctstate NEW -m comment --comment svcnet -j SVCNET-FILTER",
    ),
    (
        "filter",
        "FORWARD",
        "-m conntrack --ctstate NEW -m comment --comment svcnet -j SVCNET-FILTER",
    ),
    (
        "filter",
        "OUTPUT",
        "-m conntrack --ctstate NEW -m comment --comment svcnet -j SVCNET-FILTER",
    ),
];

type Frags = BTreeMap<PortKey, (Arc<PortPlan>, Fragment)>;

/// The iptables backend: one ruleset per family, each restored on its own.
#[derive(Debug)]
pub struct IptBackend {
    exec: Box<dyn Exec>,
    settings: NodeSettings,
    /// `iptables` or `iptables-legacy` (the restore binary adds `-restore`;
    /// the IPv6 one is [`binary_for`]).
    binary: String,
    /// Families this node's binaries and kernel support.
    families: Vec<Family>,
    /// Applied fragments, indexed by [`Family::index`].
    applied: [Option<Frags>; 2],
    pub last_script: String,
}

impl IptBackend {
    pub fn new(exec: Box<dyn Exec>, settings: NodeSettings, binary: &str) -> IptBackend {
        IptBackend {
            exec,
            settings,
            binary: binary.to_string(),
            families: Family::ALL.to_vec(),
            applied: [None, None],
            last_script: String::new(),
        }
    }

    /// Serves only these families (from [`IptBackend::usable_families`]).
    pub fn with_families(mut self, families: Vec<Family>) -> IptBackend {
        self.families = families;
        self
    }

    /// Does this iptables variant work here (for mode auto)?
    pub fn usable(exec: &mut dyn Exec, binary: &str) -> bool {
        exec.run(binary, &["-w", "-t", "nat", "-S", "POSTROUTING"], "")
            .is_ok()
    }

    /// The families whose variant of `binary` (`iptables`, `ip6tables`) works
    /// here; a missing family is logged and skipped.
    pub fn usable_families(exec: &mut dyn Exec, binary: &str) -> Vec<Family> {
        Family::ALL
            .into_iter()
            .filter(|f| {
                let bin = binary_for(binary, *f);
                let ok = Self::usable(exec, &bin);
                if !ok {
                    tracing::warn!(
                        binary = %bin,
                        family = f.api_name(),
                        "iptables: {bin} unusable here; {} Services are not served",
                        f.api_name()
                    );
                }
                ok
            })
            .collect()
    }

    fn restore(&mut self, fam: Family, script: String) -> Result<()> {
        self.last_script = script;
        let bin = format!("{}-restore", binary_for(&self.binary, fam));
        self.exec
            .run(&bin, &["-w", "--noflush"], &self.last_script)?;
        Ok(())
    }

    fn ensure_hooks(&mut self, fam: Family) -> Result<()> {
        let bin = binary_for(&self.binary, fam);
        for (table, chain, rule) in HOOKS {
            let args: Vec<&str> = rule.split(' ').collect();
            let mut check = vec!["-w", "-t", table, "-C", chain];
            check.extend(&args);
            if self.exec.run(&bin, &check, "").is_err() {
                let mut ins = vec!["-w", "-t", table, "-I", chain];
                ins.extend(&args);
                self.exec.run(&bin, &ins, "")?;
            }
        }
        Ok(())
    }

    /// Syncs one family's ruleset with the plans of that family.
    fn sync_family(&mut self, fam: Family, state: &DesiredState, full: bool) -> Result<SyncReport> {
        let s = self.settings.clone();
        let ports = || state.ports.iter().filter(|(k, _)| k.family == fam);
        let new: Frags = match &self.applied[fam.index()] {
            Some(old) if !full => ports()
                .map(|(k, p)| {
                    let f = match old.get(k) {
                        Some((q, f)) if Arc::ptr_eq(q, p) || **q == **p => f.clone(),
                        _ => fragment(p, &s),
                    };
                    (k.clone(), (p.clone(), f))
                })
                .collect(),
            _ => ports()
                .map(|(k, p)| (k.clone(), (p.clone(), fragment(p, &s))))
                .collect(),
        };
        let old = self.applied[fam.index()].take();
        let stale: Vec<(Arc<PortPlan>, Option<Arc<PortPlan>>)> = old
            .iter()
            .flatten()
            .filter(|(k, (p, _))| state.ports.get(*k).is_none_or(|n| **n != **p))
            .map(|(k, (p, _))| (p.clone(), state.ports.get(k).cloned()))
            .collect();
        let report = match (&old, full) {
            (Some(old), false) => {
                let mut only = BTreeSet::new();
                let mut changed = 0;
                for (k, (p, f)) in &new {
                    if old.get(k).is_none_or(|(q, _)| **q != **p) {
                        changed += 1;
                        for (c, rules) in &f.chains {
                            if old.get(k).and_then(|(_, of)| of.chains.get(c)) != Some(rules) {
                                only.insert(c.clone());
                            }
                        }
                    }
                }
                let live: BTreeSet<&String> =
                    new.values().flat_map(|(_, f)| f.chains.keys()).collect();
                let delete: BTreeSet<String> = old
                    .values()
                    .flat_map(|(_, f)| f.chains.keys())
                    .filter(|c| !live.contains(c))
                    .cloned()
                    .collect();
                changed += old.keys().filter(|k| !new.contains_key(*k)).count();
                if changed == 0 {
                    self.applied[fam.index()] = Some(new);
                    return Ok(SyncReport {
                        full: false,
                        changed_ports: 0,
                    });
                }
                self.restore(fam, render(&new, &s, fam, Some(&only), &delete))?;
                SyncReport {
                    full: false,
                    changed_ports: changed,
                }
            }
            _ => {
                let delete: BTreeSet<String> = old
                    .iter()
                    .flatten()
                    .flat_map(|(_, (_, f))| f.chains.keys())
                    .filter(|c| !new.values().any(|(_, f)| f.chains.contains_key(*c)))
                    .cloned()
                    .collect();
                self.restore(fam, render(&new, &s, fam, None, &delete))?;
                self.ensure_hooks(fam)?;
                SyncReport {
                    full: true,
                    changed_ports: new.len(),
                }
            }
        };
        self.applied[fam.index()] = Some(new);
        conntrack::clear_stale(self.exec.as_mut(), &stale);
        Ok(report)
    }
}

impl Backend for IptBackend {
    fn mode(&self) -> &'static str {
        "iptables"
    }

    fn sync(&mut self, state: &DesiredState, full: bool) -> Result<SyncReport> {
        let mut total = SyncReport::default();
        for fam in self.families.clone() {
            let r = self.sync_family(fam, state, full)?;
            total.full |= r.full;
            total.changed_ports += r.changed_ports;
        }
        let skipped = state
            .ports
            .keys()
            .filter(|k| !self.families.contains(&k.family))
            .count();
        if skipped > 0 && full {
            tracing::warn!(
                skipped,
                "iptables: service ports of an IP family without a usable iptables are skipped"
            );
        }
        Ok(total)
    }

    fn cleanup(&mut self) -> Result<()> {
        self.applied = [None, None];
        for fam in self.families.clone() {
            let bin = binary_for(&self.binary, fam);
            for (table, chain, rule) in HOOKS {
                let args: Vec<&str> = rule.split(' ').collect();
                let mut del = vec!["-w", "-t", table, "-D", chain];
                del.extend(&args);
                let _ = self.exec.run(&bin, &del, "");
            }
            // Flush then delete every SVCNET- chain.
            for table in ["nat", "filter"] {
                let listing = self.exec.run(&bin, &["-w", "-t", table, "-S"], "")?;
                let chains: Vec<String> = listing
                    .lines()
                    .filter_map(|l| l.strip_prefix("-N "))
                    .filter(|c| c.starts_with("SVCNET-"))
                    .map(str::to_string)
                    .collect();
                let mut script = format!("*{table}\n");
                for c in &chains {
                    let _ = writeln!(script, ":{c} - [0:0]");
                }
                for c in &chains {
                    let _ = writeln!(script, "-X {c}");
                }
                script.push_str("COMMIT\n");
                self.exec
                    .run(&format!("{bin}-restore"), &["-w", "--noflush"], &script)?;
            }
        }
        Ok(())
    }
}
