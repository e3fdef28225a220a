//! Helpers the workspace's tests share; a dev-dependency only, never published.
//!
//! - Waiting: [`wait_until`] (blocking) and [`eventually`] (async, on Tokio's clock, so paused
//!   time works) poll a condition with a deadline and panic naming what they waited for, for
//!   how long, and what they saw last. A condition returns `bool`, `Option<T>` or
//!   `Result<T, E>` ([`Outcome`]); [`satisfies`] turns a value and a predicate into one that
//!   hands the value back, or reports it.
//! - A private network namespace for a test that counts the kernel's socket table exactly:
//!   [`run_in_netns`] re-executes the test binary under `unshare -n`, running only the named
//!   `#[ignore]` inner half; [`in_netns`] tells that inner run apart, and fails when the inner
//!   half claims to be inside a namespace it is not in.
//! - Re-executed helper processes: [`rerun_args`] runs one test of this binary,
//!   [`helper_env`] makes a helper test fail when run on its own instead of passing having done
//!   nothing, [`wait_child`] waits for a child with a deadline.
//! - This process's sockets by address: [`own_socket`] duplicates the one a library made and
//!   never handed out, to read its options back.
//! - Preconditions: [`precondition`] fails a test loudly when the machine lacks what it needs
//!   (root, a tool), unless [`ALLOW_SKIP_ENV`] opts out on purpose.
//!
//! ```
//! use std::time::Duration;
//! use conn_hygiene_test_support::{satisfies, wait_until};
//!
//! let mut polls = 0;
//! let seen = wait_until("the third poll", Duration::from_secs(5), || {
//!     polls += 1;
//!     satisfies(polls, |n| *n == 3)
//! });
//! assert_eq!(seen, 3);
//! ```
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![deny(unsafe_code)]

mod netns;
mod process;
mod sockets;
mod time_wait;
mod wait;

pub use self::{
    netns::{in_netns, run_in_netns, INNER_ENV},
    process::{helper_env, is_root, precondition, rerun_args, wait_child, ALLOW_SKIP_ENV},
    sockets::own_socket,
    time_wait::make_time_wait,
    wait::{eventually, satisfies, wait_until, Outcome, Satisfies},
};
