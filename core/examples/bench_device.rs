//! Prints the device benchmark figures ([`slowfast_core::bench::device`]) as one JSON object,
//! for the bundle given as the first argument (default: the tests' fixture bundle). The
//! trainer's `slowfast bench device --json` adds ort's ratio to the same figures.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bundle = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(slowfast_core::manifest::fixture_bundle);
    let figures = slowfast_core::bench::device(&bundle)?;
    println!("{}", serde_json::to_string_pretty(&figures)?);
    Ok(())
}
