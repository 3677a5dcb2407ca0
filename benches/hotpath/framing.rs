//! Framing shared by the floor plugin and the driver.

use super::*;

/// Reads one `\n\n`-terminated message into `buf` (without the terminator).
/// Returns `Ok(false)` on a clean end of stream.
pub(super) fn read_frame<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<bool> {
    buf.clear();
    loop {
        let start = buf.len();
        let n = r.read_until(b'\n', buf)?;
        if n == 0 {
            if buf.iter().all(u8::is_ascii_whitespace) {
                return Ok(false);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "stream ended inside a message",
            ));
        }
        if n == 1 && buf[start] == b'\n' {
            if buf[..start].iter().all(u8::is_ascii_whitespace) {
                // Blank line before any content: skip it.
                buf.clear();
                continue;
            }
            buf.truncate(start);
            return Ok(true);
        }
    }
}

pub(super) fn frame(v: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec(v).expect("serialising a Value cannot fail");
    out.extend_from_slice(b"\n\n");
    out
}
