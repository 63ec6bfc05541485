//! A validating JSON scanner of our own, and the decoder of [`Message`]s built on it.
//!
//! [`value_end`] accepts exactly the JSON that `serde_json` accepts into [`IgnoredAny`]
//! (RFC 8259: its number grammar, escapes with `\u` and four hex digits, no control bytes in
//! strings; like `IgnoredAny` it neither checks the UTF-8 of a string nor whether a `\u`
//! escape is a lone surrogate). It builds nothing: strings are skipped eight bytes at a time
//! (SWAR over `u64` words), containers with a bit stack instead of recursion. The differential
//! tests hold it to `serde_json`'s verdict.
//!
//! [`message`] walks a top-level object with it and fills the same [`Fields`] the serde
//! visitors fill, reading the hot fields (ids, texts, `created_at`, …) straight from their
//! bytes and handing any rarer value to the same serde code on the value's own bytes. It
//! answers `None` for anything it does not decide itself — input that is not valid JSON,
//! nesting deeper than [`MAX_DEPTH`], a value serde_json would reject while decoding it — and
//! the caller then runs the serde decoder, which gives the error (or, for deep nesting, the
//! message). So every answer it gives is the serde decoder's answer, and every error keeps
//! serde_json's wording and position.

use super::*;

/// Why the scanner stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reject {
    /// Not valid JSON (or, from [`message`], a value the serde decoder would reject).
    Invalid,
    /// Containers nested deeper than [`MAX_DEPTH`] inside one skipped value: valid or not,
    /// left to serde_json (which skips values to any depth).
    TooDeep,
}

/// The deepest nesting of arrays and objects [`value_end`] follows in one value.
pub(super) const MAX_DEPTH: u32 = 128;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `word` that is zero; bits above a true zero may be set too,
/// but the lowest set bit is always the first zero byte.
#[inline(always)]
fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(ONES) & !word & HIGH
}

/// The bytes of a little-endian word that end a plain run of string: `"`, `\` and, unless
/// `CONTROL_OK`, a control byte (below 0x20). The lowest set bit marks the first of them.
#[inline(always)]
fn string_stops<const CONTROL_OK: bool>(word: u64) -> u64 {
    let quote_or_backslash =
        zero_bytes(word ^ (ONES * u64::from(b'"'))) | zero_bytes(word ^ (ONES * u64::from(b'\\')));
    if CONTROL_OK {
        quote_or_backslash
    } else {
        quote_or_backslash | (word.wrapping_sub(ONES * 0x20) & !word & HIGH)
    }
}

#[inline(always)]
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// The first index at or after `at` that is not JSON whitespace.
#[inline(always)]
pub(super) fn skip_space(input: &[u8], mut at: usize) -> usize {
    while at < input.len() && is_space(input[at]) {
        at += 1;
    }
    at
}

/// The bytes that may follow a `\\` on their own: `"`, `\\`, `/`, `b`, `f`, `n`, `r`, `t`.
const SIMPLE_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    let simple = b"\"\\/bfnrt";
    while i < simple.len() {
        table[simple[i] as usize] = true;
        i += 1;
    }
    table
};

/// Given the index just past a string's opening quote, the index just past its closing
/// quote, and whether it holds an escape. `CONTROL_OK` lets control bytes through, as
/// serde_json does in a string it reads as bytes (the keys of the objects it decodes).
#[inline(always)]
fn string_end<const CONTROL_OK: bool>(
    input: &[u8],
    mut at: usize,
) -> Result<(usize, bool), Reject> {
    let mut escaped = false;
    loop {
        while let Some(chunk) = input.get(at..at + 8) {
            let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            let stops = string_stops::<CONTROL_OK>(word);
            if stops != 0 {
                at += (stops.trailing_zeros() / 8) as usize;
                break;
            }
            at += 8;
        }
        match *input.get(at).ok_or(Reject::Invalid)? {
            b'"' => return Ok((at + 1, escaped)),
            b'\\' => {
                escaped = true;
                let what = *input.get(at + 1).ok_or(Reject::Invalid)?;
                at = if SIMPLE_ESCAPE[usize::from(what)] {
                    at + 2
                } else if what == b'u' {
                    let hex = input.get(at + 2..at + 6).ok_or(Reject::Invalid)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return Err(Reject::Invalid);
                    }
                    at + 6
                } else {
                    return Err(Reject::Invalid);
                };
            }
            0..=0x1f if !CONTROL_OK => return Err(Reject::Invalid),
            // Only reached in the last few bytes, where there is no whole word to read.
            _ => at += 1,
        }
    }
}

/// The index past the digits starting at `at`.
#[inline(always)]
fn digits_end(input: &[u8], mut at: usize) -> usize {
    while at < input.len() && input[at].is_ascii_digit() {
        at += 1;
    }
    at
}

/// The end of a number starting at `at` (`-` or a digit), by serde_json's grammar.
#[inline(always)]
fn number_end(input: &[u8], mut at: usize) -> Result<usize, Reject> {
    if input[at] == b'-' {
        at += 1;
    }
    match input.get(at) {
        Some(b'0') => at += 1,
        Some(b'1'..=b'9') => at = digits_end(input, at + 1),
        _ => return Err(Reject::Invalid),
    }
    if input.get(at) == Some(&b'.') {
        let end = digits_end(input, at + 1);
        if end == at + 1 {
            return Err(Reject::Invalid);
        }
        at = end;
    }
    if matches!(input.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(input.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let end = digits_end(input, at);
        if end == at {
            return Err(Reject::Invalid);
        }
        at = end;
    }
    // "01": serde_json rejects a digit after a leading zero (nothing else can follow a
    // number but a delimiter, which the caller checks).
    if input.get(at).is_some_and(u8::is_ascii_digit) {
        return Err(Reject::Invalid);
    }
    Ok(at)
}

/// `"key"` then `:` from `at` (a key's opening quote): where its value starts (whitespace
/// skipped), the key's text between its quotes, and whether it holds escapes.
/// `CONTROL_OK` as for [`string_end`].
#[inline(always)]
fn key_then_colon<const CONTROL_OK: bool>(
    input: &[u8],
    at: usize,
) -> Result<(usize, usize, usize, bool), Reject> {
    if input.get(at) != Some(&b'"') {
        return Err(Reject::Invalid);
    }
    let (end, escaped) = string_end::<CONTROL_OK>(input, at + 1)?;
    let colon = skip_space(input, end);
    if input.get(colon) != Some(&b':') {
        return Err(Reject::Invalid);
    }
    Ok((skip_space(input, colon + 1), at + 1, end - 1, escaped))
}

/// The end of the JSON value that starts at `at` (no whitespace before it), checked as
/// serde_json checks a value it skips into [`IgnoredAny`].
pub(super) fn value_end(input: &[u8], mut at: usize) -> Result<usize, Reject> {
    // One bit per open container, 1 for an object; `depth` of them are in use.
    let mut stack: u128 = 0;
    let mut depth: u32 = 0;
    loop {
        // A value starts at `at`. Strings first, outside the `match`: they are most values,
        // and a compare is cheaper than the `match`'s jump table when it is mispredicted.
        let first = *input.get(at).ok_or(Reject::Invalid)?;
        if first == b'"' {
            at = string_end::<false>(input, at + 1)?.0;
        } else if first.is_ascii_digit() {
            at = number_end(input, at)?;
        } else {
            match first {
                b'{' => {
                    at = skip_space(input, at + 1);
                    if input.get(at) == Some(&b'}') {
                        at += 1;
                    } else {
                        if depth == MAX_DEPTH {
                            return Err(Reject::TooDeep);
                        }
                        stack = (stack << 1) | 1;
                        depth += 1;
                        at = key_then_colon::<false>(input, at)?.0;
                        continue;
                    }
                }
                b'[' => {
                    at = skip_space(input, at + 1);
                    if input.get(at) == Some(&b']') {
                        at += 1;
                    } else {
                        if depth == MAX_DEPTH {
                            return Err(Reject::TooDeep);
                        }
                        stack <<= 1;
                        depth += 1;
                        continue;
                    }
                }
                b't' => at = literal(input, at, b"true")?,
                b'f' => at = literal(input, at, b"false")?,
                b'n' => at = literal(input, at, b"null")?,
                b'-' => at = number_end(input, at)?,
                _ => return Err(Reject::Invalid),
            }
        }
        // A value ended at `at`: close the containers it ends, or go on to the next value.
        loop {
            if depth == 0 {
                return Ok(at);
            }
            at = skip_space(input, at);
            let in_object = stack & 1 == 1;
            match input.get(at) {
                Some(b',') => {
                    at = skip_space(input, at + 1);
                    if in_object {
                        at = key_then_colon::<false>(input, at)?.0;
                    }
                    break;
                }
                Some(b'}') if in_object => {}
                Some(b']') if !in_object => {}
                _ => return Err(Reject::Invalid),
            }
            at += 1;
            stack >>= 1;
            depth -= 1;
        }
    }
}

#[inline]
fn literal(input: &[u8], at: usize, word: &[u8]) -> Result<usize, Reject> {
    if input.get(at..at + word.len()) == Some(word) {
        Ok(at + word.len())
    } else {
        Err(Reject::Invalid)
    }
}

/// Whether `input` is one JSON value with optional whitespace around it, by the scanner
/// alone (see [`Reject`]).
pub(super) fn validate(input: &[u8]) -> Result<(), Reject> {
    let start = skip_space(input, 0);
    let end = value_end(input, start)?;
    if skip_space(input, end) == input.len() {
        Ok(())
    } else {
        Err(Reject::Invalid)
    }
}

/// Walks the object that starts at `at` (its `{`), calling `entry(key, escaped, value_start)`
/// for each entry; `entry` consumes the value and returns where it ends. `key` is the text
/// between the key's quotes, as sent. Returns the index past the closing `}`.
#[inline]
fn walk_object<'a>(
    input: &'a [u8],
    at: usize,
    mut entry: impl FnMut(&'a [u8], bool, usize) -> Result<usize, Reject>,
) -> Result<usize, Reject> {
    let mut at = skip_space(input, at + 1);
    if input.get(at) == Some(&b'}') {
        return Ok(at + 1);
    }
    loop {
        let (value, key_start, key_end, escaped) = key_then_colon::<true>(input, at)?;
        at = skip_space(input, entry(&input[key_start..key_end], escaped, value)?);
        match input.get(at) {
            Some(b',') => at = skip_space(input, at + 1),
            Some(b'}') => return Ok(at + 1),
            _ => return Err(Reject::Invalid),
        }
    }
}

/// One JSON value's bytes, read through serde as the only value of a map: this lets the
/// serde decoder's code for a field run on a value the scanner found.
struct OneValue<'a> {
    deserializer: serde_json::Deserializer<serde_json::de::SliceRead<'a>>,
}

impl<'a> OneValue<'a> {
    fn new(value: &'a [u8]) -> Self {
        OneValue {
            deserializer: serde_json::Deserializer::from_slice(value),
        }
    }
}

impl<'a> MapAccess<'a> for OneValue<'a> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        _: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        seed.deserialize(&mut self.deserializer)
    }
}

/// A value read through serde (see [`OneValue`]); an error is [`Reject::Invalid`].
fn through_serde<'a, T: FromJson<'a>>(value: &'a [u8]) -> Result<Option<T>, Reject> {
    lenient(&mut OneValue::new(value)).map_err(|_| Reject::Invalid)
}

/// The digits of an id: at most 19, so that they cannot overflow a `u64`.
#[inline]
fn short_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut value = 0u64;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u64::from(digit - b'0');
    }
    Some(value)
}

/// An id or a timestamp, as [`Lenient<u64>`] reads it: the common shapes here (a number, a
/// string of digits, `null`), any other through serde.
#[inline]
fn lenient_u64(value: &[u8]) -> Result<Option<u64>, Reject> {
    let fast = match value.first() {
        Some(b'n') => return Ok(None),
        Some(b'0'..=b'9') => short_digits(value),
        Some(b'"') => short_digits(&value[1..value.len() - 1]),
        _ => None,
    };
    match fast {
        Some(id) => Ok(Some(id)),
        None => through_serde(value),
    }
}

/// A string as [`Lenient<Cow<str>>`] reads it: borrowed when it has no escapes (its UTF-8
/// checked), else through serde.
#[inline]
fn lenient_str(value: &[u8]) -> Result<Option<Cow<'_, str>>, Reject> {
    match value.first() {
        Some(b'n') => Ok(None),
        Some(b'"') => {
            let inside = &value[1..value.len() - 1];
            if memchr::memchr(b'\\', inside).is_some() {
                return through_serde(value);
            }
            std::str::from_utf8(inside)
                .map(|text| Some(Cow::Borrowed(text)))
                .map_err(|_| Reject::Invalid)
        }
        _ => through_serde(value),
    }
}

/// Reads the object at `at` into `fields` (as [`Fields::read`] does), returning where it ends.
fn read_object<'a>(
    input: &'a [u8],
    at: usize,
    top: bool,
    fields: &mut Fields<'a>,
) -> Result<usize, Reject> {
    walk_object(input, at, |key, escaped, start| {
        if escaped {
            return read_escaped(input, key, start, top, fields);
        }
        let field = Field::of(key);
        if field == Field::Message && top && input.get(start) == Some(&b'{') {
            let mut inner = Fields::default();
            let end = read_object(input, start, false, &mut inner)?;
            fields.message = Some(inner.resolve_inner());
            return Ok(end);
        }
        let end = value_end(input, start)?;
        let value = &input[start..end];
        let f = &mut *fields;
        match field {
            Field::Other => {}
            Field::Id => f.id = lenient_u64(value)?,
            Field::IdStr => f.id_str = lenient_u64(value)?,
            Field::CreatedAt => f.created_at = lenient_str(value)?,
            Field::InReplyToStatusId => f.in_reply_to_status_id = lenient_u64(value)?,
            Field::InReplyToStatusIdStr => f.in_reply_to_status_id_str = lenient_u64(value)?,
            Field::QuotedStatusId => f.quoted_status_id = lenient_u64(value)?,
            Field::QuotedStatusIdStr => f.quoted_status_id_str = lenient_u64(value)?,
            Field::TimestampMs => f.timestamp_ms = lenient_u64(value)?,
            Field::ForUser if top => f.for_user = lenient_u64(value)?,
            field => match field.span() {
                Some(span) => f.put_span(span, Some(value)),
                None => f
                    .value(field, key, top, &mut OneValue::new(value), input)
                    .map_err(|_| Reject::Invalid)?,
            },
        }
        Ok(end)
    })
}

/// An entry whose key has escapes: the key decoded and the value read through serde, as
/// [`Fields::read`] reads them (rare: no key the decoder looks for needs an escape).
fn read_escaped<'a>(
    input: &'a [u8],
    key: &'a [u8],
    start: usize,
    top: bool,
    fields: &mut Fields<'a>,
) -> Result<usize, Reject> {
    // The key's quotes are just outside `key`, which borrows from `input`.
    let key_start = key.as_ptr() as usize - input.as_ptr() as usize;
    let quoted = &input[key_start - 1..key_start + key.len() + 1];
    let Key(key) = serde_json::from_slice::<Key<'a>>(quoted).map_err(|_| Reject::Invalid)?;
    let end = value_end(input, start)?;
    let mut one = OneValue::new(&input[start..end]);
    let field = Field::of(&key);
    match field.span() {
        Some(span) => {
            let raw = one
                .next_value::<&'a RawValue>()
                .map_err(|_| Reject::Invalid)?;
            fields.put_span(span, Some(raw.get().as_bytes()));
        }
        None => fields
            .value(field, &key, top, &mut one, input)
            .map_err(|_| Reject::Invalid)?,
    }
    Ok(end)
}

/// Decodes a message with the scanner, or `None` when only the serde decoder can tell (see
/// the module docs).
pub(super) fn message(input: &[u8]) -> Option<Message<'_>> {
    let start = skip_space(input, 0);
    if input.get(start) != Some(&b'{') {
        return None;
    }
    let mut fields = Fields::default();
    let end = read_object(input, start, true, &mut fields).ok()?;
    if skip_space(input, end) != input.len() {
        return None;
    }
    assemble(input, fields.resolve_top()).ok()
}
