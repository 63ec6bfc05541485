//! [`ReadBuffer`]: a driver's pool of read blocks, handed to the core as [`Bytes`] without a
//! copy and read into again once every message sliced from them is gone.

use std::sync::{Arc, Mutex, Weak};

use bytes::{Bytes, BytesMut};

/// How many blocks whose messages are all gone a [`ReadBuffer`] keeps for its next reads.
const POOL_BLOCKS: usize = 2;

/// A driver's read buffer, whose reads [`SiteStream::handle_input_bytes`](crate::stream::SiteStream::handle_input_bytes) frames in place.
///
/// The socket reads into [`spare`](Self::spare), a block of `block_bytes`;
/// [`filled`](Self::filled) hands the bytes read over as [`Bytes`] that own the block, without
/// a copy, and the next read gets another block. The messages sliced from a read keep its
/// block alive (as with `hyper` and `bytes`); once the last of them is dropped, the block goes
/// back to this buffer and is read into again — so a stream whose parser drops each message
/// cycles through one or two blocks, and no byte is copied or zeroed twice. A block is only
/// allocated (zeroed: safe code cannot read into uninitialised memory) when none is free.
///
/// A read shorter than `copy_below` (a keep-alive, a trickle) is copied out instead and the
/// block kept for the next read, so small reads do not pin a block each. The copies are
/// carved one after another from a small block of `copy_below` bytes, itself written again
/// from its start once every copy made in it is gone: a stream of short reads allocates
/// nothing per read, nor per message sliced from one (a copy of its own per read took two
/// allocations: the copy, then a shared header when the framer sliced it), and a message
/// kept for long pins at most `copy_below` bytes.
/// The core itself copies what it keeps of a read (the start of an unfinished message), so an
/// idle connection holds no block: one buffer can serve many connections in turn (a `mio`
/// loop shares one).
///
/// Keep a message for long, and it keeps its block (up to `block_bytes`): copy it
/// (`Bytes::copy_from_slice`) to store it.
///
/// ```
/// use sitebucket_proto::ReadBuffer;
///
/// let mut buf = ReadBuffer::new(64 * 1024, 1024);
/// let room = buf.spare();
/// assert_eq!(room.len(), 64 * 1024);
/// room[..5000].fill(b'x'); // what a socket read would do
/// let read = buf.filled(5000);
/// let block = read.as_ptr();
/// assert_eq!(read.len(), 5000);
/// drop(read); // every message of the read is gone: its block is free again
/// assert_eq!(buf.spare().as_ptr(), block);
/// ```
#[derive(Debug)]
pub struct ReadBuffer {
    block_bytes: usize,
    copy_below: usize,
    /// The block the next read goes into; empty until `spare` takes one.
    block: Vec<u8>,
    /// Blocks given back by the last `Bytes` of a read, ready to be read into again.
    pool: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Where short reads are copied: the room left in the current small block.
    small: BytesMut,
}

/// A read's block inside the [`Bytes`] made of it: gives the block back to its
/// [`ReadBuffer`] (if that still exists and has room) when the last of them is dropped.
struct LentBlock {
    block: Vec<u8>,
    len: usize,
    pool: Weak<Mutex<Vec<Vec<u8>>>>,
}

impl AsRef<[u8]> for LentBlock {
    fn as_ref(&self) -> &[u8] {
        self.block.get(..self.len).unwrap_or(&[])
    }
}

impl Drop for LentBlock {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            let mut pool = lock_pool(&pool);
            if pool.len() < POOL_BLOCKS {
                pool.push(std::mem::take(&mut self.block));
            }
        }
    }
}

/// The pool is a list of blocks: still usable after a panic elsewhere.
fn lock_pool(pool: &Mutex<Vec<Vec<u8>>>) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
    pool.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ReadBuffer {
    /// Reads of up to `block_bytes` (at least 1); a read of fewer than `copy_below` bytes is
    /// copied out. No block is allocated before the first [`spare`](Self::spare).
    pub fn new(block_bytes: usize, copy_below: usize) -> Self {
        Self {
            block_bytes: block_bytes.max(1),
            copy_below,
            block: Vec::new(),
            pool: Arc::new(Mutex::new(Vec::new())),
            small: BytesMut::new(),
        }
    }

    /// Room to read into: a whole block.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.block.is_empty() {
            let free = lock_pool(&self.pool).pop();
            self.block = free.unwrap_or_else(|| vec![0; self.block_bytes]);
        }
        &mut self.block
    }

    /// The first `n` bytes of [`spare`](Self::spare), which a read just filled, as [`Bytes`]
    /// owning the block (no copy), or a copy for a short read; `n` is capped at the room
    /// there was.
    pub fn filled(&mut self, n: usize) -> Bytes {
        let len = n.min(self.block.len());
        if len < self.copy_below {
            let read = self.block.get(..len).unwrap_or(&[]);
            if self.small.capacity() < len {
                // Start the block again if every copy made in it is gone, else take a new
                // one (the old is freed with its last copy). A read is at most a block, so
                // a `copy_below` larger than a block asks no more than that.
                let size = self.copy_below.min(self.block_bytes);
                self.small.clear();
                if !self.small.try_reclaim(size) {
                    self.small = BytesMut::with_capacity(size);
                }
            }
            self.small.extend_from_slice(read);
            return self.small.split().freeze();
        }
        Bytes::from_owner(LentBlock {
            block: std::mem::take(&mut self.block),
            len,
            pool: Arc::downgrade(&self.pool),
        })
    }

    /// Frees the current block and the free ones (what was handed out lives on), as when a
    /// stream goes idle for long.
    pub fn release(&mut self) {
        self.block = Vec::new();
        self.small = BytesMut::new();
        lock_pool(&self.pool).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_buffer_hands_blocks_out_and_reuses_them_once_free() {
        let mut buf = ReadBuffer::new(100, 10);
        let room = buf.spare();
        assert_eq!(room.len(), 100);
        assert!(room.iter().all(|&b| b == 0), "a new block is zeroed");
        let a_block = room.as_ptr();
        room[..60].fill(b'a');
        let a = buf.filled(60);
        assert_eq!((a.as_ptr(), &a[..]), (a_block, &[b'a'; 60][..]), "no copy");
        // `a` is alive: the next read gets another block.
        let room = buf.spare();
        let b_block = room.as_ptr();
        assert_ne!(b_block, a_block);
        room[..30].fill(b'b');
        let b = buf.filled(30);
        let b_message = b.slice(5..15);
        drop(b);
        // A short read is copied out, and its block stays for the next read.
        let room = buf.spare();
        let c_block = room.as_ptr();
        room[..3].copy_from_slice(b"xyz");
        let c = buf.filled(3);
        assert_eq!(&c[..], b"xyz");
        assert_ne!(c.as_ptr(), c_block);
        assert_eq!(buf.spare().as_ptr(), c_block);
        // Once every slice of a read is gone, its block is read into again.
        drop(b_message);
        let whole = buf.filled(usize::MAX);
        assert_eq!(whole.len(), 100, "capped at the room there was");
        assert_eq!(buf.spare().as_ptr(), b_block);
        drop(whole);
        assert_eq!(&a[..], &[b'a'; 60][..], "what was read stays intact");
        // The pool keeps at most POOL_BLOCKS blocks.
        let reads: Vec<Bytes> = (0..5)
            .map(|_| {
                buf.spare();
                buf.filled(50)
            })
            .collect();
        drop(reads);
        assert_eq!(lock_pool(&buf.pool).len(), POOL_BLOCKS);
        // Blocks outliving their buffer are simply freed.
        let late = {
            let mut gone = ReadBuffer::new(100, 10);
            gone.spare();
            gone.filled(40)
        };
        assert_eq!(late.len(), 40);
        drop(late);
        buf.release();
        assert_eq!(lock_pool(&buf.pool).len(), 0);
        assert_eq!(ReadBuffer::new(0, 0).spare().len(), 1);
    }

    #[test]
    fn short_reads_are_carved_from_one_small_block_reused_once_its_copies_are_gone() {
        let mut buf = ReadBuffer::new(100, 10);
        let read = |buf: &mut ReadBuffer, fill: &[u8]| {
            buf.spare()[..fill.len()].copy_from_slice(fill);
            buf.filled(fill.len())
        };
        let a = read(&mut buf, b"aaaa");
        let b = read(&mut buf, b"bbbbb");
        assert_eq!((&a[..], &b[..]), (&b"aaaa"[..], &b"bbbbb"[..]));
        // One after the other in the same small block, not in the read block.
        assert_eq!(b.as_ptr(), a.as_ptr().wrapping_add(4));
        assert_ne!(a.as_ptr(), buf.spare().as_ptr());
        // No room for 3 more while `a` lives: a new small block; the old stays intact.
        let c = read(&mut buf, b"ccc");
        assert_ne!(c.as_ptr(), a.as_ptr().wrapping_add(9));
        assert_eq!(
            (&a[..], &b[..], &c[..]),
            (&b"aaaa"[..], &b"bbbbb"[..], &b"ccc"[..])
        );
        // Once the copies in a full block are gone, it is written again from its start.
        let first = c.as_ptr();
        let d = read(&mut buf, b"dddddd");
        assert_eq!(d.as_ptr(), first.wrapping_add(3));
        drop((c, d));
        let e = read(&mut buf, b"eeeeeeeee");
        assert_eq!((e.as_ptr(), &e[..]), (first, &b"eeeeeeeee"[..]));
        assert_eq!(&a[..], b"aaaa", "what was read stays intact");
        // A message sliced from a copy shares its block: no allocation of its own.
        let part = e.slice(2..5);
        assert_eq!(part.as_ptr(), first.wrapping_add(2));
        // Every read is copied when `copy_below` exceeds the block, into blocks no larger.
        let mut all = ReadBuffer::new(16, usize::MAX);
        all.spare().fill(b'z');
        assert_eq!(&all.filled(16)[..], &[b'z'; 16][..]);
    }
}
