//! What an epoch iterates over: one positive per moment, or whole click sequences for a
//! [`SequenceNet`]; each batch of them is cut into shards whose losses are differentiated apart.

use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;

use super::{impression, TrainConfig};
use crate::error::Result;
use crate::models::features::{sample_negatives, Batch, Moment, Padded, Positive, Row, Windows};
use crate::models::layers::bce_with_logits;
use crate::models::{Net, SequenceNet};

/// What an epoch iterates over, in shuffled order.
pub(super) enum Units<'a> {
    /// One positive per moment, with its own windows.
    Moments(&'a [Positive<'a>]),
    /// Click sequences whose every position predicts the next click ([`SequenceNet`]).
    Sequences {
        net: &'a dyn SequenceNet,
        clicks: Vec<Vec<u32>>,
    },
}

impl<'a> Units<'a> {
    /// Sequences when `net` trains on them, cut from each user's positives in `train` in
    /// time order (the fast-side baselines' positives list a user's phases in separate
    /// runs); moments otherwise.
    pub(super) fn new(net: &'a dyn Net, train: &'a [Positive<'a>]) -> Units<'a> {
        let Some(seq) = net.sequence() else {
            return Units::Moments(train);
        };
        let mut timed: Vec<&Positive<'_>> = train.iter().collect();
        timed.sort_by_key(|p| (p.moment.user, p.moment.at()));
        let clicks = timed
            .chunk_by(|a, b| a.moment.user == b.moment.user)
            .flat_map(|run| {
                cut_sequences(
                    &run.iter().map(|p| p.item).collect::<Vec<_>>(),
                    seq.window(),
                )
            })
            .collect();
        Units::Sequences { net: seq, clicks }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Units::Moments(train) => train.len(),
            Units::Sequences { clicks, .. } => clicks.len(),
        }
    }

    /// The training positives of unit `u`.
    pub(super) fn targets(&self, u: usize) -> usize {
        match self {
            Units::Moments(_) => 1,
            Units::Sequences { clicks, .. } => clicks[u].len() - 1,
        }
    }

    /// Consecutive runs of `order` with at least `per_batch` positives each (the last may
    /// have fewer): exactly `per_batch` units when every unit is one positive.
    pub(super) fn batches<'o>(&self, order: &'o [usize], per_batch: usize) -> Vec<&'o [usize]> {
        let mut out = Vec::new();
        let (mut start, mut have) = (0, 0);
        for (k, &u) in order.iter().enumerate() {
            have += self.targets(u);
            if have >= per_batch {
                out.push(&order[start..=k]);
                (start, have) = (k + 1, 0);
            }
        }
        if start < order.len() {
            out.push(&order[start..]);
        }
        out
    }

    /// The shard of units `part`: each positive, its impression negatives (moments only) and
    /// `negatives` sampled negatives.
    pub(super) fn sample(
        &self,
        part: &[usize],
        rng: &mut ChaCha8Rng,
        num_items: usize,
        cfg: &TrainConfig,
    ) -> Shard<'a> {
        let negatives = cfg.negatives;
        let mut rows = Vec::new();
        let mut push = |at: usize, item: u32, rng: &mut ChaCha8Rng| {
            rows.push(Row {
                moment: at,
                item,
                label: 1.0,
            });
            for negative in sample_negatives(rng, num_items, item, negatives) {
                rows.push(Row {
                    moment: at,
                    item: negative,
                    label: 0.0,
                });
            }
        };
        match self {
            Units::Moments(train) => {
                for (m, &i) in part.iter().enumerate() {
                    push(m, train[i].item, rng);
                }
                for (m, &i) in part.iter().enumerate() {
                    for item in impression(&train[i], cfg.impressions) {
                        rows.push(Row {
                            moment: m,
                            item,
                            label: 0.0,
                        });
                    }
                }
                let moments = part.iter().map(|&i| train[i].moment).collect();
                Shard::Moments { moments, rows }
            }
            Units::Sequences { net, clicks } => {
                // A row's `moment` is its position in the flattened (sequence, step) grid.
                let steps = part.iter().map(|&u| clicks[u].len() - 1).max().unwrap_or(1);
                for (m, &u) in part.iter().enumerate() {
                    for (k, &item) in clicks[u][1..].iter().enumerate() {
                        push(m * steps + k, item, rng);
                    }
                }
                let inputs = part
                    .iter()
                    .map(|&u| clicks[u][..clicks[u].len() - 1].to_vec())
                    .collect();
                Shard::Sequences {
                    net: *net,
                    inputs,
                    rows,
                }
            }
        }
    }
}

/// A user's clicks cut into sequences of at most `n + 1` clicks that overlap by one (`n`
/// inputs, each predicting the click after it), from the latest back, so that the most
/// recent clicks get the longest context. The first click is never a target: it has no
/// history.
pub(super) fn cut_sequences(items: &[u32], n: usize) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    let mut end = items.len();
    while end > 1 {
        let start = end.saturating_sub(n + 1);
        out.push(items[start..end].to_vec());
        end = start + 1;
    }
    out.reverse();
    out
}

/// One shard of a mini-batch: its units and their positive and negative rows.
pub(super) enum Shard<'a> {
    Moments {
        moments: Vec<Moment<'a>>,
        rows: Vec<Row>,
    },
    Sequences {
        net: &'a dyn SequenceNet,
        inputs: Vec<Vec<u32>>,
        rows: Vec<Row>,
    },
}

impl Shard<'_> {
    pub(super) fn rows(&self) -> usize {
        match self {
            Shard::Moments { rows, .. } | Shard::Sequences { rows, .. } => rows.len(),
        }
    }

    /// The mean BCE of the shard's rows.
    pub(super) fn loss(&self, net: &dyn Net, windows: Windows, device: &Device) -> Result<Tensor> {
        match self {
            Shard::Moments { moments, rows } => {
                let batch = Batch::new(moments, rows, net.needs(), windows, device)?;
                bce_with_logits(&net.logits(&batch)?, &batch.labels)
            }
            Shard::Sequences { net, inputs, rows } => {
                let states = net.states(&Padded::new(inputs, device)?)?;
                let (m, t, d) = states.dims3()?;
                let n = rows.len();
                let at = Tensor::from_vec(
                    rows.iter().map(|r| r.moment as u32).collect::<Vec<_>>(),
                    n,
                    device,
                )?;
                let items = Tensor::from_vec(rows.iter().map(|r| r.item).collect(), n, device)?;
                let labels =
                    Tensor::from_vec(rows.iter().map(|r| r.label).collect(), (n, 1), device)?;
                let states = states.reshape((m * t, d))?.index_select(&at, 0)?;
                bce_with_logits(&net.score(&states, &items)?, &labels)
            }
        }
    }
}
