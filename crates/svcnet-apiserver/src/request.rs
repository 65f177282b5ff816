//! Parses a request path into what it addresses (like upstream's RequestInfo).

/// What a URL path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/api`: the core API versions.
    CoreVersions,
    /// `/apis`: the API groups.
    Groups,
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`: the resource list.
    ResourceList {
        group: String,
        version: String,
    },
    /// A resource path.
    Resource(ResourcePath),
    Version,
    Health(String),
    OpenApiV2,
    OpenApiV3Root,
    OpenApiV3(String),
}

/// A path under a group version that names a resource (collection or object).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Parses `path` (already percent-decoded per segment).
pub fn parse(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match parts.as_slice() {
        ["version"] => Some(Target::Version),
        [h @ ("healthz" | "livez" | "readyz"), rest @ ..] => Some(Target::Health(
            std::iter::once(*h)
                .chain(rest.iter().copied())
                .collect::<Vec<_>>()
                .join("/"),
        )),
        ["openapi", "v2"] => Some(Target::OpenApiV2),
        ["openapi", "v3"] => Some(Target::OpenApiV3Root),
        ["openapi", "v3", rest @ ..] if !rest.is_empty() => Some(Target::OpenApiV3(rest.join("/"))),
        ["api"] => Some(Target::CoreVersions),
        ["apis"] => Some(Target::Groups),
        ["apis", g] => Some(Target::Group(g.to_string())),
        ["api", v] => Some(Target::ResourceList {
            group: String::new(),
            version: v.to_string(),
        }),
        ["apis", g, v] => Some(Target::ResourceList {
            group: g.to_string(),
            version: v.to_string(),
        }),
        ["api", v, rest @ ..] => resource_path("", v, rest),
        ["apis", g, v, rest @ ..] => resource_path(g, v, rest),
        _ => None,
    }
}

fn resource_path(group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let mut p = ResourcePath {
        group: group.to_string(),
        version: version.to_string(),
        ..Default::default()
    };
    let mut rest = rest;
    if rest.first() == Some(&"namespaces") && rest.len() >= 2 {
        let ns = rest[1];
        if rest.len() == 2 || (rest.len() == 3 && matches!(rest[2], "status" | "finalize")) {
            // The namespace object itself.
            p.resource = "namespaces".into();
            p.name = Some(ns.to_string());
            p.subresource = rest.get(2).map(|s| s.to_string());
            return Some(Target::Resource(p));
        }
        p.namespace = Some(ns.to_string());
        rest = &rest[2..];
    }
    match rest {
        [res] => p.resource = res.to_string(),
        [res, name] => {
            p.resource = res.to_string();
            p.name = Some(name.to_string());
        }
        [res, name, sub] => {
            p.resource = res.to_string();
            p.name = Some(name.to_string());
            p.subresource = Some(sub.to_string());
        }
        _ => return None,
    }
    Some(Target::Resource(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(g: &str, ns: Option<&str>, res: &str, name: Option<&str>, sub: Option<&str>) -> Target {
        Target::Resource(ResourcePath {
            group: g.into(),
            version: "v1".into(),
            namespace: ns.map(Into::into),
            resource: res.into(),
            name: name.map(Into::into),
            subresource: sub.map(Into::into),
        })
    }

    #[test]
    fn paths() {
        let cases: Vec<(&str, Option<Target>)> = vec![
            ("/api", Some(Target::CoreVersions)),
            ("/apis", Some(Target::Groups)),
            ("/version", Some(Target::Version)),
            ("/readyz", Some(Target::Health("readyz".into()))),
            (
                "/api/v1",
                Some(Target::ResourceList {
                    group: "".into(),
                    version: "v1".into(),
                }),
            ),
            (
                "/apis/apps/v1",
                Some(Target::ResourceList {
                    group: "apps".into(),
                    version: "v1".into(),
                }),
            ),
            (
                "/api/v1/services",
                Some(rp("", None, "services", None, None)),
            ),
            (
                "/api/v1/nodes/n1",
                Some(rp("", None, "nodes", Some("n1"), None)),
            ),
            (
                "/api/v1/nodes/n1/status",
                Some(rp("", None, "nodes", Some("n1"), Some("status"))),
            ),
            (
                "/api/v1/namespaces",
                Some(rp("", None, "namespaces", None, None)),
            ),
            (
                "/api/v1/namespaces/dev",
                Some(rp("", None, "namespaces", Some("dev"), None)),
            ),
            (
                "/api/v1/namespaces/dev/status",
                Some(rp("", None, "namespaces", Some("dev"), Some("status"))),
            ),
            (
                "/api/v1/namespaces/dev/pods",
                Some(rp("", Some("dev"), "pods", None, None)),
            ),
            (
                "/api/v1/namespaces/dev/pods/p/log",
                Some(rp("", Some("dev"), "pods", Some("p"), Some("log"))),
            ),
            (
                "/apis/apps/v1/namespaces/default/deployments/web/scale",
                Some(rp(
                    "apps",
                    Some("default"),
                    "deployments",
                    Some("web"),
                    Some("scale"),
                )),
            ),
            ("/api/v1/namespaces/dev/pods/p/log/extra", None),
            ("/foo", None),
            (
                "/openapi/v3/apis/apps/v1",
                Some(Target::OpenApiV3("apis/apps/v1".into())),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(parse(path), want, "{path}");
        }
    }
}
