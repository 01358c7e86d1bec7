//! Bounded buffering shared by the SSE scanner and the JSON reader.

/// Appends `bytes` to `buf` unless that would take it past `cap` bytes; returns whether it did.
///
/// Growth never reserves past `cap`, so the buffer's allocation stays within the cap too
/// (a plain `extend_from_slice` could double the capacity beyond it).
pub(crate) fn append_bounded(buf: &mut Vec<u8>, bytes: &[u8], cap: usize) -> bool {
    let needed = buf.len() + bytes.len();
    if needed > cap {
        return false;
    }
    if needed > buf.capacity() {
        // `needed <= cap`, so the target is never below what is needed.
        let target = needed.max(buf.capacity() * 2).max(64).min(cap);
        buf.reserve_exact(target - buf.len());
    }
    buf.extend_from_slice(bytes);
    true
}

#[cfg(test)]
mod tests {
    use super::append_bounded;

    #[test]
    fn never_grows_past_the_cap() {
        let mut buf = Vec::new();
        let mut appended = 0;
        while append_bounded(&mut buf, &[7; 300], 1000) {
            appended += 300;
            assert!(buf.capacity() <= 1000, "capacity {}", buf.capacity());
        }
        assert_eq!(appended, 900);
        assert_eq!(buf.len(), 900);
        assert!(append_bounded(&mut buf, &[1; 100], 1000));
        assert!(!append_bounded(&mut buf, &[1], 1000));
    }
}
