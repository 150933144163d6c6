//! The one error type of mulki-core. Variants carry the fields a user needs to find the cause.
use alloc::string::String;
use core::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum Error {
    /// A model or method config field is out of range.
    Config { field: &'static str, reason: &'static str },
    /// A tensor (by HF name) has the wrong shape.
    Shape { name: String, expected: alloc::vec::Vec<usize>, got: alloc::vec::Vec<usize> },
    /// A buffer handle points outside its arena, or an output overlaps another argument.
    Buffer { op: &'static str, reason: &'static str },
    /// A batch or sequence is larger than what the arena was sized for.
    Capacity { what: &'static str, max: usize, got: usize },
    /// An index (token id, label) is out of range.
    Index { what: &'static str, index: usize, bound: usize },
    /// A backend-specific failure (device, library), already formatted.
    Backend(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { field, reason } => write!(f, "config field `{field}`: {reason}"),
            Error::Shape { name, expected, got } => {
                write!(f, "tensor `{name}`: expected shape {expected:?}, got {got:?}")
            }
            Error::Buffer { op, reason } => write!(f, "{op}: {reason}"),
            Error::Capacity { what, max, got } => {
                write!(f, "{what} is {got}, but buffers were sized for at most {max}")
            }
            Error::Index { what, index, bound } => {
                write!(f, "{what} {index} is out of range (must be < {bound})")
            }
            Error::Backend(msg) => f.write_str(msg),
        }
    }
}

impl core::error::Error for Error {}
