//! The server's own OAuth 1.0a (RFC 5849) HMAC-SHA1 check.
//!
//! This is written independently of `sitebucket-proto`'s signer on purpose: the test server is
//! the peer that checks the client, so it must not share the client's code.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha1::Sha1;

/// The four OAuth 1.0a values the server accepts.
///
/// `Debug` shows the consumer key and token but never the two secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The consumer (application) key, sent as `oauth_consumer_key`.
    pub consumer_key: String,
    /// The consumer secret: half of the signing key. Never sent.
    pub consumer_secret: String,
    /// The access token, sent as `oauth_token`.
    pub token: String,
    /// The access token secret: the other half of the signing key. Never sent.
    pub token_secret: String,
}

impl Credentials {
    /// Credentials from their four parts.
    pub fn new(
        consumer_key: impl Into<String>,
        consumer_secret: impl Into<String>,
        token: impl Into<String>,
        token_secret: impl Into<String>,
    ) -> Self {
        Credentials {
            consumer_key: consumer_key.into(),
            consumer_secret: consumer_secret.into(),
            token: token.into(),
            token_secret: token_secret.into(),
        }
    }

    /// The fixed credentials the test server uses unless told otherwise (and that
    /// `sitebucket serve` prints). They are test values, not secrets of any real account.
    pub fn test_default() -> Self {
        Credentials::new(
            "sitebucket-test-consumer-key",
            "sitebucket-test-consumer-secret",
            "1234567890-sitebucket-test-token",
            "sitebucket-test-token-secret",
        )
    }
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials::test_default()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("consumer_key", &self.consumer_key)
            .field("consumer_secret", &"<redacted>")
            .field("token", &self.token)
            .field("token_secret", &"<redacted>")
            .finish()
    }
}

/// RFC 3986 unreserved characters stay as they are; everything else is percent-encoded
/// (RFC 5849 section 3.6).
const OAUTH_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes `s` as RFC 5849 section 3.6 asks.
pub(crate) fn encode(s: &str) -> String {
    utf8_percent_encode(s, OAUTH_ENCODE).to_string()
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space).
pub(crate) fn form_decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// Splits a query string or form body into decoded name/value pairs, in order.
pub(crate) fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('=') {
            Some((name, value)) => (form_decode(name), form_decode(value)),
            None => (form_decode(part), String::new()),
        })
        .collect()
}

/// Why a request's OAuth check failed. The text never contains a secret or the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthError {
    MissingHeader,
    NotOAuth,
    Malformed(&'static str),
    MissingParam(&'static str),
    WrongMethod,
    WrongVersion,
    WrongConsumerKey,
    WrongToken,
    OAuthParamInQuery,
    SignatureMismatch,
    MissingHost,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::MissingHeader => f.write_str("no Authorization header"),
            AuthError::NotOAuth => f.write_str("the Authorization header is not an OAuth header"),
            AuthError::Malformed(what) => write!(f, "malformed Authorization header: {what}"),
            AuthError::MissingParam(name) => write!(f, "the Authorization header has no {name}"),
            AuthError::WrongMethod => f.write_str("oauth_signature_method is not HMAC-SHA1"),
            AuthError::WrongVersion => f.write_str("oauth_version is not 1.0"),
            AuthError::WrongConsumerKey => f.write_str("unknown oauth_consumer_key"),
            AuthError::WrongToken => f.write_str("unknown oauth_token"),
            AuthError::OAuthParamInQuery => {
                f.write_str("oauth_* parameters belong in the Authorization header, not the query")
            }
            AuthError::SignatureMismatch => f.write_str("the signature does not match the request"),
            AuthError::MissingHost => f.write_str("no Host header to build the signed URL from"),
        }
    }
}

/// Parses the parameters of an `Authorization: OAuth k="v", ...` header value (decoded).
pub(crate) fn parse_authorization(value: &str) -> Result<Vec<(String, String)>, AuthError> {
    let value = value.trim();
    let scheme_end = value
        .find(|c: char| c.is_ascii_whitespace())
        .unwrap_or(value.len());
    if !value[..scheme_end].eq_ignore_ascii_case("OAuth") {
        return Err(AuthError::NotOAuth);
    }
    let mut params = Vec::new();
    for part in value[scheme_end..].split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (name, quoted) = part
            .split_once('=')
            .ok_or(AuthError::Malformed("a parameter without '='"))?;
        let quoted = quoted.trim();
        let inner = quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .ok_or(AuthError::Malformed(
                "a parameter value without double quotes",
            ))?;
        let name = percent_decode_str(name.trim())
            .decode_utf8_lossy()
            .into_owned();
        let inner = percent_decode_str(inner).decode_utf8_lossy().into_owned();
        params.push((name, inner));
    }
    Ok(params)
}

/// The signature base string of RFC 5849 section 3.4.1.
///
/// `params` are the decoded query, form-body and `oauth_*` parameters (without
/// `oauth_signature` and `realm`).
pub(crate) fn base_string(method: &str, base_uri: &str, params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> =
        params.iter().map(|(n, v)| (encode(n), encode(v))).collect();
    encoded.sort();
    let normalized = encoded
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        encode(base_uri),
        encode(&normalized)
    )
}

/// The base string URI (RFC 5849 section 3.4.1.2) from the Host header, the transport and the path.
pub(crate) fn base_uri(tls: bool, host: &str, path: &str) -> String {
    let scheme = if tls { "https" } else { "http" };
    let host = host.trim().to_ascii_lowercase();
    let default_port = if tls { ":443" } else { ":80" };
    let host = host.strip_suffix(default_port).unwrap_or(&host);
    let path = if path.is_empty() { "/" } else { path };
    format!("{scheme}://{host}{path}")
}

/// An HMAC-SHA1 MAC keyed with `enc(consumer_secret)&enc(token_secret)`.
fn mac_for(credentials: &Credentials) -> Hmac<Sha1> {
    let key = format!(
        "{}&{}",
        encode(&credentials.consumer_secret),
        encode(&credentials.token_secret)
    );
    // HMAC accepts keys of any length, so this cannot fail.
    Hmac::<Sha1>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length")
}

/// What the server knows about one request when it checks its signature.
pub(crate) struct SignedRequest<'a> {
    pub method: &'a str,
    pub tls: bool,
    pub host: Option<&'a str>,
    pub path: &'a str,
    /// Decoded query parameters, then decoded form-body parameters.
    pub params: &'a [(String, String)],
    pub authorization: Option<&'a str>,
}

/// Checks a request's OAuth 1.0a HMAC-SHA1 signature and that it names `credentials`.
///
/// On success returns the `oauth_*` parameters without `oauth_signature`; on failure, why.
pub(crate) fn verify(
    request: &SignedRequest<'_>,
    credentials: &Credentials,
) -> Result<Vec<(String, String)>, AuthError> {
    if request.params.iter().any(|(n, _)| n.starts_with("oauth_")) {
        return Err(AuthError::OAuthParamInQuery);
    }
    let header = request.authorization.ok_or(AuthError::MissingHeader)?;
    let oauth = parse_authorization(header)?;
    let get = |name: &'static str| {
        oauth
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .ok_or(AuthError::MissingParam(name))
    };
    let signature = get("oauth_signature")?;
    if get("oauth_signature_method")? != "HMAC-SHA1" {
        return Err(AuthError::WrongMethod);
    }
    get("oauth_nonce")?;
    get("oauth_timestamp")?;
    if let Ok(version) = get("oauth_version") {
        if version != "1.0" {
            return Err(AuthError::WrongVersion);
        }
    }
    if get("oauth_consumer_key")? != credentials.consumer_key {
        return Err(AuthError::WrongConsumerKey);
    }
    if get("oauth_token")? != credentials.token {
        return Err(AuthError::WrongToken);
    }
    let host = request.host.ok_or(AuthError::MissingHost)?;
    let oauth_params: Vec<(String, String)> = oauth
        .iter()
        .filter(|(n, _)| n != "oauth_signature" && n != "realm")
        .cloned()
        .collect();
    let mut all = request.params.to_vec();
    all.extend(oauth_params.iter().cloned());
    let base = base_string(
        request.method,
        &base_uri(request.tls, host, request.path),
        &all,
    );
    let claimed = BASE64
        .decode(signature.trim())
        .map_err(|_| AuthError::SignatureMismatch)?;
    let mut mac = mac_for(credentials);
    mac.update(base.as_bytes());
    mac.verify_slice(&claimed)
        .map_err(|_| AuthError::SignatureMismatch)?;
    Ok(oauth_params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn twitter_credentials() -> Credentials {
        Credentials::new(
            "xvz1evFS4wEEPTGEFPHBog",
            "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
            "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
            "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
        )
    }

    #[test]
    fn encode_follows_rfc3986() {
        assert_eq!(encode("Ladies + Gentlemen"), "Ladies%20%2B%20Gentlemen");
        assert_eq!(encode("An encoded string!"), "An%20encoded%20string%21");
        assert_eq!(encode("Dogs, Cats & Mice"), "Dogs%2C%20Cats%20%26%20Mice");
        assert_eq!(encode("☃"), "%E2%98%83");
        assert_eq!(encode("a-b.c_d~e"), "a-b.c_d~e");
    }

    fn example_params() -> Vec<(String, String)> {
        [
            ("include_entities", "true"),
            (
                "status",
                "Hello Ladies + Gentlemen, a signed OAuth request!",
            ),
            ("oauth_consumer_key", "xvz1evFS4wEEPTGEFPHBog"),
            ("oauth_nonce", "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "1318622958"),
            (
                "oauth_token",
                "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
            ),
            ("oauth_version", "1.0"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
    }

    fn signature_of(base: &str) -> String {
        let mut mac = mac_for(&twitter_credentials());
        mac.update(base.as_bytes());
        BASE64.encode(mac.finalize().into_bytes())
    }

    /// Twitter's documented example. Its original page signed `/1/statuses/update.json`
    /// (giving `tnnArxj06cWHq44gCs1OSKk/jLY=`); the later v1.1 page signs
    /// `/1.1/statuses/update.json` with the same values (giving `hCtSmYh+iHYCEqBWrE7C7hYmtUk=`).
    #[test]
    fn base_string_and_signature_match_twitters_documented_example() {
        let base = base_string(
            "post",
            &base_uri(true, "API.twitter.com:443", "/1.1/statuses/update.json"),
            &example_params(),
        );
        assert_eq!(
            base,
            "POST&https%3A%2F%2Fapi.twitter.com%2F1.1%2Fstatuses%2Fupdate.json&include_entities%3Dtrue%26oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog%26oauth_nonce%3DkYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1318622958%26oauth_token%3D370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb%26oauth_version%3D1.0%26status%3DHello%2520Ladies%2520%252B%2520Gentlemen%252C%2520a%2520signed%2520OAuth%2520request%2521"
        );
        assert_eq!(signature_of(&base), "hCtSmYh+iHYCEqBWrE7C7hYmtUk=");
        let v1 = base_string(
            "POST",
            &base_uri(true, "api.twitter.com", "/1/statuses/update.json"),
            &example_params(),
        );
        assert_eq!(signature_of(&v1), "tnnArxj06cWHq44gCs1OSKk/jLY=");
    }

    #[test]
    fn base_uri_keeps_non_default_ports_and_drops_default_ones() {
        assert_eq!(
            base_uri(false, "127.0.0.1:8080", "/1.1/site.json"),
            "http://127.0.0.1:8080/1.1/site.json"
        );
        assert_eq!(
            base_uri(false, "Example.COM:80", "/x"),
            "http://example.com/x"
        );
        assert_eq!(
            base_uri(true, "example.com:80", "/x"),
            "https://example.com:80/x"
        );
        assert_eq!(base_uri(true, "example.com", ""), "https://example.com/");
    }

    #[test]
    fn authorization_header_parses_with_any_spacing() {
        let params =
            parse_authorization("OAuth realm=\"x\",oauth_nonce=\"a%20b\" ,  oauth_token=\"t\"")
                .unwrap();
        assert_eq!(
            params,
            vec![
                ("realm".to_string(), "x".to_string()),
                ("oauth_nonce".to_string(), "a b".to_string()),
                ("oauth_token".to_string(), "t".to_string()),
            ]
        );
        assert_eq!(parse_authorization("Basic abc"), Err(AuthError::NotOAuth));
        assert!(matches!(
            parse_authorization("OAuth oauth_nonce=abc"),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn form_parsing_decodes_plus_and_percent() {
        assert_eq!(
            parse_form("follow=1%2C2,3&with=user&flag&q=a+b"),
            vec![
                ("follow".to_string(), "1,2,3".to_string()),
                ("with".to_string(), "user".to_string()),
                ("flag".to_string(), String::new()),
                ("q".to_string(), "a b".to_string()),
            ]
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let shown = format!("{:?}", twitter_credentials());
        assert!(shown.contains("xvz1evFS4wEEPTGEFPHBog"));
        assert!(!shown.contains("kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw"));
        assert!(!shown.contains("LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE"));
    }

    #[test]
    fn auth_errors_never_echo_values() {
        for error in [
            AuthError::SignatureMismatch,
            AuthError::WrongConsumerKey,
            AuthError::WrongToken,
            AuthError::MissingHeader,
        ] {
            let text = error.to_string();
            assert!(!text.is_empty());
            assert!(!text.contains("tnnArx"));
        }
    }
}
