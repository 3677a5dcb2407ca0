//! The plugin's stdin/stdout, with a fast path in front of cln-plugin.
//!
//! Every HTLC the node sees waits for our `htlc_accepted` answer, so that answer must cost
//! little more than the pipe. cln-plugin dispatches each message through tokio tasks and an
//! mpsc hop before the reply reaches stdout; measured here (benches/hotpath/) that alone
//! is several times the transport floor. So a dedicated thread owns stdin with blocking
//! reads (the floor's own loop), answers the `htlc_accepted` calls nobody has claimed, and
//! forwards every other message to cln-plugin through an in-memory pipe. cln-plugin still
//! owns the protocol (manifest, init, methods, notifications, claimed hooks); it never
//! learns that some hooks were answered before it saw them.
//!
//! Both writers share one lock on stdout and always write whole `\n\n`-terminated frames,
//! so their messages never interleave mid-frame.

use crate::counters::{bump, Counters};
use crate::engine::claims::ClaimSet;
use crate::types::decode_hex_array;
use crate::types::PaymentHash;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

/// lightningd separates messages with a blank line.
const FRAME_END: &[u8] = b"\n\n";

/// fd 1, shared by the fast path and cln-plugin's writer.
pub(crate) struct SharedStdout {
    // ManuallyDrop: the fd belongs to the process, not to this value.
    out: Mutex<ManuallyDrop<File>>,
}

impl SharedStdout {
    pub fn new() -> Arc<Self> {
        // SAFETY: fd 1 is open for the life of the process; ManuallyDrop keeps us from
        // closing it.
        let file = unsafe { File::from_raw_fd(1) };
        Arc::new(SharedStdout {
            out: Mutex::new(ManuallyDrop::new(file)),
        })
    }

    /// Writes complete frames in one go, so no other writer can land in the middle.
    pub(crate) fn write_frames(&self, bytes: &[u8]) -> io::Result<()> {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        out.write_all(bytes)
    }
}

/// cln-plugin's output side: frames it encodes go straight to the shared stdout.
pub(crate) struct StdoutSink(pub Arc<SharedStdout>);

impl AsyncWrite for StdoutSink {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // cln-plugin's FramedWrite hands us its whole buffer, which only ever holds whole
        // frames; writing all of it under the lock keeps frames intact. The write blocks
        // only if lightningd stops reading us, in which case nothing could proceed anyway.
        Poll::Ready(self.0.write_frames(buf).map(|()| buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// cln-plugin's input side: frames the fast path did not answer.
pub(crate) struct ForwardedInput {
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
}

impl AsyncRead for ForwardedInput {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.pos >= this.current.len() {
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => {
                    this.current = chunk;
                    this.pos = 0;
                }
                // The reader thread hung up: stdin closed, so cln-plugin sees EOF.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = buf.remaining().min(this.current.len() - this.pos);
        buf.put_slice(&this.current[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// What the fast path needs to decide on a hook without the runtime.
#[derive(Clone)]
pub(crate) struct FastPath {
    pub claims: Arc<ClaimSet>,
    pub counters: Arc<Counters>,
}

/// The frame read in one pass: the id kept raw (it is echoed back), and of the params only
/// `htlc.payment_hash`; everything else, the onion above all, is skipped without being
/// kept. A frame of another shape (e.g. positional params) fails here and goes on to
/// cln-plugin untouched.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<ParamsPeek<'a>>,
}

#[derive(Deserialize)]
struct ParamsPeek<'a> {
    #[serde(borrow)]
    htlc: Option<HtlcPeek<'a>>,
}

#[derive(Deserialize)]
struct HtlcPeek<'a> {
    #[serde(borrow)]
    payment_hash: Cow<'a, str>,
}

const CONTINUE_HEAD: &[u8] = br#"{"jsonrpc":"2.0","id":"#;
const CONTINUE_TAIL: &[u8] = br#","result":{"result":"continue"}}"#;

impl FastPath {
    /// Answers `frame` into `answers` if it is an unclaimed hook; returns false when the
    /// frame must go to cln-plugin instead.
    pub(crate) fn try_answer(&self, frame: &[u8], answers: &mut Vec<u8>) -> bool {
        let Ok(env) = serde_json::from_slice::<Envelope>(frame) else {
            return false;
        };
        let (Some(id), Some(method)) = (env.id, env.method) else {
            return false;
        };
        match &*method {
            "htlc_accepted" => {
                bump(&self.counters.htlc_accepted);
                // Anything we cannot read goes to the full handler, which logs it; only a
                // well-formed, unclaimed hash is answered here.
                let Some(htlc) = env.params.and_then(|p| p.htlc) else {
                    return false;
                };
                let Ok(hash) = decode_hex_array::<32>("payment_hash", &htlc.payment_hash) else {
                    return false;
                };
                if self.claims.contains(&PaymentHash(hash)) {
                    return false;
                }
                bump(&self.counters.htlcs_passed_through);
            }
            _ => return false,
        }
        answers.extend_from_slice(CONTINUE_HEAD);
        answers.extend_from_slice(id.get().as_bytes());
        answers.extend_from_slice(CONTINUE_TAIL);
        answers.extend_from_slice(FRAME_END);
        true
    }
}

/// Starts the stdin thread; returns the input cln-plugin should read from.
pub(crate) fn spawn_stdin_reader(fast: FastPath, stdout: Arc<SharedStdout>) -> io::Result<ForwardedInput> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("ballast-stdin".into())
        .spawn(move || {
            // SAFETY: fd 0 is open for the life of the process; ManuallyDrop keeps us from
            // closing it.
            let mut stdin = ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
            if let Err(e) = pump(&mut *stdin, &fast, &stdout, &tx) {
                // No logger can be trusted here (it writes to the same stdout that may have
                // failed); stderr ends up in lightningd's log.
                eprintln!("ballast: stdin loop ended: {e}");
            }
            // Dropping tx gives cln-plugin EOF, which ends the plugin cleanly.
        })?;
    Ok(ForwardedInput {
        rx,
        current: Vec::new(),
        pos: 0,
    })
}

/// The loop itself, generic over the reader so tests can feed it bytes.
pub(crate) fn pump(
    input: &mut impl Read,
    fast: &FastPath,
    stdout: &SharedStdout,
    forward: &mpsc::UnboundedSender<Vec<u8>>,
) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut answers: Vec<u8> = Vec::with_capacity(1 << 12);
    // Where the search for the next terminator resumes, so a large message arriving in
    // many reads is scanned once, not once per read.
    let mut scanned = 0usize;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = match input.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut start = 0usize;
        while let Some(rel) = memchr::memmem::find(&buf[scanned.max(start)..], FRAME_END) {
            let end = scanned.max(start) + rel;
            let frame = &buf[start..end];
            let body = trim_ascii_whitespace(frame);
            if !body.is_empty() && !fast.try_answer(body, &mut answers) {
                let mut owned = Vec::with_capacity(body.len() + FRAME_END.len());
                owned.extend_from_slice(body);
                owned.extend_from_slice(FRAME_END);
                if forward.send(owned).is_err() {
                    // cln-plugin has stopped reading: the plugin is shutting down.
                    return Ok(());
                }
            }
            start = end + FRAME_END.len();
            scanned = start;
        }
        // Everything decided from this read leaves in one write.
        if !answers.is_empty() {
            stdout.write_frames(&answers)?;
            answers.clear();
        }
        buf.drain(..start);
        // Keep the last byte in view: it may be the first half of the next terminator.
        scanned = buf.len().saturating_sub(FRAME_END.len() - 1);
    }
}

fn trim_ascii_whitespace(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> FastPath {
        FastPath {
            claims: Arc::new(ClaimSet::new()),
            counters: Arc::new(Counters::default()),
        }
    }

    fn hook(id: &str, hash: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"htlc_accepted","params":{{"onion":{{"payload":"00","next_onion":"00","shared_secret":"{s}"}},"htlc":{{"short_channel_id":"1x1x1","id":0,"amount_msat":1000,"cltv_expiry":100,"cltv_expiry_relative":10,"payment_hash":"{hash}"}}}}}}"#,
            s = "11".repeat(32)
        )
    }

    #[test]
    fn unclaimed_hook_is_answered_with_its_exact_id() {
        let f = fast();
        let mut out = Vec::new();
        assert!(f.try_answer(
            hook(r#""cln:htlc_accepted#7""#, &"ab".repeat(32)).as_bytes(),
            &mut out
        ));
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("\n\n"));
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["id"], "cln:htlc_accepted#7");
        assert_eq!(v["result"]["result"], "continue");
        assert_eq!(f.counters.snapshot().htlcs_passed_through, 1);
    }

    #[test]
    fn claimed_malformed_and_other_messages_are_forwarded() {
        let f = fast();
        f.claims.claim(PaymentHash([0xab; 32]));
        let mut out = Vec::new();
        assert!(!f.try_answer(hook("1", &"ab".repeat(32)).as_bytes(), &mut out));
        assert!(!f.try_answer(hook("2", "nothex").as_bytes(), &mut out));
        assert!(!f.try_answer(
            br#"{"jsonrpc":"2.0","id":3,"method":"getmanifest","params":{}}"#,
            &mut out
        ));
        assert!(!f.try_answer(b"{not json", &mut out));
        assert!(out.is_empty());
        let c = f.counters.snapshot();
        assert_eq!((c.htlc_accepted, c.htlcs_passed_through), (2, 0));
    }

    /// Feeds the loop in awkward chunk sizes, so frames and terminators split across reads.
    struct Dribble {
        data: Vec<u8>,
        pos: usize,
        step: usize,
    }
    impl Read for Dribble {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    #[test]
    fn frames_split_across_reads_are_reassembled_in_order() {
        let mut input = String::new();
        input.push_str(r#"{"jsonrpc":"2.0","id":1,"method":"getmanifest","params":{}}"#);
        input.push_str("\n\n");
        input.push_str(&hook("2", &"cd".repeat(32)));
        input.push_str("\n\n");
        input.push_str(
            r#"{"jsonrpc":"2.0","method":"block_added","params":{"block_added":{"hash":"00","height":5}}}"#,
        );
        input.push_str("\n\n");
        for step in [1, 2, 3, 7, 64, 4096] {
            let f = fast();
            let (tx, mut rx) = mpsc::unbounded_channel();
            let stdout = SharedStdout {
                out: Mutex::new(ManuallyDrop::new(tempfile::tempfile().unwrap())),
            };
            let mut r = Dribble {
                data: input.clone().into_bytes(),
                pos: 0,
                step,
            };
            pump(&mut r, &f, &stdout, &tx).unwrap();
            let first = rx.try_recv().unwrap();
            assert!(
                first.starts_with(br#"{"jsonrpc":"2.0","id":1,"#) && first.ends_with(b"\n\n"),
                "step {step}"
            );
            let second = rx.try_recv().unwrap();
            assert!(String::from_utf8(second).unwrap().contains("block_added"));
            assert!(rx.try_recv().is_err());
            assert_eq!(f.counters.snapshot().htlcs_passed_through, 1, "step {step}");
        }
    }
}
