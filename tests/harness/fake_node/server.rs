//! The fake `lightning-rpc` unix socket.

use super::*;

/// The fake `lightning-rpc` socket. Serves until dropped; dropping also
/// closes every connection and removes the socket file.
pub struct RpcServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    accept_thread: Option<JoinHandle<()>>,
    connections: Arc<Mutex<Vec<UnixStream>>>,
}

impl RpcServer {
    pub fn start(node: FakeNode, path: &Path) -> std::io::Result<RpcServer> {
        // Like lightningd, take over a stale socket left by a killed run.
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<UnixStream>>> = Arc::new(Mutex::new(Vec::new()));
        let counter = Arc::new(AtomicUsize::new(0));
        let accept_thread = {
            let stop = stop.clone();
            let connections = connections.clone();
            std::thread::Builder::new()
                .name("fake-rpc-accept".into())
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        match listener.accept() {
                            Ok((stream, _)) => {
                                // Accepted sockets inherit non-blocking mode
                                // on some platforms; serve them blocking.
                                let _ = stream.set_nonblocking(false);
                                if let Ok(c) = stream.try_clone() {
                                    connections.lock().unwrap().push(c);
                                }
                                let n = counter.fetch_add(1, Ordering::SeqCst);
                                let node = node.clone();
                                let _ = std::thread::Builder::new()
                                    .name(format!("fake-rpc-conn-{n}"))
                                    .spawn(move || serve_connection(node, stream, n));
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(20)),
                        }
                    }
                })?
        };
        Ok(RpcServer {
            path: path.to_path_buf(),
            stop,
            accept_thread: Some(accept_thread),
            connections,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
        for c in self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads requests as a stream of JSON values (lightningd does not require
/// any delimiter on its socket) and answers each, followed by `\n\n`, which
/// `cln-rpc` relies on to split responses.
pub(super) fn serve_connection(node: FakeNode, stream: UnixStream, connection: usize) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let reader = BufReader::new(stream);
    for item in serde_json::Deserializer::from_reader(reader).into_iter::<Value>() {
        match item {
            Ok(request) => {
                let mut bytes = match node.handle_request_wire(&request, connection) {
                    Wire::Json(response) => serde_json::to_vec(&response).expect("serializable"),
                    Wire::Bytes(bytes) => bytes,
                    Wire::Hangup => {
                        let _ = writer.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                };
                bytes.extend_from_slice(b"\n\n");
                if writer.write_all(&bytes).and_then(|_| writer.flush()).is_err() {
                    return;
                }
            }
            Err(e) if e.is_io() => return,
            Err(e) if e.is_eof() => {
                node.violation(format!(
                    "connection {connection} closed in the middle of a request: {e}"
                ));
                return;
            }
            Err(e) => {
                // lightningd drops a connection that sends malformed JSON.
                node.violation(format!("connection {connection} sent invalid JSON: {e}"));
                return;
            }
        }
    }
}
