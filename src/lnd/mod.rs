//! LND over gRPC: configuration (`lncli`'s defaults), TLS pinned to LND's self-signed
//! certificate, macaroon authentication, and [`LndNode`], the [`crate::node::Node`]
//! implementation the LND sidecar drives.

pub mod config;
pub mod macaroon;
pub mod node;
#[doc(hidden)]
pub mod proto;
pub mod tls;

pub use config::{LndConfig, Resolved};
pub use node::{ForwardEvent, HoldInvoiceRequest, InvoiceHtlc, InvoiceUpdate, LndInvoiceState, LndNode};
pub mod sidecar;
