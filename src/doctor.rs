//! `hearth doctor`: checks an installation and prints each problem with
//! its fix (placeholder until filled in).

use std::process::ExitCode;

use crate::config::Config;

/// Runs every check; non-zero exit when something is wrong.
pub fn run(_cfg: &Config) -> ExitCode {
    ExitCode::SUCCESS
}
