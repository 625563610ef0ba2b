//! The sync protocol's records as they cross the boundary: [`slowfast_core::wire`]'s feed with
//! its vectors as [`Vector`]s, so that Kotlin gets `FloatArray` and Swift `[Float]`, each vector
//! copied in one block rather than float by boxed float.

use std::hash::{Hash, Hasher};

use slowfast_core::wire;

/// `d` floats: a `FloatArray` in Kotlin, `[Float]` in Swift. They cross the boundary as one
/// block of little-endian bytes (uniffi's `bytes`; both platforms are little-endian).
/// Compared and hashed bit for bit, so equal vectors hash alike.
#[derive(Clone, Debug, Default)]
pub struct Vector(pub Vec<f32>);

uniffi::custom_type!(Vector, Vec<u8>, {
    lower: |v| v.0.iter().flat_map(|x| x.to_le_bytes()).collect(),
    try_lift: |bytes| {
        if bytes.len() % 4 != 0 {
            uniffi::deps::anyhow::bail!(
                "a vector of {} bytes is not a whole number of floats",
                bytes.len()
            );
        }
        Ok(Vector(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ))
    },
});

impl Vector {
    fn bits(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().map(|x| x.to_bits())
    }
}

impl PartialEq for Vector {
    fn eq(&self, other: &Vector) -> bool {
        self.bits().eq(other.bits())
    }
}

impl Eq for Vector {}

impl Hash for Vector {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.0.len());
        self.bits().for_each(|b| state.write_u32(b));
    }
}

/// One candidate with the slow component's prior knowledge (S2F, eq. 7).
#[derive(Clone, Debug, uniffi::Record)]
#[uniffi::export(Eq, Hash)]
pub struct FeedItem {
    pub item: String,
    /// `e_i`, `d` floats.
    pub embedding: Vector,
    /// `r_t` of eq. 1, `d` floats.
    pub r_t: Vector,
    /// `r_n` of eq. 5, `d` floats.
    pub r_n: Vector,
    /// The slow model's logit (eq. 6); the server's own ranking.
    pub slow_score: f32,
}

impl FeedItem {
    fn key(&self) -> (&str, &Vector, &Vector, &Vector, u32) {
        let FeedItem {
            item,
            embedding,
            r_t,
            r_n,
            slow_score,
        } = self;
        (item, embedding, r_t, r_n, slow_score.to_bits())
    }
}

impl PartialEq for FeedItem {
    fn eq(&self, other: &FeedItem) -> bool {
        self.key() == other.key()
    }
}

impl Eq for FeedItem {}

impl Hash for FeedItem {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state)
    }
}

/// The server's candidates for this user, best first by the slow model.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct FeedResponse {
    pub model_version: String,
    pub items: Vec<FeedItem>,
}

impl From<wire::FeedResponse> for FeedResponse {
    fn from(feed: wire::FeedResponse) -> FeedResponse {
        FeedResponse {
            model_version: feed.model_version,
            items: feed
                .items
                .into_iter()
                .map(|i| FeedItem {
                    item: i.item,
                    embedding: Vector(i.embedding),
                    r_t: Vector(i.r_t),
                    r_n: Vector(i.r_n),
                    slow_score: i.slow_score,
                })
                .collect(),
        }
    }
}

impl From<FeedResponse> for wire::FeedResponse {
    fn from(feed: FeedResponse) -> wire::FeedResponse {
        wire::FeedResponse {
            model_version: feed.model_version,
            items: feed
                .items
                .into_iter()
                .map(|i| wire::FeedItem {
                    item: i.item,
                    embedding: i.embedding.0,
                    r_t: i.r_t.0,
                    r_n: i.r_n.0,
                    slow_score: i.slow_score,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uniffi::{Lift, Lower};

    #[test]
    fn a_feed_crosses_into_the_core_and_back_unchanged() {
        let core = wire::FeedResponse {
            model_version: "v1".into(),
            items: vec![wire::FeedItem {
                item: "a".into(),
                embedding: vec![0.5, -1.25],
                r_t: vec![f32::MIN_POSITIVE, 3.0],
                r_n: vec![-0.0, 7.5],
                slow_score: 0.25,
            }],
        };
        let there = FeedResponse::from(core.clone());
        assert_eq!(there.items[0].r_t.0, core.items[0].r_t);
        assert_eq!(wire::FeedResponse::from(there), core);
    }

    #[test]
    fn a_vector_crosses_the_boundary_bit_for_bit_and_a_ragged_one_is_refused() {
        let v = Vector(vec![1.0, -0.0, f32::MAX, 1e-40]);
        let bytes = <Vector as Lower<crate::UniFfiTag>>::lower(v.clone());
        let back = <Vector as Lift<crate::UniFfiTag>>::try_lift(bytes).unwrap();
        assert_eq!(back, v);
        assert_ne!(back, Vector(vec![1.0, 0.0, f32::MAX, 1e-40]));
        let ragged = <Vec<u8> as Lower<crate::UniFfiTag>>::lower(vec![0u8; 7]);
        assert!(<Vector as Lift<crate::UniFfiTag>>::try_lift(ragged).is_err());
    }
}
