//! The small toolkit every message module is built from: a typed decode
//! error that says what is wrong and where, nom field parsers that produce
//! that error instead of nom's generic one, and a little-endian writer.
//!
//! All integers pmxcfs puts on the wire are in host order, which on every
//! Proxmox VE platform (x86_64, arm64) is little-endian.

use std::fmt;

use byteorder::{ByteOrder, LittleEndian};
use nom::error::ParseError;
use nom::number::complete as num;

/// What is wrong with a field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input ends before the field does.
    Truncated { needed: usize, available: usize },
    /// A length the receiving C node checks exactly does not match.
    LengthMismatch { expected: usize, actual: usize },
    /// The input is shorter than the minimum the receiving C node accepts.
    TooShort { minimum: usize, actual: usize },
    /// A string the receiver expects NUL-terminated at its last byte is not.
    MissingNul,
    /// A string contains a byte the receiver refuses (e.g. a newline or an
    /// embedded NUL in a token).
    ForbiddenByte { byte: u8 },
    /// A value the receiving C node refuses.
    InvalidValue { value: u64 },
    /// Bytes are left after a message that must end here.
    TrailingBytes { count: usize },
    /// A ring-buffer walk that never ends (a `prev` cycle).
    Cycle,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Truncated { needed, available } => {
                write!(f, "truncated: needs {needed} bytes, {available} left")
            }
            ErrorKind::LengthMismatch { expected, actual } => {
                write!(f, "length mismatch: expected {expected}, got {actual}")
            }
            ErrorKind::TooShort { minimum, actual } => {
                write!(
                    f,
                    "too short: at least {minimum} bytes required, got {actual}"
                )
            }
            ErrorKind::MissingNul => write!(f, "not NUL-terminated"),
            ErrorKind::ForbiddenByte { byte } => write!(f, "forbidden byte 0x{byte:02x}"),
            ErrorKind::InvalidValue { value } => write!(f, "invalid value {value}"),
            ErrorKind::TrailingBytes { count } => write!(f, "{count} unexpected trailing bytes"),
            ErrorKind::Cycle => write!(f, "entry chain loops"),
        }
    }
}

/// A decode failure: which message, which field, at which byte offset of the
/// input handed to `decode`, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError {
    pub message: &'static str,
    pub field: &'static str,
    pub offset: usize,
    pub kind: ErrorKind,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: field `{}` at offset {}: {}",
            self.message, self.field, self.offset, self.kind
        )
    }
}

impl std::error::Error for WireError {}

/// The nom error type of this crate: it remembers where in the input the
/// failing field starts, so [`decode_frame`] can turn it into an offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fail<'a> {
    pub at: &'a [u8],
    pub field: &'static str,
    pub kind: ErrorKind,
}

impl<'a> ParseError<&'a [u8]> for Fail<'a> {
    fn from_error_kind(input: &'a [u8], _kind: nom::error::ErrorKind) -> Self {
        Fail {
            at: input,
            field: "?",
            kind: ErrorKind::Truncated {
                needed: 1,
                available: input.len(),
            },
        }
    }

    fn append(_input: &'a [u8], _kind: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
}

/// Result of a parser of this crate.
pub type PResult<'a, T> = nom::IResult<&'a [u8], T, Fail<'a>>;

/// Build the nom error for a field that starts at `at`.
pub fn fail<'a>(at: &'a [u8], field: &'static str, kind: ErrorKind) -> nom::Err<Fail<'a>> {
    nom::Err::Error(Fail { at, field, kind })
}

fn truncated<'a>(at: &'a [u8], field: &'static str, needed: usize) -> nom::Err<Fail<'a>> {
    fail(
        at,
        field,
        ErrorKind::Truncated {
            needed,
            available: at.len(),
        },
    )
}

pub fn u8_field(field: &'static str) -> impl Fn(&[u8]) -> PResult<'_, u8> {
    move |i| num::le_u8::<_, Fail>(i).map_err(|_| truncated(i, field, 1))
}

pub fn u16_field(field: &'static str) -> impl Fn(&[u8]) -> PResult<'_, u16> {
    move |i| num::le_u16::<_, Fail>(i).map_err(|_| truncated(i, field, 2))
}

pub fn u32_field(field: &'static str) -> impl Fn(&[u8]) -> PResult<'_, u32> {
    move |i| num::le_u32::<_, Fail>(i).map_err(|_| truncated(i, field, 4))
}

pub fn i32_field(field: &'static str) -> impl Fn(&[u8]) -> PResult<'_, i32> {
    move |i| num::le_i32::<_, Fail>(i).map_err(|_| truncated(i, field, 4))
}

pub fn u64_field(field: &'static str) -> impl Fn(&[u8]) -> PResult<'_, u64> {
    move |i| num::le_u64::<_, Fail>(i).map_err(|_| truncated(i, field, 8))
}

/// Exactly `n` bytes.
pub fn bytes_field(field: &'static str, n: usize) -> impl Fn(&[u8]) -> PResult<'_, &[u8]> {
    move |i| nom::bytes::complete::take::<_, _, Fail>(n)(i).map_err(|_| truncated(i, field, n))
}

/// A fixed-size array.
pub fn array_field<const N: usize>(field: &'static str) -> impl Fn(&[u8]) -> PResult<'_, [u8; N]> {
    move |i| {
        let (rest, bytes) = bytes_field(field, N)(i)?;
        let mut array = [0u8; N];
        array.copy_from_slice(bytes);
        Ok((rest, array))
    }
}

/// `len` bytes whose last byte must be NUL (the C receivers' check for
/// strings sent with their terminator); returns them with the NUL.
pub fn nul_terminated_field(
    field: &'static str,
    len: usize,
) -> impl Fn(&[u8]) -> PResult<'_, &[u8]> {
    move |i| {
        let (rest, bytes) = bytes_field(field, len)(i)?;
        if bytes.last() != Some(&0) {
            return Err(fail(i, field, ErrorKind::MissingNul));
        }
        Ok((rest, bytes))
    }
}

/// Everything that is left.
pub fn rest(i: &[u8]) -> PResult<'_, &[u8]> {
    Ok((&i[i.len()..], i))
}

/// Fail unless the input is exactly `expected` bytes long.
pub fn expect_len<'a>(
    i: &'a [u8],
    field: &'static str,
    expected: usize,
) -> Result<(), nom::Err<Fail<'a>>> {
    if i.len() == expected {
        Ok(())
    } else {
        Err(fail(
            i,
            field,
            ErrorKind::LengthMismatch {
                expected,
                actual: i.len(),
            },
        ))
    }
}

/// Fail unless the input holds at least `minimum` bytes.
pub fn expect_min_len<'a>(
    i: &'a [u8],
    field: &'static str,
    minimum: usize,
) -> Result<(), nom::Err<Fail<'a>>> {
    if i.len() >= minimum {
        Ok(())
    } else {
        Err(fail(
            i,
            field,
            ErrorKind::TooShort {
                minimum,
                actual: i.len(),
            },
        ))
    }
}

/// Run `parser` over a whole frame: it must consume every byte. Failures are
/// turned into a [`WireError`] whose offset counts from the frame's start.
pub fn decode_frame<'a, T>(
    message: &'static str,
    input: &'a [u8],
    parser: impl FnOnce(&'a [u8]) -> PResult<'a, T>,
) -> Result<T, WireError> {
    let offset_of = |at: &[u8]| (at.as_ptr() as usize).saturating_sub(input.as_ptr() as usize);
    match parser(input) {
        Ok((rest, value)) if rest.is_empty() => Ok(value),
        Ok((rest, _)) => Err(WireError {
            message,
            field: "end of message",
            offset: offset_of(rest),
            kind: ErrorKind::TrailingBytes { count: rest.len() },
        }),
        Err(nom::Err::Error(e)) | Err(nom::Err::Failure(e)) => Err(WireError {
            message,
            field: e.field,
            offset: offset_of(e.at),
            kind: e.kind,
        }),
        // Only streaming parsers report Incomplete; this crate uses none.
        Err(nom::Err::Incomplete(_)) => Err(WireError {
            message,
            field: "?",
            offset: input.len(),
            kind: ErrorKind::Truncated {
                needed: 1,
                available: 0,
            },
        }),
    }
}

/// A message (or message part) that decodes from and encodes to bytes, and
/// round-trips: `decode(encode(m)) == m` and, for every input `decode`
/// accepts, `encode(decode(b)) == b`.
pub trait Codec: Sized {
    /// Name used in error messages.
    const NAME: &'static str;

    /// The nom parser of the whole frame.
    fn parse(input: &[u8]) -> PResult<'_, Self>;

    /// Append the wire bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// Decode exactly one frame; every byte must belong to it.
    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode_frame(Self::NAME, bytes, Self::parse)
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Little-endian writes onto a byte vector.
pub trait Put {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_i32(&mut self, v: i32);
    fn put_u64(&mut self, v: u64);
    fn put_bytes(&mut self, v: &[u8]);
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        let mut b = [0; 2];
        LittleEndian::write_u16(&mut b, v);
        self.extend_from_slice(&b);
    }
    fn put_u32(&mut self, v: u32) {
        let mut b = [0; 4];
        LittleEndian::write_u32(&mut b, v);
        self.extend_from_slice(&b);
    }
    fn put_i32(&mut self, v: i32) {
        let mut b = [0; 4];
        LittleEndian::write_i32(&mut b, v);
        self.extend_from_slice(&b);
    }
    fn put_u64(&mut self, v: u64) {
        let mut b = [0; 8];
        LittleEndian::write_u64(&mut b, v);
        self.extend_from_slice(&b);
    }
    fn put_bytes(&mut self, v: &[u8]) {
        self.extend_from_slice(v);
    }
}

/// A length as the u32 that goes on the wire (saturating; pmxcfs never
/// sends anything near 4 GiB).
pub fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// The bytes of a C string: everything before the first NUL.
pub fn c_str(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == 0) {
        Some(n) => &bytes[..n],
        None => bytes,
    }
}
