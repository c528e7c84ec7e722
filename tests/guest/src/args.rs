//! A tiny `--key value` option parser.
//!
//! The binary lives in an initramfs that the test boots under TCG, so it stays small and
//! dependency-free: every option takes exactly one value (`--key value` or `--key=value`),
//! numbers are decimal or `0x` hex, and options nobody asked for are an error so that a typo in a
//! workload script fails loudly instead of silently using a default.

use crate::error::{Error, Result};

/// Options left to consume, in command-line order.
#[derive(Debug, Default)]
pub struct Options {
    pairs: Vec<(String, String)>,
}

impl Options {
    /// Splits the arguments after the subcommand into key/value pairs.
    pub fn parse<I, S>(args: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut iter = args.into_iter().map(Into::into);
        while let Some(arg) = iter.next() {
            let Some(body) = arg.strip_prefix("--") else {
                return Err(Error::Usage(format!("expected --option, got {arg:?}")));
            };
            let (key, value) = match body.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => {
                    let value = iter
                        .next()
                        .ok_or_else(|| Error::Usage(format!("--{body} needs a value")))?;
                    (body.to_string(), value)
                }
            };
            if key.is_empty() {
                return Err(Error::Usage(format!("bad option {arg:?}")));
            }
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(Error::Usage(format!("--{key} given twice")));
            }
            pairs.push((key, value));
        }
        Ok(Options { pairs })
    }

    /// Removes and returns the value of `--key`, if given.
    pub fn take(&mut self, key: &str) -> Option<String> {
        let pos = self.pairs.iter().position(|(k, _)| k == key)?;
        Some(self.pairs.remove(pos).1)
    }

    /// Removes and parses `--key` as a number, if given.
    pub fn take_u64(&mut self, key: &str) -> Result<Option<u64>> {
        self.take(key)
            .map(|v| {
                parse_u64(&v).ok_or_else(|| Error::Usage(format!("--{key}: bad number {v:?}")))
            })
            .transpose()
    }

    /// Like [`Options::take_u64`], but the option must be present.
    pub fn require_u64(&mut self, key: &str) -> Result<u64> {
        self.take_u64(key)?
            .ok_or_else(|| Error::Usage(format!("--{key} is required")))
    }

    /// Like [`Options::take_u64`], with a default and an upper bound the value must not exceed.
    pub fn u64_or(&mut self, key: &str, default: u64, max: u64) -> Result<u64> {
        let v = self.take_u64(key)?.unwrap_or(default);
        if v > max {
            return Err(Error::Usage(format!("--{key} {v} exceeds {max}")));
        }
        Ok(v)
    }

    /// Fails if any option was not consumed by the subcommand.
    pub fn finish(self) -> Result<()> {
        match self.pairs.first() {
            None => Ok(()),
            Some((k, _)) => Err(Error::Usage(format!("unknown option --{k}"))),
        }
    }
}

/// Parses a decimal or `0x`/`0X` hexadecimal number (no sign, no separators).
pub fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u64::from_str_radix(hex, 16).ok()
        }
        Some(_) => None,
        None if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("4096"), Some(4096));
        assert_eq!(parse_u64("0x100000"), Some(0x10_0000));
        assert_eq!(parse_u64("0X5aff0001"), Some(0x5aff_0001));
        assert_eq!(parse_u64("0xffffffffffffffff"), Some(u64::MAX));
        assert_eq!(parse_u64("0x1ffffffffffffffff"), None);
        assert_eq!(parse_u64("18446744073709551616"), None);
        for bad in ["", "0x", "-1", "+1", "1_000", "12a", "0xg", " 1", "1k"] {
            assert_eq!(parse_u64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn both_spellings_and_order_independence() {
        let mut o =
            Options::parse(["--read-off", "0x10", "--text=a b c", "--seed", "--5"]).unwrap();
        assert_eq!(o.take("text").as_deref(), Some("a b c"));
        // A value may itself start with dashes: it is taken verbatim after its key.
        assert_eq!(o.take("seed").as_deref(), Some("--5"));
        assert_eq!(o.require_u64("read-off").unwrap(), 0x10);
        assert!(o.take("read-off").is_none());
        o.finish().unwrap();
    }

    #[test]
    fn defaults_and_bounds() {
        let mut o = Options::parse(["--count", "5"]).unwrap();
        assert_eq!(o.u64_or("count", 1, 10).unwrap(), 5);
        assert_eq!(o.u64_or("timeout-ms", 2000, u64::MAX).unwrap(), 2000);
        let mut o = Options::parse(["--count", "11"]).unwrap();
        assert!(matches!(o.u64_or("count", 1, 10), Err(Error::Usage(_))));
    }

    #[test]
    fn errors() {
        assert!(matches!(Options::parse(["count"]), Err(Error::Usage(_))));
        assert!(matches!(Options::parse(["--count"]), Err(Error::Usage(_))));
        assert!(matches!(Options::parse(["--", "1"]), Err(Error::Usage(_))));
        assert!(matches!(
            Options::parse(["--a", "1", "--a", "2"]),
            Err(Error::Usage(_))
        ));
        let mut o = Options::parse(["--count", "x"]).unwrap();
        assert!(matches!(o.take_u64("count"), Err(Error::Usage(_))));
        let mut o = Options::parse(["--bogus", "1"]).unwrap();
        assert!(matches!(o.require_u64("count"), Err(Error::Usage(_))));
        assert!(matches!(o.finish(), Err(Error::Usage(_))));
    }
}
