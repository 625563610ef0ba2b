//! The device's model runner: a verified bundle ([`crate::manifest`]) with tract plans for
//! `fast.onnx` (eq. 7–8) and `neg_step.onnx` (the `GRU_n` cell that updates `r̂2`, eq. 5).
//!
//! Loading refuses a bundle before anything runs: a newer format, a missing file, a size or
//! SHA-256 that does not match the manifest, inputs or outputs whose names or shapes differ
//! from the manifest or from the contract this runtime feeds, or a non-finite weight.

mod window_gru;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tract_onnx::pb::{tensor_proto::DataType, type_proto, ModelProto, TensorProto, ValueInfoProto};
use tract_onnx::prelude::{
    tvec, Framework, InferenceModel, InferenceModelExt, IntoRunnable, IntoTValue, Tensor,
    TractResult, TypedModel, TypedRunnableModel,
};

use crate::error::{Result, SlowFastError};
use crate::manifest::{
    io_contract, Dim, Manifest, TensorSpec, DEVICE_FILES, FAST_ONNX, MANIFEST_JSON, NEG_STEP_ONNX,
};

/// A verified bundle ready to score: the manifest and the two device plans.
pub struct DeviceModel {
    manifest: Manifest,
    fast: Arc<TypedRunnableModel>,
    neg_step: Arc<TypedRunnableModel>,
}

impl std::fmt::Debug for DeviceModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceModel")
            .field("model_version", &self.manifest.model_version)
            .field("dim", &self.manifest.dim)
            .field("windows", &self.manifest.windows)
            .finish()
    }
}

impl DeviceModel {
    /// Reads `manifest.json`, `fast.onnx` and `neg_step.onnx` from `dir`, verifies them and
    /// builds optimized tract plans.
    pub fn load_dir(dir: &Path) -> Result<DeviceModel> {
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map_err(|e| refuse(name, format!("cannot read: {e}")))
        };
        let manifest = read(MANIFEST_JSON)?;
        let mut files = BTreeMap::new();
        for name in DEVICE_FILES {
            files.insert(name.to_string(), read(name)?);
        }
        Self::load_files(&manifest, &files)
    }

    /// Same from in-memory files (name → bytes), e.g. a download verified before the swap.
    pub fn load_files(manifest: &[u8], files: &BTreeMap<String, Vec<u8>>) -> Result<DeviceModel> {
        let manifest = Manifest::from_json(manifest)?;
        let fast = plan(&manifest, FAST_ONNX, files)?;
        let neg_step = plan(&manifest, NEG_STEP_ONNX, files)?;
        Ok(DeviceModel {
            manifest,
            fast,
            neg_step,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// `y_F` logits (eq. 8) for `N` candidates. `clicks`: `n_c × d` row-major, oldest first
    /// (`n_c` may exceed `W_c`: the last `W_c` are used; may be 0); `exposures` likewise;
    /// `e_i`, `r_t`, `r_n`: `N × d` each.
    pub fn score(
        &self,
        clicks: &[f32],
        exposures: &[f32],
        e_i: &[f32],
        r_t: &[f32],
        r_n: &[f32],
    ) -> Result<Vec<f32>> {
        let d = self.manifest.dim;
        let w = self.manifest.windows;
        let n = rows("e_i", e_i, d)?;
        for (name, v) in [("r_t", r_t), ("r_n", r_n)] {
            if rows(name, v, d)? != n {
                return Err(SlowFastError::InvalidArgument(format!(
                    "{name} has {} rows, e_i has {n}",
                    v.len() / d
                )));
            }
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        let (clicks, clicks_len) = window("clicks", clicks, d, w.clicks)?;
        let (exposures, exposures_len) = window("exposures", exposures, d, w.exposures)?;
        let inputs = tvec![
            clicks.into_tvalue(),
            length(clicks_len)?.into_tvalue(),
            exposures.into_tvalue(),
            length(exposures_len)?.into_tvalue(),
            matrix(e_i, n, d)?.into_tvalue(),
            matrix(r_t, n, d)?.into_tvalue(),
            matrix(r_n, n, d)?.into_tvalue(),
        ];
        let out = self.fast.run(inputs).map_err(model_error)?;
        first_output(&out, n)
    }

    /// One `GRU_n` cell step (eq. 5's negative-memory update): `state` (d), `e` (d) → the
    /// new state (d).
    pub fn neg_step(&self, state: &[f32], e: &[f32]) -> Result<Vec<f32>> {
        let d = self.manifest.dim;
        for (name, v) in [("state", state), ("e", e)] {
            if rows(name, v, d)? != 1 {
                return Err(SlowFastError::InvalidArgument(format!(
                    "{name} must have {d} values, got {}",
                    v.len()
                )));
            }
        }
        let inputs = tvec![
            matrix(state, 1, d)?.into_tvalue(),
            matrix(e, 1, d)?.into_tvalue()
        ];
        let out = self.neg_step.run(inputs).map_err(model_error)?;
        first_output(&out, d)
    }
}

/// Verifies model `file` of a bundle before anything runs it: listed in the manifest with
/// this size and SHA-256, a readable ONNX model whose inputs and outputs are the manifest's,
/// which are the contract for the manifest's `dim` and windows, and finite weights.
pub fn verify_model(
    manifest: &Manifest,
    file: &str,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<ModelProto> {
    let bytes = files
        .get(file)
        .ok_or_else(|| refuse(file, "missing from the bundle"))?;
    manifest.verify_file(file, bytes)?;
    let entry = manifest.file(file)?;
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut bytes.as_slice())
        .map_err(|e| refuse(file, format!("not a readable ONNX model: {e}")))?;
    check_io(file, &proto, &entry.inputs, &entry.outputs)?;
    let (inputs, outputs) = io_contract(file, manifest.dim, &manifest.windows)
        .ok_or_else(|| refuse(file, "not a model file"))?;
    check_contract(file, "input", &entry.inputs, &inputs)?;
    check_contract(file, "output", &entry.outputs, &outputs)?;
    check_finite(file, &proto)?;
    Ok(proto)
}

/// [`verify_model`], then the optimized tract plan.
fn plan(
    manifest: &Manifest,
    file: &str,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<Arc<TypedRunnableModel>> {
    let proto = verify_model(manifest, file, files)?;
    let model = tract_onnx::onnx()
        .model_for_proto_model(&proto)
        .map_err(|e| refuse(file, format!("cannot load: {e}")))?;
    device_graph(model)
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(|e| refuse(file, format!("cannot optimize: {e:#}")))
}

/// The decluttered graph the device optimizes and runs: the model as tract imports it, with
/// the window GRUs of `fast.onnx` on their shared input products
/// ([`window_gru::share_window_inputs`]).
pub fn device_graph(model: InferenceModel) -> TractResult<TypedModel> {
    let mut typed = model.into_typed()?.into_decluttered()?;
    window_gru::share_window_inputs(&mut typed)?;
    Ok(typed)
}

/// The model's declared inputs and outputs against the manifest's.
fn check_io(
    file: &str,
    proto: &ModelProto,
    inputs: &[TensorSpec],
    outputs: &[TensorSpec],
) -> Result<()> {
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| refuse(file, "the ONNX model has no graph"))?;
    let initializers: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let declared: Vec<&ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(&i.name.as_str()))
        .collect();
    for (kind, model, listed) in [
        ("input", declared, inputs),
        ("output", graph.output.iter().collect(), outputs),
    ] {
        let got: Vec<TensorSpec> = model.iter().map(|v| spec_of(v)).collect::<Result<_>>()?;
        if got.len() != listed.len() {
            return Err(refuse(
                file,
                format!(
                    "the model has {} {kind}s, the manifest lists {}",
                    got.len(),
                    listed.len()
                ),
            ));
        }
        for (g, l) in got.iter().zip(listed) {
            if g != l {
                return Err(refuse(
                    file,
                    format!(
                        "{kind} {:?}: the model declares {} {:?} {}, the manifest says {} {:?} {}",
                        l.name,
                        g.name,
                        g.dtype,
                        shape_str(&g.shape),
                        l.name,
                        l.dtype,
                        shape_str(&l.shape)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The manifest's inputs or outputs against what this runtime feeds and reads.
fn check_contract(
    file: &str,
    kind: &str,
    listed: &[TensorSpec],
    expected: &[TensorSpec],
) -> Result<()> {
    if listed == expected {
        return Ok(());
    }
    let describe = |s: &[TensorSpec]| {
        s.iter()
            .map(|t| format!("{} {} {}", t.name, t.dtype, shape_str(&t.shape)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(refuse(
        file,
        format!(
            "manifest {kind}s [{}] differ from the contract for this dim and windows [{}]",
            describe(listed),
            describe(expected)
        ),
    ))
}

/// Refuses a model with a NaN or infinite float weight, naming the initializer.
fn check_finite(file: &str, proto: &ModelProto) -> Result<()> {
    let Some(graph) = proto.graph.as_ref() else {
        return Ok(());
    };
    for t in &graph.initializer {
        if let Some((i, v)) = floats(t).enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(refuse(
                file,
                format!(
                    "weight {:?} holds a non-finite value ({v}) at index {i}",
                    t.name
                ),
            ));
        }
    }
    Ok(())
}

/// The float32 values of an initializer (nothing for other types).
fn floats(t: &TensorProto) -> Box<dyn Iterator<Item = f32> + '_> {
    if t.data_type != DataType::Float as i32 {
        return Box::new(std::iter::empty());
    }
    if t.raw_data.is_empty() {
        return Box::new(t.float_data.iter().copied());
    }
    Box::new(
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
    )
}

fn spec_of(v: &ValueInfoProto) -> Result<TensorSpec> {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value;
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Ok(TensorSpec {
            name: v.name.clone(),
            dtype: "not a tensor".into(),
            shape: vec![],
        });
    };
    let dtype = match DataType::try_from(t.elem_type) {
        Ok(DataType::Float) => "float32".to_string(),
        Ok(DataType::Int64) => "int64".to_string(),
        Ok(other) => format!("{other:?}"),
        Err(_) => format!("type {}", t.elem_type),
    };
    let shape = t
        .shape
        .iter()
        .flat_map(|s| &s.dim)
        .map(|d| match &d.value {
            Some(Value::DimValue(n)) => Dim::Fixed(usize::try_from(*n).unwrap_or(usize::MAX)),
            Some(Value::DimParam(p)) => Dim::Dynamic(p.clone()),
            None => Dim::Dynamic("?".into()),
        })
        .collect();
    Ok(TensorSpec {
        name: v.name.clone(),
        dtype,
        shape,
    })
}

fn shape_str(shape: &[Dim]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => n.to_string(),
            Dim::Dynamic(s) => s.clone(),
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

/// The number of `d`-wide rows of `v`, which must be finite.
fn rows(name: &str, v: &[f32], d: usize) -> Result<usize> {
    if !v.len().is_multiple_of(d) {
        return Err(SlowFastError::InvalidArgument(format!(
            "{name} has {} values, not a multiple of d = {d}",
            v.len()
        )));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(SlowFastError::InvalidArgument(format!(
            "{name}[{i}] is not finite ({})",
            v[i]
        )));
    }
    Ok(v.len() / d)
}

/// The last `steps` rows of a window, right-padded with zeros, and the valid length.
fn window(name: &str, v: &[f32], d: usize, steps: usize) -> Result<(Tensor, usize)> {
    let n = rows(name, v, d)?;
    let len = n.min(steps);
    let mut padded = vec![0f32; steps * d];
    padded[..len * d].copy_from_slice(&v[(n - len) * d..]);
    Ok((matrix(&padded, steps, d)?, len))
}

fn matrix(v: &[f32], rows: usize, cols: usize) -> Result<Tensor> {
    Tensor::from_shape(&[rows, cols], v).map_err(model_error)
}

fn length(len: usize) -> Result<Tensor> {
    Tensor::from_shape(&[1], &[len as i64]).map_err(model_error)
}

fn first_output(out: &[tract_onnx::prelude::TValue], expected: usize) -> Result<Vec<f32>> {
    let t = out
        .first()
        .ok_or_else(|| SlowFastError::Model("the model returned no output".into()))?;
    let v: Vec<f32> = t
        .to_plain_array_view::<f32>()
        .map_err(model_error)?
        .iter()
        .copied()
        .collect();
    if v.len() != expected {
        return Err(SlowFastError::Model(format!(
            "the model returned {} values, expected {expected}",
            v.len()
        )));
    }
    Ok(v)
}

fn model_error(e: impl std::fmt::Display) -> SlowFastError {
    SlowFastError::Model(format!("{e:#}"))
}

fn refuse(file: &str, reason: impl std::fmt::Display) -> SlowFastError {
    SlowFastError::Bundle {
        file: file.to_string(),
        reason: reason.to_string(),
    }
}
