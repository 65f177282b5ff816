//! Reduces Kubernetes Services and EndpointSlices to the compact records the index keeps.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::index::{Endpoint, Kind, Port, Proto, ServiceSpec, Slice};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Why an object gets no DNS records.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    #[error("object has no name or namespace")]
    NoName,
    #[error("EndpointSlice has no {SERVICE_NAME_LABEL} label")]
    NoServiceLabel,
    #[error("Service has no ClusterIP yet")]
    NoClusterIp,
    #[error("Service of type ExternalName has no externalName")]
    NoExternalName,
}

/// `<name>.<namespace>`, lowercase: the index key.
pub fn service_key(name: &str, namespace: &str) -> Box<str> {
    let mut k = String::with_capacity(name.len() + namespace.len() + 1);
    k.push_str(name);
    k.push('.');
    k.push_str(namespace);
    k.make_ascii_lowercase();
    k.into()
}

/// The key of a Service object.
pub fn key_of_service(s: &Service) -> Result<Box<str>, ConvertError> {
    let (Some(n), Some(ns)) = (&s.metadata.name, &s.metadata.namespace) else {
        return Err(ConvertError::NoName);
    };
    Ok(service_key(n, ns))
}

/// The DNS view of a Service.
pub fn service(s: &Service) -> Result<ServiceSpec, ConvertError> {
    let key = key_of_service(s)?;
    let spec = s.spec.clone().unwrap_or_default();
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        let t = spec
            .external_name
            .as_deref()
            .map(|t| t.trim_end_matches('.'))
            .unwrap_or("");
        if t.is_empty() {
            return Err(ConvertError::NoExternalName);
        }
        Kind::ExternalName(t.to_ascii_lowercase().into())
    } else if spec.cluster_ip.as_deref() == Some("None") {
        Kind::Headless
    } else {
        let mut ips: Vec<String> = spec.cluster_ips.clone().unwrap_or_default();
        if ips.is_empty() {
            ips.extend(spec.cluster_ip.clone());
        }
        let (mut v4, mut v6) = (None, None);
        for ip in ips.iter().filter_map(|s| s.parse::<IpAddr>().ok()) {
            match ip {
                IpAddr::V4(a) => v4 = v4.or(Some(a)),
                IpAddr::V6(a) => v6 = v6.or(Some(a)),
            }
        }
        if v4.is_none() && v6.is_none() {
            return Err(ConvertError::NoClusterIp);
        }
        Kind::ClusterIp { v4, v6 }
    };
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let proto = Proto::from_k8s(p.protocol.as_deref())?;
            let port = u16::try_from(p.port).ok()?;
            Port::new(p.name.as_deref()?, proto, port)
        })
        .collect();
    Ok(ServiceSpec {
        key,
        kind,
        ports,
        publish_not_ready: spec.publish_not_ready_addresses == Some(true),
    })
}

/// The Service key and name of an EndpointSlice.
pub fn slice_ids(s: &EndpointSlice) -> Result<(Box<str>, String), ConvertError> {
    let (Some(n), Some(ns)) = (&s.metadata.name, &s.metadata.namespace) else {
        return Err(ConvertError::NoName);
    };
    let svc = s
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .ok_or(ConvertError::NoServiceLabel)?;
    Ok((service_key(svc, ns), n.clone()))
}

/// The DNS view of an EndpointSlice: its named ports and addresses.
pub fn slice(s: &EndpointSlice) -> Slice {
    let ports = s
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let proto = Proto::from_k8s(p.protocol.as_deref())?;
            let port = u16::try_from(p.port?).ok()?;
            Port::new(p.name.as_deref()?, proto, port)
        })
        .collect();
    let endpoints = s
        .endpoints
        .iter()
        .flat_map(|e| {
            // A nil ready condition means ready (EndpointSlice API contract).
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            let hostname: Option<Box<str>> = e
                .hostname
                .as_deref()
                .filter(|h| !h.is_empty())
                .map(|h| h.to_ascii_lowercase().into());
            e.addresses.iter().filter_map(move |a| {
                Some(Endpoint {
                    ip: a.parse().ok()?,
                    hostname: hostname.clone(),
                    ready,
                })
            })
        })
        .collect();
    Slice { ports, endpoints }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(json: serde_json::Value) -> Service {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn services() {
        let cases: Vec<(serde_json::Value, Result<&str, ConvertError>)> = vec![
            (
                serde_json::json!({"metadata":{"name":"Web","namespace":"default"},
                    "spec":{"clusterIP":"10.96.0.5","clusterIPs":["10.96.0.5","fd00::5"],
                    "ports":[{"name":"http","port":80},{"port":81},{"name":"dns","port":53,"protocol":"UDP"}]}}),
                Ok(
                    "web.default ClusterIp { v4: Some(10.96.0.5), v6: Some(fd00::5) } [http/tcp:80, dns/udp:53] false",
                ),
            ),
            (
                serde_json::json!({"metadata":{"name":"h","namespace":"n"},
                    "spec":{"clusterIP":"None","publishNotReadyAddresses":true}}),
                Ok("h.n Headless [] true"),
            ),
            (
                serde_json::json!({"metadata":{"name":"e","namespace":"n"},
                    "spec":{"type":"ExternalName","externalName":"Example.COM."}}),
                Ok("e.n ExternalName(\"example.com\") [] false"),
            ),
            (
                serde_json::json!({"metadata":{"name":"e","namespace":"n"},"spec":{"type":"ExternalName"}}),
                Err(ConvertError::NoExternalName),
            ),
            (
                serde_json::json!({"metadata":{"name":"p","namespace":"n"},"spec":{}}),
                Err(ConvertError::NoClusterIp),
            ),
            (
                serde_json::json!({"metadata":{"name":"p"}}),
                Err(ConvertError::NoName),
            ),
        ];
        for (obj, want) in cases {
            let got = service(&svc(obj.clone())).map(|s| {
                format!(
                    "{} {:?} {:?} {}",
                    s.key, s.kind, s.ports, s.publish_not_ready
                )
            });
            assert_eq!(got.as_deref().map_err(Clone::clone), want, "{obj}");
        }
    }

    #[test]
    fn slices() {
        let s: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata":{"name":"web-x1","namespace":"default","labels":{"kubernetes.io/service-name":"web"}},
            "addressType":"IPv4",
            "ports":[{"name":"http","port":8080},{"port":9}],
            "endpoints":[
                {"addresses":["10.244.0.5"],"hostname":"Web-0","conditions":{"ready":true}},
                {"addresses":["10.244.0.6"],"conditions":{"ready":false}},
                {"addresses":["10.244.0.7"]},
                {"addresses":["not-an-ip"]}
            ]
        }))
        .unwrap();
        assert_eq!(
            slice_ids(&s).unwrap(),
            ("web.default".into(), "web-x1".to_string())
        );
        assert_eq!(
            format!("{:?}", slice(&s)),
            "Slice { ports: [http/tcp:8080], endpoints: [\
             Endpoint { ip: 10.244.0.5, hostname: Some(\"web-0\"), ready: true }, \
             Endpoint { ip: 10.244.0.6, hostname: None, ready: false }, \
             Endpoint { ip: 10.244.0.7, hostname: None, ready: true }] }"
        );
        let unlabeled: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata":{"name":"x","namespace":"default"},"addressType":"IPv4","endpoints":[]
        }))
        .unwrap();
        assert_eq!(slice_ids(&unlabeled), Err(ConvertError::NoServiceLabel));
    }
}
