//! `#[task]` under trybuild: tests/ui/pass_*.rs compile without warnings and run (their
//! `main` asserts on the generated items); tests/ui/fail_*.rs must not compile, with the
//! error of the matching .stderr file, pointing at the option or parameter at fault.
//!
//! The .stderr files depend on the compiler's wording (rustc 1.95 here and in CI); after a
//! toolchain change, check the new text and regenerate them with `TRYBUILD=overwrite`.

#[test]
fn task_attribute() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass_*.rs");
    cases.compile_fail("tests/ui/fail_*.rs");
}
