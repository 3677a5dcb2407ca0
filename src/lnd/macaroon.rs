//! LND's macaroon authentication: the macaroon file, hex-encoded, in the `macaroon`
//! metadata of every request.

use std::path::Path;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Reads the macaroon at `path` as the metadata value LND expects.
pub(crate) fn read_macaroon(path: &Path) -> Result<MetadataValue<Ascii>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read LND macaroon {}: {e}", path.display()))?;
    if bytes.is_empty() {
        return Err(format!("LND macaroon {} is empty", path.display()));
    }
    MetadataValue::try_from(hex::encode(bytes))
        .map_err(|e| format!("LND macaroon {} cannot be sent: {e}", path.display()))
}

/// Adds the macaroon to each request.
#[derive(Clone)]
pub(crate) struct MacaroonInterceptor(MetadataValue<Ascii>);

impl MacaroonInterceptor {
    pub(crate) fn from_file(path: &Path) -> Result<Self, String> {
        read_macaroon(path).map(MacaroonInterceptor)
    }
}

impl Interceptor for MacaroonInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert("macaroon", self.0.clone());
        Ok(request)
    }
}
