//! The bytes of the bots' binary pushes: LEB128 varints, length-prefixed bytes and
//! little-endian f64s. A reader checks every length against what is left before it allocates.

/// Append `v` as a LEB128 varint.
pub fn put(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// The varint at `at`, moving `at` past it.
pub fn get(data: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*at).ok_or("the data ends early")?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("a varint is longer than 64 bits".into())
}

/// A count of items that each take at least `min` bytes: refused when what is left cannot
/// hold them (so nothing is allocated for a count that cannot be true).
pub fn get_len(data: &[u8], at: &mut usize, min: usize) -> Result<usize, String> {
    let n = get(data, at)?;
    let left = data.len().saturating_sub(*at) as u64;
    if n.saturating_mul(min.max(1) as u64) > left {
        return Err(format!("{n} items in {left} bytes"));
    }
    Ok(n as usize)
}

/// Append `s` with its length.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// The string at `at` (UTF-8, at most `max` bytes).
pub fn get_str(data: &[u8], at: &mut usize, max: usize) -> Result<String, String> {
    let n = get_len(data, at, 1)?;
    if n > max {
        return Err(format!("a string of {n} bytes; at most {max}"));
    }
    let s = std::str::from_utf8(&data[*at..*at + n]).map_err(|_| "a string is not UTF-8")?;
    *at += n;
    Ok(s.to_string())
}

/// Append `v` as 8 little-endian bytes.
pub fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// The f64 at `at`.
pub fn get_f64(data: &[u8], at: &mut usize) -> Result<f64, String> {
    let b: [u8; 8] = data
        .get(*at..*at + 8)
        .and_then(|b| b.try_into().ok())
        .ok_or("the data ends early")?;
    *at += 8;
    Ok(f64::from_le_bytes(b))
}
