//! Generates the gRPC code with a vendored `protoc`, so a fresh machine needs no system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    config.bytes(["."]);
    tonic_prost_build::configure().compile_with_config(
        config,
        &[
            "proto/txmq/v1/client.proto",
            "proto/txmq/peer/v1/peer.proto",
        ],
        &["proto"],
    )?;
    Ok(())
}
