//! The command-line contract: `rwsplit --config FILE --check`.

use std::process::Command;

fn rwsplit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rwsplit")).args(args).output().expect("run rwsplit")
}

#[test]
fn check_accepts_the_shipped_config() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proxy.yaml");
    let out = rwsplit(&["--config", shipped, "--check"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn check_reports_every_problem_with_file_and_field() {
    let dir = std::env::temp_dir().join(format!("rwsplit-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "listen: 127.0.0.1:99999\nusers:\n  - user: app\nmaster:\n  address: db\nreplicas:\n  - address: r:1\n    weight: 0\n",
    )
    .unwrap();
    let out = rwsplit(&["--config", file.to_str().unwrap(), "--check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for field in ["listen", "users[0].password", "master.address", "replicas[0].weight"] {
        assert!(err.contains(&format!("bad.yaml: {field}: ")), "missing {field} in:\n{err}");
    }
    std::fs::write(&file, "listen: 127.0.0.1:1\nusers: []\nmaster: {address: 'a:1'}\nbogus: 1\n").unwrap();
    let out = rwsplit(&["--config", file.to_str().unwrap(), "--check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus") && err.contains("unknown field"), "{err}");
    let out = rwsplit(&["--config", dir.join("missing.yaml").to_str().unwrap(), "--check"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    std::fs::remove_dir_all(&dir).ok();
}
