//! The evaluation protocol (paper §5.1.2, DESIGN.md §4): sampling, metrics, the scoring loop
//! and the reports.

pub mod chart;
pub mod curves;
pub mod metrics;
pub mod paper;
pub mod protocol;
pub mod report;
pub mod rerank;
pub mod resume;
pub mod runner;
pub mod sampler;
