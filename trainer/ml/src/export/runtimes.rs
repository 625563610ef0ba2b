//! Running an exported ONNX file in ONNX Runtime (ort, the server's runtime) and in tract
//! (the device's), on named inputs; outputs come back as flat f32 vectors in graph order.

use tract_onnx::prelude::{tvec, Framework, IntoRunnable, IntoTValue};

use crate::error::{Result, TrainerError};

/// The values of one input.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// One named input with its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Feed {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Data,
}

impl Feed {
    pub fn f32(name: &str, shape: &[usize], data: Vec<f32>) -> Feed {
        Feed {
            name: name.into(),
            shape: shape.to_vec(),
            data: Data::F32(data),
        }
    }

    pub fn i64(name: &str, data: i64) -> Feed {
        Feed {
            name: name.into(),
            shape: vec![1],
            data: Data::I64(vec![data]),
        }
    }
}

/// A model loaded in ONNX Runtime (one thread).
pub struct OrtModel {
    session: ort::session::Session,
}

fn ort_err(e: impl std::fmt::Display) -> TrainerError {
    TrainerError::Ort(e.to_string())
}

fn tract_err(e: tract_onnx::prelude::TractError) -> TrainerError {
    TrainerError::Unusable(format!("tract: {e:#}"))
}

impl OrtModel {
    pub fn new(model: &[u8]) -> Result<OrtModel> {
        let env = slowfast_ort::environment()?;
        let session = ort::session::Session::builder(env)
            .map_err(ort_err)?
            .with_intra_threads(1)
            .map_err(ort_err)?
            .commit_from_memory(model)
            .map_err(ort_err)?;
        Ok(OrtModel { session })
    }

    /// Every output, in graph order.
    pub fn run(&mut self, feeds: &[Feed]) -> Result<Vec<Vec<f32>>> {
        use ort::value::Tensor;
        let mut inputs: Vec<(String, ort::session::SessionInputValue<'_>)> = Vec::new();
        for f in feeds {
            let value = match &f.data {
                Data::F32(v) => Tensor::from_array((f.shape.clone(), v.clone()))
                    .map_err(ort_err)?
                    .into(),
                Data::I64(v) => Tensor::from_array((f.shape.clone(), v.clone()))
                    .map_err(ort_err)?
                    .into(),
            };
            inputs.push((f.name.clone(), value));
        }
        let names: Vec<String> = self
            .session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        let outputs = self.session.run(inputs).map_err(ort_err)?;
        names
            .iter()
            .map(|n| {
                let (_, data) = outputs[n.as_str()]
                    .try_extract_tensor::<f32>()
                    .map_err(ort_err)?;
                Ok(data.to_vec())
            })
            .collect()
    }
}

/// A model loaded and optimized in tract, as the device does
/// ([`slowfast_core::model::device_graph`]).
pub struct TractModel {
    plan: std::sync::Arc<tract_onnx::prelude::TypedRunnableModel>,
}

impl TractModel {
    pub fn new(model: &[u8]) -> Result<TractModel> {
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &model[..])
            .and_then(slowfast_core::model::device_graph)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(tract_err)?;
        Ok(TractModel { plan })
    }

    /// Every output, in graph order.
    pub fn run(&self, feeds: &[Feed]) -> Result<Vec<Vec<f32>>> {
        let mut inputs = tvec![];
        for f in feeds {
            let t = match &f.data {
                Data::F32(v) => tract_onnx::prelude::Tensor::from_shape(&f.shape, v),
                Data::I64(v) => tract_onnx::prelude::Tensor::from_shape(&f.shape, v),
            }
            .map_err(tract_err)?;
            inputs.push(t.into_tvalue());
        }
        let out = self.plan.run(inputs).map_err(tract_err)?;
        out.iter()
            .map(|t| {
                Ok(t.to_plain_array_view::<f32>()
                    .map_err(tract_err)?
                    .iter()
                    .copied()
                    .collect())
            })
            .collect()
    }
}
