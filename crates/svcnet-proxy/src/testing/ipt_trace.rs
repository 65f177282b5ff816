//! A small interpreter of the iptables-restore subset this crate generates: loads restores, traces packets.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::{Outcome, Packet};
use crate::backend::Cidr;

type Chains = BTreeMap<String, Vec<Vec<String>>>;

/// The `nat` and `filter` tables as restored.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct IptTables {
    pub(crate) tables: BTreeMap<String, Chains>,
    /// `recent` lists the test pretends the kernel remembered (affinity).
    pub(crate) remembered: BTreeMap<String, BTreeSet<IpAddr>>,
}

#[derive(Debug, Clone)]
struct St {
    mark: bool,
    dnat: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum End {
    /// Fell off the end or RETURN.
    Return,
    Dnat,
    Drop,
    Reject,
}

impl IptTables {
    /// Applies one `iptables-restore --noflush` input.
    pub(crate) fn apply(&mut self, script: &str) {
        let mut table = String::new();
        for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(t) = line.strip_prefix('*') {
                table = t.to_string();
                self.tables.entry(table.clone()).or_default();
            } else if line == "COMMIT" {
                let chains = &self.tables[&table];
                for (c, rules) in chains {
                    for r in rules {
                        if let Some(i) = r.iter().position(|w| w == "-j") {
                            let t = &r[i + 1];
                            if t.starts_with("SVCNET-") {
                                assert!(chains.contains_key(t), "{c} jumps to missing {t}");
                            }
                        }
                    }
                }
            } else if let Some(rest) = line.strip_prefix(':') {
                let name = rest.split(' ').next().unwrap_or("").to_string();
                // Declaring flushes, also with --noflush.
                self.tables
                    .entry(table.clone())
                    .or_default()
                    .insert(name, Vec::new());
            } else if let Some(rest) = line.strip_prefix("-A ") {
                let mut w: Vec<String> = rest.split(' ').map(str::to_string).collect();
                let chain = w.remove(0);
                let t = self.tables.entry(table.clone()).or_default();
                t.get_mut(&chain)
                    .unwrap_or_else(|| panic!("-A to undeclared {chain}"))
                    .push(w);
            } else if let Some(c) = line.strip_prefix("-X ") {
                let t = self.tables.entry(table.clone()).or_default();
                let rules = t.remove(c).unwrap_or_else(|| panic!("-X of missing {c}"));
                assert!(rules.is_empty(), "-X of non-empty {c}");
                for (other, rules) in t.iter() {
                    assert!(
                        !rules.iter().any(|r| r.iter().any(|w| w == c)),
                        "-X of {c} still used by {other}"
                    );
                }
            } else {
                panic!("unknown restore line {line}");
            }
        }
    }

    pub(crate) fn trace(&self, p: &Packet) -> Outcome {
        let mut results = BTreeSet::new();
        let mut plain = BTreeSet::new();
        let mut out = Vec::new();
        self.run(
            "nat",
            "SVCNET-SERVICES",
            p,
            St {
                mark: false,
                dnat: None,
            },
            &mut out,
            0,
        );
        for (end, st) in out {
            match (end, st.dnat) {
                (End::Dnat, Some(t)) => {
                    results.insert(format!("{t}{}", if st.mark { " masq" } else { "" }));
                }
                _ => {
                    let mut fo = Vec::new();
                    self.run(
                        "filter",
                        "SVCNET-FILTER",
                        p,
                        St {
                            mark: false,
                            dnat: None,
                        },
                        &mut fo,
                        0,
                    );
                    for (e, _) in fo {
                        plain.insert(
                            match e {
                                End::Drop => "DROP",
                                End::Reject => "REJECT",
                                _ => "ACCEPT",
                            }
                            .to_string(),
                        );
                    }
                }
            }
        }
        Outcome::from_parts(results, plain)
    }

    fn run(
        &self,
        table: &str,
        chain: &str,
        p: &Packet,
        st: St,
        out: &mut Vec<(End, St)>,
        depth: usize,
    ) {
        assert!(depth < 16, "loop at {chain}");
        let rules = self
            .tables
            .get(table)
            .and_then(|t| t.get(chain))
            .unwrap_or_else(|| panic!("no chain {table}/{chain}"));
        let mut live = vec![st];
        for r in rules {
            let mut next = Vec::new();
            for st in live {
                for (matched, st) in self.matches(r, p, st) {
                    if !matched {
                        next.push(st);
                        continue;
                    }
                    self.target(table, r, p, st, out, &mut next, depth);
                }
            }
            live = next;
        }
        out.extend(live.into_iter().map(|s| (End::Return, s)));
    }

    #[allow(clippy::too_many_arguments)]
    fn target(
        &self,
        table: &str,
        r: &[String],
        p: &Packet,
        mut st: St,
        out: &mut Vec<(End, St)>,
        next: &mut Vec<St>,
        depth: usize,
    ) {
        let i = r.iter().position(|w| w == "-j").expect("-j");
        let t = r[i + 1].as_str();
        match t {
            "DNAT" => {
                st.dnat = Some(r[i + 3].clone());
                out.push((End::Dnat, st));
            }
            "MARK" => {
                st.mark = r[i + 2] == "--or-mark";
                next.push(st);
            }
            "RETURN" => out.push((End::Return, st)),
            "DROP" => out.push((End::Drop, st)),
            "REJECT" => out.push((End::Reject, st)),
            "MASQUERADE" => next.push(st),
            c => {
                let mut sub = Vec::new();
                self.run(table, c, p, st, &mut sub, depth + 1);
                for (e, s) in sub {
                    if e == End::Return {
                        next.push(s);
                    } else {
                        out.push((e, s));
                    }
                }
            }
        }
    }

    /// Whether the rule's matches hold, per branch (statistic branches both ways).
    fn matches(&self, r: &[String], p: &Packet, st: St) -> Vec<(bool, St)> {
        let mut i = 0;
        let mut neg = false;
        let mut branch_prob: Option<f64> = None;
        while i < r.len() {
            let w = r[i].as_str();
            let arg = r.get(i + 1).map(String::as_str).unwrap_or("");
            let ok = match w {
                "!" => {
                    neg = true;
                    i += 1;
                    continue;
                }
                "-j" => break,
                "-d" | "-s" => {
                    let ip = if w == "-d" { p.dst } else { p.src };
                    i += 1;
                    Cidr::parse(arg)
                        .unwrap_or_else(|_| panic!("cidr {arg}"))
                        .contains(ip)
                }
                "-p" => {
                    i += 1;
                    arg == p.proto.lower()
                }
                "--dport" => {
                    i += 1;
                    arg.parse::<u16>().ok() == Some(p.dport)
                }
                "-m" => {
                    i += 1;
                    true
                }
                "--dst-type" | "--src-type" => {
                    i += 1;
                    if w == "--dst-type" {
                        p.dst_local
                    } else {
                        p.local_origin
                    }
                }
                "--mode" | "--comment" | "--ctstate" | "--seconds" => {
                    i += 1;
                    true
                }
                "--probability" => {
                    i += 1;
                    branch_prob = arg.parse().ok();
                    true
                }
                "--name" => {
                    let name = arg;
                    let check = r.get(i + 2).map(String::as_str) == Some("--rcheck");
                    i += 1;
                    !check
                        || self
                            .remembered
                            .get(name)
                            .is_some_and(|s| s.contains(&p.src))
                }
                "--rcheck" | "--reap" | "--set" => true,
                "--mark" => {
                    i += 1;
                    st.mark
                }
                other => panic!("interpreter does not know {other} in {r:?}"),
            };
            if ok == neg {
                return vec![(false, st)];
            }
            neg = false;
            i += 1;
        }
        match branch_prob {
            Some(pr) if pr < 1.0 => vec![(true, st.clone()), (false, st)],
            _ => vec![(true, st)],
        }
    }
}
