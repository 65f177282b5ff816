//! Query parameters of API requests, parsed and validated.

use std::collections::HashMap;

use svcnet_core::fields::FieldSelector;
use svcnet_core::selector::Selector;

use crate::status::{ApiError, ApiResult};

/// Parsed query string.
#[derive(Debug, Default, Clone)]
pub struct Query {
    raw: HashMap<String, String>,
}

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        let raw = q
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        Query { raw }
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.raw.get(k).map(String::as_str)
    }

    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }

    pub fn int(&self, k: &str) -> ApiResult<Option<i64>> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value for {k}: {v:?} is not an integer"))
            }),
        }
    }

    pub fn label_selector(&self) -> ApiResult<Option<Selector>> {
        match self.get("labelSelector") {
            None | Some("") => Ok(None),
            Some(s) => Selector::parse(s)
                .map(Some)
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}"))),
        }
    }

    pub fn field_selector(&self) -> ApiResult<Option<FieldSelector>> {
        match self.get("fieldSelector") {
            None | Some("") => Ok(None),
            Some(s) => FieldSelector::parse(s)
                .map(Some)
                .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}"))),
        }
    }

    /// `fieldValidation`: Strict, Warn (default for requests that do not say) or Ignore.
    pub fn field_validation(&self) -> ApiResult<FieldValidation> {
        match self.get("fieldValidation") {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(o) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {o}. Valid values are: Ignore, Warn, Strict"
            ))),
        }
    }

    pub fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

/// Server-side handling of unknown fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}
