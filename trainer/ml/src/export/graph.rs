//! A small ONNX graph builder over the protobuf types tract-onnx exposes (`tract_onnx::pb`):
//! initializers, nodes with attributes, typed inputs/outputs, and the encoded model.

use prost::Message;
use slowfast_core::manifest::{Dim, TensorSpec};
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use crate::error::{Result, TrainerError};

/// The ONNX opset the bundle is written for (the device contract asks for ≥ 17).
pub const OPSET: i64 = 17;
/// IR version 8 is the one opset 17 was released with.
const IR_VERSION: i64 = 8;

/// An ONNX attribute value.
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

/// A graph under construction. Every added value gets a fresh, readable name.
#[derive(Default)]
pub struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    counter: usize,
}

impl Graph {
    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    /// Declares a graph input.
    pub fn input(&mut self, spec: &TensorSpec) -> Result<String> {
        self.inputs.push(value_info(spec)?);
        Ok(spec.name.clone())
    }

    /// Declares `value` as the graph output `spec` (through an Identity when renamed).
    pub fn output(&mut self, value: &str, spec: &TensorSpec) -> Result<()> {
        self.nodes.push(node(
            "Identity",
            &[value],
            std::slice::from_ref(&spec.name),
            vec![],
        ));
        self.outputs.push(value_info(spec)?);
        Ok(())
    }

    /// A float32 initializer of `dims` (row-major `data`).
    pub fn floats(&mut self, hint: &str, dims: &[usize], data: Vec<f32>) -> String {
        let name = self.fresh(hint);
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            raw_data: raw,
            ..TensorProto::default()
        });
        name
    }

    /// An int64 initializer of shape `[values.len()]`.
    pub fn ints(&mut self, hint: &str, values: &[i64]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: vec![values.len() as i64],
            data_type: DataType::Int64 as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..TensorProto::default()
        });
        name
    }

    /// A node with one output; returns the output's name.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        let out = self.fresh(&op_type.to_lowercase());
        self.nodes
            .push(node(op_type, inputs, std::slice::from_ref(&out), attrs));
        out
    }

    /// A node whose outputs are named `outputs` (an empty name leaves that output unused).
    pub fn op_multi(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<(&str, Attr)>,
    ) -> Vec<String> {
        let outs: Vec<String> = outputs
            .iter()
            .map(|o| {
                if o.is_empty() {
                    String::new()
                } else {
                    self.fresh(o)
                }
            })
            .collect();
        self.nodes.push(node(op_type, inputs, &outs, attrs));
        outs
    }

    /// The encoded `ModelProto`.
    pub fn encode(self, name: &str) -> Vec<u8> {
        let model = ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "slowfast-trainer".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(GraphProto {
                name: name.into(),
                node: self.nodes,
                initializer: self.initializers,
                input: self.inputs,
                output: self.outputs,
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        };
        model.encode_to_vec()
    }
}

fn node(op_type: &str, inputs: &[&str], outputs: &[String], attrs: Vec<(&str, Attr)>) -> NodeProto {
    NodeProto {
        op_type: op_type.into(),
        name: outputs
            .iter()
            .find(|o| !o.is_empty())
            .cloned()
            .unwrap_or_default(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.to_vec(),
        attribute: attrs
            .into_iter()
            .map(|(name, value)| attribute(name, value))
            .collect(),
        ..NodeProto::default()
    }
}

fn attribute(name: &str, value: Attr) -> AttributeProto {
    let mut a = AttributeProto {
        name: name.into(),
        ..AttributeProto::default()
    };
    match value {
        Attr::Int(i) => {
            a.r#type = AttributeType::Int as i32;
            a.i = i;
        }
        Attr::Ints(v) => {
            a.r#type = AttributeType::Ints as i32;
            a.ints = v;
        }
        Attr::Float(f) => {
            a.r#type = AttributeType::Float as i32;
            a.f = f;
        }
    }
    a
}

/// The ONNX element type of a manifest dtype name.
pub fn data_type(dtype: &str) -> Result<DataType> {
    match dtype {
        "float32" => Ok(DataType::Float),
        "int64" => Ok(DataType::Int64),
        other => Err(TrainerError::InvalidArgument(format!(
            "unsupported dtype {other:?} (float32 or int64)"
        ))),
    }
}

fn value_info(spec: &TensorSpec) -> Result<ValueInfoProto> {
    let dim = spec
        .shape
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => dimension::Value::DimValue(*n as i64),
                Dim::Dynamic(s) => dimension::Value::DimParam(s.clone()),
            }),
            ..Dimension::default()
        })
        .collect();
    Ok(ValueInfoProto {
        name: spec.name.clone(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: data_type(&spec.dtype)? as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..TypeProto::default()
        }),
        ..ValueInfoProto::default()
    })
}
