//! `sitebucket follow add|remove|list` and `sitebucket fleet status` against a real
//! `nats-server -js` (Debian's package; `.ci/run` installs it), started here on a free loopback
//! port with a temporary store and killed at the end. Also: an unreachable NATS URL is exit
//! status 1 with a clear message; a malformed id is a usage error (2) and nothing is written.

mod common;

use common::*;
use sitebucket_e2e::nats::{free_port, NatsServer};

fn cli(args: &[&str]) -> Finished {
    let mut command = sitebucket();
    command.args(args);
    run(command, args.join(" "))
}

#[test]
fn follow_add_remove_list_and_fleet_status() {
    let nats = NatsServer::start();
    let url = nats.url.as_str();
    let added = cli(&["follow", "add", "--nats", url, "--follow", "30,10,20"]);
    assert_eq!(added.code(), 0, "{added:?}");
    assert!(added.stderr.contains("added 3 users"), "{}", added.stderr);

    let file = std::env::temp_dir().join(format!("sitebucket-cli-follows-{}", std::process::id()));
    std::fs::write(&file, "# more users\n40\n\n50\n").expect("a follow file");
    let from_file = cli(&[
        "follow",
        "add",
        "--nats",
        url,
        "--follow-file",
        file.to_str().expect("utf-8 path"),
    ]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(from_file.code(), 0, "{from_file:?}");

    let removed = cli(&["follow", "remove", "--nats", url, "--follow", "10,99"]);
    assert_eq!(removed.code(), 0, "{removed:?}");

    let listed = cli(&["follow", "list", "--nats", url]);
    assert_eq!(listed.code(), 0, "{listed:?}");
    assert_eq!(listed.stdout_text(), "20\n30\n40\n50\n");

    // Reading creates nothing: no worker has made the leases bucket yet.
    let status = cli(&["fleet", "status", "--nats", url]);
    assert_eq!(status.code(), 1, "{status:?}");
    assert!(
        status
            .stderr
            .contains("\"sitebucket-leases\" does not exist: no worker"),
        "{}",
        status.stderr
    );
    assert!(status.stdout.is_empty());

    let malformed = cli(&["follow", "add", "--nats", url, "--follow", "12,x3"]);
    assert_eq!(malformed.code(), 2, "{malformed:?}");
    assert!(
        malformed.stderr.contains("not a decimal number"),
        "{}",
        malformed.stderr
    );
    let listed = cli(&["follow", "list", "--nats", url]);
    assert_eq!(listed.stdout_text(), "20\n30\n40\n50\n", "nothing written");
}

#[test]
fn an_unreachable_nats_is_exit_status_one_with_a_clear_message() {
    let url = format!("nats://127.0.0.1:{}", free_port());
    let listed = cli(&["follow", "list", "--nats", &url]);
    assert_eq!(listed.code(), 1, "{listed:?}");
    assert!(
        listed.stderr.contains("cannot connect to NATS at"),
        "{}",
        listed.stderr
    );
    assert!(listed.stdout.is_empty());
}
