#![allow(unreachable_pub)]
//! chaosflow's integration tests: one binary, one module per surface.
//!
//! - `conformance`: the real `chaos` and `chaosflow` on the same experiments, compared;
//! - `events`: the event stream, parsed with the tests' own types;
//! - `cli`: the command line's own behaviour (errors, secrets, options);
//! - `pipeline`: sinks against real receivers, and notifications against `chaos`'s;
//! - `otlp`: the OTLP sink against a real collector and a queryable trace backend;
//! - `sidecar`: the sidecar against a receiver that goes down: crashes, outages, rotations;
//! - `operator`: the operator binary against the loopback fake API server;
//! - `k8s`: the native chaostoolkit-kubernetes functions against the fake API server;
//! - `aws`: the native chaostoolkit-aws EC2 functions against moto, compared with `chaos`;
//! - `jsonpath`: the jsonpath2 dialect against jsonpath2;
//! - `bridge`: Python functions through chaosflow's Python bridge and through `chaos`, compared;
//! - `deploy`: the Kubernetes manifests, examples, Terraform and Dockerfile, checked offline.

mod aws;
mod bridge;
mod cli;
mod conformance;
mod deploy;
mod events;
mod jsonpath;
mod k8s;
mod operator;
mod otlp;
mod pipeline;
mod sidecar;
mod support;
