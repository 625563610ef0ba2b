//! Ranking a candidate pool with the slow model (`slow.onnx`, eq. 1–2 and 5–6) through ONNX
//! Runtime: one batched call per feed over the whole pool.
//!
//! Inputs per the bundle contract: `history [W_s, d]` (the user's recent clicks, oldest first,
//! zero-padded) with `history_len [1]`, `neg_memory [1, d]` (`r̂2`) and `e_i [N, d]`; outputs
//! `logit [N]` (eq. 6), `r_t [N, d]` (eq. 1), `r_n [N, d]` (eq. 5).

use std::path::Path;
use std::sync::Mutex;

use ort::session::Session;
use ort::value::Tensor;
use tokio::sync::Semaphore;

use crate::error::{Result, ServerError};

/// The slow model's answer for a pool of `N` candidates.
#[derive(Clone, Debug, PartialEq)]
pub struct SlowOutput {
    /// Eq. 6 logits, `[N]`.
    pub logit: Vec<f32>,
    /// Eq. 1 `r_t`, row-major `[N, d]`.
    pub r_t: Vec<f32>,
    /// Eq. 5 `r_n`, row-major `[N, d]`.
    pub r_n: Vec<f32>,
}

/// One user's slow-model inputs.
pub struct SlowInput<'a> {
    /// Embeddings of at most `W_s` recent clicks, row-major, oldest first.
    pub history: &'a [f32],
    /// `r̂2`, `d` floats.
    pub neg_memory: &'a [f32],
    /// Candidate embeddings, row-major `[N, d]`.
    pub e_i: &'a [f32],
}

/// A small pool of ort sessions over `slow.onnx`, one per core, each single-threaded, so
/// concurrent feeds run in parallel without oversubscribing the CPU.
pub struct SlowRanker {
    sessions: Mutex<Vec<Session>>,
    permits: Semaphore,
    dim: usize,
    window: usize,
}

fn ort_err(what: &str) -> impl Fn(ort::Error) -> ServerError + '_ {
    move |e| ServerError::Ranker(format!("{what}: {e}"))
}

impl SlowRanker {
    /// Loads `slow.onnx` into `sessions` ort sessions (ONNX Runtime via
    /// [`slowfast_ort::environment`]).
    pub fn load(path: &Path, dim: usize, window: usize, sessions: usize) -> Result<SlowRanker> {
        let env = slowfast_ort::environment()?;
        let what = path.display().to_string();
        let sessions = (0..sessions.max(1))
            .map(|_| {
                Session::builder(env)
                    .map_err(ort_err(&what))?
                    .with_intra_threads(1)
                    .map_err(|e| ServerError::Ranker(format!("{what}: {e}")))?
                    .commit_from_file(path)
                    .map_err(ort_err(&what))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SlowRanker {
            permits: Semaphore::new(sessions.len()),
            sessions: Mutex::new(sessions),
            dim,
            window,
        })
    }

    /// Runs the slow model on one user's pool, off the async threads.
    pub async fn rank(self: &std::sync::Arc<Self>, input: SlowInput<'_>) -> Result<SlowOutput> {
        let d = self.dim;
        let rows = input.history.len() / d;
        if rows > self.window
            || input.neg_memory.len() != d
            || !input.e_i.len().is_multiple_of(d)
            || !input.history.len().is_multiple_of(d)
        {
            return Err(ServerError::InvalidArgument(format!(
                "slow model inputs do not fit W_s = {}, d = {d}",
                self.window
            )));
        }
        let mut history = vec![0f32; self.window * d];
        history[..input.history.len()].copy_from_slice(input.history);
        let neg_memory = input.neg_memory.to_vec();
        let e_i = input.e_i.to_vec();
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ServerError::Ranker("the ranker was shut down".into()))?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.run(history, rows, neg_memory, e_i))
            .await
            .map_err(|e| ServerError::Ranker(format!("ranking task failed: {e}")))?
    }

    fn run(
        &self,
        history: Vec<f32>,
        rows: usize,
        neg_memory: Vec<f32>,
        e_i: Vec<f32>,
    ) -> Result<SlowOutput> {
        let d = self.dim;
        let n = e_i.len() / d;
        let mut session = self
            .sessions
            .lock()
            .map_err(|_| ServerError::Ranker("session pool poisoned".into()))?
            .pop()
            .ok_or_else(|| ServerError::Ranker("no free session".into()))?;
        let result = (|| {
            let inputs = ort::inputs![
                "history" => Tensor::from_array(([self.window, d], history)).map_err(ort_err("history"))?,
                "history_len" => Tensor::from_array(([1usize], vec![rows as i64])).map_err(ort_err("history_len"))?,
                "neg_memory" => Tensor::from_array(([1usize, d], neg_memory)).map_err(ort_err("neg_memory"))?,
                "e_i" => Tensor::from_array(([n, d], e_i)).map_err(ort_err("e_i"))?,
            ];
            let out = session.run(inputs).map_err(ort_err("slow.onnx"))?;
            let take = |name: &str, len: usize| -> Result<Vec<f32>> {
                let v = out.get(name).ok_or_else(|| {
                    ServerError::Ranker(format!("slow.onnx has no output {name}"))
                })?;
                let (_, data) = v.try_extract_tensor::<f32>().map_err(ort_err(name))?;
                if data.len() != len {
                    return Err(ServerError::Ranker(format!(
                        "slow.onnx output {name} has {} floats, expected {len}",
                        data.len()
                    )));
                }
                Ok(data.to_vec())
            };
            Ok(SlowOutput {
                logit: take("logit", n)?,
                r_t: take("r_t", n * d)?,
                r_n: take("r_n", n * d)?,
            })
        })();
        if let Ok(mut pool) = self.sessions.lock() {
            pool.push(session);
        }
        result
    }
}
