//! The server's X API v2 side: the Bearer check, the stream paths, and the filtered stream's
//! rules endpoint, as X documents them.
//!
//! | request | answer |
//! |---|---|
//! | no `Authorization: Bearer <the token>` | `401`, a problem JSON |
//! | `GET /2/tweets/search/stream`, `GET /2/tweets/sample/stream` | the scenario's stream |
//! | `GET /2/tweets/search/stream/rules` | `{"data":[…],"meta":{"result_count":n}}` |
//! | `POST …/rules` `{"add":[{"value":…,"tag":…}]}` | `201` (`200` with none created) with `data`, `meta.summary` and `errors` for duplicates and invalid rules |
//! | `POST …/rules` `{"delete":{"ids":[…]}}` | `200` with `meta.summary` and `errors` for unknown ids |
//! | `?dry_run=true` on a `POST` | the same answer, nothing changed |
//! | any other path | `404` |
//!
//! A rule is invalid when its value is empty, longer than [`MAX_RULE_CHARS`] characters, or
//! has unbalanced double quotes or parentheses. At most [`MAX_RULES`] rules are held.

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};

use crate::control::Answer;

/// The longest rule value accepted, in characters (X's limit on most plans).
pub const MAX_RULE_CHARS: usize = 512;
/// The most rules held at once.
pub const MAX_RULES: usize = 1000;
/// The filtered stream's path.
pub const FILTERED_PATH: &str = "/2/tweets/search/stream";
/// The sample stream's path.
pub const SAMPLE_PATH: &str = "/2/tweets/sample/stream";
/// The rules endpoint's path.
pub const RULES_PATH: &str = "/2/tweets/search/stream/rules";

/// A rule the server holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRule {
    /// Its id, a decimal string.
    pub id: String,
    /// Its query.
    pub value: String,
    /// Its tag, if any.
    pub tag: Option<String>,
}

#[derive(Debug, Default)]
struct Rules {
    held: Vec<HeldRule>,
    next_id: u64,
}

/// The v2 side of a server: the token it accepts and its rules. Clones share the rules.
#[derive(Debug, Clone)]
pub struct V2Service {
    token: String,
    rules: Arc<Mutex<Rules>>,
}

/// What a v2 request gets.
pub(crate) enum Route {
    /// The scenario's stream.
    Stream,
    /// A whole answer, then close.
    Answer(Answer),
}

impl V2Service {
    /// A service accepting `Authorization: Bearer <token>`, with no rules.
    pub fn new(token: impl Into<String>) -> Self {
        V2Service {
            token: token.into(),
            rules: Arc::new(Mutex::new(Rules {
                held: Vec::new(),
                next_id: 1_800_000_000_000_000_101,
            })),
        }
    }

    /// The token requests must carry.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The rules held now, in the order they were added.
    pub fn rules(&self) -> Vec<HeldRule> {
        self.lock().held.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Rules> {
        self.rules
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether an `Authorization` header carries this service's token.
    pub(crate) fn authorized(&self, header: Option<&str>) -> bool {
        header
            .and_then(|h| h.trim().strip_prefix("Bearer "))
            .is_some_and(|token| token.trim() == self.token)
    }

    /// The `401` answer to a request without the token.
    pub(crate) fn unauthorized() -> Answer {
        problem(
            401,
            "Unauthorized",
            "Unauthorized",
            "Unauthorized",
            "about:blank",
        )
    }

    /// Routes an authorized request.
    pub(crate) fn route(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: &[u8],
    ) -> Route {
        let path = path.trim_end_matches('/');
        match (method, path) {
            ("GET", FILTERED_PATH | SAMPLE_PATH) => Route::Stream,
            ("GET", RULES_PATH) => Route::Answer(self.list()),
            ("POST", RULES_PATH) => {
                let dry_run = query
                    .iter()
                    .any(|(n, v)| n == "dry_run" && v.eq_ignore_ascii_case("true"));
                Route::Answer(self.change(body, dry_run))
            }
            (_, FILTERED_PATH | SAMPLE_PATH | RULES_PATH) => Route::Answer(problem(
                405,
                "Method Not Allowed",
                "Method Not Allowed",
                &format!("{method} is not allowed on {path}"),
                "about:blank",
            )),
            _ => Route::Answer(problem(
                404,
                "Not Found",
                "Not Found Error",
                &format!("no v2 endpoint at {path}"),
                "https://api.twitter.com/2/problems/resource-not-found",
            )),
        }
    }

    fn list(&self) -> Answer {
        let rules = self.lock();
        let data: Vec<Value> = rules.held.iter().map(rule_json).collect();
        let mut body = json!({ "meta": { "result_count": data.len() } });
        if !data.is_empty() {
            body["data"] = Value::Array(data);
        }
        ok(200, body)
    }

    fn change(&self, body: &[u8], dry_run: bool) -> Answer {
        let Ok(request) = serde_json::from_slice::<Value>(body) else {
            return invalid_request("the request body is not JSON");
        };
        match (request.get("add"), request.get("delete")) {
            (Some(Value::Array(add)), None) if !add.is_empty() => self.add(add, dry_run),
            (None, Some(delete)) => match delete.get("ids").and_then(Value::as_array) {
                Some(ids) if !ids.is_empty() => self.delete(ids, dry_run),
                _ => invalid_request("delete.ids must be a non-empty array of rule ids"),
            },
            _ => invalid_request("the body must hold either a non-empty add or a delete"),
        }
    }

    fn add(&self, add: &[Value], dry_run: bool) -> Answer {
        let mut rules = self.lock();
        let mut created = Vec::new();
        let mut errors = Vec::new();
        let mut invalid = 0;
        for item in add {
            let value = item.get("value").and_then(Value::as_str).unwrap_or("");
            let tag = item.get("tag").and_then(Value::as_str).map(str::to_owned);
            if let Some(why) = invalid_rule(value) {
                invalid += 1;
                errors.push(json!({
                    "value": value,
                    "details": [why],
                    "title": "Invalid Rule",
                    "type": "https://api.twitter.com/2/problems/invalid-rules",
                }));
                continue;
            }
            let duplicate = rules
                .held
                .iter()
                .chain(created.iter())
                .find(|r| r.value == value)
                .map(|r| r.id.clone());
            if let Some(id) = duplicate {
                errors.push(json!({
                    "value": value,
                    "id": id,
                    "title": "DuplicateRule",
                    "type": "https://api.twitter.com/2/problems/duplicate-rules",
                }));
                continue;
            }
            if rules.held.len() + created.len() >= MAX_RULES {
                errors.push(json!({
                    "value": value,
                    "title": "RulesCapExceeded",
                    "type": "https://api.twitter.com/2/problems/rule-cap",
                }));
                continue;
            }
            let id = rules.next_id + created.len() as u64;
            created.push(HeldRule {
                id: id.to_string(),
                value: value.to_owned(),
                tag,
            });
        }
        let valid = add.len() - invalid;
        let summary = json!({
            "created": if dry_run { 0 } else { created.len() },
            "not_created": if dry_run { 0 } else { add.len() - created.len() },
            "valid": valid,
            "invalid": invalid,
        });
        let data: Vec<Value> = created.iter().map(rule_json).collect();
        let status = if !dry_run && !created.is_empty() {
            201
        } else {
            200
        };
        if !dry_run {
            rules.next_id += created.len() as u64;
            rules.held.extend(created);
        }
        let mut body = json!({ "meta": { "summary": summary } });
        if !data.is_empty() {
            body["data"] = Value::Array(data);
        }
        if !errors.is_empty() {
            body["errors"] = Value::Array(errors);
        }
        ok(status, body)
    }

    fn delete(&self, ids: &[Value], dry_run: bool) -> Answer {
        let mut rules = self.lock();
        let mut deleted = 0;
        let mut errors = Vec::new();
        let mut keep = rules.held.clone();
        for id in ids {
            let id = match id {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match keep.iter().position(|r| r.id == id) {
                Some(at) => {
                    keep.remove(at);
                    deleted += 1;
                }
                None => errors.push(json!({
                    "title": "Not Found Error",
                    "detail": format!("rule {id} does not exist"),
                    "type": "https://api.twitter.com/2/problems/resource-not-found",
                    "value": id,
                })),
            }
        }
        if !dry_run {
            rules.held = keep;
        }
        let mut body = json!({ "meta": { "summary": {
            "deleted": deleted,
            "not_deleted": ids.len() - deleted,
        } } });
        if !errors.is_empty() {
            body["errors"] = Value::Array(errors);
        }
        ok(200, body)
    }
}

/// Why a rule value is refused, if it is.
fn invalid_rule(value: &str) -> Option<String> {
    if value.trim().is_empty() {
        return Some("the rule is empty".to_owned());
    }
    if value.chars().count() > MAX_RULE_CHARS {
        return Some(format!(
            "the rule is longer than {MAX_RULE_CHARS} characters"
        ));
    }
    if value.matches('"').count() % 2 == 1 {
        return Some("unbalanced double quotes".to_owned());
    }
    let mut depth = 0i64;
    for c in value.chars() {
        depth += match c {
            '(' => 1,
            ')' => -1,
            _ => 0,
        };
        if depth < 0 {
            break;
        }
    }
    (depth != 0).then(|| "unbalanced parentheses".to_owned())
}

fn rule_json(rule: &HeldRule) -> Value {
    match &rule.tag {
        Some(tag) => json!({ "id": rule.id, "value": rule.value, "tag": tag }),
        None => json!({ "id": rule.id, "value": rule.value }),
    }
}

fn ok(status: u16, body: Value) -> Answer {
    Answer {
        status,
        reason: if status == 201 { "Created" } else { "OK" },
        body: body.to_string(),
    }
}

fn invalid_request(detail: &str) -> Answer {
    problem(
        400,
        "Bad Request",
        "Invalid Request",
        detail,
        "https://api.twitter.com/2/problems/invalid-request",
    )
}

/// A v2 problem answer: `{"title","detail","type","status"}`.
fn problem(
    status: u16,
    reason: &'static str,
    title: &str,
    detail: &str,
    problem_type: &str,
) -> Answer {
    Answer {
        status,
        reason,
        body: json!({
            "title": title,
            "detail": detail,
            "type": problem_type,
            "status": status,
        })
        .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(service: &V2Service, method: &str, path: &str, query: &str, body: &str) -> Answer {
        let query: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        match service.route(method, path, &query, body.as_bytes()) {
            Route::Answer(answer) => answer,
            Route::Stream => panic!("{method} {path} is a stream"),
        }
    }

    fn body(answer: &Answer) -> Value {
        serde_json::from_str(&answer.body).unwrap()
    }

    #[test]
    fn the_bearer_token_is_checked_exactly() {
        let service = V2Service::new("T0K");
        assert!(service.authorized(Some("Bearer T0K")));
        for bad in [
            None,
            Some("Bearer T0"),
            Some("Basic T0K"),
            Some("T0K"),
            Some("Bearer "),
        ] {
            assert!(!service.authorized(bad), "{bad:?}");
        }
        assert_eq!(V2Service::unauthorized().status, 401);
    }

    #[test]
    fn rules_are_listed_added_and_deleted_with_dry_runs() {
        let s = V2Service::new("t");
        assert!(matches!(
            s.route("GET", FILTERED_PATH, &[], b""),
            Route::Stream
        ));
        assert!(matches!(
            s.route("GET", SAMPLE_PATH, &[], b""),
            Route::Stream
        ));
        assert_eq!(
            body(&answer(&s, "GET", RULES_PATH, "", "")),
            json!({"meta":{"result_count":0}})
        );
        // A dry run changes nothing.
        let dry = answer(
            &s,
            "POST",
            RULES_PATH,
            "dry_run=true",
            r#"{"add":[{"value":"cat"}]}"#,
        );
        assert_eq!(dry.status, 200);
        assert_eq!(body(&dry)["meta"]["summary"]["valid"], 1);
        assert!(s.rules().is_empty());
        let added = answer(
            &s,
            "POST",
            RULES_PATH,
            "",
            r#"{"add":[{"value":"cat","tag":"cats"},{"value":"cat"},{"value":"(dog"}]}"#,
        );
        assert_eq!(added.status, 201);
        let b = body(&added);
        assert_eq!(
            b["meta"]["summary"],
            json!({"created":1,"not_created":2,"valid":2,"invalid":1})
        );
        assert_eq!(b["errors"][0]["title"], "DuplicateRule");
        assert_eq!(b["errors"][1]["title"], "Invalid Rule");
        let rules = s.rules();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].tag.as_deref(), Some("cats"));
        let listed = body(&answer(&s, "GET", RULES_PATH, "", ""));
        assert_eq!(listed["data"][0]["id"], rules[0].id.as_str());
        let id = rules[0].id.clone();
        let delete = format!(r#"{{"delete":{{"ids":["{id}","9"]}}}}"#);
        let dry = answer(&s, "POST", RULES_PATH, "dry_run=true", &delete);
        assert_eq!(
            body(&dry)["meta"]["summary"],
            json!({"deleted":1,"not_deleted":1})
        );
        assert_eq!(s.rules().len(), 1);
        answer(&s, "POST", RULES_PATH, "", &delete);
        assert!(s.rules().is_empty());
        for bad in ["nope", "{}", r#"{"add":[]}"#, r#"{"delete":{"ids":[]}}"#] {
            assert_eq!(answer(&s, "POST", RULES_PATH, "", bad).status, 400, "{bad}");
        }
        assert_eq!(answer(&s, "GET", "/2/tweets", "", "").status, 404);
        assert_eq!(answer(&s, "DELETE", RULES_PATH, "", "").status, 405);
    }
}
