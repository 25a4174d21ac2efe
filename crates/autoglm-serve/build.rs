//! Generates the gRPC service from `proto/autoglm_serve.proto` (pure Rust: protox
//! parses the file, so no `protoc` is needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/autoglm_serve.proto");
    let fds = protox::compile(["proto/autoglm_serve.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
