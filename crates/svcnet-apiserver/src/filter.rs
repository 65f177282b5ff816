//! Label and field selector filtering of objects for list and watch.

use std::collections::BTreeMap;

use serde_json::Value;
use svcnet_core::fields::{self, FieldSelector};
use svcnet_core::selector::Selector;

use crate::query::Query;
use crate::resources::Resource;
use crate::status::{ApiError, ApiResult};

/// The selectors of a list or watch request.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    kind: &'static str,
    label: Option<Selector>,
    field: Option<FieldSelector>,
}

impl Filter {
    pub fn from_query(res: &'static Resource, q: &Query) -> ApiResult<Self> {
        let f = Filter {
            kind: res.kind,
            label: q.label_selector()?,
            field: q.field_selector()?,
        };
        if let Some(fs) = &f.field {
            // Reject selectors on fields this kind does not support, as upstream does.
            fs.check_supported(res.kind)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
        }
        Ok(f)
    }

    /// True when no selector is set.
    pub fn is_empty(&self) -> bool {
        self.label.is_none() && self.field.is_none()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(l) = &self.label {
            let labels: BTreeMap<String, String> = obj["metadata"]["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            if !l.matches(&labels) {
                return false;
            }
        }
        if let Some(f) = &self.field {
            let fields = fields::object_fields(self.kind, obj).unwrap_or_default();
            if !f.matches_fields(&fields) {
                return false;
            }
        }
        true
    }
}
