//! Shared helpers for the integration tests: a reader for the `Name = value` vector files in
//! `tests/data/` (blank line between vectors, `#` comments).
#![allow(dead_code)]

use std::collections::BTreeMap;

/// One vector: its fields by name, and the line it starts on (for failure messages).
#[derive(Debug)]
pub struct Vector {
    pub line: usize,
    pub fields: BTreeMap<String, String>,
}

impl Vector {
    pub fn get(&self, k: &str) -> &str {
        self.fields
            .get(k)
            .unwrap_or_else(|| panic!("vector at line {} lacks {k}", self.line))
    }
    pub fn opt(&self, k: &str) -> Option<&str> {
        self.fields.get(k).map(String::as_str)
    }
    pub fn hex(&self, k: &str) -> Vec<u8> {
        hex::decode(self.get(k))
            .unwrap_or_else(|e| panic!("vector at line {}: {k}: {e}", self.line))
    }
}

/// Reads `tests/data/<name>`.
pub fn load(name: &str) -> Vec<Vector> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = Vec::new();
    let mut cur: Option<Vector> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') {
            continue;
        }
        if line.is_empty() {
            if let Some(v) = cur.take() {
                out.push(v);
            }
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{path}:{}: expected `Name = value`", i + 1));
        cur.get_or_insert_with(|| Vector {
            line: i + 1,
            fields: BTreeMap::new(),
        })
        .fields
        .insert(k.trim().to_string(), v.trim().to_string());
    }
    if let Some(v) = cur.take() {
        out.push(v);
    }
    assert!(!out.is_empty(), "{path}: no vectors");
    out
}

/// Flips one bit of `bytes[i]`.
pub fn flip(bytes: &[u8], i: usize) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v[i] ^= 0x01;
    v
}
