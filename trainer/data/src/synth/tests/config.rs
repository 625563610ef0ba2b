//! The configuration: validation names the bad field, partial JSON reads with defaults.

use super::*;

/// A change that makes a valid config invalid.
type Breakage = fn(&mut SynthConfig);

#[test]
fn validate_names_the_bad_field() {
    let cases: [(&str, Breakage); 20] = [
        ("users", |c| c.users = 0),
        ("items", |c| c.items = 0),
        ("topics", |c| c.topics = 0),
        ("topics", |c| c.topics = 1001),
        ("disliked_topics", |c| c.disliked_topics = 16),
        ("fading_topics", |c| c.fading_topics = 4),
        ("fading_topics", |c| {
            c.fading_topics = 3;
            c.disliked_topics = 13
        }),
        ("aversion_rate", |c| c.aversion_rate = 1.5),
        ("aversion_rate", |c| c.aversion_rate = f64::NAN),
        ("taste_concentration", |c| c.taste_concentration = 0.0),
        ("zipf_exponent", |c| c.zipf_exponent = f64::NAN),
        ("slate_size", |c| c.slate_size = 0),
        ("context_slots", |c| c.context_slots = 0),
        ("context_slots", |c| c.context_slots = c.slate_size + 1),
        ("clicks per user", |c| c.min_clicks_per_user = 200),
        ("max_clicks_per_user + slate_size", |c| c.items = 100),
        ("session steps", |c| c.session_min_steps = 0),
        ("session_in_taste", |c| c.session_in_taste = 1.5),
        ("click.dislike", |c| c.click.dislike = -1.0),
        ("click.no_click", |c| c.click.no_click = f32::INFINITY),
    ];
    for (field, break_it) in cases {
        let mut cfg = SynthConfig::default();
        break_it(&mut cfg);
        match generate(&cfg) {
            Err(DataError::InvalidArgument(msg)) => {
                assert!(msg.contains(field), "{field}: {msg}")
            }
            other => panic!(
                "{field}: expected InvalidArgument, got {:?}",
                other.map(|l| l.events.len())
            ),
        }
    }
    assert!(SynthConfig::default().validate().is_ok());
}

#[test]
fn config_reads_partial_json_with_defaults() {
    let cfg: SynthConfig =
        serde_json::from_str(r#"{"users": 10, "click": {"fatigue": 0.0}}"#).unwrap();
    assert_eq!(cfg.users, 10);
    assert_eq!(cfg.items, SynthConfig::default().items);
    assert_eq!(cfg.click.fatigue, 0.0);
    assert_eq!(cfg.click.dislike, ClickModel::default().dislike);
    let back: SynthConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(back, cfg);
    assert!(
        serde_json::from_str::<SynthConfig>(r#"{"usres": 10}"#).is_err(),
        "unknown fields are refused"
    );
}
