//! Events users look for (`kubectl describe`, `kubectl get events`): built here, posted without blocking reconciles.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::PostParams;
use kube::{Api, Resource};

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Something happened as intended.
    Normal,
    /// Something needs the user's attention.
    Warning,
}

/// A reference to `obj` for `involvedObject`.
pub fn reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    let m = obj.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        uid: m.uid.clone(),
        resource_version: m.resource_version.clone(),
        field_path: None,
    }
}

/// The Event object for one occurrence (upstream's recorder naming: `<object>.<hex nanoseconds>`).
pub fn build(
    component: &str,
    obj: ObjectReference,
    kind: Kind,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> Event {
    let ns = obj
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    let name = format!(
        "{}.{:x}",
        obj.name.as_deref().unwrap_or("unknown"),
        now.as_nanosecond()
    );
    Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(ns),
            ..Default::default()
        },
        involved_object: obj,
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(match kind {
            Kind::Normal => "Normal".into(),
            Kind::Warning => "Warning".into(),
        }),
        source: Some(EventSource {
            component: Some(component.into()),
            host: None,
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: None::<MicroTime>,
        count: Some(1),
        reporting_component: Some(component.into()),
        reporting_instance: Some(component.into()),
        action: None,
        related: None,
        series: None,
    }
}

/// Posts events in the background; a failed post is only logged.
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder writing through `client`.
    pub fn new(client: kube::Client) -> Self {
        Recorder { client }
    }

    /// Records one event about `obj` from `component`.
    pub fn record(
        &self,
        component: &str,
        obj: ObjectReference,
        kind: Kind,
        reason: &str,
        message: &str,
    ) {
        let ev = build(component, obj, kind, reason, message, Timestamp::now());
        let ns = ev.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        tokio::spawn(async move {
            if let Err(e) = api.create(&PostParams::default(), &ev).await {
                tracing::debug!(error = %e, reason = ?ev.reason, "posting event");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn event_shape() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("ns".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let now = Timestamp::from_second(16).unwrap_or(Timestamp::UNIX_EPOCH);
        let ev = build(
            "default-scheduler",
            reference(&pod),
            Kind::Normal,
            "Scheduled",
            "Successfully assigned ns/web-1 to n1",
            now,
        );
        assert_eq!(ev.metadata.name.as_deref(), Some("web-1.3b9aca000"));
        assert_eq!(ev.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(ev.involved_object.kind.as_deref(), Some("Pod"));
        assert_eq!(ev.involved_object.api_version.as_deref(), Some("v1"));
        assert_eq!(ev.type_.as_deref(), Some("Normal"));
        assert_eq!(
            ev.source.and_then(|s| s.component).as_deref(),
            Some("default-scheduler")
        );
        let node = k8s_openapi::api::core::v1::Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let ev = build(
            "node-controller",
            reference(&node),
            Kind::Warning,
            "NodeNotReady",
            "x",
            now,
        );
        assert_eq!(
            (ev.metadata.namespace.as_deref(), ev.type_.as_deref()),
            (Some("default"), Some("Warning"))
        );
    }
}
