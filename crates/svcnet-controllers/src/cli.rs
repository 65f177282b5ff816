//! Flags of `svcnet controllers` (kube-controller-manager-style names) and their validation into a [`Config`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::lbpool::{Pool, PoolError};
use crate::leader::Settings;
use crate::nodelifecycle::Timing;
use crate::run::Config;

/// Errors in the flags.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A duration flag that is not like `10s`, `500ms`, `2m`, `1h`.
    #[error("invalid duration {0:?} for --{1}: use a number with a unit, e.g. 10s, 500ms, 2m")]
    Duration(String, &'static str),
    /// The pool flag or file is malformed.
    #[error("--lb-pool: {0}")]
    Pool(#[from] PoolError),
    /// The pool file cannot be read.
    #[error("reading --lb-pool-file {path}: {source}")]
    PoolFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Leader-election timings that cannot work.
    #[error(
        "--leader-elect-renew-deadline ({renew:?}) must be shorter than --leader-elect-lease-duration ({lease:?})"
    )]
    Leader { renew: Duration, lease: Duration },
    /// The kubeconfig could not be loaded.
    #[error("loading the kubeconfig: {0}")]
    Kubeconfig(String),
}

/// `svcnet controllers` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllersArgs {
    /// kubeconfig to reach the API server (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// LoadBalancer address pool: CIDRs, first-last ranges or addresses, comma-separated; "" for none.
    #[arg(long, default_value = "172.18.0.200-172.18.0.250")]
    pub lb_pool: String,
    /// File with the pool (same syntax, commas or one entry per line; # comments); overrides --lb-pool.
    #[arg(long)]
    pub lb_pool_file: Option<PathBuf>,
    /// Serve LoadBalancer Services of this loadBalancerClass instead of those without one.
    #[arg(long)]
    pub lb_class: Option<String>,
    /// Silence after which a node is marked Unknown.
    #[arg(long, default_value = "10s")]
    pub node_monitor_grace_period: String,
    /// Time a node stays lost before its pods are evicted.
    #[arg(long, default_value = "30s")]
    pub pod_eviction_timeout: String,
    /// Run leader election so that several controller processes can run.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    #[arg(long, default_value = "15s")]
    pub leader_elect_lease_duration: String,
    #[arg(long, default_value = "10s")]
    pub leader_elect_renew_deadline: String,
    #[arg(long, default_value = "2s")]
    pub leader_elect_retry_period: String,
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    #[arg(long, default_value = "svcnet-controller-manager")]
    pub leader_elect_resource_name: String,
    /// How often every object is reconciled again.
    #[arg(long, default_value = "30s")]
    pub resync_period: String,
}

/// Parses a Go-style duration: `1h`, `2m`, `10s`, `500ms`, or combinations like `1m30s`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else {
            return None;
        };
        total += unit.checked_mul(u32::try_from(n).ok()?)?;
        rest = &rest[len..];
    }
    Some(total)
}

fn dur(v: &str, flag: &'static str) -> Result<Duration, CliError> {
    parse_duration(v).ok_or_else(|| CliError::Duration(v.to_owned(), flag))
}

fn pool_text(file: Option<&Path>, flag: &str) -> Result<String, CliError> {
    let Some(path) = file else {
        return Ok(flag.to_owned());
    };
    let text = std::fs::read_to_string(path).map_err(|source| CliError::PoolFile {
        path: path.to_owned(),
        source,
    })?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(","))
}

impl ControllersArgs {
    /// Validates the flags into a [`Config`]; `identity` names this process for leader election.
    pub fn config(&self, identity: &str) -> Result<Config, CliError> {
        let pool = Pool::parse(&pool_text(self.lb_pool_file.as_deref(), &self.lb_pool)?)?;
        let lease = dur(
            &self.leader_elect_lease_duration,
            "leader-elect-lease-duration",
        )?;
        let renew = dur(
            &self.leader_elect_renew_deadline,
            "leader-elect-renew-deadline",
        )?;
        let retry = dur(&self.leader_elect_retry_period, "leader-elect-retry-period")?;
        if self.leader_elect && renew >= lease {
            return Err(CliError::Leader { renew, lease });
        }
        Ok(Config {
            lb_pool: (!pool.is_empty()).then_some(pool),
            lb_class: self.lb_class.clone().filter(|c| !c.is_empty()),
            timing: Timing {
                grace: dur(&self.node_monitor_grace_period, "node-monitor-grace-period")?,
                eviction: dur(&self.pod_eviction_timeout, "pod-eviction-timeout")?,
            },
            leader: self.leader_elect.then(|| Settings {
                namespace: self.leader_elect_resource_namespace.clone(),
                name: self.leader_elect_resource_name.clone(),
                identity: identity.to_owned(),
                lease_duration: lease,
                renew_deadline: renew,
                retry_period: retry,
            }),
            resync: dur(&self.resync_period, "resync-period")?.max(Duration::from_secs(1)),
            ..Config::default()
        })
    }
}

/// A client from `kubeconfig` (or the usual places: $KUBECONFIG, ~/.kube/config, in-cluster).
pub async fn client(kubeconfig: Option<&Path>) -> Result<kube::Client, CliError> {
    svcnet_client::client(kubeconfig)
        .await
        .map_err(|e| CliError::Kubeconfig(e.to_string()))
}

/// This process's leader-election identity: host name plus a per-process suffix.
pub fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "svcnet".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{host}_{}_{nanos:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        a: ControllersArgs,
    }

    #[test]
    fn durations() {
        let cases = [
            ("10s", Some(Duration::from_secs(10))),
            ("500ms", Some(Duration::from_millis(500))),
            ("1m30s", Some(Duration::from_secs(90))),
            ("2h", Some(Duration::from_secs(7200))),
            ("0", Some(Duration::ZERO)),
            ("10", None),
            ("", None),
            ("s", None),
            ("1d", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input), want, "{input:?}");
        }
    }

    #[test]
    fn flags_to_config() {
        let parse = |args: &[&str]| {
            let mut v = vec!["x"];
            v.extend_from_slice(args);
            Cli::try_parse_from(v)
                .map_err(|e| e.to_string())
                .and_then(|c| c.a.config("me").map_err(|e| e.to_string()))
        };
        let c = parse(&[]).unwrap_or_default_config();
        assert_eq!(
            c.timing,
            Timing {
                grace: Duration::from_secs(10),
                eviction: Duration::from_secs(30)
            }
        );
        assert!(c.lb_pool.as_ref().is_some_and(|p| {
            p.contains(
                "172.18.0.200"
                    .parse()
                    .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
            )
        }));
        let l = c
            .leader
            .unwrap_or_else(|| panic!("leader election on by default"));
        assert_eq!(
            (l.identity.as_str(), l.name.as_str(), l.lease_duration),
            ("me", "svcnet-controller-manager", Duration::from_secs(15))
        );

        let c = parse(&[
            "--leader-elect=false",
            "--lb-pool=",
            "--node-monitor-grace-period=2s",
            "--pod-eviction-timeout=1m",
        ])
        .unwrap_or_default_config();
        assert!(c.leader.is_none() && c.lb_pool.is_none());
        assert_eq!(
            c.timing,
            Timing {
                grace: Duration::from_secs(2),
                eviction: Duration::from_secs(60)
            }
        );

        let errs = [
            (
                vec!["--node-monitor-grace-period=ten"],
                "invalid duration \"ten\" for --node-monitor-grace-period: use a number with a unit, e.g. 10s, 500ms, 2m",
            ),
            (
                vec!["--lb-pool=nope"],
                "--lb-pool: invalid LoadBalancer pool entry \"nope\": want a CIDR (10.0.0.0/28), a range (172.18.0.200-172.18.0.250) or an address",
            ),
            (
                vec!["--leader-elect-renew-deadline=20s"],
                "--leader-elect-renew-deadline (20s) must be shorter than --leader-elect-lease-duration (15s)",
            ),
        ];
        for (args, want) in errs {
            assert_eq!(parse(&args).err().as_deref(), Some(want), "{args:?}");
        }
    }

    #[test]
    fn pool_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("pool");
        std::fs::write(&path, "# lab pool\n10.9.0.1-10.9.0.2\n10.9.1.0/30 # more\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            pool_text(Some(&path), "ignored").ok().as_deref(),
            Some("10.9.0.1-10.9.0.2,10.9.1.0/30")
        );
        let missing = pool_text(Some(&dir.path().join("none")), "x")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(missing.starts_with("reading --lb-pool-file "), "{missing}");
    }

    trait OrDefault {
        fn unwrap_or_default_config(self) -> Config;
    }

    impl OrDefault for Result<Config, String> {
        fn unwrap_or_default_config(self) -> Config {
            self.unwrap_or_else(|e| panic!("{e}"))
        }
    }
}
