//! Project tasks: `cargo xtask <task>`. Std only.

use std::process::{exit, Command};

fn main() {
    let task = std::env::args().nth(1);
    let result = match task.as_deref() {
        Some("ci") => ci(),
        Some("demo") => demo(),
        _ => {
            eprintln!("usage: cargo xtask <ci | demo>");
            exit(2);
        }
    };
    if let Err(message) = result {
        eprintln!("xtask: {message}");
        exit(1);
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(mut command: Command) -> Result<(), String> {
    let status = command.status().map_err(|e| format!("{command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed: {status}"))
    }
}

/// `cargo xtask demo`: the whole stack against a scripted loopback server, on every driver.
fn demo() -> Result<(), String> {
    let mut demo = cargo();
    demo.args(["run", "--quiet", "--package", "sitebucket-demo"]);
    run(demo)
}

/// Format check, clippy, and the workspace tests: what `.ci/run` calls.
fn ci() -> Result<(), String> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run(fmt)?;
    let mut clippy = cargo();
    clippy.args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]);
    run(clippy)?;
    let mut test = cargo();
    test.args(["test", "--workspace"]);
    run(test)
}
