//! Label selectors: the string syntax (`a=b,c in (d),!e`), structured `LabelSelector`s, and matching.
//!
//! The lexer and parser follow upstream `apimachinery/pkg/labels/selector.go`
//! so that the same strings are accepted, rejected (with the same messages)
//! and printed back in the same canonical form.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::field_errors::{ErrorList, FieldError, Path, aggregate_message};
use crate::names::{is_label_key, is_label_value, validate_labels};

/// A selector that could not be parsed or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The string is malformed at byte `position`; `message` is upstream's text
    /// (what was found and what was expected).
    #[error("{message}")]
    Syntax { position: usize, message: String },
    /// A structured selector uses something the string form cannot express.
    #[error("{0}")]
    Invalid(String),
}

impl SelectorError {
    /// Byte offset in the input where parsing failed (0 for non-syntax errors).
    pub fn position(&self) -> usize {
        match self {
            SelectorError::Syntax { position, .. } => *position,
            SelectorError::Invalid(_) => 0,
        }
    }
}

/// The relation a requirement checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

impl Operator {
    /// Upstream's `selection.Operator` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

/// One `key op values` term of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// A validated requirement (upstream `NewRequirement`); the error is the
    /// aggregate of field errors, rendered as upstream does.
    pub fn new(
        key: &str,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<Requirement, SelectorError> {
        let errs = requirement_errors(key, operator, &values, &Path::none());
        if errs.is_empty() {
            Ok(Requirement {
                key: key.to_string(),
                operator,
                values,
            })
        } else {
            Err(SelectorError::Invalid(aggregate_message(&errs)))
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether `labels` satisfy this requirement. `!=` and `notin` match
    /// objects without the key.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                value.is_some_and(|v| self.values.contains(v))
            }
            Operator::NotIn | Operator::NotEquals => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(have) = value.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let [want] = self.values.as_slice() else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let (op, parens) = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => ("=", false),
            Operator::DoubleEquals => ("==", false),
            Operator::NotEquals => ("!=", false),
            Operator::GreaterThan => (">", false),
            Operator::LessThan => ("<", false),
            Operator::In => (" in ", true),
            Operator::NotIn => (" notin ", true),
        };
        f.write_str(op)?;
        if parens {
            f.write_str("(")?;
        }
        let mut sorted: Vec<&str> = self.values.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        f.write_str(&sorted.join(","))?;
        if parens {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Field errors of a requirement, as upstream `NewRequirement` reports them.
fn requirement_errors(key: &str, op: Operator, values: &[String], path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let key_msgs = is_label_key(key);
    if !key_msgs.is_empty() {
        errs.push(FieldError::invalid(
            &path.child("key"),
            key,
            key_msgs.join("; "),
        ));
    }
    let vpath = path.child("values");
    match op {
        Operator::In | Operator::NotIn => {
            if values.is_empty() {
                errs.push(FieldError::invalid(
                    &vpath,
                    values.to_vec(),
                    "for 'in', 'notin' operators, values set can't be empty",
                ));
            }
        }
        Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
            if values.len() != 1 {
                errs.push(FieldError::invalid(
                    &vpath,
                    values.to_vec(),
                    "exact-match compatibility requires one single value",
                ));
            }
        }
        Operator::Exists | Operator::DoesNotExist => {
            if !values.is_empty() {
                errs.push(FieldError::invalid(
                    &vpath,
                    values.to_vec(),
                    "values set must be empty for exists and does not exist",
                ));
            }
        }
        Operator::GreaterThan | Operator::LessThan => {
            if values.len() != 1 {
                errs.push(FieldError::invalid(
                    &vpath,
                    values.to_vec(),
                    "for 'Gt', 'Lt' operators, exactly one value is required",
                ));
            }
            for (i, v) in values.iter().enumerate() {
                if v.parse::<i64>().is_err() {
                    errs.push(FieldError::invalid(
                        &vpath.index(i),
                        v.as_str(),
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    ));
                }
            }
        }
    }
    for (i, v) in values.iter().enumerate() {
        let msgs = is_label_value(v);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(
                &vpath.index(i).key(key),
                v.as_str(),
                msgs.join("; "),
            ));
        }
    }
    errs
}

/// A label selector: the AND of its requirements (or the selector that matches nothing).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl Selector {
    /// Matches everything.
    pub fn everything() -> Selector {
        Selector::default()
    }

    /// Matches nothing (a nil structured selector).
    pub fn nothing() -> Selector {
        Selector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parse the string form (`?labelSelector=`).
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let tokens = lex(input);
        let mut p = Parser { tokens, pos: 0 };
        let mut reqs = p.parse()?;
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector {
            requirements: reqs,
            nothing: false,
        })
    }

    /// `key=value` for each entry (a Service's `spec.selector`). An empty map
    /// gives the empty selector (matches everything); callers decide what an
    /// empty Service selector means.
    pub fn from_map(map: &BTreeMap<String, String>) -> Selector {
        Selector {
            requirements: map
                .iter()
                .map(|(k, v)| Requirement {
                    key: k.clone(),
                    operator: Operator::Equals,
                    values: vec![v.clone()],
                })
                .collect(),
            nothing: false,
        }
    }

    /// Upstream `LabelSelectorAsSelector`: `None` matches nothing, an empty
    /// selector matches everything.
    pub fn from_label_selector(ls: Option<&LabelSelector>) -> Result<Selector, SelectorError> {
        let Some(ls) = ls else {
            return Ok(Selector::nothing());
        };
        let mut reqs = Vec::new();
        if let Some(ml) = &ls.match_labels {
            for (k, v) in ml {
                reqs.push(Requirement::new(k, Operator::Equals, vec![v.clone()])?);
            }
        }
        for expr in ls.match_expressions.iter().flatten() {
            let op = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::Invalid(format!(
                        "{} is not a valid label selector operator",
                        crate::field_errors::go_quote(other)
                    )));
                }
            };
            reqs.push(Requirement::new(
                &expr.key,
                op,
                expr.values.clone().unwrap_or_default(),
            )?);
        }
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector {
            requirements: reqs,
            nothing: false,
        })
    }

    /// Add a requirement (kept sorted by key).
    pub fn with_requirement(mut self, r: Requirement) -> Selector {
        self.requirements.push(r);
        self.requirements.sort_by(|a, b| a.key.cmp(&b.key));
        self
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True when it restricts nothing (matches everything).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// True for [`Selector::nothing`].
    pub fn matches_nothing(&self) -> bool {
        self.nothing
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// The value `label` must have, if the selector pins it to exactly one.
    pub fn requires_exact_match(&self, label: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == label)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Upstream `ValidateLabelSelector` (`metav1/validation`): field errors for
/// a structured selector such as a Deployment's `spec.selector`.
pub fn validate_label_selector(ls: &LabelSelector, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    if let Some(ml) = &ls.match_labels {
        errs.extend(validate_labels(ml, &path.child("matchLabels")));
    }
    for (i, expr) in ls.match_expressions.iter().flatten().enumerate() {
        errs.extend(validate_requirement(
            expr,
            &path.child("matchExpressions").index(i),
        ));
    }
    errs
}

fn validate_requirement(sr: &LabelSelectorRequirement, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let values = sr.values.as_deref().unwrap_or_default();
    match sr.operator.as_str() {
        "In" | "NotIn" => {
            if values.is_empty() {
                errs.push(FieldError::required(
                    &path.child("values"),
                    "must be specified when `operator` is 'In' or 'NotIn'",
                ));
            }
        }
        "Exists" | "DoesNotExist" => {
            if !values.is_empty() {
                errs.push(FieldError::forbidden(
                    &path.child("values"),
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                ));
            }
        }
        other => errs.push(FieldError::invalid(
            &path.child("operator"),
            other,
            "not a valid selector operator",
        )),
    }
    for m in is_label_key(&sr.key) {
        errs.push(FieldError::invalid(&path.child("key"), sr.key.as_str(), m));
    }
    for (i, v) in values.iter().enumerate() {
        for m in is_label_value(v) {
            errs.push(FieldError::invalid(
                &path.child("values").index(i),
                v.as_str(),
                m,
            ));
        }
    }
    errs
}

// ---- lexer ---------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

#[derive(Debug, Clone)]
struct Item<'a> {
    tok: Tok,
    lit: &'a str,
    pos: usize,
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn symbol(s: &str) -> Option<Tok> {
    Some(match s {
        ")" => Tok::ClosedPar,
        "," => Tok::Comma,
        "!" => Tok::DoesNotExist,
        "==" => Tok::DoubleEquals,
        "=" => Tok::Equals,
        ">" => Tok::GreaterThan,
        "in" => Tok::In,
        "<" => Tok::LessThan,
        "!=" => Tok::NotEquals,
        "notin" => Tok::NotIn,
        "(" => Tok::OpenPar,
        _ => return None,
    })
}

/// Split into tokens; always ends with `End`. Splitting only at ASCII bytes
/// keeps every slice on a UTF-8 boundary.
fn lex(s: &str) -> Vec<Item<'_>> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    loop {
        while i < b.len() && is_whitespace(b[i]) {
            i += 1;
        }
        if i >= b.len() {
            out.push(Item {
                tok: Tok::End,
                lit: "",
                pos: s.len(),
            });
            return out;
        }
        let start = i;
        if is_special(b[i]) {
            // Longest symbol wins: `!=` and `==` are two bytes, the rest one.
            let two = (i + 1 < b.len() && is_special(b[i + 1]))
                .then(|| symbol(&s[i..i + 2]))
                .flatten();
            let (tok, len) = match two {
                Some(t) => (t, 2),
                None => (symbol(&s[i..i + 1]).unwrap_or(Tok::Identifier), 1),
            };
            i += len;
            out.push(Item {
                tok,
                lit: &s[start..i],
                pos: start,
            });
        } else {
            while i < b.len() && !is_special(b[i]) && !is_whitespace(b[i]) {
                i += 1;
            }
            let lit = &s[start..i];
            let tok = match symbol(lit) {
                Some(t) => t,
                None => Tok::Identifier,
            };
            out.push(Item {
                tok,
                lit,
                pos: start,
            });
        }
    }
}

// ---- parser --------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    KeyAndOperator,
    Values,
}

struct Parser<'a> {
    tokens: Vec<Item<'a>>,
    pos: usize,
}

fn syntax(pos: usize, message: String) -> SelectorError {
    SelectorError::Syntax {
        position: pos,
        message,
    }
}

impl<'a> Parser<'a> {
    fn item(&self, ctx: Ctx) -> (Tok, &'a str, usize) {
        // The lexer always ends with End, and nothing consumes past it.
        let it = &self.tokens[self.pos.min(self.tokens.len() - 1)];
        let tok = match (ctx, it.tok) {
            // `in` / `notin` are ordinary values inside a value context.
            (Ctx::Values, Tok::In | Tok::NotIn) => Tok::Identifier,
            (_, t) => t,
        };
        (tok, it.lit, it.pos)
    }

    fn lookahead(&self, ctx: Ctx) -> (Tok, &'a str, usize) {
        self.item(ctx)
    }

    fn consume(&mut self, ctx: Ctx) -> (Tok, &'a str, usize) {
        let r = self.item(ctx);
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        r
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut reqs = Vec::new();
        loop {
            let (tok, lit, pos) = self.lookahead(Ctx::Values);
            match tok {
                Tok::Identifier | Tok::DoesNotExist => {
                    let r = self.parse_requirement().map_err(|e| match e {
                        SelectorError::Syntax { position, message } => SelectorError::Syntax {
                            position,
                            message: format!("unable to parse requirement: {message}"),
                        },
                        other => other,
                    })?;
                    reqs.push(r);
                    let (t, l, p) = self.consume(Ctx::Values);
                    match t {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => {
                            let (t2, l2, p2) = self.lookahead(Ctx::Values);
                            if t2 != Tok::Identifier && t2 != Tok::DoesNotExist {
                                return Err(syntax(
                                    p2,
                                    format!("found '{l2}', expected: identifier after ','"),
                                ));
                            }
                        }
                        _ => {
                            return Err(syntax(
                                p,
                                format!("found '{l}', expected: ',' or 'end of string'"),
                            ));
                        }
                    }
                }
                Tok::End => return Ok(reqs),
                _ => {
                    return Err(syntax(
                        pos,
                        format!("found '{lit}', expected: !, identifier, or 'end of string'"),
                    ));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (key, inferred, key_pos) = self.parse_key_and_infer_operator()?;
        if let Some(op) = inferred {
            return self.build(key, op, Vec::new(), key_pos);
        }
        let op = self.parse_operator()?;
        let values: BTreeSet<String> = match op {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        self.build(key, op, values.into_iter().collect(), key_pos)
    }

    fn build(
        &self,
        key: &str,
        op: Operator,
        values: Vec<String>,
        pos: usize,
    ) -> Result<Requirement, SelectorError> {
        let errs = requirement_errors(key, op, &values, &Path::none());
        if errs.is_empty() {
            Ok(Requirement {
                key: key.to_string(),
                operator: op,
                values,
            })
        } else {
            Err(syntax(pos, aggregate_message(&errs)))
        }
    }

    fn parse_key_and_infer_operator(
        &mut self,
    ) -> Result<(&'a str, Option<Operator>, usize), SelectorError> {
        let mut op = None;
        let (mut tok, mut lit, mut pos) = self.consume(Ctx::Values);
        if tok == Tok::DoesNotExist {
            op = Some(Operator::DoesNotExist);
            (tok, lit, pos) = self.consume(Ctx::Values);
        }
        if tok != Tok::Identifier {
            return Err(syntax(pos, format!("found '{lit}', expected: identifier")));
        }
        let msgs = is_label_key(lit);
        if !msgs.is_empty() {
            // Upstream validates the key against a nil path here.
            let e = FieldError::invalid(&Path::none(), lit, msgs.join("; "));
            return Err(syntax(pos, e.to_string()));
        }
        let (t, _, _) = self.lookahead(Ctx::Values);
        if (t == Tok::End || t == Tok::Comma) && op.is_none() {
            op = Some(Operator::Exists);
        }
        Ok((lit, op, pos))
    }

    fn parse_operator(&mut self) -> Result<Operator, SelectorError> {
        let (tok, lit, pos) = self.consume(Ctx::KeyAndOperator);
        Ok(match tok {
            Tok::In => Operator::In,
            Tok::Equals => Operator::Equals,
            Tok::DoubleEquals => Operator::DoubleEquals,
            Tok::GreaterThan => Operator::GreaterThan,
            Tok::LessThan => Operator::LessThan,
            Tok::NotIn => Operator::NotIn,
            Tok::NotEquals => Operator::NotEquals,
            _ => {
                return Err(syntax(
                    pos,
                    format!("found '{lit}', expected: in, notin, =, ==, !=, gt, lt"),
                ));
            }
        })
    }

    fn parse_values(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        let (tok, lit, pos) = self.consume(Ctx::Values);
        if tok != Tok::OpenPar {
            return Err(syntax(pos, format!("found '{lit}' expected: '('")));
        }
        let (tok, lit, pos) = self.lookahead(Ctx::Values);
        match tok {
            Tok::Identifier | Tok::Comma => {
                let s = self.parse_identifiers_list()?;
                let (t, _, p) = self.consume(Ctx::Values);
                if t != Tok::ClosedPar {
                    return Err(syntax(p, format!("found '{lit}', expected: ')'")));
                }
                Ok(s)
            }
            Tok::ClosedPar => {
                self.consume(Ctx::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(syntax(
                pos,
                format!("found '{lit}', expected: ',', ')' or identifier"),
            )),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        let mut s = BTreeSet::new();
        loop {
            let (tok, lit, pos) = self.consume(Ctx::Values);
            match tok {
                Tok::Identifier => {
                    s.insert(lit.to_string());
                    let (t2, l2, p2) = self.lookahead(Ctx::Values);
                    match t2 {
                        Tok::Comma => continue,
                        Tok::ClosedPar => return Ok(s),
                        _ => return Err(syntax(p2, format!("found '{l2}', expected: ',' or ')'"))),
                    }
                }
                Tok::Comma => {
                    // An empty value: `(,a)`, `(a,)` and `(a,,b)` all hold "".
                    if s.is_empty() {
                        s.insert(String::new());
                    }
                    let (t2, _, _) = self.lookahead(Ctx::Values);
                    if t2 == Tok::ClosedPar {
                        s.insert(String::new());
                        return Ok(s);
                    }
                    if t2 == Tok::Comma {
                        s.insert(String::new());
                    }
                }
                _ => {
                    return Err(syntax(
                        pos,
                        format!("found '{lit}', expected: ',', or identifier"),
                    ));
                }
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        let (tok, _, _) = self.lookahead(Ctx::Values);
        if tok == Tok::End || tok == Tok::Comma {
            return Ok(BTreeSet::from([String::new()]));
        }
        let (tok, lit, pos) = self.consume(Ctx::Values);
        if tok == Tok::Identifier {
            Ok(BTreeSet::from([lit.to_string()]))
        } else {
            Err(syntax(pos, format!("found '{lit}', expected: identifier")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Upstream `TestSelectorParse` and `TestSetSelectorParser`: valid inputs
    /// and their canonical rendering.
    #[test]
    fn parses_valid_vectors() {
        let cases = [
            ("x=a,y=b,z=c", "x=a,y=b,z=c"),
            ("", ""),
            ("x!=a,y=b", "x!=a,y=b"),
            ("x=", "x="),
            ("x= ", "x="),
            ("x=,z= ", "x=,z="),
            ("x= ,z= ", "x=,z="),
            ("!x", "!x"),
            ("x>1", "x>1"),
            ("x>1,z<5", "x>1,z<5"),
            ("\rx", "x"),
            (
                "this-is-a-dns.domain.com/key-with-dash",
                "this-is-a-dns.domain.com/key-with-dash",
            ),
            (
                "this-is-another-dns.domain.com/key-with-dash in (so,what)",
                "this-is-another-dns.domain.com/key-with-dash in (so,what)",
            ),
            (
                "0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
                "0.1.2.domain/99 notin (10.10.100.1,tick.tack.clock)",
            ),
            ("foo  in\t (abc)", "foo in (abc)"),
            ("x notin\n (abc)", "x notin (abc)"),
            ("x  notin\t\t\t(abc,def)", "x notin (abc,def)"),
            ("x in (abc,def)", "x in (abc,def)"),
            ("x in (abc,)", "x in (,abc)"),
            ("x in ()", "x in ()"),
            (
                "x notin (abc,,def),bar,z in (),w",
                "bar,w,x notin (,abc,def),z in ()",
            ),
            ("x,y in (a)", "x,y in (a)"),
            ("x=a", "x=a"),
            ("x<7", "x<7"),
            ("x=a,y!=b,z in (h,i,j)", "x=a,y!=b,z in (h,i,j)"),
            ("x notin ( )", "x notin ()"),
            ("x notin (, a)", "x notin (,a)"),
            ("a ", "a"),
            ("a in (x,y,notin, z,in)", "a in (in,notin,x,y,z)"),
            (
                "x in (foo,,baz),y,z notin ()",
                "x in (,baz,foo),y,z notin ()",
            ),
            ("notin=in", "notin=in"),
            ("x==a", "x==a"),
            ("x=a,a=x", "a=x,x=a"),
        ];
        for (input, want) in cases {
            let s = Selector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(s.to_string(), want, "{input:?}");
        }
    }

    /// Upstream's invalid vectors, with the message a user sees and where.
    #[test]
    fn rejects_invalid_vectors() {
        let name_part = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
        let value_msg = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
        let cases: Vec<(&str, usize, String)> = vec![
            (
                "x=a||y=b",
                0,
                format!("unable to parse requirement: values[0][x]: Invalid value: \"a||y\": {value_msg}"),
            ),
            ("x==a==b", 4, "found '==', expected: ',' or 'end of string'".into()),
            ("!x=a", 2, "found '=', expected: ',' or 'end of string'".into()),
            (
                "x<a",
                0,
                "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer".into(),
            ),
            ("x,,y", 2, "found ',', expected: identifier after ','".into()),
            (",x,y", 0, "found ',', expected: !, identifier, or 'end of string'".into()),
            (
                "x nott in (y)",
                2,
                "unable to parse requirement: found 'nott', expected: in, notin, =, ==, !=, gt, lt".into(),
            ),
            ("a in (xyz),", 11, "found '', expected: identifier after ','".into()),
            ("a in (xyz)b notin ()", 10, "found 'b', expected: ',' or 'end of string'".into()),
            (
                "a in (xyz abc)",
                10,
                "unable to parse requirement: found 'abc', expected: ',' or ')'".into(),
            ),
            (
                "a notin(",
                8,
                "unable to parse requirement: found '', expected: ',', ')' or identifier".into(),
            ),
            ("a (", 2, "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt".into()),
            ("(", 0, "found '(', expected: !, identifier, or 'end of string'".into()),
            (
                "_zoo",
                0,
                format!("unable to parse requirement: <nil>: Invalid value: \"_zoo\": {name_part}"),
            ),
            (
                "x in (a,_b)",
                0,
                format!("unable to parse requirement: values[0][x]: Invalid value: \"_b\": {value_msg}"),
            ),
            ("x in", 4, "unable to parse requirement: found '' expected: '('".into()),
            ("x=(", 2, "unable to parse requirement: found '(', expected: identifier".into()),
            ("!", 1, "unable to parse requirement: found '', expected: identifier".into()),
        ];
        for (input, pos, want) in cases {
            let e = Selector::parse(input).expect_err(input);
            assert_eq!(e.to_string(), want, "{input:?}");
            assert_eq!(e.position(), pos, "{input:?}");
        }
    }

    /// Upstream `TestSelectorMatches` and `TestRequirementSelectorMatching`.
    #[test]
    fn matches_like_upstream() {
        let lbl = set(&[("foo", "bar"), ("baz", "blah")]);
        let cases: Vec<(&str, BTreeMap<String, String>, bool)> = vec![
            ("", set(&[("x", "y")]), true),
            ("x=y", set(&[("x", "y")]), true),
            ("x=y,z=w", set(&[("x", "y"), ("z", "w")]), true),
            ("x!=y,z!=w", set(&[("x", "z"), ("z", "a")]), true),
            ("notin=in", set(&[("notin", "in")]), true),
            ("x", set(&[("x", "z")]), true),
            ("!x", set(&[("y", "z")]), true),
            ("x>1", set(&[("x", "2")]), true),
            ("x<1", set(&[("x", "0")]), true),
            ("x=z", set(&[]), false),
            ("x=y", set(&[("x", "z")]), false),
            ("x=y,z=w", set(&[("x", "w"), ("z", "w")]), false),
            ("x!=y,z!=w", set(&[("x", "z"), ("z", "w")]), false),
            ("x", set(&[("y", "z")]), false),
            ("!x", set(&[("x", "z")]), false),
            ("x>1", set(&[("x", "0")]), false),
            ("x<1", set(&[("x", "2")]), false),
            ("foo=bar", lbl.clone(), true),
            ("baz=blah", lbl.clone(), true),
            ("foo=bar,baz=blah", lbl.clone(), true),
            ("foo=blah", lbl.clone(), false),
            ("baz=bar", lbl.clone(), false),
            ("foo=bar,foobar=bar,baz=blah", lbl.clone(), false),
            // `!=` and `notin` match objects without the key.
            ("x!=a", set(&[("y", "b")]), true),
            ("x notin (a)", set(&[]), true),
            (
                "x in (foo),y notin (alpha)",
                set(&[("x", "foo"), ("y", "baz")]),
                true,
            ),
            (
                "x in (foo),y in (alpha)",
                set(&[("x", "foo"), ("y", "baz")]),
                false,
            ),
            ("x notin (),y", set(&[("y", "")]), true),
            ("!x,y", set(&[("y", "")]), true),
            ("x notin (),!y", set(&[("y", "")]), false),
            ("x in ()", set(&[("y", "baz")]), false),
            ("x in ()", set(&[("x", "")]), true),
            ("z>1", set(&[("z", "2")]), true),
            ("z>1", set(&[("z", "v2")]), false),
        ];
        for (sel, labels, want) in cases {
            let s = Selector::parse(sel).unwrap_or_else(|e| panic!("{sel:?}: {e}"));
            assert_eq!(s.matches(&labels), want, "{sel:?} on {labels:?}");
        }
        assert!(!Selector::nothing().matches(&set(&[])));
        assert!(Selector::everything().matches(&set(&[("a", "b")])));
    }

    #[test]
    fn from_map_and_label_selector() {
        let m = set(&[("app", "web"), ("tier", "fe")]);
        let s = Selector::from_map(&m);
        assert_eq!(s.to_string(), "app=web,tier=fe");
        assert!(s.matches(&set(&[("app", "web"), ("tier", "fe"), ("x", "y")])));
        assert!(!s.matches(&set(&[("app", "web")])));
        assert!(Selector::from_map(&BTreeMap::new()).is_empty());

        assert!(Selector::from_label_selector(None).is_ok_and(|s| s.matches_nothing()));
        let empty = LabelSelector::default();
        assert!(Selector::from_label_selector(Some(&empty)).is_ok_and(|s| s.is_empty()));

        let expr = |key: &str, op: &str, vals: &[&str]| LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(vals.iter().map(|v| v.to_string()).collect()),
        };
        let ls = LabelSelector {
            match_labels: Some(set(&[("app", "web")])),
            match_expressions: Some(vec![
                expr("env", "In", &["prod", "dev"]),
                expr("canary", "DoesNotExist", &[]),
                expr("tier", "NotIn", &["db"]),
                expr("zone", "Exists", &[]),
            ]),
        };
        let s = Selector::from_label_selector(Some(&ls)).expect("valid");
        assert_eq!(
            s.to_string(),
            "app=web,!canary,env in (dev,prod),tier notin (db),zone"
        );
        assert!(s.matches(&set(&[("app", "web"), ("env", "prod"), ("zone", "a")])));
        assert!(!s.matches(&set(&[
            ("app", "web"),
            ("env", "prod"),
            ("zone", "a"),
            ("canary", "1")
        ])));

        let bad = LabelSelector {
            match_expressions: Some(vec![expr("a", "Foo", &[])]),
            ..Default::default()
        };
        assert_eq!(
            Selector::from_label_selector(Some(&bad)).map(|s| s.to_string()),
            Err(SelectorError::Invalid(
                "\"Foo\" is not a valid label selector operator".into()
            ))
        );
        let bad = LabelSelector {
            match_expressions: Some(vec![expr("a", "In", &[])]),
            ..Default::default()
        };
        assert_eq!(
            Selector::from_label_selector(Some(&bad)).map(|s| s.to_string()),
            Err(SelectorError::Invalid(
                "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty".into()
            ))
        );
    }

    #[test]
    fn structured_selector_validation() {
        let expr = |key: &str, op: &str, vals: &[&str]| LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(vals.iter().map(|v| v.to_string()).collect()),
        };
        let ls = LabelSelector {
            match_labels: Some(set(&[("app", "a b")])),
            match_expressions: Some(vec![
                expr("k", "In", &[]),
                expr("k", "Exists", &["x"]),
                expr("k", "Foo", &[]),
                expr("_k", "Exists", &[]),
            ]),
        };
        let got: Vec<String> = validate_label_selector(&ls, &Path::new("spec").child("selector"))
            .iter()
            .map(|e| e.to_string())
            .collect();
        let want = vec![
            "spec.selector.matchLabels: Invalid value: \"a b\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".to_string(),
            "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'".to_string(),
            "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'".to_string(),
            "spec.selector.matchExpressions[2].operator: Invalid value: \"Foo\": not a valid selector operator".to_string(),
            "spec.selector.matchExpressions[3].key: Invalid value: \"_k\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string(),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn exact_match_introspection() {
        let s = Selector::parse("a in (x),b=y,c in (p,q),d!=z").expect("valid");
        assert_eq!(s.requires_exact_match("a"), Some("x"));
        assert_eq!(s.requires_exact_match("b"), Some("y"));
        assert_eq!(s.requires_exact_match("c"), None);
        assert_eq!(s.requires_exact_match("d"), None);
        assert_eq!(s.requires_exact_match("e"), None);
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z]([-a-z0-9_.]{0,8}[a-z0-9])?",
                "[a-z]{1,5}(\\.[a-z]{1,5})?/[A-Za-z0-9]([-A-Za-z0-9_.]{0,5}[A-Za-z0-9])?",
            ]
        }
        fn value() -> impl Strategy<Value = String> {
            "([A-Za-z0-9]([-A-Za-z0-9_.]{0,6}[A-Za-z0-9])?)?"
        }
        fn requirement() -> impl Strategy<Value = Requirement> {
            (
                key(),
                0..9u8,
                proptest::collection::btree_set(value(), 1..4),
                0..100i64,
            )
                .prop_map(|(key, op, vals, n)| {
                    let (operator, values) = match op {
                        0 => (Operator::In, vals.into_iter().collect()),
                        1 => (Operator::NotIn, vals.into_iter().collect()),
                        2 => (Operator::Equals, vals.into_iter().take(1).collect()),
                        3 => (Operator::DoubleEquals, vals.into_iter().take(1).collect()),
                        4 => (Operator::NotEquals, vals.into_iter().take(1).collect()),
                        5 => (Operator::Exists, vec![]),
                        6 => (Operator::DoesNotExist, vec![]),
                        7 => (Operator::GreaterThan, vec![n.to_string()]),
                        _ => (Operator::LessThan, vec![n.to_string()]),
                    };
                    Requirement {
                        key,
                        operator,
                        values,
                    }
                })
        }

        proptest! {
            #[test]
            fn display_parse_round_trips(reqs in proptest::collection::vec(requirement(), 0..5)) {
                let sel = reqs.into_iter().fold(Selector::everything(), Selector::with_requirement);
                let text = sel.to_string();
                let parsed = Selector::parse(&text);
                prop_assert!(parsed.is_ok(), "{text:?}: {parsed:?}");
                let parsed = parsed.unwrap_or_default();
                prop_assert_eq!(parsed.to_string(), text);
            }

            #[test]
            fn never_panics(s in "\\PC{0,40}") {
                let _ = Selector::parse(&s);
            }

            #[test]
            fn never_panics_on_selector_alphabet(s in "[a-z =!(),<>_/.]{0,30}") {
                let _ = Selector::parse(&s);
            }
        }
    }
}
