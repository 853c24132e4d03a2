//! `cargo xtask vm --put PATH -- CMD` runs a researcher's own binary in the guest, as README
//! shows. Needs the guest lab, so a plain `cargo test` skips it; `cargo xtask test` runs it.

use std::process::Command;

#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn vm_put_runs_a_host_built_static_binary_in_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("hello.c");
    std::fs::write(
        &source,
        r#"#include <stdio.h>
#include <sys/utsname.h>
#include <unistd.h>
int main(int argc, char **argv) {
    struct utsname u;
    char cwd[256];
    uname(&u);
    printf("static binary %s ran on %s in %s with %d args\n", argv[0], u.release,
           getcwd(cwd, sizeof cwd), argc);
    return 3;
}
"#,
    )
    .unwrap();
    let binary = dir.path().join("a.out");
    let cc = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .unwrap();
    assert!(cc.success(), "cc -static (gcc and libc6-dev, from setup)");

    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(dir.path())
        .args(["vm", "--put", "./a.out", "--", "./a.out", "x", "y"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("static binary ./a.out ran on 6.12.")
            && stdout.contains("in /kdbt with 3 args"),
        "{stdout}"
    );
}
