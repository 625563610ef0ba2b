//! The `uniffi-bindgen` CLI pinned to this crate's uniffi version, so generated Kotlin and Swift
//! always match the scaffolding compiled into `libslowfast_ffi`:
//! `cargo run -p slowfast-ffi --bin uniffi-bindgen -- generate --library <lib> --language kotlin`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
