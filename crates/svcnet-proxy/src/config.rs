//! Proxy configuration: a KubeProxyConfiguration-style YAML file, overridden by flags.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::backend::{Cidr, NodeSettings};

/// Errors reading or checking the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid {field}: {value:?}: {why}")]
    Invalid {
        field: &'static str,
        value: String,
        why: &'static str,
    },
}

pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// Which backend to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Auto,
    Nftables,
    Iptables,
    Userspace,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode> {
        match s {
            "" | "auto" => Ok(Mode::Auto),
            "nftables" => Ok(Mode::Nftables),
            "iptables" => Ok(Mode::Iptables),
            "userspace" => Ok(Mode::Userspace),
            _ => Err(ConfigError::Invalid {
                field: "mode",
                value: s.to_string(),
                why: "must be one of auto, nftables, iptables, userspace",
            }),
        }
    }
}

/// The resolved configuration of one proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    pub mode: Mode,
    pub node_name: String,
    pub settings: NodeSettings,
    pub min_sync_period: Duration,
    pub sync_period: Duration,
    pub metrics_bind: Option<SocketAddr>,
    pub healthz_bind: Option<SocketAddr>,
    /// Interface for service addresses in userspace mode.
    pub userspace_iface: String,
    /// TCP congestion control of the userspace proxy's sockets ("" keeps the system's).
    pub userspace_congestion_control: String,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            mode: Mode::Auto,
            node_name: String::new(),
            settings: NodeSettings::default(),
            // Upstream defaults: minSyncPeriod 1s, syncPeriod 30s.
            min_sync_period: Duration::from_secs(1),
            sync_period: Duration::from_secs(30),
            metrics_bind: Some(SocketAddr::from(([127, 0, 0, 1], 10249))),
            healthz_bind: Some(SocketAddr::from(([0, 0, 0, 0], 10256))),
            userspace_iface: "lo".into(),
            userspace_congestion_control: crate::userspace::DEFAULT_CONGESTION_CONTROL.into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModeSection {
    masquerade_all: Option<bool>,
    sync_period: Option<String>,
    min_sync_period: Option<String>,
}

/// The subset of KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1) we read.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    kind: Option<String>,
    mode: Option<String>,
    #[serde(rename = "clusterCIDR")]
    cluster_cidr: Option<String>,
    hostname_override: Option<String>,
    node_port_addresses: Option<Vec<String>>,
    metrics_bind_address: Option<String>,
    healthz_bind_address: Option<String>,
    sync_period: Option<String>,
    min_sync_period: Option<String>,
    iptables: Option<ModeSection>,
    nftables: Option<ModeSection>,
    /// svcnet's own section (upstream removed its userspace mode).
    userspace: Option<UserspaceSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserspaceSection {
    congestion_control: Option<String>,
}

/// Parses a Go duration (`30s`, `1m0s`, `500ms`, `1h`).
pub fn parse_duration(field: &'static str, s: &str) -> Result<Duration> {
    let bad = |why| ConfigError::Invalid {
        field,
        value: s.to_string(),
        why,
    };
    let mut rest = s.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad("empty duration"));
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(|| bad("missing unit (h, m, s, ms)"))?;
        let value: f64 = rest[..n].parse().map_err(|_| bad("not a number"))?;
        let unit_end = rest[n..]
            .find(|c: char| c.is_ascii_digit())
            .map(|i| n + i)
            .unwrap_or(rest.len());
        let scale = match &rest[n..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return Err(bad("unknown unit (h, m, s, ms)")),
        };
        total += Duration::from_secs_f64(value * scale);
        rest = &rest[unit_end..];
    }
    Ok(total)
}

fn parse_addr(field: &'static str, s: &str) -> Result<Option<SocketAddr>> {
    if s.is_empty() {
        return Ok(None);
    }
    // Upstream accepts a bare IP (default port) or IP:port; "0" disables.
    if s == "0" {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| ConfigError::Invalid {
        field,
        value: s.to_string(),
        why: "expected ip:port",
    })
}

/// Flag values; `None` keeps the file's (or the default) value.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub mode: Option<String>,
    pub node_name: Option<String>,
    pub cluster_cidr: Option<String>,
    pub node_port_addresses: Option<Vec<String>>,
    pub masquerade_all: Option<bool>,
    pub min_sync_period: Option<String>,
    pub sync_period: Option<String>,
    pub metrics_bind: Option<String>,
    pub healthz_bind: Option<String>,
    pub userspace_congestion_control: Option<String>,
}

/// Builds the configuration from an optional file text and flags.
pub fn resolve(file: Option<(&str, &str)>, o: &Overrides) -> Result<ProxyConfig> {
    let f: File = match file {
        Some((path, text)) => serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })?,
        None => File::default(),
    };
    if let Some(k) = &f.kind
        && k != "KubeProxyConfiguration"
    {
        return Err(ConfigError::Invalid {
            field: "kind",
            value: k.clone(),
            why: "expected KubeProxyConfiguration",
        });
    }
    let mut c = ProxyConfig {
        mode: Mode::parse(o.mode.as_deref().or(f.mode.as_deref()).unwrap_or("auto"))?,
        ..ProxyConfig::default()
    };
    let section = match c.mode {
        Mode::Iptables => f.iptables.as_ref(),
        _ => f.nftables.as_ref().or(f.iptables.as_ref()),
    };
    c.node_name = o
        .node_name
        .clone()
        .or(f.hostname_override.clone())
        .unwrap_or_default();
    if let Some(list) = o
        .cluster_cidr
        .as_deref()
        .or(f.cluster_cidr.as_deref())
        .filter(|s| !s.is_empty())
    {
        // Upstream's dual-stack form: one CIDR per family, comma-separated.
        for cidr in list.split(',') {
            let bad = |why| ConfigError::Invalid {
                field: "clusterCIDR",
                value: list.to_string(),
                why,
            };
            let cidr = Cidr::parse(cidr)
                .map_err(|_| bad("expected CIDRs such as 10.244.0.0/16,fd00:10:244::/56"))?;
            if c.settings.cluster_cidr(cidr.family()).is_some() {
                return Err(bad("at most one CIDR per IP family"));
            }
            c.settings.cluster_cidrs.push(cidr);
        }
    }
    for a in o
        .node_port_addresses
        .as_ref()
        .or(f.node_port_addresses.as_ref())
        .into_iter()
        .flatten()
    {
        // "primary" (upstream's keyword) means the node's own addresses: our default.
        if a == "primary" || a.is_empty() {
            continue;
        }
        c.settings
            .node_port_addresses
            .push(Cidr::parse(a).map_err(|_| ConfigError::Invalid {
                field: "nodePortAddresses",
                value: a.clone(),
                why: "expected CIDRs such as 172.18.0.0/24 or fd00:172:18::/64",
            })?);
    }
    c.settings.masquerade_all = o
        .masquerade_all
        .or(section.and_then(|s| s.masquerade_all))
        .unwrap_or(false);
    let min = o
        .min_sync_period
        .clone()
        .or(f.min_sync_period.clone())
        .or(section.and_then(|s| s.min_sync_period.clone()));
    if let Some(m) = min {
        c.min_sync_period = parse_duration("minSyncPeriod", &m)?;
    }
    let max = o
        .sync_period
        .clone()
        .or(f.sync_period.clone())
        .or(section.and_then(|s| s.sync_period.clone()));
    if let Some(m) = max {
        c.sync_period = parse_duration("syncPeriod", &m)?;
    }
    if c.sync_period.is_zero() {
        return Err(ConfigError::Invalid {
            field: "syncPeriod",
            value: "0".into(),
            why: "must be greater than 0",
        });
    }
    if c.min_sync_period > c.sync_period {
        return Err(ConfigError::Invalid {
            field: "minSyncPeriod",
            value: format!("{:?}", c.min_sync_period),
            why: "must be less than or equal to syncPeriod",
        });
    }
    if let Some(m) = o
        .metrics_bind
        .as_deref()
        .or(f.metrics_bind_address.as_deref())
    {
        c.metrics_bind = parse_addr("metricsBindAddress", m)?;
    }
    if let Some(h) = o
        .healthz_bind
        .as_deref()
        .or(f.healthz_bind_address.as_deref())
    {
        c.healthz_bind = parse_addr("healthzBindAddress", h)?;
    }
    if let Some(cc) = o.userspace_congestion_control.clone().or(f
        .userspace
        .as_ref()
        .and_then(|u| u.congestion_control.clone()))
    {
        // The kernel's names: at most 15 characters (TCP_CA_NAME_MAX).
        if cc.len() > 15 || !cc.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ConfigError::Invalid {
                field: "userspace.congestionControl",
                value: cc,
                why: "expected a TCP congestion control name such as cubic, reno or bbr (or \"\" for the system's)",
            });
        }
        c.userspace_congestion_control = cc;
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let rows = [
            ("30s", Ok(Duration::from_secs(30))),
            ("1m0s", Ok(Duration::from_secs(60))),
            ("1h30m", Ok(Duration::from_secs(5400))),
            ("500ms", Ok(Duration::from_millis(500))),
            ("1.5s", Ok(Duration::from_millis(1500))),
            ("0", Ok(Duration::ZERO)),
            (
                "10",
                Err("invalid syncPeriod: \"10\": missing unit (h, m, s, ms)"),
            ),
            (
                "5d",
                Err("invalid syncPeriod: \"5d\": unknown unit (h, m, s, ms)"),
            ),
            ("", Err("invalid syncPeriod: \"\": empty duration")),
        ];
        for (s, want) in rows {
            let got = parse_duration("syncPeriod", s).map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(str::to_string), "{s}");
        }
    }

    #[test]
    fn file_and_flags() {
        let file = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: iptables\nclusterCIDR: 10.244.0.0/16\nhostnameOverride: n1\nnodePortAddresses: [172.18.0.0/24]\nmetricsBindAddress: 127.0.0.1:10249\niptables:\n  masqueradeAll: true\n  syncPeriod: 1m\n  minSyncPeriod: 2s\n";
        let c = resolve(Some(("p.yaml", file)), &Overrides::default()).expect("valid");
        assert_eq!(c.mode, Mode::Iptables);
        assert_eq!(c.node_name, "n1");
        assert_eq!(
            c.settings
                .cluster_cidr(crate::plan::Family::V4)
                .map(|c| c.to_string())
                .as_deref(),
            Some("10.244.0.0/16")
        );
        assert_eq!(c.settings.node_port_addresses.len(), 1);
        let dual = "clusterCIDR: 10.244.0.0/16,fd00:10:244::/56\nnodePortAddresses: [172.18.0.0/24, \"fd00:172:18::/64\"]\n";
        let d = resolve(Some(("p.yaml", dual)), &Overrides::default()).expect("dual-stack");
        let show = |v: &[Cidr]| {
            v.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(
            show(&d.settings.cluster_cidrs),
            "10.244.0.0/16,fd00:10:244::/56"
        );
        assert_eq!(
            show(&d.settings.node_port_cidrs(crate::plan::Family::V6)),
            "fd00:172:18::/64"
        );
        assert!(c.settings.masquerade_all);
        assert_eq!(
            (c.min_sync_period, c.sync_period),
            (Duration::from_secs(2), Duration::from_secs(60))
        );
        let o = Overrides {
            mode: Some("userspace".into()),
            node_name: Some("n2".into()),
            sync_period: Some("10s".into()),
            ..Default::default()
        };
        let c = resolve(Some(("p.yaml", file)), &o).expect("valid");
        assert_eq!(
            (c.mode, c.node_name.as_str(), c.sync_period),
            (Mode::Userspace, "n2", Duration::from_secs(10))
        );
        // The userspace proxy's congestion control: default, file, flag, "" for the system's.
        let cc = |file: &str, flag: Option<&str>| {
            let o = Overrides {
                userspace_congestion_control: flag.map(str::to_string),
                ..Default::default()
            };
            resolve(Some(("p.yaml", file)), &o)
                .expect("valid")
                .userspace_congestion_control
        };
        assert_eq!(cc("mode: userspace\n", None), "cubic");
        let reno = "userspace:\n  congestionControl: reno\n";
        assert_eq!(cc(reno, None), "reno");
        assert_eq!(cc(reno, Some("bbr")), "bbr");
        assert_eq!(cc(reno, Some("")), "");
    }

    #[test]
    fn errors() {
        let rows = [
            (
                "mode: ipvs\n",
                "invalid mode: \"ipvs\": must be one of auto, nftables, iptables, userspace",
            ),
            (
                "clusterCIDR: 10.244.0.0\n",
                "invalid clusterCIDR: \"10.244.0.0\": expected CIDRs such as 10.244.0.0/16,fd00:10:244::/56",
            ),
            (
                "clusterCIDR: 10.244.0.0/16,10.245.0.0/16\n",
                "invalid clusterCIDR: \"10.244.0.0/16,10.245.0.0/16\": at most one CIDR per IP family",
            ),
            (
                "nodePortAddresses: [fd00::/200]\n",
                "invalid nodePortAddresses: \"fd00::/200\": expected CIDRs such as 172.18.0.0/24 or fd00:172:18::/64",
            ),
            (
                "kind: Pod\n",
                "invalid kind: \"Pod\": expected KubeProxyConfiguration",
            ),
            (
                "syncPeriod: 1s\nminSyncPeriod: 5s\n",
                "invalid minSyncPeriod: \"5s\": must be less than or equal to syncPeriod",
            ),
            (
                "metricsBindAddress: nope\n",
                "invalid metricsBindAddress: \"nope\": expected ip:port",
            ),
            (
                "userspace:\n  congestionControl: cubic;rm\n",
                "invalid userspace.congestionControl: \"cubic;rm\": expected a TCP congestion control name such as cubic, reno or bbr (or \"\" for the system's)",
            ),
        ];
        for (text, want) in rows {
            let got = resolve(Some(("p.yaml", text)), &Overrides::default())
                .map(|_| ())
                .map_err(|e| e.to_string());
            assert_eq!(got, Err(want.to_string()), "{text}");
        }
        let got =
            resolve(Some(("p.yaml", "mode: [")), &Overrides::default()).map_err(|e| e.to_string());
        assert!(
            matches!(&got, Err(e) if e.starts_with("parsing p.yaml: ")),
            "{got:?}"
        );
    }
}
