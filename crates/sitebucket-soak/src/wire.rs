//! The soak's messages: each names the server, the connection attempt and its own place in
//! that attempt's body, and ends with a hash of everything before it, so a client can tell
//! on its own whether a message was altered, and the check can tell which were lost,
//! duplicated or reordered.
//!
//! `{"soak":[SERVER,ATTEMPT,N],"message":<a realistic Site Streams message>,"h":"<16 hex>"}`

/// The tail after the hashed part: `,"h":"` + 16 hex digits + `"}`.
const TAIL: usize = 6 + 16 + 2;

/// 64-bit FNV-1a: small, dependency-free, and enough to catch an altered byte.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `h` as 16 lowercase hex digits (`{h:016x}`), without allocating: the client checks
/// every message it receives on the stream's own thread, and the soak should not add heap
/// churn of its own to the client's it measures.
fn hex16(h: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, digit) in out.iter_mut().enumerate() {
        let nibble = (h >> (60 - 4 * i)) & 0xf;
        *digit = b"0123456789abcdef"[nibble as usize];
    }
    out
}

/// Message `n` (0-based) of attempt `attempt` on server `server`, wrapping `body`.
pub fn message(server: u8, attempt: u64, n: u64, body: &[u8]) -> Vec<u8> {
    let mut m = format!("{{\"soak\":[{server},{attempt},{n}],\"message\":").into_bytes();
    m.reserve(body.len() + TAIL);
    m.extend_from_slice(body);
    let h = fnv1a(&m);
    m.extend_from_slice(format!(",\"h\":\"{h:016x}\"}}").as_bytes());
    m
}

/// What a received message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A soak message, intact.
    Soak {
        /// Which server (0 plain, 1 TLS).
        server: u8,
        /// The attempt index on that server.
        attempt: u64,
        /// Its place in the attempt's body.
        n: u64,
    },
    /// A soak message whose hash does not match its bytes (its id as far as it reads).
    Altered {
        /// The server named, if readable.
        server: Option<u8>,
        /// The attempt named, if readable.
        attempt: Option<u64>,
    },
    /// A `disconnect` message.
    Disconnect,
    /// Anything else.
    Other,
}

/// Reads a received payload.
pub fn read(m: &[u8]) -> Received {
    if m.starts_with(b"{\"disconnect\":") {
        return Received::Disconnect;
    }
    let Some(rest) = m.strip_prefix(b"{\"soak\":[") else {
        return Received::Other;
    };
    let mut ids = [None::<u64>; 3];
    let mut at = 0;
    for slot in &mut ids {
        let digits = rest[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        *slot = std::str::from_utf8(&rest[at..at + digits])
            .ok()
            .and_then(|d| d.parse().ok());
        at += digits + 1;
        if at > rest.len() {
            break;
        }
    }
    let server = ids[0].and_then(|s| u8::try_from(s).ok());
    let intact = m.len() > TAIL && {
        let (hashed, tail) = m.split_at(m.len() - TAIL);
        tail.starts_with(b",\"h\":\"")
            && tail.ends_with(b"\"}")
            && tail[6..22] == hex16(fnv1a(hashed))
    };
    match (intact, server, ids[1], ids[2]) {
        (true, Some(server), Some(attempt), Some(n)) => Received::Soak { server, attempt, n },
        _ => Received::Altered {
            server,
            attempt: ids[1],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex16_is_format_016x() {
        for h in [0, 1, 0xabc, u64::MAX, 0x0123_4567_89ab_cdef, fnv1a(b"soak")] {
            assert_eq!(hex16(h), *format!("{h:016x}").as_bytes());
        }
    }

    #[test]
    fn a_message_reads_back_and_any_altered_byte_is_caught() {
        let body = "{\"text\":\"h\u{e9}llo \\n w\u{f6}rld\"}".as_bytes();
        let m = message(1, 12345, 7, body);
        assert_eq!(
            read(&m),
            Received::Soak {
                server: 1,
                attempt: 12345,
                n: 7
            }
        );
        for i in 0..m.len() {
            let mut bad = m.clone();
            bad[i] ^= 0x20;
            assert!(
                !matches!(
                    read(&bad),
                    Received::Soak {
                        server: 1,
                        attempt: 12345,
                        n: 7
                    }
                ),
                "byte {i} altered unnoticed"
            );
        }
        assert!(matches!(read(&m[..m.len() - 1]), Received::Altered { .. }));
        assert_eq!(read(b"{\"disconnect\":{\"code\":4}}"), Received::Disconnect);
        assert_eq!(read(b"{\"friends\":[]}"), Received::Other);
    }
}
