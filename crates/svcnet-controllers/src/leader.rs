//! Leader election on a coordination.k8s.io Lease, as client-go's leaderelection: one process leads, others wait.
//!
//! [`decide`] is the pure step. [`Elector`] runs it: it polls the Lease
//! every retry period, takes it over when the holder has not renewed for a
//! whole lease duration *as observed locally* (so clocks need not agree),
//! and while leading renews it; a leader that cannot renew within the
//! renew deadline stops leading. Writes use the Lease's resourceVersion,
//! so of two candidates only one wins a take-over.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The API server refused or failed a Lease request.
    #[error("lease {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// We were leading and could not renew in time.
    #[error("lost the lease {namespace}/{name}: not renewed within {deadline:?}")]
    Lost {
        namespace: String,
        name: String,
        deadline: Duration,
    },
}

/// Timing of leader election (client-go defaults are 15 s / 10 s / 2 s).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Lease namespace.
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// Our identity (hostname plus a unique suffix).
    pub identity: String,
    /// How long a holder's claim lasts without renewal.
    pub lease_duration: Duration,
    /// How long a leader keeps trying to renew before giving up.
    pub renew_deadline: Duration,
    /// Pause between attempts.
    pub retry_period: Duration,
}

/// What to do with the Lease now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// No Lease: create it holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Nobody holds it, or the holder went silent: take it.
    TakeOver,
    /// Someone else holds it: wait.
    Follow,
}

/// Holder of a Lease.
pub fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()?
        .holder_identity
        .as_deref()
        .filter(|h| !h.is_empty())
}

/// The step for `lease` given our identity and how long its record has
/// stayed unchanged as we observed it.
pub fn decide(
    lease: Option<&Lease>,
    me: &str,
    unchanged_for: Duration,
    lease_duration: Duration,
) -> Step {
    let Some(lease) = lease else {
        return Step::Create;
    };
    match holder(lease) {
        Some(h) if h == me => Step::Renew,
        None => Step::TakeOver,
        Some(_) if unchanged_for > lease_duration => Step::TakeOver,
        Some(_) => Step::Follow,
    }
}

/// The Lease content for holding it at `now` (keeping name, resourceVersion).
pub fn held(lease: Option<&Lease>, s: &Settings, now: Timestamp) -> Lease {
    let mut l = lease.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(s.name.clone()),
            namespace: Some(s.namespace.clone()),
            ..Default::default()
        },
        spec: None,
    });
    let prev = l.spec.clone().unwrap_or_default();
    let ours = prev.holder_identity.as_deref() == Some(s.identity.as_str());
    l.spec = Some(LeaseSpec {
        holder_identity: Some(s.identity.clone()),
        lease_duration_seconds: Some(s.lease_duration.as_secs().max(1) as i32),
        acquire_time: if ours {
            prev.acquire_time.clone()
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(match (ours, lease) {
            (true, _) | (false, None) => prev.lease_transitions.unwrap_or(0),
            (false, Some(_)) => prev.lease_transitions.unwrap_or(0) + 1,
        }),
        ..prev
    });
    l
}

/// Runs the election loop against the API.
#[derive(Debug)]
pub struct Elector {
    api: Api<Lease>,
    s: Settings,
    last_record: Option<(Option<String>, Option<Timestamp>)>,
    last_change: Instant,
}

impl Elector {
    /// An elector for the Lease in `s`.
    pub fn new(client: kube::Client, s: Settings) -> Self {
        Elector {
            api: Api::namespaced(client, &s.namespace),
            s,
            last_record: None,
            last_change: Instant::now(),
        }
    }

    fn err(&self, source: kube::Error) -> LeaderError {
        LeaderError::Api {
            namespace: self.s.namespace.clone(),
            name: self.s.name.clone(),
            source,
        }
    }

    /// One attempt: Ok(true) when we hold the Lease afterwards.
    pub async fn try_once(&mut self) -> Result<bool, LeaderError> {
        let cur = self
            .api
            .get_opt(&self.s.name)
            .await
            .map_err(|e| self.err(e))?;
        let record = cur.as_ref().map(|l| {
            (
                holder(l).map(str::to_owned),
                l.spec
                    .as_ref()
                    .and_then(|s| s.renew_time.as_ref())
                    .map(|t| t.0),
            )
        });
        if record != self.last_record {
            self.last_record = record;
            self.last_change = Instant::now();
        }
        let step = decide(
            cur.as_ref(),
            &self.s.identity,
            self.last_change.elapsed(),
            self.s.lease_duration,
        );
        let now = Timestamp::now();
        let res = match step {
            Step::Follow => return Ok(false),
            Step::Create => {
                self.api
                    .create(&PostParams::default(), &held(None, &self.s, now))
                    .await
            }
            Step::Renew | Step::TakeOver => {
                self.api
                    .replace(
                        &self.s.name,
                        &PostParams::default(),
                        &held(cur.as_ref(), &self.s, now),
                    )
                    .await
            }
        };
        match res {
            Ok(l) => {
                if step == Step::TakeOver || step == Step::Create {
                    tracing::info!(identity = %self.s.identity, lease = %self.s.name, "became leader");
                }
                self.last_record = Some((
                    holder(&l).map(str::to_owned),
                    l.spec
                        .as_ref()
                        .and_then(|s| s.renew_time.as_ref())
                        .map(|t| t.0),
                ));
                self.last_change = Instant::now();
                Ok(true)
            }
            // Someone else wrote first: not ours this round.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Waits until we lead.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_once().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election"),
            }
            tokio::time::sleep(self.s.retry_period).await;
        }
    }

    /// Renews while leading; returns when the Lease could not be renewed within the deadline.
    pub async fn keep(&mut self) -> LeaderError {
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(self.s.retry_period).await;
            match self.try_once().await {
                Ok(true) => last_ok = Instant::now(),
                Ok(false) => {
                    // Someone else holds it now.
                    if self.last_record.as_ref().and_then(|r| r.0.as_deref())
                        != Some(self.s.identity.as_str())
                    {
                        return LeaderError::Lost {
                            namespace: self.s.namespace.clone(),
                            name: self.s.name.clone(),
                            deadline: self.s.renew_deadline,
                        };
                    }
                }
                Err(e) => tracing::warn!(error = %e, "renewing the lease"),
            }
            if last_ok.elapsed() > self.s.renew_deadline {
                return LeaderError::Lost {
                    namespace: self.s.namespace.clone(),
                    name: self.s.name.clone(),
                    deadline: self.s.renew_deadline,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, transitions: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("l".into()),
                namespace: Some("kube-system".into()),
                resource_version: Some("7".into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(Into::into),
                lease_transitions: Some(transitions),
                acquire_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn steps() {
        let d = Duration::from_secs(15);
        let cases: Vec<(&str, Option<Lease>, u64, Step)> = vec![
            ("no lease", None, 0, Step::Create),
            ("ours", Some(lease(Some("me"), 0)), 100, Step::Renew),
            ("free", Some(lease(None, 0)), 0, Step::TakeOver),
            ("empty holder", Some(lease(Some(""), 0)), 0, Step::TakeOver),
            (
                "other, fresh",
                Some(lease(Some("other"), 0)),
                15,
                Step::Follow,
            ),
            (
                "other, silent",
                Some(lease(Some("other"), 0)),
                16,
                Step::TakeOver,
            ),
        ];
        for (name, l, secs, want) in cases {
            assert_eq!(
                decide(l.as_ref(), "me", Duration::from_secs(secs), d),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn held_records() {
        let s = Settings {
            namespace: "kube-system".into(),
            name: "l".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        };
        let now = Timestamp::from_second(1_700_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let row = |l: Lease| {
            let sp = l.spec.unwrap_or_default();
            (
                l.metadata.resource_version,
                sp.holder_identity,
                sp.lease_transitions,
                sp.acquire_time.map(|t| t.0 == now),
                sp.renew_time.map(|t| t.0 == now),
                sp.lease_duration_seconds,
            )
        };
        let cases = vec![
            (
                "create",
                None,
                (
                    None,
                    Some("me".to_owned()),
                    Some(0),
                    Some(true),
                    Some(true),
                    Some(15),
                ),
            ),
            (
                "renew keeps acquire time",
                Some(lease(Some("me"), 2)),
                (
                    Some("7".to_owned()),
                    Some("me".to_owned()),
                    Some(2),
                    Some(false),
                    Some(true),
                    Some(15),
                ),
            ),
            (
                "take over counts a transition",
                Some(lease(Some("other"), 2)),
                (
                    Some("7".to_owned()),
                    Some("me".to_owned()),
                    Some(3),
                    Some(true),
                    Some(true),
                    Some(15),
                ),
            ),
        ];
        for (name, cur, want) in cases {
            assert_eq!(row(held(cur.as_ref(), &s, now)), want, "{name}");
        }
    }
}
