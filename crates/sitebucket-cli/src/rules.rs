//! `sitebucket rules list|add|delete`: the X API v2 filtered stream's rules, each request a
//! one-shot call (a [`ControlCall`]) carried out by the chosen driver, signed in with the
//! Bearer token.
//!
//! The server's answer is printed on stdout as one line of JSON (its body as received, line
//! breaks as spaces); the log says what was done. Problems found before anything is sent (a
//! bad URL, no token, an unreadable `--ca-file`) exit with status 2; a failed request, or a
//! change the server turned down in part (a duplicate or invalid rule, an unknown id), exits
//! with status 1 after saying why.

use std::process::ExitCode;

use sitebucket_proto::control::{ControlCall, ControlRequest, ControlResponse, NewRule};
use sitebucket_proto::{Auth, Endpoint};

use crate::args::{RulesArgs, RulesCommand, RulesTarget};
use crate::control::carry_out;
use crate::listen::bearer_token;

/// Runs `sitebucket rules` and returns the process's exit status.
pub(crate) fn run(args: RulesArgs) -> ExitCode {
    let (target, request) = match &args.command {
        RulesCommand::List(target) => (target, Ok(ControlRequest::rules_list())),
        RulesCommand::Add(add) => {
            let rules: Vec<NewRule> = add
                .rule
                .iter()
                .map(|value| NewRule {
                    value: value.clone(),
                    tag: add.tag.clone(),
                })
                .collect();
            (
                &add.target,
                ControlRequest::rules_add(&rules, add.dry_run).map_err(|e| e.to_string()),
            )
        }
        RulesCommand::Delete(delete) => (
            &delete.target,
            ControlRequest::rules_delete(&delete.id, delete.dry_run).map_err(|e| e.to_string()),
        ),
    };
    let prepared = request.and_then(|request| Ok((prepare(target)?, request)));
    let ((endpoint, auth, roots), request) = match prepared {
        Ok(prepared) => prepared,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let dry_run = if request.dry_run() { " (dry run)" } else { "" };
    let kind = request.kind();
    let call = ControlCall::with_auth(&endpoint, &auth, None, request)
        .with_extra_roots(roots)
        .with_timeout(target.timeout);
    let answer = match carry_out(target.driver, call) {
        Ok(ControlResponse::Rules(answer)) => answer,
        Ok(other) => {
            tracing::error!("rules at {}: unexpected answer {other:?}", endpoint.url());
            return ExitCode::from(1);
        }
        Err(e) => {
            tracing::error!("rules at {}: {e}", endpoint.url());
            return ExitCode::from(1);
        }
    };
    println!("{}", one_line(&answer.body));
    let s = answer.summary;
    use sitebucket_proto::control::ControlKind;
    match kind {
        ControlKind::RulesList => tracing::info!("{} rule(s)", answer.rules.len()),
        ControlKind::RulesAdd => tracing::info!(
            "rules{dry_run}: {} created, {} not created, {} valid, {} invalid",
            s.created,
            s.not_created,
            s.valid,
            s.invalid
        ),
        _ => tracing::info!(
            "rules{dry_run}: {} deleted, {} not deleted",
            s.deleted,
            s.not_deleted
        ),
    }
    if answer.has_rejections() {
        for error in &answer.errors {
            tracing::error!("rules: {error}");
        }
        tracing::error!("rules: the server turned part of the change down");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// The body as one line: raw CR and LF as spaces (whitespace in JSON).
fn one_line(body: &str) -> String {
    body.trim_end()
        .chars()
        .map(|c| if matches!(c, '\r' | '\n') { ' ' } else { c })
        .collect()
}

/// The endpoint, the Bearer token and extra roots of a rules request. Every problem is a
/// usage error, found before anything is sent.
fn prepare(target: &RulesTarget) -> Result<(Endpoint, Auth, Vec<u8>), String> {
    let endpoint =
        Endpoint::parse(&target.url).map_err(|e| format!("invalid --url {:?}: {e}", target.url))?;
    let auth = Auth::Bearer(bearer_token(&target.bearer)?);
    let roots = match &target.ca_file {
        None => Vec::new(),
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read --ca-file {}: {e}", path.display()))?;
            sitebucket_proto::parse_pem_roots(&pem)
                .map_err(|e| format!("--ca-file {} is not usable: {e}", path.display()))?;
            pem
        }
    };
    Ok((endpoint, auth, roots))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_print_on_one_line() {
        assert_eq!(one_line("{\n\t\"a\": 1\r\n}\n"), "{ \t\"a\": 1  }");
    }
}
