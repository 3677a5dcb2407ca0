//! Code generated from `proto/lnd` (a subset of LND's protos) by `build.rs`. Public for the
//! fake LND server in the tests, not part of ballast's API.
#![allow(clippy::all, missing_docs, rustdoc::all)]

pub mod lnrpc {
    tonic::include_proto!("lnrpc");
}
pub mod invoicesrpc {
    tonic::include_proto!("invoicesrpc");
}
pub mod routerrpc {
    tonic::include_proto!("routerrpc");
}
pub mod chainrpc {
    tonic::include_proto!("chainrpc");
}
