//! `#[task]` under trybuild: tests/ui/fail_*.rs must not compile, with the error of the
//! matching .stderr file, pointing at the option or parameter at fault. What compiles is
//! checked by `macro_generated.rs`, an ordinary test: with only compile-fail cases trybuild
//! runs `cargo check`, not `cargo build`, on its own copy of the dependencies (minutes
//! less on two cores).
//!
//! The .stderr files depend on the compiler's wording (rustc 1.95 here and in CI); after a
//! toolchain change, check the new text and regenerate them with `TRYBUILD=overwrite`.

#[test]
fn task_attribute() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/fail_*.rs");
}
