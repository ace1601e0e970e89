//! The operator's resource model: the `ChaosToolkitExperiment` custom resource ([`crd`]).
//!
//! `chaosflow crd` prints the CustomResourceDefinition generated from these types;
//! `deploy/base/crd.yaml` holds the same text, and a test fails when the two drift apart. The
//! reconciler (`chaosflow operator`) is built on them.

pub mod crd;
