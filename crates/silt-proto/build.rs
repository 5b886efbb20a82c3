//! Compiles `proto/silt/**/*.proto` with protox (pure Rust, no system `protoc`) and generates
//! prost messages (every `bytes` field as `bytes::Bytes`) and tonic clients and servers.

use std::path::{Path, PathBuf};

fn protos(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).expect("proto dir readable").flatten().collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            protos(&p, out);
        } else if p.extension().is_some_and(|x| x == "proto") {
            out.push(p);
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let mut files = Vec::new();
    protos(&root.join("silt"), &mut files);
    println!("cargo:rerun-if-changed={}", root.display());
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root]).expect("proto files compile");
    tonic_prost_build::configure()
        .bytes(".")
        .codec_path("crate::codec::SiltCodec")
        .compile_fds(fds)
        .expect("code generation succeeds");
}
