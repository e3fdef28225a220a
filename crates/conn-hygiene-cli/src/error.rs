//! Errors of the command line: each prints as one line and exits with status 3.

use std::fmt;
use std::io;
use std::process::ExitCode;

use conn_hygiene_census::CensusError;

/// Exit status for bad input and for what cannot be read (monitoring-plugin UNKNOWN).
pub(crate) const EXIT_UNKNOWN: u8 = 3;

/// Why a command could not do its work.
#[derive(Debug)]
pub(crate) enum CliError {
    /// No process has this pid.
    NoSuchProcess(u32),
    /// The process's descriptors may not be read by this user.
    NoPermission(u32),
    /// An argument has a value no command accepts.
    BadArgument(String),
    /// Reading the kernel's tables failed.
    Census {
        /// What was being read.
        what: &'static str,
        /// The census error.
        source: CensusError,
    },
    /// Writing the output failed.
    Output(io::Error),
}

impl CliError {
    /// The census error `source` while reading `what`, with pid errors made plain.
    pub(crate) fn census(what: &'static str, pid: Option<u32>, source: CensusError) -> Self {
        match pid {
            Some(pid) if source.is_not_found() && source.path().is_some() => {
                CliError::NoSuchProcess(pid)
            }
            Some(pid) if source.is_permission_denied() && source.path().is_some() => {
                CliError::NoPermission(pid)
            }
            _ => CliError::Census { what, source },
        }
    }

    /// The output's reader went away (`| head`): not worth a message.
    pub(crate) fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::NoSuchProcess(pid) => write!(f, "no process with pid {pid}"),
            CliError::NoPermission(pid) => write!(
                f,
                "no permission to read the descriptors of pid {pid} (run as its user or as root)"
            ),
            CliError::BadArgument(msg) => f.write_str(msg),
            CliError::Census { what, source } => write!(f, "cannot read {what}: {source}"),
            CliError::Output(e) => write!(f, "cannot write the output: {e}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        CliError::Output(e)
    }
}

/// Handles a command-line parse error: help and version print as usual; anything else is
/// one line on stderr and exit status 3.
pub(crate) fn clap_exit(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            eprintln!(
                "conn-hygiene: a subcommand is needed: states, who, doctor, watch or sysctl \
                 (see conn-hygiene --help)"
            );
            ExitCode::from(EXIT_UNKNOWN)
        }
        _ => {
            let text = e.to_string();
            let first = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("conn-hygiene: {first} (see conn-hygiene --help)");
            ExitCode::from(EXIT_UNKNOWN)
        }
    }
}
