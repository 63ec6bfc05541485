//! The soak's checks can fail: short runs with a fault planted in the client (waits shorter
//! than the policy, reconnects before the end of the backoff the core scheduled, a message lost, a message
//! altered) must exit 1 naming it, and the same run without one must pass. Each run is 18 s
//! of 6 streams on mio, all five at once.

use std::process::Command;

fn soak(sabotage: Option<&str>, seed: u64) -> (bool, String) {
    let out = std::env::temp_dir().join(format!(
        "sitebucket-soak-test-{}-{}",
        std::process::id(),
        sabotage.unwrap_or("none")
    ));
    let mut command = Command::new(env!("CARGO_BIN_EXE_soak"));
    command.args([
        "run",
        "--minutes",
        "0.3",
        "--streams",
        "6",
        "--driver",
        "mio",
    ]);
    command.args(["--sample-every", "2", "--seed", &seed.to_string()]);
    command.arg("--out").arg(&out);
    if let Some(s) = sabotage {
        command.args(["--sabotage", s]);
    }
    let output = command.output().expect("the soak binary runs");
    let _ = std::fs::remove_dir_all(&out);
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn a_clean_run_passes_and_each_planted_fault_fails_by_name() {
    let runs: Vec<_> = [
        None,
        Some("early"),
        Some("driver"),
        Some("lose"),
        Some("alter"),
    ]
    .into_iter()
    .map(|s| std::thread::spawn(move || (s, soak(s, 11))))
    .collect();
    for run in runs {
        let (sabotage, (ok, text)) = run.join().expect("the run's thread");
        match sabotage {
            None => assert!(ok && text.contains("soak: PASS"), "clean run:\n{text}"),
            Some(s) => {
                assert!(!ok, "sabotage {s} passed:\n{text}");
                let expected = match s {
                    "early" => "shorter than the policy",
                    "driver" => "its backoff ran to",
                    "lose" => "missing",
                    _ => "arrived altered",
                };
                assert!(
                    text.contains(expected) && text.contains("seed 11"),
                    "sabotage {s} failed without naming it ({expected:?}):\n{text}"
                );
            }
        }
    }
}
