//! What the CLI's end-to-end tests share: the binary under test, and running it to success.

use std::process::Command;

/// The `tgcnet` binary cargo built for these tests.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tgcnet"))
}

/// Runs `cmd`, fails the test with its stdout and stderr unless it succeeds, and returns its stdout.
pub fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run tgcnet");
    assert!(
        out.status.success(),
        "{:?} failed:\n{}\n{}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
