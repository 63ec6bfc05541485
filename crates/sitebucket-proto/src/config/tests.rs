use super::*;
use crate::backoff::{SquaredBackoff, TwitterBackoff};
use proptest::prelude::*;

fn creds() -> Credentials {
    Credentials::new("ckey", "SECRET-CONSUMER", "tkey", "SECRET-TOKEN")
}

fn build(builder: ConfigBuilder) -> Config {
    match builder.build() {
        Ok(config) => config,
        Err(e) => panic!("config should build: {e}"),
    }
}

fn err(builder: ConfigBuilder) -> ConfigError {
    match builder.build() {
        Ok(config) => panic!("config should be refused: {config:?}"),
        Err(e) => e,
    }
}

#[test]
fn defaults() {
    let c = build(Config::builder([5], creds()));
    assert_eq!(c.follow(), &[5]);
    assert_eq!(c.with(), With::User);
    assert!(!c.replies_all() && !c.stringify_friend_ids() && !c.stall_warnings() && !c.gzip());
    assert_eq!(c.framing(), Framing::Crlf);
    assert_eq!(c.url(), DEFAULT_URL);
    assert_eq!(
        c.endpoint(),
        &Endpoint {
            tls: true,
            host: "sitestream.twitter.com".into(),
            port: 443,
            path: "/1.1/site.json".into()
        }
    );
    assert_eq!(c.max_message_bytes(), 8_388_608);
    assert_eq!(c.stall_timeout(), Duration::from_secs(90));
    assert_eq!(c.connect_timeout(), Duration::from_secs(40));
    assert_eq!(
        c.backoff(),
        &BackoffPolicy::Twitter(TwitterBackoff::default())
    );
    assert_eq!(c.jitter(), None);
    assert_eq!(c.retry_limit(), None);
    assert!(c.extra_root_certs_pem().is_empty());
    assert_eq!(c.rng_seed(), None);
    assert_eq!(c.trust_after(), Duration::from_secs(30));
    assert_eq!(c.rate_limit_reset_after(), Duration::from_secs(600));
    assert_eq!(c.credentials(), Some(&creds()));
    assert_eq!(c.api(), Api::SiteStreams);
    assert!(c.v2_params().is_empty());
}

#[test]
fn every_setter_is_kept() {
    let jitter = Some(Jitter {
        fraction: 0.25,
        seed: 9,
    });
    let c = build(
        Config::builder([9, 3], creds())
            .with(With::Followings)
            .replies_all(true)
            .stringify_friend_ids(true)
            .framing(Framing::Length)
            .stall_warnings(true)
            .gzip(true)
            .url("HTTP://Example.COM:8080")
            .max_message_bytes(1)
            .stall_timeout(Duration::from_millis(1))
            .connect_timeout(Duration::from_secs(3))
            .backoff(BackoffPolicy::Squared(SquaredBackoff::default()))
            .jitter(jitter)
            .retry_limit(Some(3))
            .extra_root_certs_pem(b"-----BEGIN CERTIFICATE-----".to_vec())
            .rng_seed(77)
            .trust_after(Duration::from_secs(5))
            .rate_limit_reset_after(Duration::from_secs(5)),
    );
    assert_eq!(c.follow(), &[3, 9]);
    assert_eq!(c.with(), With::Followings);
    assert!(c.replies_all() && c.stringify_friend_ids() && c.stall_warnings() && c.gzip());
    assert_eq!(c.framing(), Framing::Length);
    assert_eq!(c.url(), "http://example.com:8080/");
    assert_eq!(c.max_message_bytes(), 1);
    assert_eq!(c.stall_timeout(), Duration::from_millis(1));
    assert_eq!(c.connect_timeout(), Duration::from_secs(3));
    assert_eq!(
        c.backoff(),
        &BackoffPolicy::Squared(SquaredBackoff::default())
    );
    assert_eq!(c.jitter(), jitter);
    assert_eq!(c.retry_limit(), Some(3));
    assert_eq!(c.extra_root_certs_pem(), b"-----BEGIN CERTIFICATE-----");
    assert_eq!(c.rng_seed(), Some(77));
    assert_eq!(c.trust_after(), Duration::from_secs(5));
    assert_eq!(c.rate_limit_reset_after(), Duration::from_secs(5));

    // Round trip through `to_builder`, replacing only the follow list.
    let d = build(c.to_builder().follow([1]));
    assert_eq!(d.follow(), &[1]);
    assert_eq!(
        format!("{:?}", d.to_builder().follow([3, 9]).build().unwrap()),
        format!("{c:?}")
    );
}

#[test]
fn follow_is_sorted_and_deduplicated_before_counting() {
    let c = build(Config::builder([7, 1, 7, 3, 1], creds()));
    assert_eq!(c.follow(), &[1, 3, 7]);
    // 150 ids with only 100 distinct values are fine.
    let c = build(Config::builder((1..=100).chain(1..=50), creds()));
    assert_eq!(c.follow().len(), 100);
    assert_eq!(c.follow().first(), Some(&1));
    assert_eq!(c.follow().last(), Some(&100));
    let c = build(Config::builder([u64::MAX], creds()));
    assert_eq!(c.follow(), &[u64::MAX]);
}

#[test]
fn follow_errors() {
    let e = err(Config::builder([], creds()));
    assert_eq!(e, ConfigError::EmptyFollow);
    assert_eq!(
        e.to_string(),
        "follow list is empty; give 1 to 100 user ids"
    );

    let e = err(Config::builder(1..=101, creds()));
    assert_eq!(e, ConfigError::TooManyFollows { count: 101 });
    assert_eq!(
        e.to_string(),
        "follow list has 101 ids; at most 100 are allowed"
    );

    let e = err(Config::builder([4, 0], creds()));
    assert_eq!(e, ConfigError::ZeroFollowId);
    assert_eq!(
        e.to_string(),
        "follow list contains user id 0; user ids start at 1"
    );
}

#[test]
fn each_empty_credential_is_named() {
    let cases = [
        (Credentials::new("", "a", "b", "c"), "consumer_key"),
        (Credentials::new("a", "", "b", "c"), "consumer_secret"),
        (Credentials::new("a", "b", "", "c"), "token"),
        (Credentials::new("a", "b", "c", ""), "token_secret"),
    ];
    for (credentials, which) in cases {
        let e = err(Config::builder([1], credentials));
        assert_eq!(e, ConfigError::EmptyCredential { which });
        assert_eq!(
            e.to_string(),
            format!("credential {which} is empty; all four are required")
        );
    }
}

#[test]
fn with_parses_and_displays() {
    assert_eq!("user".parse::<With>(), Ok(With::User));
    assert_eq!("followings".parse::<With>(), Ok(With::Followings));
    assert_eq!(With::User.to_string(), "user");
    assert_eq!(With::Followings.to_string(), "followings");
    for bad in ["", "User", "following", "users", " user"] {
        let e = bad.parse::<With>().unwrap_err();
        assert_eq!(e, ConfigError::InvalidWith { value: bad.into() });
        assert_eq!(
            e.to_string(),
            format!("with value {bad:?} is invalid; it must be \"user\" or \"followings\"")
        );
    }
}

#[test]
fn limits_are_checked() {
    for bad in [0, MAX_MESSAGE_BYTES_LIMIT + 1, usize::MAX] {
        let e = err(Config::builder([1], creds()).max_message_bytes(bad));
        assert_eq!(e, ConfigError::MaxMessageBytesOutOfRange { value: bad });
        assert_eq!(
            e.to_string(),
            format!("max_message_bytes is {bad}; it must be from 1 to 1073741824 (1 GiB)")
        );
    }
    let c = build(Config::builder([1], creds()).max_message_bytes(MAX_MESSAGE_BYTES_LIMIT));
    assert_eq!(c.max_message_bytes(), 1 << 30);

    let e = err(Config::builder([1], creds()).stall_timeout(Duration::ZERO));
    assert_eq!(e, ConfigError::ZeroStallTimeout);
    assert_eq!(
        e.to_string(),
        "stall_timeout is 0s; it must be greater than zero"
    );

    let e = err(Config::builder([1], creds()).connect_timeout(Duration::ZERO));
    assert_eq!(e, ConfigError::ZeroConnectTimeout);
    assert_eq!(
        e.to_string(),
        "connect_timeout is 0s; it must be greater than zero"
    );
}

#[test]
fn jitter_fraction_is_checked() {
    for good in [0.0, 0.5, 1.0] {
        let jitter = Some(Jitter {
            fraction: good,
            seed: 1,
        });
        assert_eq!(
            build(Config::builder([1], creds()).jitter(jitter)).jitter(),
            jitter
        );
    }
    for bad in [-0.1, 1.5, f64::INFINITY, f64::NEG_INFINITY] {
        let e = err(Config::builder([1], creds()).jitter(Some(Jitter {
            fraction: bad,
            seed: 1,
        })));
        assert_eq!(e, ConfigError::InvalidJitterFraction { fraction: bad });
        assert_eq!(
            e.to_string(),
            format!("jitter fraction is {bad}; it must be a number from 0.0 to 1.0")
        );
    }
    let e = err(Config::builder([1], creds()).jitter(Some(Jitter {
        fraction: f64::NAN,
        seed: 1,
    })));
    assert!(matches!(e, ConfigError::InvalidJitterFraction { fraction } if fraction.is_nan()));
    assert_eq!(
        e.to_string(),
        "jitter fraction is NaN; it must be a number from 0.0 to 1.0"
    );
}

#[test]
fn zero_backoff_values_and_trust_periods_are_refused() {
    let zero = Duration::ZERO;
    let twitter = |edit: fn(&mut TwitterBackoff)| {
        let mut t = TwitterBackoff::default();
        edit(&mut t);
        Config::builder([1], creds()).backoff(BackoffPolicy::Twitter(t))
    };
    let squared = |start, max| {
        Config::builder([1], creds()).backoff(BackoffPolicy::Squared(SquaredBackoff { start, max }))
    };
    let cases = [
        (twitter(|t| t.network_step = Duration::ZERO), "network_step"),
        (twitter(|t| t.network_max = Duration::ZERO), "network_max"),
        (twitter(|t| t.http_start = Duration::ZERO), "http_start"),
        (twitter(|t| t.http_max = Duration::ZERO), "http_max"),
        (
            twitter(|t| t.rate_limit_start = Duration::ZERO),
            "rate_limit_start",
        ),
        (
            twitter(|t| t.rate_limit_max = Duration::ZERO),
            "rate_limit_max",
        ),
        (squared(zero, Duration::from_secs(1)), "squared_start"),
        (squared(Duration::from_secs(1), zero), "squared_max"),
        (
            Config::builder([1], creds()).trust_after(zero),
            "trust_after",
        ),
    ];
    for (builder, which) in cases {
        let e = err(builder);
        assert_eq!(e, ConfigError::ZeroDuration { which });
        assert_eq!(
            e.to_string(),
            format!(
                "{which} is 0s; it must be greater than zero (a zero wait would reconnect \
                 in a hot loop)"
            )
        );
    }
}

#[test]
fn durations_that_could_overflow_an_instant_are_refused() {
    let long = MAX_DURATION + Duration::from_secs(1);
    let huge = Duration::MAX;
    let cases = [
        (
            Config::builder([1], creds()).stall_timeout(huge),
            "stall_timeout",
            huge,
        ),
        (
            Config::builder([1], creds()).connect_timeout(long),
            "connect_timeout",
            long,
        ),
        (
            Config::builder([1], creds())
                .trust_after(long)
                .rate_limit_reset_after(huge),
            "trust_after",
            long,
        ),
        (
            Config::builder([1], creds()).rate_limit_reset_after(long),
            "rate_limit_reset_after",
            long,
        ),
        (
            Config::builder([1], creds()).backoff(BackoffPolicy::Twitter(TwitterBackoff {
                http_max: huge,
                ..TwitterBackoff::default()
            })),
            "http_max",
            huge,
        ),
        (
            Config::builder([1], creds()).backoff(BackoffPolicy::Squared(SquaredBackoff {
                start: Duration::from_secs(2),
                max: long,
            })),
            "squared_max",
            long,
        ),
    ];
    for (builder, which, value) in cases {
        let e = err(builder);
        assert_eq!(e, ConfigError::DurationTooLong { which, value });
        assert_eq!(
            e.to_string(),
            format!("{which} is {value:?}; it must be at most 2592000s (30 days)")
        );
    }
    // The cap itself is fine.
    let c = build(
        Config::builder([1], creds())
            .stall_timeout(MAX_DURATION)
            .trust_after(MAX_DURATION)
            .rate_limit_reset_after(MAX_DURATION),
    );
    assert_eq!(c.stall_timeout(), MAX_DURATION);
}

#[test]
fn the_rate_limit_is_not_forgotten_before_trust() {
    let e = err(Config::builder([1], creds())
        .trust_after(Duration::from_secs(60))
        .rate_limit_reset_after(Duration::from_secs(59)));
    assert_eq!(
        e,
        ConfigError::RateLimitResetBeforeTrust {
            rate_limit_reset_after: Duration::from_secs(59),
            trust_after: Duration::from_secs(60),
        }
    );
    assert_eq!(
        e.to_string(),
        "rate_limit_reset_after is 59s; it must be at least trust_after (60s)"
    );
    let e = err(Config::builder([1], creds()).rate_limit_reset_after(Duration::from_secs(29)));
    assert!(matches!(e, ConfigError::RateLimitResetBeforeTrust { .. }));
}

#[test]
fn rng_seed_is_optional() {
    assert_eq!(build(Config::builder([1], creds())).rng_seed(), None);
    let c = build(Config::builder([1], creds()).rng_seed(9));
    assert_eq!(c.rng_seed(), Some(9));
    assert_eq!(build(c.to_builder().rng_seed(None)).rng_seed(), None);
}

#[test]
fn retry_limit_defaults_follow_the_policy() {
    let squared = BackoffPolicy::Squared(SquaredBackoff::default());
    let twitter = BackoffPolicy::Twitter(TwitterBackoff::default());
    let c = build(Config::builder([1], creds()).backoff(squared.clone()));
    assert_eq!(c.retry_limit(), Some(RETRY_LIMIT));
    let c = build(Config::builder([1], creds()).backoff(twitter));
    assert_eq!(c.retry_limit(), None);
    // An explicit choice wins over the policy's default, in either order of calls.
    let c = build(
        Config::builder([1], creds())
            .retry_limit(None)
            .backoff(squared.clone()),
    );
    assert_eq!(c.retry_limit(), None);
    let c = build(
        Config::builder([1], creds())
            .backoff(squared)
            .retry_limit(Some(2)),
    );
    assert_eq!(c.retry_limit(), Some(2));
    let c = build(Config::builder([1], creds()).retry_limit(Some(u32::MAX)));
    assert_eq!(c.retry_limit(), Some(u32::MAX));

    let e = err(Config::builder([1], creds()).retry_limit(Some(0)));
    assert_eq!(e, ConfigError::ZeroRetryLimit);
    assert_eq!(
        e.to_string(),
        "retry_limit is 0, which allows no attempt; use None for unlimited or at least 1"
    );
}

#[test]
fn endpoints_parse() {
    let cases: &[(&str, bool, &str, u16, &str, &str, &str)] = &[
        // url, tls, host, port, path, host_header, url()
        (
            "https://sitestream.twitter.com/1.1/site.json",
            true,
            "sitestream.twitter.com",
            443,
            "/1.1/site.json",
            "sitestream.twitter.com",
            "https://sitestream.twitter.com/1.1/site.json",
        ),
        (
            "http://127.0.0.1:8080/1.1/site.json",
            false,
            "127.0.0.1",
            8080,
            "/1.1/site.json",
            "127.0.0.1:8080",
            "http://127.0.0.1:8080/1.1/site.json",
        ),
        (
            "HtTpS://Host.Example",
            true,
            "host.example",
            443,
            "/",
            "host.example",
            "https://host.example/",
        ),
        ("http://h:80/", false, "h", 80, "/", "h", "http://h/"),
        (
            "https://h:80/x",
            true,
            "h",
            80,
            "/x",
            "h:80",
            "https://h:80/x",
        ),
        (
            "http://h:443/x",
            false,
            "h",
            443,
            "/x",
            "h:443",
            "http://h:443/x",
        ),
        (
            "http://h:00081/x",
            false,
            "h",
            81,
            "/x",
            "h:81",
            "http://h:81/x",
        ),
        (
            "http://[::1]/s",
            false,
            "::1",
            80,
            "/s",
            "[::1]",
            "http://[::1]/s",
        ),
        (
            "https://[::1]:8443/s",
            true,
            "::1",
            8443,
            "/s",
            "[::1]:8443",
            "https://[::1]:8443/s",
        ),
        (
            "http://[2001:DB8::1]:65535",
            false,
            "2001:db8::1",
            65535,
            "/",
            "[2001:db8::1]:65535",
            "http://[2001:db8::1]:65535/",
        ),
        (
            "http://h/a%2Fb/c;d=e,f:g@h~!$&'()*+",
            false,
            "h",
            80,
            "/a%2Fb/c;d=e,f:g@h~!$&'()*+",
            "h",
            "http://h/a%2Fb/c;d=e,f:g@h~!$&'()*+",
        ),
    ];
    for &(url, tls, host, port, path, host_header, again) in cases {
        let e = Endpoint::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(
            (e.tls, e.host.as_str(), e.port, e.path.as_str()),
            (tls, host, port, path),
            "{url}"
        );
        assert_eq!(e.host_header(), host_header, "{url}");
        assert_eq!(e.url(), again, "{url}");
        assert_eq!(e.to_string(), again, "{url}");
        assert_eq!(again.parse::<Endpoint>(), Ok(e.clone()), "{url}");
        assert_eq!(
            e.is_default_port(),
            !host_header.ends_with(&format!(":{port}")),
            "{url}"
        );
    }
}

#[test]
fn cleartext_to_a_remote_host_is_told_apart() {
    for (url, loopback, cleartext_remote) in [
        ("http://127.0.0.1:8080/s", true, false),
        ("http://127.9.8.7/s", true, false),
        ("http://[::1]:80/s", true, false),
        ("http://LocalHost:8080/s", true, false),
        ("http://a.localhost/s", true, false),
        ("http://sitestream.example/s", false, true),
        ("http://10.0.0.1/s", false, true),
        ("http://[::2]/s", false, true),
        ("http://localhost.example/s", false, true),
        ("https://sitestream.example/s", false, false),
        ("https://127.0.0.1/s", true, false),
    ] {
        let e = Endpoint::parse(url).unwrap();
        assert_eq!(e.is_loopback(), loopback, "{url}");
        assert_eq!(e.is_cleartext_remote(), cleartext_remote, "{url}");
    }
}

#[test]
fn endpoint_errors_have_clear_messages() {
    let cases: &[(&str, UrlError, &str)] = &[
        ("sitestream.twitter.com/1.1", UrlError::MissingScheme, "it has no scheme; it must start with http:// or https://"),
        ("ftp://h/", UrlError::UnsupportedScheme { scheme: "ftp".into() }, "unsupported scheme \"ftp\"; only http and https are supported"),
        ("://h/", UrlError::UnsupportedScheme { scheme: "".into() }, "unsupported scheme \"\"; only http and https are supported"),
        ("https://user:pw@h/", UrlError::UserInfo, "user information (user@ or user:password@) is not allowed; pass credentials through Credentials"),
        ("https://h/p?follow=1", UrlError::Query, "a query (?...) is not allowed; the query parameters are built from the config"),
        ("https://h?x", UrlError::Query, "a query (?...) is not allowed; the query parameters are built from the config"),
        ("https://h/p#top", UrlError::Fragment, "a fragment (#...) is not allowed"),
        ("https://h/p#a?b", UrlError::Fragment, "a fragment (#...) is not allowed"),
        ("https://", UrlError::EmptyHost, "the host is empty"),
        ("https:///path", UrlError::EmptyHost, "the host is empty"),
        ("https://:443/path", UrlError::EmptyHost, "the host is empty"),
        ("https://ho st/", UrlError::InvalidHost { host: "ho st".into(), reason: "a host name may only hold ASCII letters, digits, '-', '.', '_' and '~'" }, "invalid host \"ho st\": a host name may only hold ASCII letters, digits, '-', '.', '_' and '~'"),
        ("https://hé/", UrlError::InvalidHost { host: "hé".into(), reason: "a host name may only hold ASCII letters, digits, '-', '.', '_' and '~'" }, "invalid host \"hé\": a host name may only hold ASCII letters, digits, '-', '.', '_' and '~'"),
        ("http://::1/", UrlError::InvalidHost { host: "::1".into(), reason: "an IPv6 address must be written in brackets, like [::1]" }, "invalid host \"::1\": an IPv6 address must be written in brackets, like [::1]"),
        ("http://[::1/", UrlError::InvalidHost { host: "[::1".into(), reason: "the IPv6 address has no closing bracket" }, "invalid host \"[::1\": the IPv6 address has no closing bracket"),
        ("http://[nope]/", UrlError::InvalidHost { host: "[nope]".into(), reason: "not a valid IPv6 address" }, "invalid host \"[nope]\": not a valid IPv6 address"),
        ("http://[::1]x/", UrlError::InvalidHost { host: "[::1]x".into(), reason: "only :port may follow the closing bracket" }, "invalid host \"[::1]x\": only :port may follow the closing bracket"),
        ("http://h:/", UrlError::InvalidPort { port: "".into() }, "invalid port \"\"; it must be a number from 1 to 65535"),
        ("http://h:0/", UrlError::InvalidPort { port: "0".into() }, "invalid port \"0\"; it must be a number from 1 to 65535"),
        ("http://h:65536/", UrlError::InvalidPort { port: "65536".into() }, "invalid port \"65536\"; it must be a number from 1 to 65535"),
        ("http://h:+80/", UrlError::InvalidPort { port: "+80".into() }, "invalid port \"+80\"; it must be a number from 1 to 65535"),
        ("http://h:http/", UrlError::InvalidPort { port: "http".into() }, "invalid port \"http\"; it must be a number from 1 to 65535"),
        ("http://[::1]:x/", UrlError::InvalidPort { port: "x".into() }, "invalid port \"x\"; it must be a number from 1 to 65535"),
        ("http://h/a b", UrlError::InvalidPath { path: "/a b".into() }, "invalid path \"/a b\"; spaces, control characters, non-ASCII and other unsafe bytes must be percent-encoded (%XX)"),
        ("http://h/ü", UrlError::InvalidPath { path: "/ü".into() }, "invalid path \"/ü\"; spaces, control characters, non-ASCII and other unsafe bytes must be percent-encoded (%XX)"),
        ("http://h/%zz", UrlError::InvalidPath { path: "/%zz".into() }, "invalid path \"/%zz\"; spaces, control characters, non-ASCII and other unsafe bytes must be percent-encoded (%XX)"),
        ("http://h/50%", UrlError::InvalidPath { path: "/50%".into() }, "invalid path \"/50%\"; spaces, control characters, non-ASCII and other unsafe bytes must be percent-encoded (%XX)"),
        ("http://h/a\r\nX: y", UrlError::InvalidPath { path: "/a\r\nX: y".into() }, "invalid path \"/a\\r\\nX: y\"; spaces, control characters, non-ASCII and other unsafe bytes must be percent-encoded (%XX)"),
    ];
    for (url, error, message) in cases {
        assert_eq!(Endpoint::parse(url).as_ref(), Err(error), "{url}");
        assert_eq!(error.to_string(), *message, "{url}");
    }
}

#[test]
fn config_url_errors_name_the_url_without_userinfo() {
    let e = err(Config::builder([1], creds()).url("gopher://h/"));
    assert_eq!(
        e,
        ConfigError::InvalidUrl {
            url: "gopher://h/".into(),
            error: UrlError::UnsupportedScheme {
                scheme: "gopher".into()
            }
        }
    );
    assert_eq!(
        e.to_string(),
        "invalid URL \"gopher://h/\": unsupported scheme \"gopher\"; only http and https are supported"
    );

    let builder = Config::builder([1], creds()).url("https://me:hunter2@h/p");
    assert!(!format!("{builder:?}").contains("hunter2"));
    let e = err(builder);
    assert_eq!(
        e,
        ConfigError::InvalidUrl {
            url: "https://***@h/p".into(),
            error: UrlError::UserInfo
        }
    );
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
}

#[test]
fn redact_userinfo_cases() {
    assert_eq!(
        redact_userinfo("https://a:b@h:1/p?q@x"),
        "https://***@h:1/p?q@x"
    );
    assert_eq!(redact_userinfo("https://a@b@h/"), "https://***@h/");
    assert_eq!(redact_userinfo("https://h/p@q"), "https://h/p@q");
    assert_eq!(redact_userinfo("no scheme@all"), "no scheme@all");
}

#[test]
fn debug_never_shows_secrets() {
    let credentials = creds();
    let debug = format!("{credentials:?}");
    assert_eq!(
        debug,
        "Credentials { consumer_key: \"ckey\", consumer_secret: \"<redacted>\", \
         token: \"tkey\", token_secret: \"<redacted>\" }"
    );
    assert_eq!(credentials.consumer_secret(), "SECRET-CONSUMER");
    assert_eq!(credentials.token_secret(), "SECRET-TOKEN");
    assert_eq!(credentials.consumer_key(), "ckey");
    assert_eq!(credentials.token(), "tkey");

    let builder = Config::builder([1], creds()).extra_root_certs_pem(vec![b'x'; 5]);
    let config = build(builder.clone());
    for debug in [
        format!("{builder:?}"),
        format!("{config:?}"),
        format!("{config:#?}"),
    ] {
        assert!(!debug.contains("SECRET"), "{debug}");
        assert!(debug.contains("ckey") && debug.contains("tkey"), "{debug}");
        assert!(debug.contains("<5 bytes>"), "{debug}");
    }
}

#[test]
fn v2_configs_take_a_bearer_token_and_their_own_parameters() {
    let token = || BearerToken::new("BEARER-SECRET");
    let c = build(Config::v2_builder(Api::V2Sample, token()));
    assert_eq!(c.api(), Api::V2Sample);
    assert_eq!(c.url(), V2_SAMPLE_URL);
    assert!(c.follow().is_empty() && c.credentials().is_none());
    assert_eq!(c.auth(), &Auth::Bearer(token()));
    let c = build(
        Config::v2_builder(Api::V2Filtered, token())
            .v2_param(V2Param::Partition, "2")
            .v2_param(V2Param::Expansions, "x")
            .v2_param(V2Param::Expansions, "author_id")
            .url("http://127.0.0.1:9/2/tweets/search/stream"),
    );
    assert_eq!(
        c.v2_params(),
        &[
            (V2Param::Expansions, "author_id".to_owned()),
            (V2Param::Partition, "2".to_owned())
        ]
    );
    assert_eq!(c.to_builder().build().unwrap().v2_params(), c.v2_params());
    // Site Streams options are refused on v2, v2 parameters on Site Streams.
    let v2 = || Config::v2_builder(Api::V2Filtered, token());
    for (builder, option) in [
        (v2().follow([1]), "follow"),
        (v2().with(With::Followings), "with"),
        (v2().replies_all(true), "replies"),
        (v2().stringify_friend_ids(true), "stringify_friend_ids"),
        (v2().framing(Framing::Length), "delimited"),
        (v2().stall_warnings(true), "stall_warnings"),
        (
            Config::builder([1], creds()).v2_param(V2Param::TweetFields, "lang"),
            "tweet.fields",
        ),
    ] {
        let e = err(builder);
        assert!(
            matches!(e, ConfigError::NotForApi { option: o, .. } if o == option),
            "{e:?}"
        );
    }
    assert_eq!(
        err(v2().v2_param(V2Param::BackfillMinutes, "5m")).to_string(),
        "backfill_minutes is \"5m\"; it must be a decimal number"
    );
    assert_eq!(
        err(v2().v2_param(V2Param::UserFields, "")).to_string(),
        "user.fields is empty; leave it out instead"
    );
    assert_eq!(
        err(Config::v2_builder(Api::V2Sample, BearerToken::new(""))),
        ConfigError::EmptyCredential {
            which: "bearer_token"
        }
    );
    // A Site Streams config may sign in with a token too, and back.
    let c = build(Config::builder([1], creds()).bearer_token(token()));
    assert!(c.credentials().is_none());
    let c = build(c.to_builder().credentials(creds()));
    assert_eq!(c.credentials(), Some(&creds()));
    // The token never shows.
    let builder = v2();
    let config = build(builder.clone());
    for debug in [
        format!("{builder:?}"),
        format!("{config:#?}"),
        format!("{:?}", config.auth()),
    ] {
        assert!(!debug.contains("BEARER-SECRET"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }
}

proptest! {
    #[test]
    fn endpoint_parse_never_panics(url in ".{0,40}") {
        let _ = Endpoint::parse(&url);
    }

    #[test]
    fn endpoint_parse_of_url_round_trips(
        tls in any::<bool>(),
        host in prop_oneof![
            "[a-z0-9][a-z0-9.-]{0,20}",
            any::<[u16; 8]>().prop_map(|s| Ipv6Addr::from(s).to_string()),
        ],
        port in 1u16..,
        path in "(/[a-zA-Z0-9._~%;=:@-]{0,8}){0,4}",
    ) {
        // A `%` must start an escape; replace the ones the regex put anywhere.
        let path = path.replace('%', "%2F");
        let endpoint = Endpoint { tls, host, port, path: if path.is_empty() { "/".into() } else { path } };
        prop_assert_eq!(Endpoint::parse(&endpoint.url()), Ok(endpoint.clone()));
    }

    #[test]
    fn follow_lists_normalise(ids in proptest::collection::vec(1u64.., 1..300)) {
        let mut expected = ids.clone();
        expected.sort_unstable();
        expected.dedup();
        match Config::builder(ids, creds()).build() {
            Ok(c) => prop_assert_eq!(c.follow(), &expected[..]),
            Err(e) => prop_assert_eq!(e, ConfigError::TooManyFollows { count: expected.len() }),
        }
    }
}

#[test]
fn credentials_from_variables_name_the_first_bad_one_and_never_a_value() {
    use std::collections::HashMap;
    use std::ffi::OsString;
    let full: HashMap<&str, OsString> = Credentials::ENV_VARS
        .iter()
        .map(|name| (*name, OsString::from(format!("secret-of-{name}"))))
        .collect();
    let credentials = Credentials::from_lookup(|name| full.get(name).cloned()).unwrap();
    assert_eq!(
        credentials,
        Credentials::new(
            "secret-of-SITEBUCKET_CONSUMER_KEY",
            "secret-of-SITEBUCKET_CONSUMER_SECRET",
            "secret-of-SITEBUCKET_TOKEN",
            "secret-of-SITEBUCKET_TOKEN_SECRET"
        )
    );

    let without = |gone: &str, replacement: Option<OsString>| {
        let mut vars = full.clone();
        vars.remove(gone);
        if let Some(value) = replacement {
            vars.insert(Credentials::ENV_VARS[1], value);
        }
        Credentials::from_lookup(|name| vars.get(name).cloned()).unwrap_err()
    };
    let missing = without("SITEBUCKET_TOKEN", None);
    assert_eq!(missing.variable(), "SITEBUCKET_TOKEN");
    assert_eq!(missing.to_string(), "SITEBUCKET_TOKEN is not set");
    let empty = without("", Some(OsString::new()));
    assert_eq!(empty.to_string(), "SITEBUCKET_CONSUMER_SECRET is empty");
    // Two at fault: the first in `ENV_VARS` order is named.
    let both = without("SITEBUCKET_TOKEN_SECRET", Some(OsString::new()));
    assert_eq!(both.variable(), "SITEBUCKET_CONSUMER_SECRET");
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        let bad = without("", Some(OsString::from_vec(vec![b's', 0xff])));
        assert_eq!(
            bad.to_string(),
            "SITEBUCKET_CONSUMER_SECRET is not valid Unicode"
        );
    }
    for error in [missing, empty, both] {
        assert!(!format!("{error} {error:?}").contains("secret-of"));
    }
}
