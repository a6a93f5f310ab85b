//! Generates the vigil.v1 messages and tonic services. Needs `protoc` (Debian's
//! protobuf-compiler; `cargo xtask setup` installs it).
fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        // prost's codec with smaller buffers: see src/codec.rs.
        .codec_path("crate::codec::SmallBuffers")
        .compile_protos(&["proto/vigil/v1/vigil.proto"], &["proto"])
}
