//! A write-ahead log (the session journal's, `<dataDir>/journal.log`): each batch of changes is
//! appended with one `write` before the publishers it covers are acknowledged, and folded
//! into the redb tables (one fsynced transaction) every so often, after which the log
//! starts over.
//!
//! A `write` that returned is in the kernel's page cache, so a killed broker (`kill -9`, a
//! panic, the OOM killer) loses nothing it acknowledged; the log is replayed at the next
//! start. Only a power loss or kernel crash can lose what was logged since the last
//! checkpoint (at most [`crate::session::journal::CHECKPOINT_EVERY`]), like Redis'
//! `appendfsync everysec`; one fsync per batch instead would cap a persistent session at
//! about one batch per fsync (measured: ~22k msg/s here against ~200k in memory).
//!
//! Records: `GHJ1` · payload length (u32) · first 8 bytes of the payload's SHA-256 ·
//! payload. A record that is cut short or does not match its checksum ends the log: it is
//! a write the crash interrupted, never acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::{Buf, BufMut, BytesMut};

const MAGIC: &[u8; 4] = b"GHJ1";
const HEADER: usize = 16;

/// One batch: sessions whose messages all go (applied first), then puts and deletes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    pub dropped: Vec<String>,
    /// (table, key, value; `None` deletes).
    pub ops: Vec<(u8, Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.dropped.is_empty() && self.ops.is_empty()
    }

    #[cfg(test)]
    fn encode(&self) -> Vec<u8> {
        encode_parts(&self.dropped, self.ops.iter().map(|(t, k, v)| (*t, k, v)))
    }

    fn decode(mut p: &[u8]) -> Option<Batch> {
        fn bytes(p: &mut &[u8]) -> Option<Vec<u8>> {
            if p.remaining() < 4 {
                return None;
            }
            let n = p.get_u32() as usize;
            if p.remaining() < n {
                return None;
            }
            let (v, rest) = p.split_at(n);
            let v = v.to_vec();
            *p = rest;
            Some(v)
        }
        let mut batch = Batch::default();
        if p.remaining() < 4 {
            return None;
        }
        for _ in 0..p.get_u32() {
            batch.dropped.push(String::from_utf8(bytes(&mut p)?).ok()?);
        }
        if p.remaining() < 4 {
            return None;
        }
        for _ in 0..p.get_u32() {
            if p.remaining() < 1 {
                return None;
            }
            let table = p.get_u8();
            let key = bytes(&mut p)?;
            if p.remaining() < 1 {
                return None;
            }
            let value = match p.get_u8() {
                0 => None,
                1 => Some(bytes(&mut p)?),
                _ => return None,
            };
            batch.ops.push((table, key, value));
        }
        p.is_empty().then_some(batch)
    }
}

fn encode_parts<'a>(
    dropped: &[String],
    ops: impl ExactSizeIterator<Item = (u8, &'a Vec<u8>, &'a Option<Vec<u8>>)>,
) -> Vec<u8> {
    let mut p = BytesMut::new();
    p.put_u32(dropped.len() as u32);
    for d in dropped {
        p.put_u32(d.len() as u32);
        p.put_slice(d.as_bytes());
    }
    p.put_u32(ops.len() as u32);
    for (table, key, value) in ops {
        p.put_u8(table);
        p.put_u32(key.len() as u32);
        p.put_slice(key);
        match value {
            Some(v) => {
                p.put_u8(1);
                p.put_u32(v.len() as u32);
                p.put_slice(v);
            }
            None => p.put_u8(0),
        }
    }
    Vec::from(p)
}

fn checksum(payload: &[u8]) -> [u8; 8] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, payload);
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest.as_ref()[..8]);
    out
}

/// The open log.
pub struct Wal {
    file: File,
    path: PathBuf,
    len: u64,
}

impl Wal {
    /// Open (or create) the log and read its complete records; a torn tail is cut off.
    #[allow(
        clippy::disallowed_methods,
        reason = "opening the log is part of Journal::open: start-up"
    )]
    pub fn open(path: &Path) -> io::Result<(Wal, Vec<Batch>)> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let mut batches = Vec::new();
        let mut at = 0usize;
        while data.len() - at >= HEADER && &data[at..at + 4] == MAGIC {
            let len = u32::from_be_bytes([data[at + 4], data[at + 5], data[at + 6], data[at + 7]])
                as usize;
            let Some(end) = (at + HEADER).checked_add(len).filter(|e| *e <= data.len()) else {
                break;
            };
            let payload = &data[at + HEADER..end];
            if data[at + 8..at + 16] != checksum(payload) {
                break;
            }
            match Batch::decode(payload) {
                Some(b) => batches.push(b),
                None => break,
            }
            at = end;
        }
        if at < data.len() {
            tracing::warn!(
                target: "persistence",
                file = %path.display(),
                "ignoring {} bytes of an interrupted write at the end of the journal log",
                data.len() - at
            );
        }
        file.set_len(at as u64)?;
        file.seek(SeekFrom::Start(at as u64))?;
        Ok((
            Wal {
                file,
                path: path.to_owned(),
                len: at as u64,
            },
            batches,
        ))
    }

    /// Append one batch with a single `write` (no fsync: see the module docs).
    pub fn append(&mut self, batch: &Batch) -> io::Result<()> {
        let ops = batch.ops.iter().map(|(t, k, v)| (*t, k, v));
        self.append_parts(&batch.dropped, ops)
    }

    /// [`Self::append`] from borrowed parts (no copy of keys and values).
    pub fn append_parts<'a>(
        &mut self,
        dropped: &[String],
        ops: impl ExactSizeIterator<Item = (u8, &'a Vec<u8>, &'a Option<Vec<u8>>)>,
    ) -> io::Result<()> {
        let payload = encode_parts(dropped, ops);
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(MAGIC);
        record.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        record.extend_from_slice(&checksum(&payload));
        record.extend_from_slice(&payload);
        if let Err(e) = self.file.write_all(&record) {
            // Cut a partial record off, or the records after it would be unreadable.
            let _ = self.file.set_len(self.len);
            let _ = self.file.seek(SeekFrom::Start(self.len));
            return Err(e);
        }
        self.len += record.len() as u64;
        Ok(())
    }

    /// Bytes in the log.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start over, after everything logged is in the tables.
    pub fn reset(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.len = 0;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "tests write their fixtures synchronously"
)]
mod tests {
    use super::*;

    fn batch(n: u8) -> Batch {
        Batch {
            dropped: vec![format!("gone-{n}")],
            ops: vec![
                (1, vec![n, 0, 1], Some(vec![n; 40])),
                (2, b"topic".to_vec(), None),
            ],
        }
    }

    #[test]
    fn batches_come_back_in_order_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.log");
        {
            let (mut wal, old) = Wal::open(&path).unwrap();
            assert!(old.is_empty());
            wal.append(&batch(1)).unwrap();
            wal.append(&batch(2)).unwrap();
        }
        // A write interrupted halfway.
        let full = std::fs::read(&path).unwrap();
        let mut torn = full.clone();
        let third = {
            let mut w = Vec::new();
            let p = batch(3).encode();
            w.extend_from_slice(MAGIC);
            w.extend_from_slice(&(p.len() as u32).to_be_bytes());
            w.extend_from_slice(&checksum(&p));
            w.extend_from_slice(&p);
            w
        };
        torn.extend_from_slice(&third[..third.len() / 2]);
        std::fs::write(&path, &torn).unwrap();
        let (mut wal, back) = Wal::open(&path).unwrap();
        assert_eq!(back, vec![batch(1), batch(2)]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), full.len() as u64);
        wal.append(&batch(4)).unwrap();
        drop(wal);
        let (mut wal, back) = Wal::open(&path).unwrap();
        assert_eq!(back, vec![batch(1), batch(2), batch(4)]);
        wal.reset().unwrap();
        drop(wal);
        assert!(Wal::open(&path).unwrap().1.is_empty());
    }

    #[test]
    fn a_damaged_record_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.log");
        {
            let (mut wal, _) = Wal::open(&path).unwrap();
            wal.append(&batch(1)).unwrap();
            wal.append(&batch(2)).unwrap();
        }
        let mut data = std::fs::read(&path).unwrap();
        let last = data.len() - 3;
        data[last] ^= 0xff;
        std::fs::write(&path, &data).unwrap();
        assert_eq!(Wal::open(&path).unwrap().1, vec![batch(1)]);
    }
}
