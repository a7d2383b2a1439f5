//! The saved domain state ([`Domain::save`]) laid out in KV `state` as pieces that each fit
//! one message. Exists because one KV entry is one message, at most the broker's max payload
//! (1 MiB by default), and at 100,000 servers the alert book alone takes about 12 MB: a state
//! that outgrew one message was refused and not saved at all (issue 14).
//!
//! Layout, for the state key `K` (`domain`, or `domain.p<k>`) and a save numbered `gen` (the
//! tick's `seq`):
//! - `K.s<gen % 2>.<i>`, for `i` in `1..count`: piece `i`, a [`Piece`] `{gen, bytes}`;
//! - `K`: the head, a [`Head`] `{gen, count, first}`, written after the pieces (on one
//!   connection the broker stores them in order). The state is `first` followed by pieces
//!   `1..count` of the head's `gen`.
//!
//! Two slots alternate, so a save never overwrites the pieces of the head before it: a reader
//! that read a head has a whole tick to read its pieces. One overtaken by two saves finds a
//! piece of another `gen` and reads again ([`join`] says so). A state that fits one message is
//! its head alone (`count` 1). An entry at `K` that is not a head is a whole state written
//! before the pieces existed, and is read as it is ([`head`] returns `None`).
//!
//! [`Domain::save`]: crate::domain::Domain::save

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The entry at the state's own key: which save it is and its first piece. MessagePack map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Head {
    /// The save's number (the tick's `seq`); every piece of it carries the same.
    pub gen: u64,
    /// Pieces in all, the head's own included (at least 1).
    pub count: u32,
    /// The state's first bytes.
    #[serde(with = "serde_bytes")]
    pub first: Vec<u8>,
}

/// Piece `i` (1-based, after the head's) of a save, at `K.s<gen % 2>.<i>`. MessagePack map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Piece {
    pub gen: u64,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// Why pieces read back do not make the head's state.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JoinError {
    #[error("piece {index} of save {want} is missing")]
    Missing { index: u32, want: u64 },
    #[error("piece {index} belongs to save {found}, not {want} (a newer save overtook the read)")]
    Overtaken { index: u32, want: u64, found: u64 },
    #[error("piece {index} does not decode: {reason}")]
    Unreadable { index: u32, reason: String },
}

/// The key of piece `index` of save `gen` under state key `key`.
pub fn piece_key(key: &str, gen: u64, index: u32) -> String {
    format!("{key}.s{}.{index}", gen % 2)
}

/// The writes that save `state` under `key` as save `gen`, no value over `max_value` bytes of
/// state (at least 1 KiB; the piece's own framing adds under 20 bytes): `(key, value)` pairs,
/// pieces first and the head last, to be written in this order.
pub fn split(key: &str, state: &[u8], gen: u64, max_value: usize) -> Result<Vec<(String, Bytes)>, schemas::CodecError> {
    let size = max_value.max(1024);
    let mut chunks = state.chunks(size);
    let first = chunks.next().unwrap_or_default().to_vec();
    let mut writes = Vec::new();
    for (i, chunk) in chunks.enumerate() {
        let piece = Piece { gen, bytes: chunk.to_vec() };
        writes.push((piece_key(key, gen, i as u32 + 1), Bytes::from(schemas::encode(&piece)?)));
    }
    let head = Head { gen, count: writes.len() as u32 + 1, first };
    writes.push((key.to_string(), Bytes::from(schemas::encode(&head)?)));
    Ok(writes)
}

/// The head in the entry at a state's key; `None` when the entry is a whole state written
/// before the pieces existed.
pub fn head(entry: &[u8]) -> Option<Head> {
    schemas::decode::<Head>(entry).ok()
}

/// The state of `head` from its pieces `1..count` in order (`None`: not found), each checked
/// to belong to the head's save.
pub fn join(head: Head, pieces: Vec<Option<Bytes>>) -> Result<Vec<u8>, JoinError> {
    let mut state = head.first;
    for (i, value) in pieces.into_iter().enumerate() {
        let index = i as u32 + 1;
        let value = value.ok_or(JoinError::Missing { index, want: head.gen })?;
        let piece: Piece = schemas::decode(&value).map_err(|e| JoinError::Unreadable { index, reason: e.to_string() })?;
        if piece.gen != head.gen {
            return Err(JoinError::Overtaken { index, want: head.gen, found: piece.gen });
        }
        state.extend_from_slice(&piece.bytes);
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// Reads back what `writes` stored, as a bucket with history 1 would.
    fn read(writes: &[(String, Bytes)], key: &str) -> Result<Vec<u8>, JoinError> {
        let bucket: std::collections::HashMap<&str, &Bytes> = writes.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let h = head(bucket[key]).expect("a head");
        let pieces = (1..h.count).map(|i| bucket.get(piece_key(key, h.gen, i).as_str()).map(|b| (*b).clone())).collect();
        join(h, pieces)
    }

    #[test]
    fn a_large_state_goes_in_pieces_under_the_limit_and_joins_back() {
        let s = state(12_000_000);
        let writes = split("domain.p3", &s, 41, 1_047_552).expect("split");
        assert_eq!(writes.len(), 12, "12 MB in pieces of 1 MiB less 1 KiB");
        assert!(writes.iter().all(|(_, v)| v.len() <= 1_048_576), "every value fits the default max payload");
        assert_eq!(writes.last().map(|(k, _)| k.as_str()), Some("domain.p3"), "the head is written last");
        assert_eq!(writes[0].0, "domain.p3.s1.1");
        assert_eq!(read(&writes, "domain.p3").expect("joins"), s);
    }

    #[test]
    fn a_small_state_is_its_head_alone() {
        let s = state(5_000);
        let writes = split("domain", &s, 8, 1_047_552).expect("split");
        assert_eq!(writes.len(), 1);
        assert_eq!(head(&writes[0].1).map(|h| h.count), Some(1));
        assert_eq!(read(&writes, "domain").expect("joins"), s);
        let empty = split("domain", &[], 9, 1_047_552).expect("split");
        assert_eq!(read(&empty, "domain").expect("joins"), Vec::<u8>::new());
    }

    #[test]
    fn a_read_overtaken_by_two_saves_is_told_not_joined() {
        let key = "domain";
        let older = split(key, &state(3_000), 10, 1024).expect("split");
        let newer = split(key, &state(3_000), 12, 1024).expect("split");
        // The head of save 10, its slot since rewritten by save 12.
        let mut bucket: Vec<(String, Bytes)> = older.clone();
        bucket.extend(newer.iter().filter(|(k, _)| k != key).cloned());
        let h = head(&older.last().expect("head").1).expect("a head");
        let find = |k: &str| bucket.iter().rev().find(|(bk, _)| bk == k).map(|(_, v)| v.clone());
        let pieces = (1..h.count).map(|i| find(&piece_key(key, h.gen, i))).collect();
        assert_eq!(join(h, pieces), Err(JoinError::Overtaken { index: 1, want: 10, found: 12 }));
        // Save 11 wrote the other slot: save 10's pieces are intact.
        let between = split(key, &state(3_000), 11, 1024).expect("split");
        assert!(between.iter().all(|(k, _)| k == key || k.starts_with("domain.s1.")));
        assert!(older.iter().all(|(k, _)| k == key || k.starts_with("domain.s0.")));
    }

    #[test]
    fn a_whole_state_from_before_the_pieces_is_not_a_head() {
        #[derive(Serialize)]
        struct Saved {
            book: Vec<u32>,
            scores: Vec<u32>,
            tick_ms: Option<i64>,
        }
        let old = schemas::encode(&Saved { book: vec![1, 2], scores: vec![3], tick_ms: Some(5) }).expect("encode");
        assert_eq!(head(&old), None);
        let missing = join(Head { gen: 3, count: 2, first: vec![1] }, vec![None]);
        assert_eq!(missing, Err(JoinError::Missing { index: 1, want: 3 }));
    }
}
