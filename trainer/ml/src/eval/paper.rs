//! The paper's reported values (Table 2, and Table 3 for the slow baselines), printed next to
//! ours where the paper has a value for the data set.

/// Metric order of the arrays below: HR@1, HR@5, HR@10, NDCG@5, NDCG@10, MRR (`None` where
/// the paper reports no value).
type Row = [Option<f64>; 6];

const fn full(v: [f64; 6]) -> Row {
    [
        Some(v[0]),
        Some(v[1]),
        Some(v[2]),
        Some(v[3]),
        Some(v[4]),
        Some(v[5]),
    ]
}

/// Table 3 reports HR@5, NDCG@5 and MRR only.
const fn hr5_ndcg5_mrr(hr5: f64, ndcg5: f64, mrr: f64) -> Row {
    [None, Some(hr5), None, Some(ndcg5), None, Some(mrr)]
}

const ML_1M: [(&str, Row); 10] = [
    ("FM", full([0.5308, 0.6619, 0.7511, 0.6150, 0.6395, 0.6108])),
    (
        "NeuMF",
        full([0.5345, 0.6622, 0.7538, 0.6230, 0.6471, 0.6162]),
    ),
    (
        "GRU4Rec",
        full([0.5459, 0.6794, 0.7615, 0.6202, 0.6445, 0.6177]),
    ),
    ("Caser", hr5_ndcg5_mrr(0.6837, 0.6181, 0.6170)),
    ("SASRec", hr5_ndcg5_mrr(0.6855, 0.6188, 0.6166)),
    (
        "DIN",
        full([0.5505, 0.6868, 0.7616, 0.6207, 0.6449, 0.6197]),
    ),
    (
        "DIN+FM",
        full([0.5508, 0.6782, 0.7567, 0.6271, 0.6508, 0.6169]),
    ),
    (
        "DIN+NeuMF",
        full([0.5441, 0.6709, 0.7618, 0.6265, 0.6509, 0.6216]),
    ),
    (
        "DIN+GRU4Rec",
        full([0.5671, 0.6880, 0.7643, 0.6285, 0.6538, 0.6304]),
    ),
    (
        "MC2-SF",
        full([0.6105, 0.7166, 0.7768, 0.6643, 0.6837, 0.6636]),
    ),
];

const STEAM: [(&str, Row); 10] = [
    ("FM", full([0.4204, 0.5393, 0.6054, 0.4821, 0.5034, 0.4858])),
    (
        "NeuMF",
        full([0.3310, 0.5145, 0.5729, 0.4372, 0.4600, 0.4300]),
    ),
    (
        "GRU4Rec",
        full([0.4492, 0.5398, 0.6111, 0.4950, 0.5178, 0.5034]),
    ),
    ("Caser", hr5_ndcg5_mrr(0.5393, 0.4920, 0.4992)),
    ("SASRec", hr5_ndcg5_mrr(0.5419, 0.4961, 0.5028)),
    (
        "DIN",
        full([0.4512, 0.5425, 0.6098, 0.4976, 0.5192, 0.5055]),
    ),
    (
        "DIN+FM",
        full([0.4699, 0.5679, 0.6256, 0.5202, 0.5388, 0.5231]),
    ),
    (
        "DIN+NeuMF",
        full([0.4150, 0.5281, 0.5989, 0.4666, 0.4854, 0.4721]),
    ),
    (
        "DIN+GRU4Rec",
        full([0.4796, 0.5726, 0.6419, 0.5265, 0.5487, 0.5355]),
    ),
    (
        "MC2-SF",
        full([0.4926, 0.5853, 0.6538, 0.5389, 0.5617, 0.5464]),
    ),
];

/// The paper's rows for a data set (`ml-1m` or `steam`), if it reports that data set.
pub fn table(dataset: &str) -> Option<&'static [(&'static str, Row)]> {
    let d = dataset.to_ascii_lowercase();
    if d.contains("ml-1m") || d.contains("movielens") {
        Some(&ML_1M)
    } else if d.contains("steam") {
        Some(&STEAM)
    } else {
        None
    }
}

/// The paper's value of metric number `metric` (in `METRICS` order) for `model`.
pub fn value(dataset: &str, model: &str, metric: usize) -> Option<f64> {
    table(dataset)?
        .iter()
        .find(|(m, _)| *m == model)
        .and_then(|(_, row)| row.get(metric).copied().flatten())
}
