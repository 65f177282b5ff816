//! Pod status from the agent's view of its containers: container states, phase, conditions, back-off.

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Kubelet's crash-loop back-off: 10 s doubling up to 5 min.
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// How long to wait before starting a container again after `crashes` exits in a row (the first
/// restart is immediate, as kubelet's back-off has no entry yet).
pub fn backoff(crashes: u32) -> Duration {
    if crashes == 0 {
        return Duration::ZERO;
    }
    let factor = 1u64 << (crashes - 1).min(16);
    (BACKOFF_INITIAL * factor as u32).min(BACKOFF_MAX)
}

/// A container's state as the agent tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated {
        exit_code: i32,
        signal: Option<i32>,
        reason: String,
        message: Option<String>,
        started_at: Option<Timestamp>,
        finished_at: Timestamp,
    },
}

impl State {
    /// The waiting state a new container starts in.
    pub fn creating() -> State {
        State::Waiting {
            reason: "ContainerCreating".into(),
            message: None,
        }
    }

    /// Terminated with kubelet's reasons: `Completed` for 0, `Error` otherwise.
    pub fn exited(
        exit_code: i32,
        signal: Option<i32>,
        started_at: Option<Timestamp>,
        finished_at: Timestamp,
    ) -> State {
        State::Terminated {
            exit_code,
            signal,
            reason: if exit_code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at,
            finished_at,
        }
    }

    fn to_k8s(&self) -> ContainerState {
        match self {
            State::Waiting { reason, message } => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: message.clone(),
                }),
                ..Default::default()
            },
            State::Running { started_at } => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(*started_at)),
                }),
                ..Default::default()
            },
            State::Terminated {
                exit_code,
                signal,
                reason,
                message,
                started_at,
                finished_at,
            } => ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: *exit_code,
                    signal: *signal,
                    reason: Some(reason.clone()),
                    message: message.clone(),
                    started_at: started_at.map(Time),
                    finished_at: Some(Time(*finished_at)),
                    container_id: None,
                }),
                ..Default::default()
            },
        }
    }
}

/// One container's tracked status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub name: String,
    pub image: String,
    pub state: State,
    /// The previous instance's termination, once it restarted.
    pub last: Option<State>,
    pub restart_count: i32,
    pub ready: bool,
    /// Startup probe passed (or none), and the process is running.
    pub started: bool,
    pub container_id: Option<String>,
}

impl Tracked {
    pub fn new(name: &str, image: &str) -> Tracked {
        Tracked {
            name: name.into(),
            image: image.into(),
            state: State::creating(),
            last: None,
            restart_count: 0,
            ready: false,
            started: false,
            container_id: None,
        }
    }

    /// The API form.
    pub fn to_k8s(&self) -> ContainerStatus {
        let image = self.image.clone();
        ContainerStatus {
            name: self.name.clone(),
            image_id: format!("svcnet://{image}"),
            image,
            state: Some(self.state.to_k8s()),
            last_state: Some(self.last.as_ref().map(State::to_k8s).unwrap_or_default()),
            restart_count: self.restart_count,
            ready: self.ready,
            started: Some(self.started),
            container_id: self.container_id.clone(),
            ..Default::default()
        }
    }
}

/// The pod phase from its containers, as kubelet's `getPhase` (no init containers).
pub fn phase(containers: &[Tracked], restart_policy: &str) -> &'static str {
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in containers {
        match &c.state {
            State::Running { .. } => running += 1,
            State::Terminated { exit_code, .. } => {
                stopped += 1;
                if *exit_code == 0 {
                    succeeded += 1;
                }
            }
            // Waiting to restart counts as stopped; waiting to start for the first time as pending.
            State::Waiting { .. } if c.last.is_some() => stopped += 1,
            State::Waiting { .. } => waiting += 1,
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        return match restart_policy {
            "Always" => "Running",
            "OnFailure" if stopped == succeeded => "Succeeded",
            "OnFailure" => "Running",
            _ if stopped == succeeded => "Succeeded",
            _ => "Failed",
        };
    }
    "Pending"
}

/// A condition's value with its reason when false.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cond {
    kind: &'static str,
    ok: bool,
    reason: Option<String>,
    message: Option<String>,
}

/// The pod's conditions, keeping `lastTransitionTime` of conditions whose status did not
/// change (and PodScheduled as the scheduler set it).
pub fn conditions(
    containers: &[Tracked],
    sandbox_ready: bool,
    previous: &[PodCondition],
    now: Timestamp,
) -> Vec<PodCondition> {
    let not_ready: Vec<&str> = containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let all_ready = not_ready.is_empty() && !containers.is_empty();
    let (reason, message) = if all_ready {
        (None, None)
    } else {
        (
            Some("ContainersNotReady".to_string()),
            Some(format!(
                "containers with unready status: [{}]",
                not_ready.join(" ")
            )),
        )
    };
    let want = [
        Cond {
            kind: "PodReadyToStartContainers",
            ok: sandbox_ready,
            reason: None,
            message: None,
        },
        Cond {
            kind: "Initialized",
            ok: true,
            reason: None,
            message: None,
        },
        Cond {
            kind: "Ready",
            ok: all_ready,
            reason: reason.clone(),
            message: message.clone(),
        },
        Cond {
            kind: "ContainersReady",
            ok: all_ready,
            reason,
            message,
        },
    ];
    let mut out: Vec<PodCondition> = Vec::new();
    for c in want {
        let status = if c.ok { "True" } else { "False" };
        let since = previous
            .iter()
            .find(|p| p.type_ == c.kind && p.status == status)
            .and_then(|p| p.last_transition_time.clone())
            .unwrap_or(Time(now));
        out.push(PodCondition {
            type_: c.kind.into(),
            status: status.into(),
            reason: c.reason,
            message: c.message,
            last_transition_time: Some(since),
            last_probe_time: None,
            observed_generation: None,
        });
    }
    let scheduled = previous
        .iter()
        .find(|p| p.type_ == "PodScheduled")
        .cloned()
        .unwrap_or(PodCondition {
            type_: "PodScheduled".into(),
            status: "True".into(),
            last_transition_time: Some(Time(now)),
            ..Default::default()
        });
    out.push(scheduled);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let got: Vec<u64> = (0..8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(got, vec![0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    fn tracked(state: State, last: bool) -> Tracked {
        let mut t = Tracked::new("c", "img");
        t.state = state;
        if last {
            t.last = Some(State::exited(1, None, None, ts("2024-01-01T00:00:00Z")));
        }
        t
    }

    #[test]
    fn phases() {
        let run = State::Running {
            started_at: ts("2024-01-01T00:00:00Z"),
        };
        let ok = State::exited(0, None, None, ts("2024-01-01T00:00:01Z"));
        let bad = State::exited(2, None, None, ts("2024-01-01T00:00:01Z"));
        let back = State::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: None,
        };
        let cases = [
            (vec![tracked(State::creating(), false)], "Always", "Pending"),
            (vec![tracked(run.clone(), false)], "Always", "Running"),
            (
                vec![
                    tracked(run.clone(), false),
                    tracked(State::creating(), false),
                ],
                "Always",
                "Pending",
            ),
            (vec![tracked(back.clone(), true)], "Always", "Running"),
            (vec![tracked(ok.clone(), false)], "Never", "Succeeded"),
            (vec![tracked(bad.clone(), false)], "Never", "Failed"),
            (
                vec![tracked(ok.clone(), false), tracked(bad.clone(), false)],
                "Never",
                "Failed",
            ),
            (vec![tracked(ok.clone(), false)], "OnFailure", "Succeeded"),
            (vec![tracked(bad.clone(), false)], "OnFailure", "Running"),
            (
                vec![tracked(ok, false), tracked(run, false)],
                "Never",
                "Running",
            ),
        ];
        for (cs, policy, want) in cases {
            assert_eq!(phase(&cs, policy), want, "{cs:?} {policy}");
        }
    }

    #[test]
    fn conditions_keep_transition_times() {
        let t0 = ts("2024-01-01T00:00:00Z");
        let t1 = ts("2024-01-01T00:01:00Z");
        let mut a = Tracked::new("a", "img");
        let b = Tracked::new("b", "img");
        a.ready = true;
        let first = conditions(&[a.clone(), b.clone()], true, &[], t0);
        let text: Vec<String> = first
            .iter()
            .map(|c| {
                format!(
                    "{}={} {}",
                    c.type_,
                    c.status,
                    c.message.clone().unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(
            text,
            vec![
                "PodReadyToStartContainers=True ",
                "Initialized=True ",
                "Ready=False containers with unready status: [b]",
                "ContainersReady=False containers with unready status: [b]",
                "PodScheduled=True ",
            ]
        );
        let mut b2 = b;
        b2.ready = true;
        let second = conditions(&[a, b2], true, &first, t1);
        let times: Vec<(String, String, Timestamp)> = second
            .iter()
            .map(|c| {
                let t = c.last_transition_time.clone().map(|t| t.0).unwrap_or(t0);
                (c.type_.clone(), c.status.clone(), t)
            })
            .collect();
        assert_eq!(
            times,
            vec![
                ("PodReadyToStartContainers".into(), "True".into(), t0),
                ("Initialized".into(), "True".into(), t0),
                ("Ready".into(), "True".into(), t1),
                ("ContainersReady".into(), "True".into(), t1),
                ("PodScheduled".into(), "True".into(), t0),
            ]
        );
    }
}
