#![allow(unreachable_pub)]
//! chaosflow's integration tests: one binary, one module per surface.
//!
//! - `conformance`: the real `chaos` and `chaosflow` on the same experiments, compared;
//! - `events`: the event stream, parsed with the tests' own types;
//! - `cli`: the command line's own behaviour (errors, secrets, options).

mod cli;
mod conformance;
mod events;
mod jsonpath;
mod support;
