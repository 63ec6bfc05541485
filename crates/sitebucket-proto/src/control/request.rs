//! [`ControlRequest`]: what a control call asks, and its signed bytes.

use crate::config::{Auth, Credentials, Endpoint};
use crate::request::{authorized_request, Body, Method};

use super::rules::{add_body, delete_body, rules_path, NewRule};
use super::{control_path, is_valid_stream_id, ControlError, MAX_USERS_PER_REQUEST};

/// Which control endpoint a request goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ControlKind {
    /// `POST …/add_user.json`.
    AddUsers,
    /// `POST …/remove_user.json`.
    RemoveUsers,
    /// `GET …/info.json`.
    Info,
    /// `POST …/friends/ids.json`.
    FriendsIds,
    /// X API v2: `GET <stream path>/rules`, the filtered stream's rules.
    RulesList,
    /// X API v2: `POST <stream path>/rules` with `{"add":[…]}`.
    RulesAdd,
    /// X API v2: `POST <stream path>/rules` with `{"delete":{"ids":[…]}}`.
    RulesDelete,
}

impl ControlKind {
    /// The path after `/site/c/<stream_id>/` (`rules` after the stream path for the rules
    /// kinds).
    pub fn leaf(self) -> &'static str {
        match self {
            ControlKind::AddUsers => "add_user.json",
            ControlKind::RemoveUsers => "remove_user.json",
            ControlKind::Info => "info.json",
            ControlKind::FriendsIds => "friends/ids.json",
            ControlKind::RulesList | ControlKind::RulesAdd | ControlKind::RulesDelete => "rules",
        }
    }

    /// `GET` for `info.json` and listing rules, `POST` for the others.
    pub fn method(self) -> Method {
        match self {
            ControlKind::Info | ControlKind::RulesList => Method::Get,
            _ => Method::Post,
        }
    }

    /// Whether this is one of the v2 rules calls, which need no control stream id.
    pub fn is_rules(self) -> bool {
        matches!(
            self,
            ControlKind::RulesList | ControlKind::RulesAdd | ControlKind::RulesDelete
        )
    }
}

/// One control request, checked: an add or remove names 1 to [`MAX_USERS_PER_REQUEST`]
/// distinct users.
///
/// ```
/// use sitebucket_proto::control::{ControlError, ControlRequest};
///
/// let add = ControlRequest::add_users(&[3, 1, 3]).unwrap();
/// assert_eq!(add.users(), &[3, 1]); // duplicates dropped, order kept
/// assert_eq!(add.form(), vec![("user_id", "3,1".to_owned())]);
/// let too_many: Vec<u64> = (0..101).collect();
/// assert_eq!(
///     ControlRequest::add_users(&too_many),
///     Err(ControlError::TooManyUsersPerRequest { given: 101 })
/// );
/// // Any number of users, split into requests of at most 100.
/// assert_eq!(ControlRequest::add_users_batched(&too_many).unwrap().len(), 2);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlRequest {
    kind: ControlKind,
    users: Vec<u64>,
    cursor: i64,
    rules: Vec<NewRule>,
    rule_ids: Vec<String>,
    dry_run: bool,
}

impl ControlRequest {
    /// `add_user.json` for `users` (duplicates dropped).
    pub fn add_users(users: &[u64]) -> Result<Self, ControlError> {
        Self::users_request(ControlKind::AddUsers, users)
    }

    /// `remove_user.json` for `users` (duplicates dropped).
    pub fn remove_users(users: &[u64]) -> Result<Self, ControlError> {
        Self::users_request(ControlKind::RemoveUsers, users)
    }

    /// `add_user.json` requests covering `users` (any number, duplicates dropped), at most
    /// [`MAX_USERS_PER_REQUEST`] each, in order.
    pub fn add_users_batched(users: &[u64]) -> Result<Vec<Self>, ControlError> {
        Self::batched(ControlKind::AddUsers, users)
    }

    /// `remove_user.json` requests covering `users`, like
    /// [`add_users_batched`](Self::add_users_batched).
    pub fn remove_users_batched(users: &[u64]) -> Result<Vec<Self>, ControlError> {
        Self::batched(ControlKind::RemoveUsers, users)
    }

    /// `info.json`: who the stream follows and with which options.
    pub fn info() -> Self {
        ControlRequest::bare(ControlKind::Info)
    }

    /// A request of `kind` with nothing in it.
    fn bare(kind: ControlKind) -> Self {
        ControlRequest {
            kind,
            users: Vec::new(),
            cursor: 0,
            rules: Vec::new(),
            rule_ids: Vec::new(),
            dry_run: false,
        }
    }

    /// X API v2: list the filtered stream's rules (`GET …/rules`).
    pub fn rules_list() -> Self {
        ControlRequest::bare(ControlKind::RulesList)
    }

    /// X API v2: add `rules` to the filtered stream (`POST …/rules`); with `dry_run`, only
    /// check them (`?dry_run=true`). At least one rule.
    pub fn rules_add(rules: &[NewRule], dry_run: bool) -> Result<Self, ControlError> {
        if rules.is_empty() {
            return Err(ControlError::NoRules);
        }
        Ok(ControlRequest {
            rules: rules.to_vec(),
            dry_run,
            ..ControlRequest::bare(ControlKind::RulesAdd)
        })
    }

    /// X API v2: delete the rules with these ids (`POST …/rules`); with `dry_run`, only
    /// check. At least one id.
    pub fn rules_delete(ids: &[String], dry_run: bool) -> Result<Self, ControlError> {
        if ids.is_empty() {
            return Err(ControlError::NoRules);
        }
        Ok(ControlRequest {
            rule_ids: ids.to_vec(),
            dry_run,
            ..ControlRequest::bare(ControlKind::RulesDelete)
        })
    }

    /// The rules of an add (none for the other kinds).
    pub fn rules(&self) -> &[NewRule] {
        &self.rules
    }

    /// The rule ids of a delete (none for the other kinds).
    pub fn rule_ids(&self) -> &[String] {
        &self.rule_ids
    }

    /// Whether a rules change only checks (`dry_run=true`).
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// `friends/ids.json`: one page of the ids `user_id` follows. Start with
    /// [`FIRST_CURSOR`](super::FIRST_CURSOR) (`-1`), then pass each page's `next_cursor` until it is `0`.
    pub fn friends_ids(user_id: u64, cursor: i64) -> Self {
        ControlRequest {
            users: vec![user_id],
            cursor,
            ..ControlRequest::bare(ControlKind::FriendsIds)
        }
    }

    fn users_request(kind: ControlKind, users: &[u64]) -> Result<Self, ControlError> {
        let users = distinct(users);
        if users.is_empty() {
            return Err(ControlError::NoUsers);
        }
        if users.len() > MAX_USERS_PER_REQUEST {
            return Err(ControlError::TooManyUsersPerRequest { given: users.len() });
        }
        Ok(ControlRequest {
            users,
            ..ControlRequest::bare(kind)
        })
    }

    fn batched(kind: ControlKind, users: &[u64]) -> Result<Vec<Self>, ControlError> {
        let users = distinct(users);
        if users.is_empty() {
            return Err(ControlError::NoUsers);
        }
        Ok(users
            .chunks(MAX_USERS_PER_REQUEST)
            .map(|chunk| ControlRequest {
                users: chunk.to_vec(),
                ..ControlRequest::bare(kind)
            })
            .collect())
    }

    /// Which endpoint this request goes to.
    pub fn kind(&self) -> ControlKind {
        self.kind
    }

    /// The users of an add or remove, the one user of a `friends/ids` request, none for
    /// `info`.
    pub fn users(&self) -> &[u64] {
        &self.users
    }

    /// The cursor of a `friends/ids` request (`0` for the others).
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// The form body's parameters (unencoded): `user_id` for add, remove and `friends/ids`
    /// (the ids comma-joined), plus `cursor` for `friends/ids`; none for `info`.
    pub fn form(&self) -> Vec<(&'static str, String)> {
        match self.kind {
            ControlKind::Info
            | ControlKind::RulesList
            | ControlKind::RulesAdd
            | ControlKind::RulesDelete => Vec::new(),
            ControlKind::AddUsers | ControlKind::RemoveUsers => {
                vec![("user_id", join(&self.users))]
            }
            ControlKind::FriendsIds => vec![
                ("user_id", join(&self.users)),
                ("cursor", self.cursor.to_string()),
            ],
        }
    }

    /// The path of this request for the stream at `stream_path` with id `stream_id`
    /// (see [`control_path`]).
    pub fn path(&self, stream_path: &str, stream_id: &str) -> Result<String, ControlError> {
        if self.kind.is_rules() {
            return Ok(rules_path(stream_path));
        }
        if !is_valid_stream_id(stream_id) {
            return Err(ControlError::InvalidStreamId {
                stream_id: stream_id.to_owned(),
            });
        }
        Ok(control_path(stream_path, stream_id, self.kind.leaf()))
    }

    /// The whole signed request: `endpoint`'s host and port, the control path beside
    /// `endpoint.path`, the form body for a `POST`, an OAuth 1.0a signature over all of it
    /// (RFC 5849, the form parameters included), and `Connection: close` (each call has its
    /// own connection). `unix_secs` and `nonce` are the signature's timestamp and nonce.
    pub fn signed(
        &self,
        endpoint: &Endpoint,
        stream_id: &str,
        credentials: &Credentials,
        unix_secs: u64,
        nonce: &str,
    ) -> Result<Vec<u8>, ControlError> {
        self.authorized(
            endpoint,
            stream_id,
            &Auth::OAuth1(credentials.clone()),
            unix_secs,
            nonce,
        )
    }

    /// The whole request signed in with `auth`, as [`signed`](Self::signed) for OAuth 1.0a;
    /// with a Bearer token, `unix_secs` and `nonce` are not used. A rules call goes to
    /// `<endpoint.path>/rules` (no stream id needed) with a JSON body for a change and
    /// `?dry_run=true` when asked.
    pub fn authorized(
        &self,
        endpoint: &Endpoint,
        stream_id: &str,
        auth: &Auth,
        unix_secs: u64,
        nonce: &str,
    ) -> Result<Vec<u8>, ControlError> {
        let path = self.path(&endpoint.path, stream_id)?;
        let json = match self.kind {
            ControlKind::RulesAdd => Some(add_body(&self.rules)),
            ControlKind::RulesDelete => Some(delete_body(&self.rule_ids)),
            _ => None,
        };
        let form = self.form();
        let body = match &json {
            Some(json) => Body::Json(json),
            None => Body::Form(&form),
        };
        let query = if self.dry_run {
            vec![("dry_run", "true".to_owned())]
        } else {
            Vec::new()
        };
        Ok(authorized_request(
            self.kind.method(),
            endpoint,
            &path,
            &query,
            body,
            auth,
            unix_secs,
            nonce,
            &[("Connection", "close")],
        ))
    }
}

impl Default for ControlRequest {
    /// An `info.json` request.
    fn default() -> Self {
        ControlRequest::info()
    }
}

/// `users` without repeats, first occurrence kept, in order.
fn distinct(users: &[u64]) -> Vec<u64> {
    let mut seen = std::collections::HashSet::with_capacity(users.len());
    users.iter().copied().filter(|u| seen.insert(*u)).collect()
}

fn join(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::super::FIRST_CURSOR;
    use super::*;

    fn endpoint(url: &str) -> Endpoint {
        Endpoint::parse(url).expect("valid URL")
    }

    fn credentials() -> Credentials {
        Credentials::new("ck", "cs-secret", "tk", "ts-secret")
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).expect("ASCII request")
    }

    #[test]
    fn add_and_remove_carry_comma_joined_ids_in_a_signed_form() {
        let ep = endpoint("https://sitestream.twitter.com/1.1/site.json");
        let add = ControlRequest::add_users(&[12, 13, 12, u64::MAX]).unwrap();
        let head = text(
            add.signed(&ep, "1_2_ab", &credentials(), 1_700_000_000, "n0nce")
                .unwrap(),
        );
        let body = format!("user_id=12%2C13%2C{}", u64::MAX);
        assert!(
            head.starts_with("POST /1.1/site/c/1_2_ab/add_user.json HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nHost: sitestream.twitter.com\r\n"));
        assert!(head.contains("\r\nConnection: close\r\n"));
        assert!(head.contains("\r\nContent-Type: application/x-www-form-urlencoded\r\n"));
        assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
        assert!(head.ends_with(&format!("\r\n\r\n{body}")));
        assert!(head.contains("oauth_signature=\""));
        assert!(!head.contains("secret"), "no secret in the request");

        let remove = ControlRequest::remove_users(&[7]).unwrap();
        let head = text(remove.signed(&ep, "s", &credentials(), 1, "n").unwrap());
        assert!(head.starts_with("POST /1.1/site/c/s/remove_user.json HTTP/1.1\r\n"));
        assert!(head.ends_with("\r\n\r\nuser_id=7"));
    }

    #[test]
    fn info_is_a_get_without_body_and_friends_ids_posts_user_and_cursor() {
        let ep = endpoint("http://127.0.0.1:8080/2b/site.json");
        let info = text(
            ControlRequest::info()
                .signed(&ep, "abc", &credentials(), 1, "n")
                .unwrap(),
        );
        assert!(
            info.starts_with("GET /2b/site/c/abc/info.json HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n")
        );
        assert!(info.ends_with("\r\n\r\n"));
        assert!(!info.contains("Content-Type"));
        assert!(!info.contains("Content-Length"));

        let page = ControlRequest::friends_ids(119476949, -1305102810874389703);
        assert_eq!(page.users(), &[119476949]);
        assert_eq!(page.cursor(), -1305102810874389703);
        let head = text(page.signed(&ep, "abc", &credentials(), 1, "n").unwrap());
        assert!(head.starts_with("POST /2b/site/c/abc/friends/ids.json HTTP/1.1\r\n"));
        assert!(head.ends_with("\r\n\r\nuser_id=119476949&cursor=-1305102810874389703"));
        assert_eq!(
            ControlRequest::friends_ids(1, FIRST_CURSOR).form(),
            vec![("user_id", "1".to_owned()), ("cursor", "-1".to_owned())]
        );
    }

    #[test]
    fn user_counts_are_checked_with_clear_errors() {
        assert_eq!(ControlRequest::add_users(&[]), Err(ControlError::NoUsers));
        assert_eq!(
            ControlRequest::remove_users(&[]),
            Err(ControlError::NoUsers)
        );
        assert_eq!(
            ControlRequest::add_users_batched(&[]),
            Err(ControlError::NoUsers)
        );
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(
            ControlRequest::add_users(&hundred).unwrap().users().len(),
            100
        );
        let mut with_repeat = hundred.clone();
        with_repeat.push(1);
        assert!(
            ControlRequest::remove_users(&with_repeat).is_ok(),
            "101 ids with one repeat are 100 users"
        );
        let over: Vec<u64> = (1..=101).collect();
        assert_eq!(
            ControlRequest::remove_users(&over),
            Err(ControlError::TooManyUsersPerRequest { given: 101 })
        );
    }

    #[test]
    fn batches_hold_at_most_one_hundred_distinct_users_in_order() {
        let users: Vec<u64> = (1..=250).chain(1..=10).collect();
        let batches = ControlRequest::remove_users_batched(&users).unwrap();
        let sizes: Vec<usize> = batches.iter().map(|b| b.users().len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert!(batches.iter().all(|b| b.kind() == ControlKind::RemoveUsers));
        let all: Vec<u64> = batches.iter().flat_map(|b| b.users().to_vec()).collect();
        assert_eq!(all, (1..=250).collect::<Vec<u64>>());
        let one = ControlRequest::add_users_batched(&[5, 5]).unwrap();
        assert_eq!(one, vec![ControlRequest::add_users(&[5]).unwrap()]);
    }

    #[test]
    fn stream_ids_that_would_break_the_path_are_refused() {
        let ep = endpoint("http://h/1.1/site.json");
        for bad in ["", "..", "a/b", "a b", "a?b", "ü", "a%2Fb"] {
            assert_eq!(
                ControlRequest::info().signed(&ep, bad, &credentials(), 1, "n"),
                Err(ControlError::InvalidStreamId {
                    stream_id: bad.to_owned()
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn kinds_name_their_methods_and_leaves() {
        assert_eq!(ControlKind::AddUsers.method(), Method::Post);
        assert_eq!(ControlKind::RemoveUsers.method(), Method::Post);
        assert_eq!(ControlKind::FriendsIds.method(), Method::Post);
        assert_eq!(ControlKind::Info.method(), Method::Get);
        assert_eq!(ControlKind::FriendsIds.leaf(), "friends/ids.json");
        assert_eq!(ControlRequest::default(), ControlRequest::info());
        assert!(ControlRequest::info().users().is_empty());
    }
}
