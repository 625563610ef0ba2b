//! The evaluation protocol (paper §5.1.2, docs/architecture.md §4): sampling, metrics, the scoring loop
//! and the reports.

pub mod bootstrap;
pub mod chart;
pub mod curves;
pub mod full;
pub mod metrics;
pub mod paper;
pub mod protocol;
pub mod report;
pub mod rerank;
pub mod resume;
pub mod runner;
pub mod sampler;
