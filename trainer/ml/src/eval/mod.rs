//! The experiments on the evaluation protocol (`slowfast_data::protocol`, paper §5.1.2,
//! docs/architecture.md §4): the runner over models and seeds, full ranking, the re-rank
//! protocol, significance, resumable seeds, reports, curves and charts.

pub mod bootstrap;
pub mod chart;
pub mod curves;
pub mod full;
pub mod paper;
pub mod report;
pub mod rerank;
pub mod resume;
pub mod runner;
