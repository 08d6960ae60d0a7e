//! Generates the tonic client and server for the `custos.Node` service from a Rust
//! description (no .proto, no protoc): messages are serde types in `src/lib.rs`, carried
//! by `PostcardCodec`.

fn main() {
    use tonic_build::manual::{Builder, Method, Service};
    let codec = "crate::codec::PostcardCodec";
    let method = |name: &str, route: &str, input: &str, output: &str| {
        Method::builder()
            .name(name)
            .route_name(route)
            .input_type(input)
            .output_type(output)
            .codec_path(codec)
    };
    let svc = Service::builder()
        .name("Node")
        .package("custos")
        .method(method("health", "Health", "crate::HealthRequest", "crate::Health").build())
        .method(
            method("session", "Session", "crate::HostFrame", "crate::NodeFrame")
                .client_streaming()
                .server_streaming()
                .build(),
        )
        .method(
            method(
                "destroy",
                "Destroy",
                "crate::DestroyRequest",
                "crate::Destroyed",
            )
            .build(),
        )
        .method(
            method(
                "install_bundle",
                "InstallBundle",
                "crate::InstallBundle",
                "crate::BundleInstalled",
            )
            .build(),
        )
        .method(
            method(
                "resolve",
                "Resolve",
                "crate::ResolveRequest",
                "crate::Resolved",
            )
            .build(),
        )
        .method(
            method(
                "journal",
                "Journal",
                "crate::JournalRequest",
                "crate::JournalPage",
            )
            .build(),
        )
        .build();
    Builder::new().compile(&[svc]);
    println!("cargo:rerun-if-changed=build.rs");
}
