//! Generates the gRPC code with a vendored `protoc`, so a fresh machine needs no system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    config.bytes(["."]);
    // The well-known types (Timestamp, Duration) the RocketMQ protocol imports.
    let well_known = protoc_bin_vendored::include_path()?;
    let well_known = well_known
        .to_str()
        .ok_or("the protoc include path is not UTF-8")?;
    tonic_prost_build::configure().compile_with_config(
        config,
        &[
            "proto/txmq/v1/client.proto",
            "proto/txmq/peer/v1/peer.proto",
            "proto/apache/rocketmq/v2/service.proto",
        ],
        &["proto", well_known],
    )?;
    Ok(())
}
