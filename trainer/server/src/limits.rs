//! Request limits: every check names the field at fault, and runs before anything is stored.
//!
//! | what | limit |
//! |---|---|
//! | body | [`MAX_BODY_BYTES`](slowfast_core::wire::MAX_BODY_BYTES) (413 beyond) |
//! | `idempotency_key`, `model_version`, item ids | 1..=[`MAX_ID_BYTES`] bytes, no NUL (PostgreSQL's text cannot hold it) |
//! | `neg_memory` | exactly `d` finite floats |
//! | `clicks`, `exposures` | at most [`MAX_EVENTS_PER_UPLOAD`] each; items known to the bundle; `ts ≥ 0` |
//! | `k` of a feed | 1..=[`MAX_FEED_K`] |

use slowfast_core::wire::{
    UploadRequest, WireEvent, MAX_EVENTS_PER_UPLOAD, MAX_FEED_K, MAX_ID_BYTES,
};

use slowfast_feed::Items;

/// A request field that broke a limit, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn fail<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T, FieldError> {
    Err(FieldError {
        field: field.into(),
        message: message.into(),
    })
}

fn id_fits(value: &str) -> bool {
    !value.is_empty() && value.len() <= MAX_ID_BYTES && !value.contains('\0')
}

fn check_id(field: &str, value: &str) -> Result<(), FieldError> {
    if value.contains('\0') {
        return fail(field, "must not contain NUL");
    }
    if !id_fits(value) {
        return fail(
            field,
            format!("must have 1..={MAX_ID_BYTES} bytes, got {}", value.len()),
        );
    }
    Ok(())
}

fn check_events(field: &str, events: &[WireEvent], items: &Items) -> Result<(), FieldError> {
    if events.len() > MAX_EVENTS_PER_UPLOAD {
        return fail(
            field,
            format!(
                "at most {MAX_EVENTS_PER_UPLOAD} events per upload, got {}",
                events.len()
            ),
        );
    }
    for (i, e) in events.iter().enumerate() {
        // Field names are formatted only for the error: a valid upload allocates nothing here.
        let at = |part: &str| format!("{field}[{i}].{part}");
        if !id_fits(&e.item) {
            return check_id(&at("item"), &e.item);
        }
        if items.index(&e.item).is_none() {
            return fail(at("item"), format!("unknown item id {:?}", e.item));
        }
        if e.ts < 0 {
            return fail(at("ts"), "must be Unix milliseconds ≥ 0");
        }
    }
    Ok(())
}

/// Checks an upload against the limits and the bundle (dimension `d`, known item ids).
pub fn check_upload(req: &UploadRequest, items: &Items) -> Result<(), FieldError> {
    check_id("idempotency_key", &req.idempotency_key)?;
    check_id("model_version", &req.model_version)?;
    if req.neg_memory.len() != items.dim {
        return fail(
            "neg_memory",
            format!(
                "expected d = {} floats, got {}",
                items.dim,
                req.neg_memory.len()
            ),
        );
    }
    if let Some(i) = req.neg_memory.iter().position(|x| !x.is_finite()) {
        return fail(format!("neg_memory[{i}]"), "must be a finite float");
    }
    check_events("clicks", &req.clicks, items)?;
    check_events("exposures", &req.exposures, items)
}

/// Parses the `k` of a feed request.
pub fn check_k(k: Option<&str>) -> Result<usize, FieldError> {
    let Some(k) = k else {
        return fail("k", "missing; pass ?k=K");
    };
    match k.parse::<usize>() {
        Ok(k) if (1..=MAX_FEED_K).contains(&k) => Ok(k),
        _ => fail(
            "k",
            format!("must be an integer in 1..={MAX_FEED_K}, got {k:?}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slowfast_core::manifest::ItemTable;

    fn items() -> Items {
        Items::new(
            ItemTable {
                ids: vec!["a".into(), "b".into()],
                popularity: vec![1, 1],
                embeddings: vec![0.0; 4],
                added: 0,
            },
            2,
        )
        .unwrap()
    }

    fn upload() -> UploadRequest {
        UploadRequest {
            user: None,
            idempotency_key: "k".into(),
            model_version: "v".into(),
            neg_memory: vec![0.5, -0.5],
            clicks: vec![WireEvent {
                item: "a".into(),
                ts: 1,
            }],
            exposures: vec![],
        }
    }

    fn field_of(f: impl Fn(&mut UploadRequest)) -> String {
        let mut u = upload();
        f(&mut u);
        check_upload(&u, &items()).unwrap_err().field
    }

    #[test]
    fn each_broken_limit_names_its_field() {
        assert!(check_upload(&upload(), &items()).is_ok());
        assert_eq!(field_of(|u| u.idempotency_key.clear()), "idempotency_key");
        assert_eq!(
            field_of(|u| u.idempotency_key = "k\0".into()),
            "idempotency_key"
        );
        assert_eq!(
            field_of(|u| u.model_version = "v".repeat(129)),
            "model_version"
        );
        assert_eq!(field_of(|u| u.neg_memory.push(0.0)), "neg_memory");
        assert_eq!(field_of(|u| u.neg_memory[1] = f32::NAN), "neg_memory[1]");
        assert_eq!(
            field_of(|u| u.clicks[0].item = "zz".into()),
            "clicks[0].item"
        );
        assert_eq!(
            field_of(|u| u.clicks[0].item = "z".repeat(129)),
            "clicks[0].item"
        );
        assert_eq!(field_of(|u| u.clicks[0].ts = -1), "clicks[0].ts");
        assert_eq!(
            field_of(|u| u.exposures = vec![u.clicks[0].clone(); MAX_EVENTS_PER_UPLOAD + 1]),
            "exposures"
        );
    }

    #[test]
    fn k_must_be_in_range() {
        assert_eq!(check_k(Some("50")), Ok(50));
        for bad in [
            None,
            Some("0"),
            Some("-1"),
            Some("501"),
            Some("x"),
            Some(""),
        ] {
            assert_eq!(check_k(bad).unwrap_err().field, "k");
        }
    }
}
