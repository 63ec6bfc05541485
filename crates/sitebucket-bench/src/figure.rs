//! The one-line figure format every benchmark prints:
//!
//! ```text
//! figure <name>: <value> <unit> | baseline <name>: <value> <unit> | ratio <r> | target <op> <t> | ok
//! ```
//!
//! `ratio` is always value ÷ baseline. A target on the ratio reads `target >= 0.4`; a target
//! on the value itself carries the value's unit (`target <= 64 KiB`); a figure that is only
//! reported reads `target reported` and is always `ok`. A missed target ends in `MISS`.

use std::fmt;

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `>=`
    AtLeast,
    /// `<=`
    AtMost,
}

impl Op {
    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Op::AtLeast => value >= bound,
            Op::AtMost => value <= bound,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::AtLeast => ">=",
            Op::AtMost => "<=",
        })
    }
}

/// What a figure must meet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// A bound on value ÷ baseline.
    Ratio(Op, f64),
    /// A bound on the value itself, in the value's unit.
    Value(Op, f64),
    /// No bound: the figure is reported.
    Reported,
}

/// One measured figure beside its baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// The figure's name (no spaces).
    pub name: String,
    /// The measured value.
    pub value: f64,
    /// The value's unit.
    pub unit: String,
    /// The baseline's name (no spaces).
    pub baseline: String,
    /// The baseline, measured in the same run.
    pub baseline_value: f64,
    /// The baseline's unit.
    pub baseline_unit: String,
    /// What the figure must meet.
    pub target: Target,
}

impl Figure {
    /// A figure whose baseline has the same unit as its value.
    pub fn new(
        name: &str,
        value: f64,
        unit: &str,
        baseline: &str,
        baseline_value: f64,
        target: Target,
    ) -> Self {
        Figure {
            name: name.into(),
            value,
            unit: unit.into(),
            baseline: baseline.into(),
            baseline_value,
            baseline_unit: unit.into(),
            target,
        }
    }

    /// value ÷ baseline (`NaN` when the baseline is zero).
    pub fn ratio(&self) -> f64 {
        if self.baseline_value == 0.0 {
            f64::NAN
        } else {
            self.value / self.baseline_value
        }
    }

    /// Whether the target is met.
    pub fn ok(&self) -> bool {
        match self.target {
            Target::Ratio(op, bound) => op.holds(self.ratio(), bound),
            Target::Value(op, bound) => op.holds(self.value, bound),
            Target::Reported => true,
        }
    }

    /// The figure's line (what [`Display`](fmt::Display) writes).
    pub fn line(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "figure {}: {} {} | baseline {}: {} {} | ratio {} | target ",
            self.name,
            number(self.value),
            self.unit,
            self.baseline,
            number(self.baseline_value),
            self.baseline_unit,
            number(self.ratio()),
        )?;
        match self.target {
            Target::Ratio(op, bound) => write!(f, "{op} {bound}")?,
            Target::Value(op, bound) => write!(f, "{op} {bound} {}", self.unit)?,
            Target::Reported => f.write_str("reported")?,
        }
        f.write_str(if self.ok() { " | ok" } else { " | MISS" })
    }
}

/// A number with about four significant digits, no exponent.
pub fn number(x: f64) -> String {
    if !x.is_finite() {
        return "nan".into();
    }
    let a = x.abs();
    let decimals = if a >= 1000.0 || a == 0.0 || a.fract() == 0.0 && a < 1e15 {
        0
    } else if a >= 100.0 {
        1
    } else if a >= 10.0 {
        2
    } else if a >= 1.0 {
        3
    } else {
        // Four significant digits below one.
        (3 - a.log10().floor() as i32).clamp(3, 12) as usize
    };
    format!("{x:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_target_line_has_the_issue_form() {
        let f = Figure::new(
            "pipeline_crlf",
            9123.4,
            "MB/s",
            "memmem_crlf_scan",
            18000.0,
            Target::Ratio(Op::AtLeast, 0.4),
        );
        assert_eq!(
            f.line(),
            "figure pipeline_crlf: 9123 MB/s | baseline memmem_crlf_scan: 18000 MB/s | ratio 0.5069 | target >= 0.4 | ok"
        );
        let miss = Figure {
            baseline_value: 30000.0,
            ..f
        };
        assert!(
            miss.line()
                .ends_with("| ratio 0.3041 | target >= 0.4 | MISS"),
            "{miss}"
        );
    }

    #[test]
    fn value_targets_carry_the_unit_and_reported_figures_are_ok() {
        let f = Figure::new(
            "rss",
            70.5,
            "KiB",
            "bare",
            2.0,
            Target::Value(Op::AtMost, 64.0),
        );
        assert_eq!(
            f.line(),
            "figure rss: 70.50 KiB | baseline bare: 2 KiB | ratio 35.25 | target <= 64 KiB | MISS"
        );
        let r = Figure {
            target: Target::Reported,
            ..f
        };
        assert!(r.line().ends_with("| target reported | ok"));
    }

    #[test]
    fn numbers_keep_about_four_significant_digits() {
        assert_eq!(number(0.000123456), "0.0001235");
        assert_eq!(number(0.5), "0.5000");
        assert_eq!(number(1.5), "1.500");
        assert_eq!(number(12.345), "12.35");
        assert_eq!(number(123.45), "123.5");
        assert_eq!(number(12345.6), "12346");
        assert_eq!(number(20.0), "20");
        assert_eq!(number(f64::NAN), "nan");
    }
}
