//! Request body decoding (JSON, YAML, protobuf) and response encoding (JSON, YAML).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::protobuf;
use crate::status::{ApiError, ApiResult};

/// Request body media types we understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    Json,
    Yaml,
    Protobuf,
    MergePatch,
    StrategicMergePatch,
    JsonPatch,
    ApplyPatch,
}

/// The media type of a Content-Type header, lower-cased, without parameters.
pub fn media_type(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            s.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Classifies the request's Content-Type.
pub fn body_type(headers: &HeaderMap) -> ApiResult<BodyType> {
    let ct = media_type(headers, header::CONTENT_TYPE);
    Ok(match ct.as_str() {
        "" | "application/json" | "*/*" => BodyType::Json,
        "application/yaml" | "application/x-yaml" | "text/yaml" => BodyType::Yaml,
        "application/vnd.kubernetes.protobuf" => BodyType::Protobuf,
        "application/merge-patch+json" => BodyType::MergePatch,
        "application/strategic-merge-patch+json" => BodyType::StrategicMergePatch,
        "application/json-patch+json" => BodyType::JsonPatch,
        "application/apply-patch+yaml" | "application/apply-patch+json" => BodyType::ApplyPatch,
        other => return Err(ApiError::unsupported_media_type(other)),
    })
}

/// Decodes a body into JSON. `what` names the expected object for messages.
pub fn decode(bt: BodyType, body: &[u8]) -> ApiResult<Value> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    match bt {
        BodyType::Json
        | BodyType::MergePatch
        | BodyType::StrategicMergePatch
        | BodyType::JsonPatch => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON body: {e}"))),
        BodyType::Yaml | BodyType::ApplyPatch => decode_yaml(body),
        BodyType::Protobuf => {
            protobuf::decode(body).map_err(|e| ApiError::bad_request(e.to_string()))
        }
    }
}

fn decode_yaml(body: &[u8]) -> ApiResult<Value> {
    // JSON is YAML; try the strict JSON parser first for exact numbers.
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the YAML body is not valid UTF-8"))?;
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML body: {e}")))
}

/// How the client wants the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
}

/// Picks JSON or YAML from the Accept header (protobuf is answered as JSON).
pub fn output(headers: &HeaderMap) -> Output {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let first = accept
        .split(',')
        .next()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    if first == "application/yaml" {
        Output::Yaml
    } else {
        Output::Json
    }
}

/// Whether the Accept header asks for a `meta.k8s.io` Table.
pub fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(|a| {
            a.split(',').any(|p| {
                let p: String = p.chars().filter(|c| !c.is_whitespace()).collect();
                p.contains("as=Table") && p.contains("g=meta.k8s.io")
            })
        })
        .unwrap_or(false)
}

/// An object response with the given status code.
pub fn respond(code: u16, obj: &Value, out: Output) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    match out {
        Output::Json => {
            let body = serde_json::to_vec(obj).unwrap_or_default();
            (
                code,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response()
        }
        Output::Yaml => match serde_saphyr::to_string(obj) {
            Ok(s) => (
                code,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/yaml"),
                )],
                s,
            )
                .into_response(),
            Err(e) => ApiError::internal(format!("encoding YAML: {e}")).into_response(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(ct: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        m
    }

    #[test]
    fn body_types() {
        assert_eq!(body_type(&h("application/json")).unwrap(), BodyType::Json);
        assert_eq!(
            body_type(&h("application/strategic-merge-patch+json")).unwrap(),
            BodyType::StrategicMergePatch
        );
        assert_eq!(
            body_type(&h("application/apply-patch+yaml; charset=utf-8")).unwrap(),
            BodyType::ApplyPatch
        );
        assert_eq!(
            body_type(&h("application/vnd.kubernetes.protobuf")).unwrap(),
            BodyType::Protobuf
        );
        assert_eq!(body_type(&h("text/html")).unwrap_err().code, 415);
    }

    #[test]
    fn yaml_and_json() {
        let v = decode(
            BodyType::Yaml,
            b"apiVersion: v1\nkind: Service\nmetadata:\n  name: a\nspec:\n  ports:\n  - port: 80\n",
        )
        .unwrap();
        assert_eq!(v["spec"]["ports"][0]["port"], 80);
        assert_eq!(decode(BodyType::Json, b"{bad").unwrap_err().code, 400);
        assert_eq!(decode(BodyType::Json, b"").unwrap_err().code, 400);
    }

    #[test]
    fn table_accept() {
        let mut m = HeaderMap::new();
        m.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"),
        );
        assert!(wants_table(&m));
        assert!(!wants_table(&HeaderMap::new()));
    }
}
