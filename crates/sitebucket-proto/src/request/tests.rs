use super::*;
use crate::config::With;
use base64::Engine as _;
use core::fmt::Display;
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A signature method whose "signature" is the signature base string itself, to check the
/// base string byte for byte against the RFC.
#[derive(Clone)]
struct BaseString;

struct BaseStringSign(String);

impl SignatureMethod for BaseString {
    type Sign = BaseStringSign;
    fn sign_with(self, _: &str, _: Option<&str>) -> BaseStringSign {
        BaseStringSign(String::new())
    }
}

impl oauth::signature_method::Sign for BaseStringSign {
    type Signature = String;
    fn get_signature_method_name(&self) -> &'static str {
        "HMAC-SHA1"
    }
    fn request_method(&mut self, method: &str) {
        self.0.push_str(method);
        self.0.push('&');
    }
    fn uri<T: Display>(&mut self, uri: T) {
        let _ = write!(self.0, "{uri}&");
    }
    fn parameter<V: Display>(&mut self, key: &str, value: V) {
        let _ = write!(self.0, "{key}%3D{value}");
    }
    fn delimiter(&mut self) {
        self.0.push_str("%26");
    }
    fn end(self) -> String {
        self.0
    }
}

fn base_string(
    method: &str,
    base_uri: &str,
    params: &[(&str, String)],
    credentials: &Credentials,
    unix_secs: u64,
    nonce: &str,
    version: bool,
) -> String {
    let header = authorization_header(
        BaseString,
        method,
        base_uri,
        &SortedParams::new(params),
        credentials,
        unix_secs,
        nonce,
        version,
    );
    let (_, signature) = header
        .split_once("oauth_signature=\"")
        .unwrap_or_else(|| panic!("no signature in {header}"));
    signature.trim_end_matches('"').to_owned()
}

/// HMAC-SHA1 of `base` keyed by the two secrets, base64, computed without oauth1-request.
fn reference_signature(base: &str, consumer_secret: &str, token_secret: &str) -> String {
    let key = format!(
        "{}&{}",
        percent_encode(consumer_secret),
        percent_encode(token_secret)
    );
    let mut mac = match Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()) {
        Ok(mac) => mac,
        Err(e) => panic!("HMAC takes keys of any length: {e}"),
    };
    mac.update(base.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn text(bytes: &[u8]) -> &str {
    match core::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => panic!("request is not UTF-8: {e}"),
    }
}

fn pairs(list: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    list.iter().map(|&(k, v)| (k, v.to_owned())).collect()
}

// Twitter's "Creating a signature" example (developer.twitter.com, OAuth 1.0a).
const TW_CONSUMER_KEY: &str = "xvz1evFS4wEEPTGEFPHBog";
const TW_CONSUMER_SECRET: &str = "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw";
const TW_TOKEN: &str = "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb";
const TW_TOKEN_SECRET: &str = "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE";
const TW_NONCE: &str = "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg";
const TW_STATUS: &str = "Hello Ladies + Gentlemen, a signed OAuth request!";

fn twitter_credentials() -> Credentials {
    Credentials::new(
        TW_CONSUMER_KEY,
        TW_CONSUMER_SECRET,
        TW_TOKEN,
        TW_TOKEN_SECRET,
    )
}

#[test]
fn twitter_documented_example_base_string() {
    // The example was first published for `/1/statuses/update.json`, with the signature
    // tnnArxj06cWHq44gCs1OSKk/jLY=; the page was later moved to `/1.1/`, which changes
    // the base string and so the signature, to hCtSmYh+iHYCEqBWrE7C7hYmtUk=.
    let params = pairs(&[("include_entities", "true"), ("status", TW_STATUS)]);
    for (version, signature) in [
        ("1", "tnnArxj06cWHq44gCs1OSKk/jLY="),
        ("1.1", "hCtSmYh+iHYCEqBWrE7C7hYmtUk="),
    ] {
        let base = base_string(
            "POST",
            &format!("https://api.twitter.com/{version}/statuses/update.json"),
            &params,
            &twitter_credentials(),
            1318622958,
            TW_NONCE,
            true,
        );
        assert_eq!(
            base,
            format!("POST&https%3A%2F%2Fapi.twitter.com%2F{version}%2Fstatuses%2Fupdate.json&include_entities%3Dtrue%26oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog%26oauth_nonce%3DkYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1318622958%26oauth_token%3D370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb%26oauth_version%3D1.0%26status%3DHello%2520Ladies%2520%252B%2520Gentlemen%252C%2520a%2520signed%2520OAuth%2520request%2521")
        );
        assert_eq!(
            reference_signature(&base, TW_CONSUMER_SECRET, TW_TOKEN_SECRET),
            signature
        );
    }
}

#[test]
fn twitter_documented_example_request() {
    for (version, signature) in [
        ("1", "tnnArxj06cWHq44gCs1OSKk%2FjLY%3D"),
        ("1.1", "hCtSmYh%2BiHYCEqBWrE7C7hYmtUk%3D"),
    ] {
        let endpoint = Endpoint::parse(&format!(
            "https://api.twitter.com/{version}/statuses/update.json"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let request = signed_request(
            Method::Post,
            &endpoint,
            &endpoint.path,
            &pairs(&[("include_entities", "true")]),
            &pairs(&[("status", TW_STATUS)]),
            &twitter_credentials(),
            1318622958,
            TW_NONCE,
            &[],
        );
        // The body is the documented one but for the case of its hex digits (%2B, %2C).
        let body = "status=Hello%20Ladies%20%2B%20Gentlemen%2C%20a%20signed%20OAuth%20request%21";
        let expected = format!(
            "POST /{version}/statuses/update.json?include_entities=true HTTP/1.1\r\n\
             Host: api.twitter.com\r\n\
             User-Agent: {USER_AGENT}\r\n\
             Authorization: OAuth \
             oauth_consumer_key=\"xvz1evFS4wEEPTGEFPHBog\",\
             oauth_nonce=\"kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg\",\
             oauth_signature_method=\"HMAC-SHA1\",\
             oauth_timestamp=\"1318622958\",\
             oauth_token=\"370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb\",\
             oauth_version=\"1.0\",\
             oauth_signature=\"{signature}\"\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: 76\r\n\
             \r\n\
             {body}"
        );
        assert_eq!(text(&request), expected);
    }
}

#[test]
fn rfc5849_section_1_2_example() {
    // GET http://photos.example.net/photos?file=vacation.jpg&size=original, no oauth_version.
    let credentials = Credentials::new(
        "dpf43f3p2l4k3l03",
        "kd94hf93k423kf44",
        "nnch734d00sl2jdk",
        "pfkkdhi9sl3r4s00",
    );
    let params = pairs(&[("file", "vacation.jpg"), ("size", "original")]);
    let base = base_string(
        "GET",
        "http://photos.example.net/photos",
        &params,
        &credentials,
        137131202,
        "chapoH",
        false,
    );
    assert_eq!(
        base,
        "GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg%26oauth_consumer_key%3Ddpf43f3p2l4k3l03%26oauth_nonce%3DchapoH%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131202%26oauth_token%3Dnnch734d00sl2jdk%26size%3Doriginal"
    );
    let header = authorization_header(
        oauth::HMAC_SHA1,
        "GET",
        "http://photos.example.net/photos",
        &SortedParams::new(&params),
        &credentials,
        137131202,
        "chapoH",
        false,
    );
    assert_eq!(
        header,
        "OAuth oauth_consumer_key=\"dpf43f3p2l4k3l03\",oauth_nonce=\"chapoH\",\
         oauth_signature_method=\"HMAC-SHA1\",oauth_timestamp=\"137131202\",\
         oauth_token=\"nnch734d00sl2jdk\",oauth_signature=\"MdpQcU8iPSUjWoN%2FUDMsK2sui9I%3D\""
    );
}

#[test]
fn rfc5849_section_3_4_1_base_string_and_request_line() {
    // POST /request?b5=%3D%253D&a3=a&c%40=&a2=r%20b with body c2&a3=2+q (RFC 5849 §3.4.1.1).
    // The RFC gives no secrets for this example, so the base string is what is checked.
    let credentials = Credentials::new("9djdj82h48djs9d2", "s1", "kkk9d7dh3k39sjv7", "s2");
    let query = pairs(&[("b5", "=%3D"), ("a3", "a"), ("c@", ""), ("a2", "r b")]);
    let form = pairs(&[("c2", ""), ("a3", "2 q")]);
    let all: Vec<_> = query.iter().chain(&form).cloned().collect();
    let base = base_string(
        "POST",
        "http://example.com/request",
        &all,
        &credentials,
        137131201,
        "7d8f3e4a",
        false,
    );
    assert_eq!(
        base,
        "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk9d7dh3k39sjv7"
    );

    let endpoint = Endpoint::parse("http://example.com/").unwrap_or_else(|e| panic!("{e}"));
    let request = signed_request(
        Method::Post,
        &endpoint,
        "/request",
        &query,
        &form,
        &credentials,
        137131201,
        "7d8f3e4a",
        &[],
    );
    let request = text(&request);
    assert!(
        request.starts_with(
            "POST /request?b5=%3D%253D&a3=a&c%40=&a2=r%20b HTTP/1.1\r\nHost: example.com\r\n"
        ),
        "{request}"
    );
    assert!(request.ends_with("\r\n\r\nc2=&a3=2%20q"), "{request}");
    // With oauth_version, the real signature matches an independent HMAC of the base string.
    let base = base_string(
        "POST",
        "http://example.com/request",
        &all,
        &credentials,
        137131201,
        "7d8f3e4a",
        true,
    );
    let expected = percent_encode(&reference_signature(&base, "s1", "s2"));
    assert!(
        request.contains(&format!(",oauth_signature=\"{expected}\"\r\n")),
        "{request}"
    );
}

#[test]
fn percent_encoding_of_every_kind_of_byte() {
    assert_eq!(percent_encode("AZaz09-._~"), "AZaz09-._~");
    assert_eq!(percent_encode(" "), "%20");
    assert_eq!(percent_encode("+"), "%2B");
    assert_eq!(percent_encode("1,2"), "1%2C2");
    assert_eq!(
        percent_encode(":/?#[]@!$&'()*+,;=%\"<>\\^`{|}"),
        "%3A%2F%3F%23%5B%5D%40%21%24%26%27%28%29%2A%2B%2C%3B%3D%25%22%3C%3E%5C%5E%60%7B%7C%7D"
    );
    assert_eq!(percent_encode("\0\r\n\x7f"), "%00%0D%0A%7F");
    assert_eq!(percent_encode("é☃🦀"), "%C3%A9%E2%98%83%F0%9F%A6%80");
    for b in 0u8..=127 {
        let s = char::from(b).to_string();
        let unreserved = b.is_ascii_alphanumeric() || b"-._~".contains(&b);
        let expected = if unreserved {
            s.clone()
        } else {
            format!("%{b:02X}")
        };
        assert_eq!(percent_encode(&s), expected, "byte {b}");
    }
}

#[test]
fn query_and_signature_encode_alike() {
    // Every parameter the query shows appears in the base string encoded once more, so a
    // server that decodes the query and re-encodes it gets the same signature.
    let query = pairs(&[("q", "a b+c,d/é~*"), ("k y", "ü")]);
    let endpoint = Endpoint::parse("https://h/p").unwrap_or_else(|e| panic!("{e}"));
    let credentials = Credentials::new("ck", "cs", "t", "ts");
    let request = signed_request(
        Method::Get,
        &endpoint,
        "/p",
        &query,
        &[],
        &credentials,
        5,
        "n",
        &[],
    );
    let request = text(&request);
    assert!(
        request.starts_with("GET /p?q=a%20b%2Bc%2Cd%2F%C3%A9~%2A&k%20y=%C3%BC HTTP/1.1\r\n"),
        "{request}"
    );
    let base = base_string("GET", "https://h/p", &query, &credentials, 5, "n", true);
    assert_eq!(
        base,
        "GET&https%3A%2F%2Fh%2Fp&k%2520y%3D%25C3%25BC%26oauth_consumer_key%3Dck%26oauth_nonce%3Dn%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D5%26oauth_token%3Dt%26oauth_version%3D1.0%26q%3Da%2520b%252Bc%252Cd%252F%25C3%25A9~%252A"
    );
    let signature = percent_encode(&reference_signature(&base, "cs", "ts"));
    assert!(
        request.contains(&format!("oauth_signature=\"{signature}\"")),
        "{request}"
    );
}

fn config(
    builder: impl FnOnce(crate::config::ConfigBuilder) -> crate::config::ConfigBuilder,
) -> Config {
    let credentials = Credentials::new("ck", "cs-SECRET", "tok", "ts-SECRET");
    match builder(Config::builder([22, 11], credentials)).build() {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn stream_request_exact_bytes() {
    let c = config(|b| b);
    let request = stream_request(&c, 1_700_000_000, "NONCE123");
    let base = "GET&https%3A%2F%2Fsitestream.twitter.com%2F1.1%2Fsite.json&follow%3D11%252C22%26oauth_consumer_key%3Dck%26oauth_nonce%3DNONCE123%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1700000000%26oauth_token%3Dtok%26oauth_version%3D1.0%26with%3Duser";
    let signature = percent_encode(&reference_signature(base, "cs-SECRET", "ts-SECRET"));
    let expected = format!(
        "GET /1.1/site.json?follow=11%2C22&with=user HTTP/1.1\r\n\
         Host: sitestream.twitter.com\r\n\
         User-Agent: sitebucket/{}\r\n\
         Authorization: OAuth oauth_consumer_key=\"ck\",oauth_nonce=\"NONCE123\",\
         oauth_signature_method=\"HMAC-SHA1\",oauth_timestamp=\"1700000000\",\
         oauth_token=\"tok\",oauth_version=\"1.0\",oauth_signature=\"{signature}\"\r\n\
         \r\n",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(text(&request), expected);
    // The same inputs give the same bytes; another nonce or time gives another signature.
    assert_eq!(stream_request(&c, 1_700_000_000, "NONCE123"), request);
    assert_ne!(stream_request(&c, 1_700_000_001, "NONCE123"), request);
    assert_ne!(stream_request(&c, 1_700_000_000, "NONCE124"), request);
}

#[test]
fn stream_request_with_every_option() {
    let c = config(|b| {
        b.with(With::Followings)
            .replies_all(true)
            .stringify_friend_ids(true)
            .framing(Framing::Length)
            .stall_warnings(true)
            .gzip(true)
            .url("http://127.0.0.1:8080/2b/site.json")
    });
    let request = stream_request(&c, 42, "n0nce");
    let base = "GET&http%3A%2F%2F127.0.0.1%3A8080%2F2b%2Fsite.json&delimited%3Dlength%26follow%3D11%252C22%26oauth_consumer_key%3Dck%26oauth_nonce%3Dn0nce%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D42%26oauth_token%3Dtok%26oauth_version%3D1.0%26replies%3Dall%26stall_warnings%3Dtrue%26stringify_friend_ids%3Dtrue%26with%3Dfollowings";
    let signature = percent_encode(&reference_signature(base, "cs-SECRET", "ts-SECRET"));
    let expected = format!(
        "GET /2b/site.json?follow=11%2C22&with=followings&replies=all&stringify_friend_ids=true&delimited=length&stall_warnings=true HTTP/1.1\r\n\
         Host: 127.0.0.1:8080\r\n\
         User-Agent: {USER_AGENT}\r\n\
         Accept-Encoding: deflate, gzip\r\n\
         Authorization: OAuth oauth_consumer_key=\"ck\",oauth_nonce=\"n0nce\",\
         oauth_signature_method=\"HMAC-SHA1\",oauth_timestamp=\"42\",\
         oauth_token=\"tok\",oauth_version=\"1.0\",oauth_signature=\"{signature}\"\r\n\
         \r\n"
    );
    assert_eq!(text(&request), expected);
}

#[test]
fn each_optional_parameter_alone() {
    type Set = fn(crate::config::ConfigBuilder) -> crate::config::ConfigBuilder;
    let cases: [(Set, &str); 5] = [
        (|b| b.replies_all(true), "replies=all"),
        (
            |b| b.stringify_friend_ids(true),
            "stringify_friend_ids=true",
        ),
        (|b| b.framing(Framing::Length), "delimited=length"),
        (|b| b.stall_warnings(true), "stall_warnings=true"),
        (|b| b.with(With::Followings), "with=followings"),
    ];
    let plain = query_pairs(&config(|b| b));
    assert_eq!(plain, pairs(&[("follow", "11,22"), ("with", "user")]));
    for (set, expected) in cases {
        let c = config(set);
        let query = urlencode(&query_pairs(&c));
        let request = stream_request(&c, 1, "n");
        let line = text(&request).lines().next().unwrap_or_default().to_owned();
        if expected.starts_with("with=") {
            assert_eq!(query, format!("follow=11%2C22&{expected}"));
        } else {
            assert_eq!(query, format!("follow=11%2C22&with=user&{expected}"));
        }
        assert_eq!(line, format!("GET /1.1/site.json?{query} HTTP/1.1"));
        assert!(!text(&request).contains("Accept-Encoding"));
    }
    // gzip changes only the header, never the query.
    let c = config(|b| b.gzip(true));
    assert_eq!(query_pairs(&c), plain);
    assert!(text(&stream_request(&c, 1, "n")).contains("\r\nAccept-Encoding: deflate, gzip\r\n"));
}

#[test]
fn no_oauth_parameter_in_the_query() {
    let c = config(|b| b.replies_all(true).stall_warnings(true));
    let request = stream_request(&c, 1, "n");
    let line = text(&request).lines().next().unwrap_or_default().to_owned();
    assert!(!line.contains("oauth"), "{line}");
    assert!(query_pairs(&c)
        .iter()
        .all(|(k, _)| !k.starts_with("oauth_")));
}

#[test]
fn host_header_with_custom_port_and_ipv6() {
    let cases = [
        (
            "https://h.example/x",
            "h.example",
            "https%3A%2F%2Fh.example%2Fx",
        ),
        (
            "https://h.example:8443/x",
            "h.example:8443",
            "https%3A%2F%2Fh.example%3A8443%2Fx",
        ),
        (
            "http://H.Example:80/x",
            "h.example",
            "http%3A%2F%2Fh.example%2Fx",
        ),
        ("http://[::1]/x", "[::1]", "http%3A%2F%2F%5B%3A%3A1%5D%2Fx"),
        (
            "https://[FE80::1]:9000/x",
            "[fe80::1]:9000",
            "https%3A%2F%2F%5Bfe80%3A%3A1%5D%3A9000%2Fx",
        ),
    ];
    for (url, host, base_uri) in cases {
        let c = config(|b| b.url(url));
        let request = stream_request(&c, 9, "n");
        let request = text(&request);
        assert!(
            request.contains(&format!("\r\nHost: {host}\r\n")),
            "{request}"
        );
        let base = format!(
            "GET&{base_uri}&follow%3D11%252C22%26oauth_consumer_key%3Dck%26oauth_nonce%3Dn%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D9%26oauth_token%3Dtok%26oauth_version%3D1.0%26with%3Duser"
        );
        let signature = percent_encode(&reference_signature(&base, "cs-SECRET", "ts-SECRET"));
        assert!(
            request.contains(&format!("oauth_signature=\"{signature}\"")),
            "{url}: {request}"
        );
    }
}

#[test]
fn request_head_never_carries_a_secret() {
    let c = config(|b| b.gzip(true));
    let request = stream_request(&c, 1, "n");
    assert!(!text(&request).contains("SECRET"));
}

#[test]
fn control_requests() {
    let endpoint = Endpoint::parse("https://sitestream.twitter.com/1.1/site.json")
        .unwrap_or_else(|e| panic!("{e}"));
    let credentials = Credentials::new("ck", "cs", "t", "ts");
    // A POST with a form body.
    let request = signed_request(
        Method::Post,
        &endpoint,
        "/1.1/site/c/1_2_abc/add_user.json",
        &[],
        &pairs(&[("user_id", "1,2,3")]),
        &credentials,
        100,
        "nn",
        &[("X-Extra", "yes")],
    );
    let request = text(&request);
    let base = "POST&https%3A%2F%2Fsitestream.twitter.com%2F1.1%2Fsite%2Fc%2F1_2_abc%2Fadd_user.json&oauth_consumer_key%3Dck%26oauth_nonce%3Dnn%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D100%26oauth_token%3Dt%26oauth_version%3D1.0%26user_id%3D1%252C2%252C3";
    let signature = percent_encode(&reference_signature(base, "cs", "ts"));
    assert_eq!(
        request,
        format!(
            "POST /1.1/site/c/1_2_abc/add_user.json HTTP/1.1\r\n\
             Host: sitestream.twitter.com\r\n\
             User-Agent: {USER_AGENT}\r\n\
             X-Extra: yes\r\n\
             Authorization: OAuth oauth_consumer_key=\"ck\",oauth_nonce=\"nn\",\
             oauth_signature_method=\"HMAC-SHA1\",oauth_timestamp=\"100\",\
             oauth_token=\"t\",oauth_version=\"1.0\",oauth_signature=\"{signature}\"\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: 17\r\n\
             \r\n\
             user_id=1%2C2%2C3"
        )
    );
    // A POST without a body still says so; a GET without query or form has neither.
    let post = signed_request(
        Method::Post,
        &endpoint,
        "/x",
        &[],
        &[],
        &credentials,
        1,
        "n",
        &[],
    );
    let post = text(&post);
    assert!(post.starts_with("POST /x HTTP/1.1\r\n"), "{post}");
    assert!(
        post.ends_with("\r\nContent-Length: 0\r\n\r\n") && !post.contains("Content-Type"),
        "{post}"
    );
    let get = signed_request(
        Method::Get,
        &endpoint,
        "/1.1/site/c/s/info.json",
        &[],
        &[],
        &credentials,
        1,
        "n",
        &[],
    );
    let get = text(&get);
    assert!(
        get.starts_with("GET /1.1/site/c/s/info.json HTTP/1.1\r\n"),
        "{get}"
    );
    assert!(!get.contains("Content-"), "{get}");
}

#[test]
fn hostile_inputs_keep_the_head_well_formed() {
    let endpoint = Endpoint {
        tls: false,
        host: "Evil\r\nX-Injected: 1".into(),
        port: 81,
        path: String::new(),
    };
    let credentials = Credentials::new("c\r\nk", "cs", "t\"k", "ts");
    let request = signed_request(
        Method::Get,
        &endpoint,
        "a b?c#d%zz%41\r\n",
        &pairs(&[("q\r\n", "v\r\n")]),
        &[],
        &credentials,
        0,
        "n\r\n\"",
        &[("Bad Name:\r\n", "v\r\nX-Injected: 2\0")],
    );
    let request = text(&request);
    assert_eq!(request.matches("\r\n").count(), 6, "{request}");
    assert!(request.ends_with("\r\n\r\n"));
    assert!(!request.contains("\nX-Injected"), "{request}");
    let lines: Vec<&str> = request.split("\r\n").collect();
    assert_eq!(
        lines[0],
        "GET /a%20b%3Fc%23d%25zz%41%0D%0A?q%0D%0A=v%0D%0A HTTP/1.1"
    );
    assert_eq!(lines[1], "Host: evil%0D%0Ax-injected%3A%201:81");
    // Only an IPv6 address keeps its colons, and its brackets.
    let v6 = Endpoint {
        host: "FE80::1".into(),
        ..endpoint.clone()
    };
    let v6 = signed_request(Method::Get, &v6, "/", &[], &[], &credentials, 1, "n", &[]);
    assert!(text(&v6).contains("\r\nHost: [fe80::1]:81\r\n"));
    assert_eq!(lines[3], "Bad-Name---: v  X-Injected: 2 ");
    assert!(
        lines[4].starts_with(
            "Authorization: OAuth oauth_consumer_key=\"c%0D%0Ak\",oauth_nonce=\"n%0D%0A%22\","
        ),
        "{}",
        lines[4]
    );
    // Timestamp 0 is sent as 1 rather than letting the signer read the clock.
    assert!(lines[4].contains("oauth_timestamp=\"1\""), "{}", lines[4]);
    assert!(lines[4].contains("oauth_token=\"t%22k\""), "{}", lines[4]);
}

#[test]
fn bearer_requests_carry_the_token_and_a_json_body() {
    let endpoint = Endpoint::parse("https://api.x.com/2/tweets/search/stream/rules")
        .unwrap_or_else(|e| panic!("{e}"));
    let token = BearerToken::new("AAAA%2Fb");
    let json = r#"{"add":[{"value":"cat"}]}"#;
    let request = bearer_request(
        Method::Post,
        &endpoint,
        &endpoint.path,
        &pairs(&[("dry_run", "true")]),
        Body::Json(json),
        &token,
        &[("Connection", "close")],
    );
    assert_eq!(
        text(&request),
        format!(
            "POST /2/tweets/search/stream/rules?dry_run=true HTTP/1.1\r\n\
             Host: api.x.com\r\n\
             User-Agent: {USER_AGENT}\r\n\
             Connection: close\r\n\
             Authorization: Bearer AAAA%2Fb\r\n\
             Content-Type: application/json\r\n\
             Content-Length: {}\r\n\
             \r\n\
             {json}",
            json.len()
        )
    );
    // Through `authorized_request`, the same bytes.
    let auth = Auth::Bearer(token.clone());
    let same = authorized_request(
        Method::Post,
        &endpoint,
        &endpoint.path,
        &pairs(&[("dry_run", "true")]),
        Body::Json(json),
        &auth,
        1,
        "n",
        &[("Connection", "close")],
    );
    assert_eq!(same, request);
    // A token with CR LF cannot split the head.
    let evil = bearer_request(
        Method::Get,
        &endpoint,
        "/x",
        &[],
        Body::None,
        &BearerToken::new("a\r\nX-Evil: 1"),
        &[],
    );
    assert!(text(&evil).contains("Authorization: Bearer a  X-Evil: 1\r\n"));
    // OAuth 1.0a with a JSON body: the body is sent, not signed.
    let creds = twitter_credentials();
    let signed = authorized_request(
        Method::Post,
        &endpoint,
        &endpoint.path,
        &[],
        Body::Json(json),
        &Auth::OAuth1(creds.clone()),
        1318622958,
        TW_NONCE,
        &[],
    );
    let plain = signed_request(
        Method::Post,
        &endpoint,
        &endpoint.path,
        &[],
        &[],
        &creds,
        1318622958,
        TW_NONCE,
        &[],
    );
    let auth_line = |r: &[u8]| {
        text(r)
            .lines()
            .find(|l| l.starts_with("Authorization"))
            .map(str::to_owned)
    };
    assert_eq!(auth_line(&signed), auth_line(&plain));
    assert!(text(&signed).ends_with(json));
}

#[test]
fn nonces_are_alphanumeric_and_reproducible() {
    let mut a = ChaCha8Rng::seed_from_u64(7);
    let mut b = ChaCha8Rng::seed_from_u64(7);
    let mut other = ChaCha8Rng::seed_from_u64(8);
    let first = make_nonce(&mut a);
    assert_eq!(first.len(), NONCE_LEN);
    assert!(first.bytes().all(|b| b.is_ascii_alphanumeric()), "{first}");
    assert_eq!(make_nonce(&mut b), first);
    assert_ne!(make_nonce(&mut a), first);
    assert_ne!(make_nonce(&mut other), first);
    // Over many draws, every class of character shows up.
    let many: String = (0..100).map(|_| make_nonce(&mut a)).collect();
    assert!(many.bytes().any(|b| b.is_ascii_lowercase()));
    assert!(many.bytes().any(|b| b.is_ascii_uppercase()));
    assert!(many.bytes().any(|b| b.is_ascii_digit()));
}

proptest! {
    #[test]
    fn percent_encode_round_trips(s in any::<String>()) {
        let encoded = percent_encode(&s);
        prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
        let decoded = percent_encoding::percent_decode_str(&encoded).decode_utf8();
        prop_assert_eq!(decoded.as_deref(), Ok(s.as_str()));
    }

    #[test]
    fn signature_matches_an_independent_hmac(
        params in proptest::collection::vec(("[a-z@ %]{1,4}", any::<String>()), 0..5),
        secret in any::<String>(),
        unix_secs in 1u64..,
        nonce in "[a-zA-Z0-9]{1,32}",
    ) {
        let query: Vec<(&str, String)> = params.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let credentials = Credentials::new("ck", secret.clone(), "t", "ts");
        let endpoint = Endpoint::parse("https://h/p").unwrap_or_else(|e| panic!("{e}"));
        let request = signed_request(Method::Get, &endpoint, "/p", &query, &[], &credentials, unix_secs, &nonce, &[]);
        // Build the base string by hand, straight from RFC 5849 §3.4.1.
        let mut all: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (percent_encode(k), percent_encode(v)))
            .chain([
                ("oauth_consumer_key".to_owned(), "ck".to_owned()),
                ("oauth_nonce".to_owned(), nonce.clone()),
                ("oauth_signature_method".to_owned(), "HMAC-SHA1".to_owned()),
                ("oauth_timestamp".to_owned(), unix_secs.to_string()),
                ("oauth_token".to_owned(), "t".to_owned()),
                ("oauth_version".to_owned(), "1.0".to_owned()),
            ])
            .collect();
        all.sort();
        let normalized = all.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let base = format!("GET&{}&{}", percent_encode("https://h/p"), percent_encode(&normalized));
        let signature = percent_encode(&reference_signature(&base, &secret, "ts"));
        let request = text(&request);
        prop_assert!(request.contains(&format!("oauth_signature=\"{}\"", signature)), "{}", request);
        if !query.is_empty() {
            let line = format!("GET /p?{} HTTP/1.1\r\n", urlencode(&query));
            prop_assert!(request.starts_with(&line), "{}", request);
        }
    }

    #[test]
    fn any_input_gives_one_well_formed_head(
        host in any::<String>(),
        port in any::<u16>(),
        path in any::<String>(),
        query in proptest::collection::vec((any::<String>(), any::<String>()), 0..3),
        form in proptest::collection::vec((any::<String>(), any::<String>()), 0..3),
        header in (any::<String>(), any::<String>()),
        keys in any::<[String; 4]>(),
        unix_secs in any::<u64>(),
        nonce in any::<String>(),
        post in any::<bool>(),
    ) {
        let endpoint = Endpoint { tls: port % 2 == 0, host, port, path: String::new() };
        let [a, b, c, d] = keys;
        let credentials = Credentials::new(a, b, c, d);
        let query: Vec<(&str, String)> = query.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let form: Vec<(&str, String)> = form.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let method = if post { Method::Post } else { Method::Get };
        let request = signed_request(
            method, &endpoint, &path, &query, &form, &credentials, unix_secs, &nonce,
            &[(header.0.as_str(), header.1.as_str())],
        );
        let text = text(&request);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no blank line: {text:?}"));
        prop_assert_eq!(body, urlencode(&form));
        prop_assert!(head.split("\r\n").all(|line| !line.contains(['\r', '\n'])), "{:?}", head);
        let lines: Vec<&str> = head.split("\r\n").collect();
        let expected_lines = 5 + usize::from(!form.is_empty()) + usize::from(!form.is_empty() || post);
        prop_assert_eq!(lines.len(), expected_lines);
        let request_line: Vec<&str> = lines[0].split(' ').collect();
        prop_assert_eq!(request_line.len(), 3, "{:?}", lines[0]);
        prop_assert!(request_line[1].starts_with('/'));
        prop_assert!(request_line[1].is_ascii());
        for line in &lines[1..] {
            prop_assert!(line.split_once(": ").is_some(), "{:?}", line);
        }
    }
}
