//! ONNX export of a trained MC²-SF model as a model bundle (docs/architecture.md §5):
//! `fast.onnx` (eq. 7–8), `neg_step.onnx` (GRU_n's cell, eq. 5), `slow.onnx` (eq. 1, 5–6),
//! `items.json` and `manifest.json`; and the parity check of a bundle across candle, ONNX
//! Runtime and tract (`slowfast bundle verify`).

pub mod bundle;
pub mod graph;
pub mod models;
pub mod ops;
pub mod parity;
pub mod runtimes;
pub mod verify;
