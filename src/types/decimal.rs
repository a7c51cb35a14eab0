//! [`Decimal`]: Python's `decimal.Decimal` as its exact text.

use derive_more::{Display, Error};

/// A decimal number kept as the exact text Python's `str(Decimal)` gives (`"1.50"`,
/// `"-1E+2"`, `"NaN"`, `"Infinity"`): no precision is lost whatever Python sent, and it is
/// sent back unchanged. Parse it into the numeric type you compute with
/// (`rust_decimal::Decimal::from_str`, `bigdecimal`, `f64`) with [`Decimal::as_str`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Display)]
#[display("{_0}")]
pub struct Decimal(String);

/// Text that is not a decimal number as Python's `Decimal` reads it.
#[derive(Debug, Clone, PartialEq, Eq, Display, Error)]
#[display("not a decimal number: {text:?}")]
pub struct DecimalError {
    /// The text that was refused.
    #[error(not(source))]
    pub text: String,
}

impl Decimal {
    /// The decimal's text, e.g. `"1.50"`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Decimal {
    type Err = DecimalError;

    /// Accepts what `str(Decimal)` produces: an optional sign, then digits with an optional
    /// point and exponent (`1.50`, `-0.001`, `1E+2`, `.5`), or `Infinity`/`Inf`/`NaN`/`sNaN`
    /// (any case, a NaN payload allowed).
    fn from_str(text: &str) -> Result<Self, DecimalError> {
        if is_decimal(text) {
            Ok(Decimal(text.to_owned()))
        } else {
            Err(DecimalError {
                text: text.to_owned(),
            })
        }
    }
}

impl TryFrom<&str> for Decimal {
    type Error = DecimalError;

    fn try_from(text: &str) -> Result<Self, DecimalError> {
        text.parse()
    }
}

/// Python `Decimal`'s grammar without whitespace and underscores (which `str()` never writes).
fn is_decimal(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let lower = unsigned.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        return true;
    }
    if let Some(payload) = lower
        .strip_prefix("snan")
        .or_else(|| lower.strip_prefix("nan"))
    {
        return payload.bytes().all(|byte| byte.is_ascii_digit());
    }
    let (mantissa, exponent) = match lower.split_once('e') {
        Some((mantissa, exponent)) => (mantissa, Some(exponent)),
        None => (lower.as_str(), None),
    };
    let digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((whole, fraction)) => {
            digits(whole) && digits(fraction) && !(whole.is_empty() && fraction.is_empty())
        }
        None => !mantissa.is_empty() && digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|exponent| {
        let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        !exponent.is_empty() && digits(exponent)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_python_str_decimal_writes() {
        for text in [
            "1.50", "-0.001", "0", "-0", "1E+2", "1.5e-7", ".5", "5.", "NaN", "-sNaN12",
            "Infinity", "-Inf",
        ] {
            assert_eq!(text.parse::<Decimal>().unwrap().as_str(), text);
        }
    }

    #[test]
    fn refuses_other_text() {
        for text in [
            "", ".", "1.2.3", "1e", "e5", "abc", "1,5", " 1", "1_000", "+",
        ] {
            assert!(text.parse::<Decimal>().is_err(), "{text:?} was accepted");
        }
    }
}
