//! `docs/operator.md` runs as written: its `sh` blocks, in order, in one `bash` in an empty
//! directory, with the `pmp` under test first on the PATH.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `sh` code blocks of a Markdown text, in order.
fn sh_blocks(md: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in md.lines() {
        match &mut current {
            None if line.trim_end() == "```sh" => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_end() == "```" => blocks.push(current.take().unwrap()),
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
        }
    }
    assert!(current.is_none(), "an unclosed code block");
    blocks
}

#[test]
fn the_operator_guide_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let md = std::fs::read_to_string(root.join("docs/operator.md")).unwrap();
    let blocks = sh_blocks(&md);
    assert!(blocks.len() >= 6, "{} sh blocks", blocks.len());
    let script = format!("set -euo pipefail\n{}", blocks.join("\n"));

    let mut r = [0u8; 6];
    pmp_core::fill_random(&mut r).unwrap();
    let dir = std::env::temp_dir().join(format!("pmp-guide-{}", hex::encode(r)));
    std::fs::create_dir_all(&dir).unwrap();
    let bin: PathBuf = Path::new(env!("CARGO_BIN_EXE_pmp"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let o = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&dir)
        .env("PATH", path)
        .env_remove("PMP_LMK_COMPONENTS")
        .output()
        .expect("run bash");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(
        o.status.success(),
        "the guide failed:\n{err}\n--- stdout:\n{out}"
    );
    // What the guide says the commands print.
    assert!(out.contains("270389F4B0"), "ceremony KCV: {out}");
    let import: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("gold-import.json")).unwrap())
            .unwrap();
    assert_eq!(import["read"], 200);
    assert!(
        import["order_id"]
            .as_str()
            .unwrap()
            .starts_with("DEMO-VISA-GOLD-")
    );
    let keys: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("keys.json")).unwrap()).unwrap();
    for label in [
        "ZMK-NEWBANK",
        "NEWBANK-TK-DATA",
        "PROD2-KTK",
        "PROD2-PTK",
        "PROD2-MTK",
    ] {
        assert!(
            keys["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["label"] == label),
            "{label} missing: {keys}"
        );
    }
    for f in ["PROD2-KTK.tr31", "PROD2-PTK.tr31", "PROD2-MTK.tr31"] {
        let block = std::fs::read_to_string(dir.join(f)).unwrap();
        assert!(
            block.starts_with("D0") && &block[7..8] == "A" && &block[11..12] == "E",
            "{f}: {block}"
        );
    }
    assert!(err.contains("is a TEST order"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
