//! The macro's diagnostics (one case per mistake, each pointing at the user's tokens) and the
//! hygiene of its expansion.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
    cases.pass("tests/ui-pass/*.rs");
}
