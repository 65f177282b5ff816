//! A small interpreter of the nftables subset this crate generates: loads scripts, traces packets.
//!
//! One [`NftTable`] is one family's `svcnet` table (`ip` or `ip6`); it loads
//! only its own family's commands from a script and insists on its family's
//! spelling (`ip6 daddr`, `ipv6_addr`, ICMPv6 rejects in the `ip6` table and
//! none of those in the `ip` one). [`NftRules`] holds both and traces a
//! packet through the table of its family, as the kernel's hooks do.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use super::{Outcome, Packet};
use crate::backend::Cidr;

/// One loaded `svcnet` table.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct NftTable {
    /// The `ip6` table (else `ip`).
    pub(crate) v6: bool,
    pub(crate) maps: BTreeMap<String, BTreeMap<String, Option<String>>>,
    pub(crate) chains: BTreeMap<String, Vec<String>>,
    /// Dynamic set contents the test pretends the kernel remembered (affinity).
    pub(crate) remembered: BTreeMap<String, BTreeSet<IpAddr>>,
}

/// Both tables, as one ruleset.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NftRules {
    pub(crate) v4: NftTable,
    pub(crate) v6: NftTable,
}

impl Default for NftRules {
    fn default() -> Self {
        NftRules {
            v4: NftTable::default(),
            v6: NftTable {
                v6: true,
                ..NftTable::default()
            },
        }
    }
}

impl NftRules {
    pub(crate) fn apply(&mut self, script: &str) {
        self.v4.apply(script);
        self.v6.apply(script);
    }

    pub(crate) fn check_refs(&self) {
        self.v4.check_refs();
        self.v6.check_refs();
    }

    /// The packet goes through the table of its family only.
    pub(crate) fn trace(&self, p: &Packet) -> Outcome {
        assert_eq!(p.src.is_ipv6(), p.dst.is_ipv6(), "mixed-family packet");
        if p.dst.is_ipv6() {
            self.v6.trace(p)
        } else {
            self.v4.trace(p)
        }
    }
}

/// The family a command line addresses (`ip` or `ip6`), if any.
fn line_family(l: &str) -> Option<&'static str> {
    let w: Vec<&str> = l.split(' ').collect();
    let at = match w.first().copied() {
        Some("table") => 1,
        Some("add") | Some("delete") => 2,
        _ => return None,
    };
    match w.get(at).copied() {
        Some("ip") => Some("ip"),
        Some("ip6") => Some("ip6"),
        _ => None,
    }
}

fn parse_elements(body: &str) -> Vec<(String, Option<String>)> {
    body.split(", ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|e| match e.split_once(" : ") {
            Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
            None => (e.to_string(), None),
        })
        .collect()
}

fn braces(s: &str) -> &str {
    let a = s.find('{').map(|i| i + 1).unwrap_or(0);
    let b = s.rfind('}').unwrap_or(s.len());
    s.get(a..b).unwrap_or("").trim()
}

impl NftTable {
    /// Applies one `nft -f` script (the whole generated subset), panicking on
    /// anything the kernel would reject that we can see (unknown chain or map).
    fn fam(&self) -> &'static str {
        if self.v6 { "ip6" } else { "ip" }
    }

    /// Panics on the other family's spelling in this table's rules or declarations.
    fn check_spelling(&self, text: &str) {
        let wrong: &[&str] = if self.v6 {
            &[
                "ip daddr",
                "ip saddr",
                "dnat ip to",
                "ipv4_addr",
                "icmp type",
                "127.0.0.0/8",
            ]
        } else {
            &["ip6 ", "ipv6_addr", "icmpv6"]
        };
        for w in wrong {
            assert!(
                !text.contains(w),
                "{} table has {w:?} in {text:?}",
                self.fam()
            );
        }
    }

    pub(crate) fn apply(&mut self, script: &str) {
        let fam = self.fam();
        let (add_el, del_el) = (
            format!("add element {fam} svcnet "),
            format!("delete element {fam} svcnet "),
        );
        let (add_chain, add_rule, del_chain) = (
            format!("add chain {fam} svcnet "),
            format!("add rule {fam} svcnet "),
            format!("delete chain {fam} svcnet "),
        );
        let (add_set, del_set) = (
            format!("add set {fam} svcnet "),
            format!("delete set {fam} svcnet "),
        );
        let mut lines = script.lines().peekable();
        while let Some(line) = lines.next() {
            let l = line.trim();
            if l.is_empty() {
                continue;
            }
            match line_family(l) {
                Some(f) if f == fam => {}
                Some(_) => {
                    // The other table: skip the command, or its whole block.
                    if l.starts_with("table ") && l.ends_with('{') {
                        for inner in lines.by_ref() {
                            if inner == "}" {
                                break;
                            }
                        }
                    }
                    continue;
                }
                None => panic!("unknown nft command: {l}"),
            }
            if l == format!("delete table {fam} svcnet") {
                *self = NftTable {
                    v6: self.v6,
                    remembered: std::mem::take(&mut self.remembered),
                    ..Default::default()
                };
            } else if l.starts_with(&format!("table {fam} svcnet {{")) {
                // Block form: sets, maps, chains until the closing brace at column 0.
                let mut cur: Option<(bool, String)> = None; // (is_chain, name)
                for inner in lines.by_ref() {
                    if inner == "}" {
                        break;
                    }
                    let t = inner.trim();
                    if let Some(rest) = t.strip_prefix("map ").or_else(|| t.strip_prefix("set ")) {
                        let name = rest.trim_end_matches(" {").to_string();
                        self.maps.entry(name.clone()).or_default();
                        cur = Some((false, name));
                    } else if let Some(rest) = t.strip_prefix("chain ") {
                        let name = rest.trim_end_matches(" {").to_string();
                        self.chains.entry(name.clone()).or_default();
                        cur = Some((true, name));
                    } else if t == "}" {
                        cur = None;
                    } else if let Some((is_chain, name)) = &cur {
                        self.check_spelling(t);
                        if *is_chain {
                            self.chains
                                .entry(name.clone())
                                .or_default()
                                .push(t.to_string());
                        } else if let Some(rest) = t.strip_prefix("elements = ") {
                            let m = self.maps.entry(name.clone()).or_default();
                            for (k, v) in parse_elements(braces(rest)) {
                                assert!(
                                    m.insert(k.clone(), v).is_none(),
                                    "duplicate element {k} in {name}"
                                );
                            }
                        }
                    }
                }
            } else if let Some(rest) = l.strip_prefix(add_el.as_str()) {
                let (map, body) = rest.split_once(' ').expect("map name");
                let m = self
                    .maps
                    .get_mut(map)
                    .unwrap_or_else(|| panic!("no map {map}"));
                for (k, v) in parse_elements(braces(body)) {
                    assert!(
                        m.insert(k.clone(), v).is_none(),
                        "element {k} exists in {map}: {l}"
                    );
                }
            } else if let Some(rest) = l.strip_prefix(del_el.as_str()) {
                let (map, body) = rest.split_once(' ').expect("map name");
                let m = self
                    .maps
                    .get_mut(map)
                    .unwrap_or_else(|| panic!("no map {map}"));
                for (k, _) in parse_elements(braces(body)) {
                    assert!(m.remove(&k).is_some(), "no element {k} in {map}: {l}");
                }
            } else if let Some(name) = l.strip_prefix(add_chain.as_str()) {
                assert!(
                    self.chains.insert(name.to_string(), vec![]).is_none(),
                    "chain {name} exists"
                );
            } else if let Some(rest) = l.strip_prefix(add_rule.as_str()) {
                let (c, r) = rest.split_once(' ').expect("rule");
                self.check_spelling(r);
                self.chains
                    .get_mut(c)
                    .unwrap_or_else(|| panic!("no chain {c}"))
                    .push(r.to_string());
            } else if let Some(name) = l.strip_prefix(del_chain.as_str()) {
                assert!(self.chains.remove(name).is_some(), "no chain {name}");
                for (c, rules) in &self.chains {
                    assert!(
                        !rules.iter().any(|r| r.contains(&format!(" {name}"))),
                        "{c} still refers to {name}"
                    );
                }
                for (m, el) in &self.maps {
                    assert!(
                        !el.values()
                            .any(|v| v.as_deref() == Some(&format!("goto {name}"))),
                        "{m} still refers to {name}"
                    );
                }
            } else if let Some(rest) = l.strip_prefix(add_set.as_str()) {
                self.check_spelling(rest);
                let name = rest.split(' ').next().expect("set name");
                assert!(
                    self.maps
                        .insert(name.to_string(), BTreeMap::new())
                        .is_none(),
                    "set {name} exists"
                );
            } else if let Some(name) = l.strip_prefix(del_set.as_str()) {
                assert!(self.maps.remove(name).is_some(), "no set {name}");
            } else {
                panic!("unknown nft command: {l}");
            }
        }
    }

    /// Every chain and map referenced exists (what the kernel checks at commit).
    pub(crate) fn check_refs(&self) {
        for (c, rules) in &self.chains {
            for r in rules {
                for w in r.split([' ', ',', '}']) {
                    if let Some(m) = w.strip_prefix('@') {
                        assert!(self.maps.contains_key(m), "{c}: unknown map {m}");
                    }
                }
                for (i, w) in r.split(' ').enumerate() {
                    if (w == "goto" || w == "jump") && i + 1 < r.split(' ').count() {
                        let t = r
                            .split(' ')
                            .nth(i + 1)
                            .unwrap_or("")
                            .trim_end_matches([',', '}']);
                        assert!(self.chains.contains_key(t), "{c}: unknown chain {t}");
                    }
                }
            }
        }
        for (m, el) in &self.maps {
            for v in el.values().flatten() {
                if let Some(t) = v.strip_prefix("goto ") {
                    assert!(self.chains.contains_key(t), "{m}: unknown chain {t}");
                }
            }
        }
    }

    fn hook_chain(&self, kind: &str, hook: &str) -> Option<&String> {
        self.chains
            .iter()
            .find(|(_, r)| {
                r.first()
                    .is_some_and(|f| f.starts_with(&format!("type {kind} hook {hook} ")))
            })
            .map(|(n, _)| n)
    }

    /// Traces a new connection's first packet through nat and filter hooks.
    pub(crate) fn trace(&self, p: &Packet) -> Outcome {
        let nat_hook = if p.local_origin {
            "output"
        } else {
            "prerouting"
        };
        let mut results = BTreeSet::new();
        let start = St {
            mark: false,
            dnat: None,
        };
        let mut branches = Vec::new();
        match self.hook_chain("nat", nat_hook) {
            Some(c) => self.run_chain(c, p, start, &mut branches, 0),
            None => branches.push((Verdict::Accept, start)),
        }
        let mut plain = BTreeSet::new();
        for (v, st) in branches {
            match (v, st.dnat) {
                (Verdict::Drop, _) => {
                    plain.insert("DROP".to_string());
                }
                (_, Some(target)) => {
                    let to: SocketAddr = target.parse().expect("DNAT target");
                    let hairpin = self
                        .maps
                        .get("hairpin")
                        .is_some_and(|h| h.contains_key(&format!("{} . {}", p.src, to.ip())));
                    let masq = st.mark || hairpin;
                    results.insert(format!("{target}{}", if masq { " masq" } else { "" }));
                }
                (_, None) => {
                    // Not NATed: the filter hooks decide.
                    let hook = if p.local_origin {
                        "output"
                    } else if p.dst_local {
                        "input"
                    } else {
                        "forward"
                    };
                    let mut fb = Vec::new();
                    if let Some(c) = self.hook_chain("filter", hook) {
                        self.run_chain(
                            c,
                            p,
                            St {
                                mark: false,
                                dnat: None,
                            },
                            &mut fb,
                            0,
                        );
                    }
                    for (v, _) in fb {
                        plain.insert(match v {
                            Verdict::Drop => "DROP".to_string(),
                            Verdict::Reject => "REJECT".to_string(),
                            Verdict::Accept => "ACCEPT".to_string(),
                        });
                    }
                    if !results.is_empty() || plain.is_empty() {
                        plain.insert("ACCEPT".to_string());
                    }
                }
            }
        }
        Outcome::from_parts(results, plain)
    }

    fn run_chain(
        &self,
        name: &str,
        p: &Packet,
        st: St,
        out: &mut Vec<(Verdict, St)>,
        depth: usize,
    ) {
        assert!(depth < 16, "chain loop at {name}");
        let rules = self
            .chains
            .get(name)
            .unwrap_or_else(|| panic!("no chain {name}"));
        let mut branches = vec![st];
        for r in rules {
            if r.starts_with("type ") {
                continue;
            }
            let mut next = Vec::new();
            for st in branches {
                for (flow, st2) in self.run_rule(r, p, st, depth) {
                    match flow {
                        Flow::Continue => next.push(st2),
                        Flow::Done(v) => out.push((v, st2)),
                        Flow::Return => out.push((Verdict::Accept, st2)),
                    }
                }
            }
            branches = next;
            if branches.is_empty() {
                return;
            }
        }
        // Falling off a base chain: policy accept.
        for st in branches {
            out.push((Verdict::Accept, st));
        }
    }

    /// Runs one rule: a sequence of matches and statements ending in an optional verdict.
    fn run_rule(&self, rule: &str, p: &Packet, st: St, depth: usize) -> Vec<(Flow, St)> {
        let proto = p.proto.lower();
        let mut st = st;
        // The ip6 table's spelling was checked at load; interpret both alike.
        let norm;
        let rule = if self.v6 {
            norm = rule
                .replace("ip6 daddr", "ip daddr")
                .replace("ip6 saddr", "ip saddr")
                .replace("dnat ip6 to", "dnat ip to");
            norm.as_str()
        } else {
            rule
        };
        let mut rest = rule.trim();
        loop {
            if rest.is_empty() {
                return vec![(Flow::Continue, st)];
            }
            let eat = |pfx: &str, r: &mut &str| -> bool {
                if let Some(x) = r.strip_prefix(pfx) {
                    *r = x.trim_start();
                    true
                } else {
                    false
                }
            };
            if eat("meta l4proto { tcp, udp, sctp }", &mut rest) || eat("ct state new", &mut rest) {
                continue;
            }
            if let Some(r) = rest
                .strip_prefix("meta l4proto ")
                .filter(|r| !r.starts_with('{') && !r.starts_with(". "))
            {
                let (want, r2) = r.split_once(' ').unwrap_or((r, ""));
                if want != proto {
                    return vec![(Flow::Continue, st)];
                }
                rest = r2.trim_start();
                continue;
            }
            if eat("fib daddr type local", &mut rest) {
                if !p.dst_local {
                    return vec![(Flow::Continue, st)];
                }
                continue;
            }
            if eat("fib saddr type local", &mut rest) {
                if !p.local_origin {
                    return vec![(Flow::Continue, st)];
                }
                continue;
            }
            if eat("ip daddr != 127.0.0.0/8", &mut rest) || eat("ip daddr != ::1", &mut rest) {
                if p.dst.is_loopback() {
                    return vec![(Flow::Continue, st)];
                }
                continue;
            }
            if eat("meta mark set meta mark | 0x00004000", &mut rest) {
                st.mark = true;
                continue;
            }
            if let Some(r) = rest
                .strip_prefix("ip saddr != ")
                .or_else(|| rest.strip_prefix("ip saddr "))
            {
                let neg = rest.starts_with("ip saddr != ");
                let (arg, r2) = r.split_once(' ').unwrap_or((r, ""));
                let hit = if let Some(set) = arg.strip_prefix('@') {
                    self.remembered.get(set).is_some_and(|s| s.contains(&p.src))
                } else {
                    Cidr::parse(arg)
                        .unwrap_or_else(|_| panic!("bad cidr in {rule}"))
                        .contains(p.src)
                };
                if hit == neg {
                    return vec![(Flow::Continue, st)];
                }
                rest = r2.trim_start();
                continue;
            }
            if let Some(r) = rest.strip_prefix("ip daddr @") {
                let (set, r2) = r.split_once(' ').unwrap_or((r, ""));
                let hit = if set == "nodeport-ips" {
                    self.maps.get(set).is_some_and(|m| {
                        m.keys()
                            .any(|c| Cidr::parse(c).is_ok_and(|c| c.contains(p.dst)))
                    })
                } else {
                    self.maps
                        .get(set)
                        .is_some_and(|m| m.contains_key(&p.dst.to_string()))
                };
                if !hit {
                    return vec![(Flow::Continue, st)];
                }
                rest = r2.trim_start();
                continue;
            }
            if let Some(r) = rest.strip_prefix("ip daddr . meta l4proto . th dport vmap @") {
                let key = format!("{} . {proto} . {}", p.dst, p.dport);
                return self.vmap(r, &key, p, st, depth);
            }
            if let Some(r) = rest.strip_prefix("meta l4proto . th dport vmap @") {
                let key = format!("{proto} . {}", p.dport);
                return self.vmap(r, &key, p, st, depth);
            }
            if let Some(r) = rest.strip_prefix("dnat ip to ") {
                let (prefix, tail) = if let Some(t) =
                    r.strip_prefix("ip daddr . meta l4proto . th dport . numgen random mod ")
                {
                    (format!("{} . {proto} . {}", p.dst, p.dport), t)
                } else if let Some(t) =
                    r.strip_prefix("meta l4proto . th dport . numgen random mod ")
                {
                    (format!("{proto} . {}", p.dport), t)
                } else {
                    // A fixed target.
                    let mut s2 = st.clone();
                    s2.dnat = Some(r.trim().to_string());
                    return vec![(Flow::Done(Verdict::Accept), s2)];
                };
                let (n, map) = tail.split_once(" map @").expect("dnat map");
                let n: usize = n.parse().expect("modulus");
                let m = self
                    .maps
                    .get(map.trim())
                    .unwrap_or_else(|| panic!("no map {map}"));
                let mut out = Vec::new();
                for i in 0..n {
                    let v = m.get(&format!("{prefix} . {i}")).cloned().flatten();
                    let v = v.unwrap_or_else(|| {
                        panic!("{map} lacks {prefix} . {i}: packet would pass un-NATed")
                    });
                    let (ip, port) = v.split_once(" . ").expect("addr . port");
                    let target = SocketAddr::new(
                        ip.parse().expect("endpoint ip"),
                        port.parse().expect("endpoint port"),
                    );
                    let mut s2 = st.clone();
                    s2.dnat = Some(target.to_string());
                    out.push((Flow::Done(Verdict::Accept), s2));
                }
                return out;
            }
            if let Some(r) = rest.strip_prefix("numgen random mod ") {
                let body = braces(r);
                let mut out = Vec::new();
                for (_, v) in parse_elements(body) {
                    let target = v
                        .as_deref()
                        .and_then(|v| v.strip_prefix("goto "))
                        .expect("goto");
                    let mut o = Vec::new();
                    self.run_chain(target, p, st.clone(), &mut o, depth + 1);
                    out.extend(o.into_iter().map(|(v, s)| (Flow::Done(v), s)));
                }
                return out;
            }
            if let Some(r) = rest.strip_prefix("update @") {
                // Recording affinity has no effect on this one trace.
                rest = r.split_once('}').map(|x| x.1).unwrap_or("").trim_start();
                continue;
            }
            if eat(
                "ct status dnat ip saddr . ip daddr @hairpin masquerade",
                &mut rest,
            ) || eat("meta mark & 0x00004000 == 0x00004000 masquerade", &mut rest)
            {
                continue;
            }
            return match rest {
                "drop" => vec![(Flow::Done(Verdict::Drop), st)],
                "reject"
                | "reject with icmp type port-unreachable"
                | "reject with icmpv6 type port-unreachable" => {
                    vec![(Flow::Done(Verdict::Reject), st)]
                }
                "accept" => vec![(Flow::Done(Verdict::Accept), st)],
                "return" => vec![(Flow::Return, st)],
                _ => {
                    if let Some(t) = rest.strip_prefix("jump ") {
                        let mut o = Vec::new();
                        self.run_chain(t, p, st, &mut o, depth + 1);
                        // A jump returns unless the callee ended with a verdict.
                        o.into_iter()
                            .map(|(v, s)| match v {
                                Verdict::Accept if s.dnat.is_none() => (Flow::Continue, s),
                                v => (Flow::Done(v), s),
                            })
                            .collect()
                    } else if let Some(t) = rest.strip_prefix("goto ") {
                        let mut o = Vec::new();
                        self.run_chain(t, p, st, &mut o, depth + 1);
                        o.into_iter().map(|(v, s)| (Flow::Done(v), s)).collect()
                    } else {
                        panic!("interpreter does not know: {rest:?} in {rule:?}")
                    }
                }
            };
        }
    }

    fn vmap(&self, map: &str, key: &str, p: &Packet, st: St, depth: usize) -> Vec<(Flow, St)> {
        let m = self
            .maps
            .get(map.trim())
            .unwrap_or_else(|| panic!("no map {map}"));
        match m.get(key).cloned().flatten() {
            None => vec![(Flow::Continue, st)],
            Some(v) => self.run_rule(&v, p, st, depth),
        }
    }
}

#[derive(Debug, Clone)]
struct St {
    mark: bool,
    dnat: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accept,
    Drop,
    Reject,
}

#[derive(Debug)]
enum Flow {
    Continue,
    Done(Verdict),
    Return,
}
