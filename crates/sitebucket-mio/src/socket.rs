//! The socket plumbing shared by a stream's [`Conn`](crate::conn::Conn) and a one-shot
//! control call: a non-blocking connect that tries each resolved address in turn, mio's
//! "writable, then `take_error()`" check of its result, a write queue, and closing.
//! No protocol decision lives here: callers tell their own core what happened.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::vec;

use bytes::{Buf, Bytes};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

/// A socket's life: none, connecting (with the addresses left to try), or open.
pub(crate) enum Socket {
    None,
    /// A non-blocking connect in progress, and the addresses left to try if it fails.
    Connecting {
        tcp: TcpStream,
        rest: vec::IntoIter<SocketAddr>,
    },
    Open(TcpStream),
}

impl Socket {
    /// Starts a non-blocking connect to the first address of `rest` that takes one,
    /// registered under `token` for `interest`. The error is the last address's, or
    /// `AddrNotAvailable` when there was none.
    pub(crate) fn connect(
        registry: &Registry,
        token: Token,
        interest: Interest,
        mut rest: vec::IntoIter<SocketAddr>,
    ) -> Result<Socket, io::ErrorKind> {
        let mut last = io::ErrorKind::AddrNotAvailable;
        while let Some(addr) = rest.next() {
            let started = TcpStream::connect(addr).and_then(|mut tcp| {
                registry.register(&mut tcp, token, interest)?;
                Ok(tcp)
            });
            match started {
                Ok(tcp) => return Ok(Socket::Connecting { tcp, rest }),
                Err(e) => last = e.kind(),
            }
        }
        Err(last)
    }

    /// Deregisters and drops the socket, whatever its state.
    pub(crate) fn close(&mut self, registry: &Registry) {
        match std::mem::replace(self, Socket::None) {
            Socket::None => {}
            Socket::Connecting { mut tcp, .. } | Socket::Open(mut tcp) => {
                let _ = registry.deregister(&mut tcp);
            }
        }
    }
}

/// Per mio's docs: after an event on a connecting socket, `take_error()`, then
/// `peer_addr()` tells whether the connect succeeded (`Some(Ok)`), failed (`Some(Err)`), or
/// is still in progress (`None`, a spurious event).
pub(crate) fn connect_result(tcp: &TcpStream) -> Option<io::Result<()>> {
    match tcp.take_error() {
        Ok(Some(e)) | Err(e) => Some(Err(e)),
        Ok(None) => match tcp.peer_addr() {
            Ok(_) => Some(Ok(())),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
            Err(e) => Some(Err(e)),
        },
    }
}

/// Writes what the socket takes of `out`, in order; an error means the connection is gone.
pub(crate) fn write_queue(tcp: &mut TcpStream, out: &mut VecDeque<Bytes>) -> io::Result<()> {
    while let Some(front) = out.front_mut() {
        match tcp.write(front) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                front.advance(n);
                if front.is_empty() {
                    out.pop_front();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
