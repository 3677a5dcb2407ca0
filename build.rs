//! Compiles the LND protos in `proto/lnd` into Rust (client and server) without `protoc`:
//! protox parses them into a descriptor set in pure Rust and tonic-prost-build generates
//! the code from that.

const PROTOS: [&str; 4] = [
    "lightning.proto",
    "invoices.proto",
    "router.proto",
    "chainnotifier.proto",
];

fn main() {
    println!("cargo:rerun-if-changed=proto/lnd");
    for p in PROTOS {
        println!("cargo:rerun-if-changed=proto/lnd/{p}");
    }
    let fds = match protox::compile(PROTOS, ["proto/lnd"]) {
        Ok(fds) => fds,
        Err(e) => panic!("cannot parse proto/lnd: {e:?}"),
    };
    if let Err(e) = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)
    {
        panic!("cannot generate code from proto/lnd: {e}");
    }
}
