//! Typed column values: how a row's text and integer columns become Rust types.
//!
//! Rows are mapped with `#[derive(sqlx::FromRow)]` over the `Any` driver (one mapping per row
//! shape, beside its column list). What the driver cannot decode by itself goes through this
//! module, in one place:
//!
//! * a status or kind column into its enum: the enum is a column type of its own (`Type` and
//!   `Decode` for `Any`), written by `text_column!` from the enum's own `as_str` (an enum the
//!   store owns is declared with its column texts by `text_enum!`);
//! * a 0/1 `INTEGER` column into `bool`: `#[sqlx(try_from = "Flag")]` (the migrations store
//!   booleans as integers on both backends);
//! * a non-negative `INTEGER` into `u32`: `#[sqlx(try_from = "Count")]`;
//! * a `|`-separated text column into `Vec<String>`: `#[sqlx(try_from = "PipeList")]`.
//!
//! The fallible step is always the `Decode` (the `try_from` conversions cannot fail), so the
//! error keeps its type; see `text_column!` for why.
//!
//! A value the type cannot hold is an [`UnexpectedValue`]; the store turns the decode error that
//! carries it into [`super::StoreError::BadValue`] naming the column and the value. Never a
//! panic, never a silent default.

use sqlx::any::{Any, AnyTypeInfo, AnyValueRef};
use sqlx::error::BoxDynError;
use sqlx::{Decode, Type};

/// A column's value that its Rust type cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not {expected}")]
pub struct UnexpectedValue {
    /// What the column should hold, e.g. "an appointment status".
    pub expected: &'static str,
    pub value: String,
}

/// Makes an enum with `fn as_str(self) -> &'static str` a text column type: it decodes as the
/// variant whose text is the column's value, else an [`UnexpectedValue`].
///
/// Through `Decode`, not the derive's `try_from`: sqlx 0.9's `FromRow` derive boxes a `try_from`
/// error as "unprintable error" (its `__spec_error!` never picks the `Error` impl), which would
/// lose the value; an error returned by `Decode` reaches the caller as it is.
macro_rules! text_column {
    ($ty:ty, $expected:literal, [$($variant:expr),+ $(,)?]) => {
        impl sqlx::Type<sqlx::Any> for $ty {
            fn type_info() -> sqlx::any::AnyTypeInfo {
                <String as sqlx::Type<sqlx::Any>>::type_info()
            }

            fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
                <String as sqlx::Type<sqlx::Any>>::compatible(ty)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Any> for $ty {
            fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <String as sqlx::Decode<sqlx::Any>>::decode(value)?;
                [$($variant),+]
                    .into_iter()
                    .find(|v: &$ty| v.as_str() == text)
                    .ok_or_else(|| {
                        Box::new($crate::store::value::UnexpectedValue {
                            expected: $expected,
                            value: text,
                        }) as sqlx::error::BoxDynError
                    })
            }
        }
    };
}
pub(crate) use text_column;

/// Declares a status or kind enum owned by the store, each variant with the text its column
/// holds: the enum, `as_str`, `Display` and serde (both the text), and [`text_column!`].
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident: $expected:literal {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        $crate::store::value::text_column!($name, $expected, [$($name::$variant),+]);
    };
}
pub(crate) use text_enum;

text_column!(
    crate::voice::events::InputKind,
    "a turn input kind",
    [
        crate::voice::events::InputKind::Speech,
        crate::voice::events::InputKind::Digits,
        crate::voice::events::InputKind::Greeting,
        crate::voice::events::InputKind::Notice,
    ]
);

text_column!(
    crate::booking::policy::ConcurrencyScope,
    "a concurrency scope (resource or business)",
    [
        crate::booking::policy::ConcurrencyScope::Resource,
        crate::booking::policy::ConcurrencyScope::Business,
    ]
);

/// Decodes as `i64` (any integer width: SQLite and PostgreSQL differ).
fn integer(value: AnyValueRef<'_>) -> Result<i64, BoxDynError> {
    <i64 as Decode<Any>>::decode(value)
}

macro_rules! integer_type {
    ($ty:ty) => {
        impl Type<Any> for $ty {
            fn type_info() -> AnyTypeInfo {
                <i64 as Type<Any>>::type_info()
            }

            fn compatible(ty: &AnyTypeInfo) -> bool {
                <i64 as Type<Any>>::compatible(ty)
            }
        }
    };
}

/// A 0/1 `INTEGER` column read as `bool` (`#[sqlx(try_from = "Flag")]`). Any other number is an
/// [`UnexpectedValue`].
#[derive(Debug, Clone, Copy)]
pub struct Flag(bool);

integer_type!(Flag);

impl<'r> Decode<'r, Any> for Flag {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        match integer(value)? {
            0 => Ok(Flag(false)),
            1 => Ok(Flag(true)),
            other => Err(Box::new(UnexpectedValue {
                expected: "0 or 1",
                value: other.to_string(),
            })),
        }
    }
}

impl From<Flag> for bool {
    fn from(f: Flag) -> bool {
        f.0
    }
}

/// A non-negative `INTEGER` column read as `u32` (`#[sqlx(try_from = "Count")]`; `Option<Count>`
/// for a nullable one). A negative or too large number is an [`UnexpectedValue`].
#[derive(Debug, Clone, Copy)]
pub struct Count(pub u32);

integer_type!(Count);

impl<'r> Decode<'r, Any> for Count {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        let n = integer(value)?;
        u32::try_from(n).map(Count).map_err(|_| {
            Box::new(UnexpectedValue {
                expected: "a count from 0 to 4294967295",
                value: n.to_string(),
            }) as BoxDynError
        })
    }
}

impl From<Count> for u32 {
    fn from(c: Count) -> u32 {
        c.0
    }
}

/// The [`UnexpectedValue`] inside a decode error, with the column it came from.
pub(super) fn unexpected_in(e: &sqlx::Error) -> Option<(String, &UnexpectedValue)> {
    let sqlx::Error::ColumnDecode { index, source } = e else {
        return None;
    };
    let unexpected = source.downcast_ref::<UnexpectedValue>()?;
    // `Row::try_get` names the column as `{:?}` of a `&str` (quoted), the derive's `try_from` as is.
    Some((index.trim_matches('"').to_string(), unexpected))
}

/// A `|`-separated text column read as a list (`#[sqlx(try_from = "PipeList")]`): trimmed,
/// empty entries dropped. Written with `join("|")`.
#[derive(Debug, Clone)]
pub struct PipeList(Vec<String>);

impl Type<Any> for PipeList {
    fn type_info() -> AnyTypeInfo {
        <String as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <String as Type<Any>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Any> for PipeList {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <String as Decode<Any>>::decode(value)?;
        Ok(PipeList(
            text.split('|')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
        ))
    }
}

impl From<PipeList> for Vec<String> {
    fn from(list: PipeList) -> Vec<String> {
        list.0
    }
}
