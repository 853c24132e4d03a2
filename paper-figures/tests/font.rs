//! Charts without their font: the tables are still written and the error names the package.
//! In its own test binary because the font is chosen once per process.

use std::fs;
use std::path::Path;

#[test]
fn missing_font_is_reported_with_the_package_to_install() {
    let out = tempfile::tempdir().unwrap();
    std::env::set_var(paper_figures::FONT_ENV, out.path().join("no-such-font.ttf"));
    let run = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/20260501-120000-abc1234");
    let err = paper_figures::render(&[run], Some(out.path())).unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("no-such-font.ttf"), "{err}");
    assert!(err.contains("fonts-dejavu-core"), "{err}");
    let table = out.path().join("20260501-120000-abc1234/table.md");
    assert!(fs::metadata(table).unwrap().len() > 0);
}
