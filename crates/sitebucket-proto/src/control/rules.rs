//! The X API v2 filtered stream's rules: what [`ControlRequest::rules_list`],
//! [`rules_add`](ControlRequest::rules_add) and [`rules_delete`](ControlRequest::rules_delete)
//! send and what they answer.
//!
//! The rules endpoint sits beside the stream: `GET` and `POST <stream path>/rules`
//! (`/2/tweets/search/stream/rules`). A `POST` carries JSON — `{"add":[{"value":…,"tag":…}]}`
//! or `{"delete":{"ids":[…]}}` — and `?dry_run=true` asks the server to check the change
//! without making it. The calls run as [`ControlCall`](super::ControlCall)s, so every driver
//! that runs control calls runs them.
//!
//! [`ControlRequest::rules_list`]: super::ControlRequest::rules_list

use serde::Deserialize;

use super::ControlError;

/// A rule to add: its query and an optional tag.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NewRule {
    /// The rule's query, e.g. `cat has:images -is:retweet`.
    pub value: String,
    /// A tag to tell the rule's matches apart (`matching_rules[].tag`), if any.
    pub tag: Option<String>,
}

impl NewRule {
    /// A rule with `value` and no tag.
    pub fn new(value: impl Into<String>) -> Self {
        NewRule {
            value: value.into(),
            tag: None,
        }
    }

    /// The same rule with `tag`.
    pub fn tagged(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }
}

/// A rule as the server holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Rule {
    /// The rule's id.
    #[serde(default)]
    pub id: String,
    /// The rule's query.
    #[serde(default)]
    pub value: String,
    /// Its tag, if any.
    #[serde(default)]
    pub tag: Option<String>,
}

/// The counts of a rules change (`meta.summary`); zero when absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct RulesSummary {
    /// Rules created.
    #[serde(default)]
    pub created: u64,
    /// Rules not created (duplicates, invalid ones).
    #[serde(default)]
    pub not_created: u64,
    /// Rules that checked out.
    #[serde(default)]
    pub valid: u64,
    /// Rules that did not.
    #[serde(default)]
    pub invalid: u64,
    /// Rules deleted.
    #[serde(default)]
    pub deleted: u64,
    /// Rules not deleted (unknown ids).
    #[serde(default)]
    pub not_deleted: u64,
}

/// The answer of a rules call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RulesResponse {
    /// The rules listed, or created (`data`; empty when absent).
    pub rules: Vec<Rule>,
    /// The change's counts.
    pub summary: RulesSummary,
    /// The problems the server reported (`errors`), one line each: `title: detail (value)`.
    pub errors: Vec<String>,
    /// The body as received (JSON), for printing.
    pub body: String,
}

impl RulesResponse {
    /// Whether the server turned part of the change down: a rule not created, invalid or
    /// not deleted, or any problem in `errors`.
    pub fn has_rejections(&self) -> bool {
        let s = &self.summary;
        s.not_created > 0 || s.invalid > 0 || s.not_deleted > 0 || !self.errors.is_empty()
    }
}

/// Decodes the answer of a rules call (`GET` or `POST`).
///
/// ```
/// use sitebucket_proto::control::decode_rules;
///
/// let body = br#"{"data":[{"id":"1","value":"cat","tag":"cats"}],"meta":{"sent":"x","summary":{"created":1,"not_created":1}},"errors":[{"value":"dog","title":"DuplicateRule","type":"t"}]}"#;
/// let answer = decode_rules(body).unwrap();
/// assert_eq!(answer.rules[0].value, "cat");
/// assert_eq!(answer.summary.created, 1);
/// assert_eq!(answer.errors, ["DuplicateRule (dog)"]);
/// assert!(answer.has_rejections());
/// ```
pub fn decode_rules(body: &[u8]) -> Result<RulesResponse, ControlError> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        data: Vec<Rule>,
        #[serde(default)]
        meta: Meta,
        #[serde(default)]
        errors: Vec<Problem>,
    }
    #[derive(Default, Deserialize)]
    struct Meta {
        #[serde(default)]
        summary: RulesSummary,
    }
    #[derive(Deserialize)]
    struct Problem {
        #[serde(default)]
        title: String,
        #[serde(default)]
        detail: String,
        #[serde(default)]
        value: String,
    }
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| ControlError::Decode(format!("rules answer: {e}")))?;
    let errors = answer
        .errors
        .into_iter()
        .map(|p| {
            let mut line = if p.title.is_empty() {
                "problem".to_owned()
            } else {
                p.title
            };
            if !p.detail.is_empty() {
                line.push_str(": ");
                line.push_str(&p.detail);
            }
            if !p.value.is_empty() {
                line.push_str(&format!(" ({})", p.value));
            }
            crate::response::bounded_text(&line)
        })
        .collect();
    Ok(RulesResponse {
        rules: answer.data,
        summary: answer.meta.summary,
        errors,
        body: String::from_utf8_lossy(body).into_owned(),
    })
}

/// The JSON body of an add.
pub(crate) fn add_body(rules: &[NewRule]) -> String {
    let add: Vec<serde_json::Value> = rules
        .iter()
        .map(|r| match &r.tag {
            Some(tag) => serde_json::json!({ "value": r.value, "tag": tag }),
            None => serde_json::json!({ "value": r.value }),
        })
        .collect();
    serde_json::json!({ "add": add }).to_string()
}

/// The JSON body of a delete.
pub(crate) fn delete_body(ids: &[String]) -> String {
    serde_json::json!({ "delete": { "ids": ids } }).to_string()
}

/// The rules path beside a stream path: `/2/tweets/search/stream` → `…/stream/rules`.
pub(crate) fn rules_path(stream_path: &str) -> String {
    format!("{}/rules", stream_path.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_as_x_documents_them() {
        assert_eq!(
            add_body(&[
                NewRule::new("cat has:images").tagged("cats"),
                NewRule::new("d\"og")
            ]),
            r#"{"add":[{"tag":"cats","value":"cat has:images"},{"value":"d\"og"}]}"#
        );
        assert_eq!(
            delete_body(&["1".into(), "2".into()]),
            r#"{"delete":{"ids":["1","2"]}}"#
        );
        assert_eq!(
            rules_path("/2/tweets/search/stream"),
            "/2/tweets/search/stream/rules"
        );
        assert_eq!(
            rules_path("/2/tweets/search/stream/"),
            "/2/tweets/search/stream/rules"
        );
    }

    #[test]
    fn answers_decode_with_or_without_their_parts() {
        let listed = decode_rules(
            br#"{"data":[{"id":"1","value":"a"},{"id":"2","value":"b","tag":"t"}],"meta":{"sent":"2021","result_count":2}}"#,
        )
        .unwrap();
        assert_eq!(listed.rules.len(), 2);
        assert_eq!(listed.rules[1].tag.as_deref(), Some("t"));
        assert!(!listed.has_rejections());
        let none = decode_rules(br#"{"meta":{"sent":"2021","result_count":0}}"#).unwrap();
        assert!(none.rules.is_empty() && !none.has_rejections());
        let deleted =
            decode_rules(br#"{"meta":{"summary":{"deleted":1,"not_deleted":1}}}"#).unwrap();
        assert_eq!(deleted.summary.deleted, 1);
        assert!(deleted.has_rejections());
        assert!(matches!(
            decode_rules(b"nope"),
            Err(ControlError::Decode(_))
        ));
    }
}
