//! # The seed article, audited
//!
//! The project started from a machine-written Chinese article, "RTMP流媒体服务器优化" (optimising
//! RTMP streaming servers). Its §4 states four formulas with worked examples. §1–§3 and §6 make
//! claims about TCP tuning, codecs and who uses RTMP. Most of it is wrong, and usefully so. This
//! module:
//!
//! * evaluates each formula **as written** on editable inputs (defaults: the article's §4.3
//!   numbers) and compares the result with the value the article prints;
//! * checks the units of each formula with a small dimension algebra ([`Dim`]): base dimensions
//!   bit, second, pixel, line, frame, sample and connection, with a byte taken as 8 bit;
//! * when a printed value does not reproduce, searches the sub-products of the inputs for the
//!   nearest coincidence (what the writer probably computed);
//! * lists the problems and puts the **corrected** models of `MODELS.md` §A beside each formula,
//!   evaluated on the same inputs plus a few of their own (bits per pixel, RTMP chunk size, …);
//! * lists the article's prose claims with a verdict, the correct statement and source tags.
//!
//! ## How it is used
//!
//! * `rtmp-lab seed` prints [`render_text`] of [`audit`] (also available through `Display` on
//!   [`SeedAudit`]), or its JSON.
//! * The web lab deserializes a [`SeedInputs`] from its sliders and calls [`audit_with`]. Every
//!   input struct has `#[serde(default)]`, so a partial object works. The lab then renders the
//!   [`SeedAudit`] it gets back: for each formula the row "as written / claimed / reproduces? /
//!   units / corrected", plus one card per claim. The building blocks ([`rtmp_wire_rate`],
//!   [`rtmp_message_overhead`], [`qstep_from_qp`], …) are public for finer-grained widgets.
//!
//! Nothing here panics on user-typed input. A negative, zero (where zero is meaningless) or
//! non-finite value is replaced by NaN. Every output that depends on it becomes NaN (shown as
//! "n/a"), and a [`ProblemKind::Input`] problem says which field was rejected. Every power and
//! logarithm goes through `libm`, so native and wasm builds give bit-identical numbers.

use core::fmt;
use core::ops::{Div, Mul};
use serde::{Deserialize, Serialize};

// =================================================================================================
// Dimension algebra
// =================================================================================================

/// Exponents of the base dimensions of a quantity.
///
/// Counts of things (pixels, lines, frames, samples, connections) are kept as dimensions on
/// purpose, although SI would call them dimensionless. That bookkeeping is what shows `w·h·q·f` to
/// be a pixel rate and `s·L` to be a number of samples. A byte is 8 bit (a scale, not a dimension).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dim {
    pub bit: i8,
    pub second: i8,
    pub pixel: i8,
    pub line: i8,
    pub frame: i8,
    pub sample: i8,
    pub connection: i8,
}

impl Dim {
    /// Dimensionless (a pure number, e.g. a quantizer step or a ratio).
    pub const ONE: Dim = Dim {
        bit: 0,
        second: 0,
        pixel: 0,
        line: 0,
        frame: 0,
        sample: 0,
        connection: 0,
    };
    pub const BIT: Dim = Dim { bit: 1, ..Dim::ONE };
    pub const SECOND: Dim = Dim {
        second: 1,
        ..Dim::ONE
    };
    pub const PIXEL: Dim = Dim {
        pixel: 1,
        ..Dim::ONE
    };
    pub const LINE: Dim = Dim {
        line: 1,
        ..Dim::ONE
    };
    pub const FRAME: Dim = Dim {
        frame: 1,
        ..Dim::ONE
    };
    pub const SAMPLE: Dim = Dim {
        sample: 1,
        ..Dim::ONE
    };
    pub const CONNECTION: Dim = Dim {
        connection: 1,
        ..Dim::ONE
    };

    /// The reciprocal dimension (exponents negated, saturating).
    pub fn recip(self) -> Dim {
        Dim::ONE / self
    }

    /// `true` for a pure number.
    pub fn is_dimensionless(&self) -> bool {
        *self == Dim::ONE
    }

    fn zip(self, o: Dim, f: impl Fn(i8, i8) -> i8) -> Dim {
        Dim {
            bit: f(self.bit, o.bit),
            second: f(self.second, o.second),
            pixel: f(self.pixel, o.pixel),
            line: f(self.line, o.line),
            frame: f(self.frame, o.frame),
            sample: f(self.sample, o.sample),
            connection: f(self.connection, o.connection),
        }
    }

    fn exponents(&self) -> [(&'static str, i8); 7] {
        [
            ("bit", self.bit),
            ("pixel", self.pixel),
            ("line", self.line),
            ("sample", self.sample),
            ("frame", self.frame),
            ("connection", self.connection),
            ("s", self.second),
        ]
    }

    /// Readable symbol such as `bit/s`, `pixel/s`, `bit·sample/s` or `bit/(s·connection)`.
    pub fn symbol(&self) -> String {
        self.symbol_with("bit")
    }

    /// Like [`Dim::symbol`] but naming the bit dimension `bit_name` (e.g. "byte" after ÷8).
    fn symbol_with(&self, bit_name: &str) -> String {
        let mut num: Vec<String> = Vec::new();
        let mut den: Vec<String> = Vec::new();
        for (name, e) in self.exponents() {
            let name = if name == "bit" { bit_name } else { name };
            let term = |e: i8| {
                if e == 1 {
                    name.to_string()
                } else {
                    format!("{name}^{e}")
                }
            };
            if e > 0 {
                num.push(term(e));
            } else if e < 0 {
                den.push(term(e.saturating_neg()));
            }
        }
        let n = if num.is_empty() {
            "1".to_string()
        } else {
            num.join("·")
        };
        match den.len() {
            0 => n,
            1 => format!("{n}/{}", den[0]),
            _ => format!("{n}/({})", den.join("·")),
        }
    }
}

impl Mul for Dim {
    type Output = Dim;
    fn mul(self, o: Dim) -> Dim {
        self.zip(o, |a, b| a.saturating_add(b))
    }
}

impl Div for Dim {
    type Output = Dim;
    fn div(self, o: Dim) -> Dim {
        self.zip(o, |a, b| a.saturating_sub(b))
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.symbol())
    }
}

/// How the factors of a formula are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Combine {
    Product,
    Sum,
}

/// One input of a formula: its value as typed in the article's units, and its dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Factor {
    /// Symbol in the article's formula (`w`, `R_v`, …).
    pub symbol: String,
    /// What the article says it is.
    pub meaning: String,
    /// Value in the unit the article types (`128` for 128 kbps).
    pub value: f64,
    /// That unit (`kbps`, `pixel/line`, …).
    pub unit: String,
    /// Value in base units (bit, second, pixel, …): `value × scale`.
    pub base_value: f64,
    /// Dimension in base units; `None` when the term is not a physical quantity at all.
    pub dim: Option<Dim>,
    /// [`Dim::symbol`] of `dim`, or why there is none.
    pub dim_text: String,
}

fn factor(
    symbol: &str,
    meaning: &str,
    value: f64,
    unit: &str,
    scale: f64,
    dim: Option<Dim>,
) -> Factor {
    Factor {
        symbol: symbol.to_string(),
        meaning: meaning.to_string(),
        value,
        unit: unit.to_string(),
        base_value: value * scale,
        dim_text: match dim {
            Some(d) => d.symbol(),
            None => "none: a policy, not a quantity".to_string(),
        },
        dim,
    }
}

/// Combines the dimensions of `factors`: a product multiplies them; a sum needs all terms to be
/// quantities of the same dimension. `Err` says why the combination is meaningless.
pub fn combine_dims(how: Combine, factors: &[Factor]) -> Result<Dim, String> {
    match how {
        Combine::Product => {
            let mut d = Dim::ONE;
            for f in factors {
                match f.dim {
                    Some(x) => d = d * x,
                    None => {
                        return Err(format!(
                            "{} is not a quantity, so the product has no unit",
                            f.symbol
                        ))
                    }
                }
            }
            Ok(d)
        }
        Combine::Sum => {
            let mut first: Option<(Dim, &str)> = None;
            for f in factors {
                let Some(x) = f.dim else {
                    return Err(format!(
                        "category error: {} ({}) is not a quantity and cannot be added to a rate",
                        f.symbol, f.meaning
                    ));
                };
                match first {
                    None => first = Some((x, &f.symbol)),
                    Some((d0, s0)) if d0 != x => {
                        return Err(format!(
                            "cannot add {} [{}] to {} [{}]: different dimensions",
                            f.symbol, x, s0, d0
                        ))
                    }
                    Some(_) => {}
                }
            }
            Ok(first.map(|(d, _)| d).unwrap_or(Dim::ONE))
        }
    }
}

/// Result of checking the units of a formula as written against what the article says it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimensionCheck {
    pub combine: Combine,
    /// Dimension of the formula as written; `None` for a category error.
    pub derived: Option<Dim>,
    pub derived_text: String,
    /// Dimension of what the article says the result is.
    pub expected: Dim,
    /// E.g. "byte/frame (= 8 bit/frame)".
    pub expected_text: String,
    /// The article's own description of the quantity.
    pub article_says: String,
    /// `true` when derived and expected dimensions agree.
    pub consistent: bool,
    /// derived ÷ expected, the factor by which the units are off (empty when consistent).
    pub residual_text: String,
    /// One-line verdict on the units.
    pub note: String,
}

fn check_dimensions(
    how: Combine,
    factors: &[Factor],
    expected: Dim,
    expected_text: &str,
    article_says: &str,
) -> DimensionCheck {
    let (derived, derived_text, consistent, residual_text, note) = match combine_dims(how, factors)
    {
        Ok(d) => {
            let ok = d == expected;
            let residual = if ok {
                String::new()
            } else {
                (d / expected).symbol()
            };
            let note = if ok {
                format!("consistent: {} is {}", d, expected_text)
            } else {
                format!(
                    "MISMATCH: as written the result is {}, but the article calls it {} \
                     (off by a factor of {})",
                    d, expected_text, residual
                )
            };
            (Some(d), d.symbol(), ok, residual, note)
        }
        Err(why) => (
            None,
            "undefined".to_string(),
            false,
            String::new(),
            format!("MISMATCH: {why}"),
        ),
    };
    DimensionCheck {
        combine: how,
        derived,
        derived_text,
        expected,
        expected_text: expected_text.to_string(),
        article_says: article_says.to_string(),
        consistent,
        residual_text,
        note,
    }
}

// =================================================================================================
// Shared output types
// =================================================================================================

/// How wrong a claim or formula is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// False as stated.
    Wrong,
    /// Contains something true but leads the reader to a false conclusion.
    Misleading,
    /// True for part of what it covers.
    PartlyTrue,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Wrong => "WRONG",
            Verdict::Misleading => "MISLEADING",
            Verdict::PartlyTrue => "PARTLY TRUE",
        }
    }
}

/// Category of a problem found in a formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProblemKind {
    /// The units do not match what the quantity is said to be.
    Units,
    /// The printed number does not follow from the inputs.
    Arithmetic,
    /// Quantities of different kinds are combined (e.g. a policy added to a rate).
    Category,
    /// The physics or engineering model is wrong or applies only in a narrow case.
    Model,
    /// An input is far outside real-world values.
    Magnitude,
    /// A user-supplied input was rejected (negative, zero where not allowed, non-finite).
    Input,
}

impl ProblemKind {
    fn tag(self) -> &'static str {
        match self {
            ProblemKind::Units => "units",
            ProblemKind::Arithmetic => "arithmetic",
            ProblemKind::Category => "category",
            ProblemKind::Model => "model",
            ProblemKind::Magnitude => "magnitude",
            ProblemKind::Input => "input",
        }
    }
}

/// One problem with a formula, in plain language, numbers computed from the inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub text: String,
}

fn problem(kind: ProblemKind, text: String) -> Problem {
    Problem { kind, text }
}

/// A computed number with its formula, unit and a formatted rendering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub label: String,
    pub formula: String,
    /// Value in `unit` (base units unless the unit says otherwise).
    pub value: f64,
    pub unit: String,
    /// Human-readable rendering, e.g. "746.5 Mb/s".
    pub text: String,
}

fn figure(label: &str, formula: &str, value: f64, unit: &str, text: String) -> Figure {
    Figure {
        label: label.to_string(),
        formula: formula.to_string(),
        value,
        unit: unit.to_string(),
        text,
    }
}

/// A corrected model placed beside a formula, evaluated on the same inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorrectedModel {
    pub title: String,
    pub formula: String,
    pub value: f64,
    pub unit: String,
    pub value_text: String,
    pub explanation: String,
    /// Further numbers derived by the same model.
    pub extras: Vec<Figure>,
    pub sources: Vec<String>,
}

/// The formula's result as written, in the article's typed units and in base units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AsWritten {
    /// Product (or sum) of the numbers as typed, e.g. 128 × 44.1 × 60 = 338,688.
    pub typed_value: f64,
    /// Unit of `typed_value`, e.g. "kbps·kHz·s".
    pub typed_unit: String,
    /// The same in base units (prefixes expanded), e.g. 3.39e11.
    pub base_value: f64,
    /// [`Dim::symbol`] of the derived dimension, e.g. "bit·sample/s".
    pub base_unit: String,
    pub text: String,
}

/// The value the article prints for a worked example (data, not computed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimedValue {
    /// As printed, e.g. "58.29 × 10^6 bytes".
    pub printed: String,
    pub value: f64,
    pub unit: String,
}

/// A sub-product of the inputs that lands near a claimed value that does not reproduce.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coincidence {
    /// E.g. "s·L" or "b·L/8".
    pub expression: String,
    pub value: f64,
    /// Dimension of the expression, e.g. "sample".
    pub unit: String,
    /// value ÷ claimed − 1.
    pub relative_difference: f64,
}

/// The full audit of one formula.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FormulaAudit {
    /// "A1" … "A4" (the numbering of MODELS.md §A).
    pub id: String,
    pub title: String,
    /// Where it is in the article.
    pub section: String,
    /// The formula exactly as printed.
    pub formula: String,
    /// The worked example as printed (original Chinese/LaTeX).
    pub original_zh: String,
    /// What the article says the result is, in English.
    pub article_meaning: String,
    pub inputs: Vec<Factor>,
    pub as_written: AsWritten,
    pub claimed: ClaimedValue,
    /// `true` when the printed value follows from the inputs (relative tolerance
    /// [`REPRODUCE_TOLERANCE`], typed or base units).
    pub reproduces: bool,
    /// As-written value ÷ claimed value, compared in the claim's own unit where the article's
    /// typed units match it (A1, A2, A4) and in base units otherwise (A3).
    pub claim_ratio: f64,
    /// Nearest sub-products of the inputs to the claim (only when it does not reproduce).
    pub coincidences: Vec<Coincidence>,
    pub dimensions: DimensionCheck,
    pub problems: Vec<Problem>,
    pub verdict: Verdict,
    /// The corrected model(s); the first is the direct replacement.
    pub corrected: Vec<CorrectedModel>,
    pub sources: Vec<String>,
}

/// Relative tolerance for "the printed value reproduces" (0.1%, looser than the article's 4
/// printed significant digits).
pub const REPRODUCE_TOLERANCE: f64 = 1e-3;

fn close(a: f64, b: f64) -> bool {
    a.is_finite() && b.is_finite() && (a - b).abs() <= REPRODUCE_TOLERANCE * b.abs().max(1e-300)
}

/// `min` that propagates NaN (f64::min would hide an invalid input).
fn min_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a < b {
        a
    } else {
        b
    }
}

/// Sub-products of the factors (all non-empty subsets except the full product itself, plus ÷8 for
/// those that carry bits) closest to `claimed`, best first (at most `keep`).
fn coincidences(factors: &[Factor], claimed: f64, keep: usize) -> Vec<Coincidence> {
    let n = factors.len().min(12);
    if !(claimed.is_finite() && claimed > 0.0) {
        return Vec::new();
    }
    let mut found: Vec<(f64, Coincidence)> = Vec::new();
    for mask in 1u32..(1u32 << n) {
        let mut value = 1.0;
        let mut dim = Dim::ONE;
        let mut names: Vec<&str> = Vec::new();
        let mut is_quantity = true;
        for (i, f) in factors.iter().enumerate().take(n) {
            if mask & (1 << i) != 0 {
                value *= f.base_value;
                match f.dim {
                    Some(d) => dim = dim * d,
                    None => is_quantity = false,
                }
                names.push(&f.symbol);
            }
        }
        if !is_quantity {
            continue;
        }
        let full = mask == (1u32 << n) - 1;
        let expr = names.join("·");
        let mut variants: Vec<(String, f64, String)> = Vec::new();
        if !full {
            variants.push((expr.clone(), value, dim.symbol()));
        }
        if dim.bit > 0 {
            variants.push((format!("{expr}/8"), value / 8.0, dim.symbol_with("byte")));
        }
        for (expression, v, unit) in variants {
            if !(v.is_finite() && v > 0.0) {
                continue;
            }
            let score = libm::fabs(libm::log(v / claimed));
            found.push((
                score,
                Coincidence {
                    expression,
                    value: v,
                    unit,
                    relative_difference: v / claimed - 1.0,
                },
            ));
        }
    }
    found.sort_by(|a, b| a.0.total_cmp(&b.0));
    found.into_iter().take(keep).map(|(_, c)| c).collect()
}

/// Rejects bad user input: the replacement is NaN and a problem note is recorded.
struct InputGuard {
    prefix: &'static str,
    problems: Vec<Problem>,
}

impl InputGuard {
    fn new(prefix: &'static str) -> Self {
        InputGuard {
            prefix,
            problems: Vec::new(),
        }
    }
    fn reject(&mut self, name: &str, x: f64, rule: &str) -> f64 {
        self.problems.push(problem(
            ProblemKind::Input,
            format!(
                "{}.{} = {}: must be {}; results that use it are n/a",
                self.prefix,
                name,
                fmt_num(x),
                rule
            ),
        ));
        f64::NAN
    }
    /// Finite and ≥ 0.
    fn nonneg(&mut self, name: &str, x: f64) -> f64 {
        if x.is_finite() && x >= 0.0 {
            x
        } else {
            self.reject(name, x, "a finite number ≥ 0")
        }
    }
    /// Finite and > 0.
    fn positive(&mut self, name: &str, x: f64) -> f64 {
        if x.is_finite() && x > 0.0 {
            x
        } else {
            self.reject(name, x, "a finite number > 0")
        }
    }
    /// Finite (any sign).
    fn finite(&mut self, name: &str, x: f64) -> f64 {
        if x.is_finite() {
            x
        } else {
            self.reject(name, x, "a finite number")
        }
    }
}

// =================================================================================================
// Number formatting
// =================================================================================================

fn nonfinite(x: f64) -> Option<String> {
    if x.is_nan() {
        Some("n/a".to_string())
    } else if x.is_infinite() {
        Some(if x > 0.0 { "∞" } else { "-∞" }.to_string())
    } else {
        None
    }
}

/// Decimal exponent of |x| (x finite, non-zero), clamped to a safe range.
fn exp10(x: f64) -> i32 {
    let e = libm::floor(libm::log10(libm::fabs(x)));
    if e.is_finite() {
        e.clamp(-400.0, 400.0) as i32
    } else {
        0
    }
}

fn trim_zeros(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `x` with `digits` significant digits, trailing zeros trimmed (no exponent).
pub fn fmt_sig(x: f64, digits: i32) -> String {
    if let Some(s) = nonfinite(x) {
        return s;
    }
    if x == 0.0 {
        return "0".to_string();
    }
    let e = exp10(x);
    let decimals = (digits - 1 - e).clamp(0, 12) as usize;
    trim_zeros(format!("{:.*}", decimals, x))
}

/// Scientific notation with 3 significant digits: `6.22e9`, `2.65e6`, `1e8`.
pub fn fmt_sci(x: f64) -> String {
    if let Some(s) = nonfinite(x) {
        return s;
    }
    if x == 0.0 {
        return "0".to_string();
    }
    let mut e = exp10(x);
    let mut m = x / libm::pow(10.0, e as f64);
    if !m.is_finite() {
        return format!("{x:e}");
    }
    let mut ms = format!("{m:.2}");
    if ms.trim_start_matches('-').starts_with("10") {
        e += 1;
        m = x / libm::pow(10.0, e as f64);
        ms = format!("{m:.2}");
    }
    format!("{}e{}", trim_zeros(ms), e)
}

fn group_digits(int_str: &str) -> String {
    let (sign, digits) = match int_str.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", int_str),
    };
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// A plain number: integers below 10^15 with thousands separators (`6,220,800,000`), others with
/// 4 significant digits, very large or very small ones in scientific notation.
pub fn fmt_num(x: f64) -> String {
    if let Some(s) = nonfinite(x) {
        return s;
    }
    let ax = x.abs();
    let r = libm::round(x);
    if ax < 1e15 && (x - r).abs() <= 1e-9 * ax.max(1.0) {
        return group_digits(&format!("{r:.0}"));
    }
    if ax >= 1e6 || (ax != 0.0 && ax < 1e-3) {
        return fmt_sci(x);
    }
    if ax >= 1000.0 {
        let s = fmt_sig(x, 6);
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i.to_string(), format!(".{f}")),
            None => (s, String::new()),
        };
        return format!("{}{}", group_digits(&int), frac);
    }
    fmt_sig(x, 4)
}

/// `x` in `unit` with a decimal SI prefix and 4 significant digits: `746.5 Mb/s`, `3.11 MB`.
pub fn fmt_prefixed(x: f64, unit: &str) -> String {
    if let Some(s) = nonfinite(x) {
        return format!("{s} {unit}");
    }
    let ax = x.abs();
    for (scale, p) in [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")] {
        if ax >= scale {
            return format!("{} {p}{unit}", fmt_sig(x / scale, 4));
        }
    }
    format!("{} {unit}", fmt_sig(x, 4))
}

/// A bit rate given in bit/s: `746.5 Mb/s`.
pub fn fmt_rate(bps: f64) -> String {
    fmt_prefixed(bps, "b/s")
}

/// A size given in bytes: `3.11 MB`, `371.5 B`.
pub fn fmt_bytes(bytes: f64) -> String {
    fmt_prefixed(bytes, "B")
}

/// A fraction as a percentage with 3 significant digits: 0.00882 → `0.882%`.
pub fn fmt_pct(fraction: f64) -> String {
    if let Some(s) = nonfinite(fraction) {
        return s;
    }
    format!("{}%", fmt_sig(fraction * 100.0, 3))
}

/// A signed relative difference as a percentage: `+6.72%`.
fn fmt_rel(fraction: f64) -> String {
    let s = fmt_pct(fraction);
    if fraction.is_finite() && fraction > 0.0 {
        format!("+{s}")
    } else {
        s
    }
}

fn fmt_ms(seconds: f64) -> String {
    match nonfinite(seconds) {
        Some(s) => format!("{s} ms"),
        None => format!("{} ms", fmt_sig(seconds * 1e3, 4)),
    }
}

// =================================================================================================
// Corrected building blocks (public: the web lab can drive them directly)
// =================================================================================================

/// H.264 quantizer step for a QP: Qstep = 2^((QP − 4)/6), so it doubles every +6 QP.
pub fn qstep_from_qp(qp: f64) -> f64 {
    libm::exp2((qp - 4.0) / 6.0)
}

/// Inverse of [`qstep_from_qp`]: QP = 4 + 6·log2(Qstep) (NaN for Qstep ≤ 0).
pub fn qp_from_qstep(qstep: f64) -> f64 {
    if qstep > 0.0 {
        4.0 + 6.0 * libm::log2(qstep)
    } else {
        f64::NAN
    }
}

/// Bits at `qp` relative to bits at `qp_ref` for the same content: 2^(−(QP − QP_ref)/6)
/// (halving per +6 QP, about −11% per QP).
pub fn bits_ratio_for_qp(qp: f64, qp_ref: f64) -> f64 {
    libm::exp2(-(qp - qp_ref) / 6.0)
}

/// Size of one uncompressed frame in bytes: w·h·bpp/8 (bpp = 12 for 8-bit 4:2:0).
pub fn raw_frame_bytes(width_px: f64, height_px: f64, bits_per_pixel: f64) -> f64 {
    width_px * height_px * bits_per_pixel / 8.0
}

/// Coded video bit rate in bit/s: w·h·f·bpp_c.
pub fn coded_rate_bps(width_px: f64, height_px: f64, fps: f64, coded_bits_per_pixel: f64) -> f64 {
    width_px * height_px * fps * coded_bits_per_pixel
}

/// Bytes of a coded stream of `bitrate_bps` lasting `duration_s`: b·L/8.
pub fn stream_bytes(bitrate_bps: f64, duration_s: f64) -> f64 {
    bitrate_bps * duration_s / 8.0
}

/// PCM bit rate in bit/s: s·bits·channels (CD audio: 1,411,200 b/s).
pub fn pcm_rate_bps(sample_rate_hz: f64, bits_per_sample: f64, channels: f64) -> f64 {
    sample_rate_hz * bits_per_sample * channels
}

/// The RTMP message header form (shared with the protocol cost model in [`crate::rtmp`]).
pub use crate::rtmp::HeaderForm as MessageHeaderType;

/// FLV video tag header carried inside each RTMP video message (AVC): 1 B frame type/codec id,
/// 1 B AVCPacketType, 3 B composition time.
pub const FLV_VIDEO_TAG_BYTES: f64 = 5.0;
/// FLV audio tag header inside each RTMP audio message (AAC): 1 B sound format/rate/size/type and
/// 1 B AACPacketType.
pub const FLV_AUDIO_TAG_BYTES: f64 = 2.0;
/// Largest useful RTMP chunk size: a message is at most 0xFFFFFF bytes, so larger chunk sizes
/// behave identically.
pub const MAX_CHUNK_SIZE: f64 = 16_777_215.0;

/// Cost of carrying one media message over RTMP chunking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageOverhead {
    /// Codec payload (the frame), bytes.
    pub payload_bytes: f64,
    /// RTMP message length = payload + FLV tag header.
    pub message_bytes: f64,
    /// ⌈message / chunk size⌉.
    pub chunks: f64,
    /// Bytes added on top of the payload: basic + message header, FLV tag header, and one basic
    /// header per continuation chunk.
    pub overhead_bytes: f64,
    /// overhead ÷ payload.
    pub fraction: f64,
}

/// Overhead of one RTMP media message (MODELS.md §A4, RTMP spec §5.3).
///
/// overhead = b0 + h_msg + tag + (⌈(payload + tag)/c⌉ − 1)·b0, where b0 is the basic header
/// (1 B for chunk stream ids 2–63), h_msg the message header of the first chunk (11/7/3/0 B),
/// tag the FLV tag header and c the chunk size. Continuation chunks are fmt 3, basic header only.
/// Extended timestamps (4 B, only once timestamps pass 0xFFFFFF ms ≈ 4.7 h) are ignored.
/// A payload of 0 means no message: zero overhead. Invalid sizes give NaN.
pub fn rtmp_message_overhead(
    payload_bytes: f64,
    tag_bytes: f64,
    chunk_size: f64,
    basic_header_bytes: f64,
    header: MessageHeaderType,
) -> MessageOverhead {
    let valid = payload_bytes.is_finite()
        && payload_bytes >= 0.0
        && tag_bytes.is_finite()
        && tag_bytes >= 0.0
        && chunk_size.is_finite()
        && chunk_size >= 1.0
        && basic_header_bytes.is_finite()
        && basic_header_bytes >= 0.0;
    if !valid {
        return MessageOverhead {
            payload_bytes,
            message_bytes: f64::NAN,
            chunks: f64::NAN,
            overhead_bytes: f64::NAN,
            fraction: f64::NAN,
        };
    }
    if payload_bytes == 0.0 {
        return MessageOverhead {
            payload_bytes,
            message_bytes: 0.0,
            chunks: 0.0,
            overhead_bytes: 0.0,
            fraction: 0.0,
        };
    }
    let c = libm::floor(chunk_size.min(MAX_CHUNK_SIZE));
    let message = payload_bytes + tag_bytes;
    let chunks = libm::ceil(message / c).max(1.0);
    let overhead = basic_header_bytes
        + header.message_header_bytes() as f64
        + tag_bytes
        + (chunks - 1.0) * basic_header_bytes;
    MessageOverhead {
        payload_bytes,
        message_bytes: message,
        chunks,
        overhead_bytes: overhead,
        fraction: overhead / payload_bytes,
    }
}

/// RTMP overhead fraction ε of a video stream whose mean frame is R/(8f) bytes.
///
/// With a type-0 header (12 B with the basic header) at 4 Mb/s and 30 fps this gives 0.882% at
/// chunk size 128 and 0.126% at 4096, the figures in MODELS.md §A4. A type-1 header gives 0.858%
/// and 0.102%.
pub fn rtmp_video_overhead_fraction(
    video_bps: f64,
    fps: f64,
    chunk_size: f64,
    header: MessageHeaderType,
) -> f64 {
    let frame = if fps > 0.0 {
        video_bps / (8.0 * fps)
    } else {
        f64::NAN
    };
    rtmp_message_overhead(frame, FLV_VIDEO_TAG_BYTES, chunk_size, 1.0, header).fraction
}

/// Framing parameters of an RTMP publish on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WireParams {
    /// Video frames (= RTMP video messages) per second.
    pub fps: f64,
    /// RTMP chunk size in bytes (spec default 128; OBS and nginx-rtmp 4096; SRS 60000).
    pub chunk_size_bytes: f64,
    /// Message header on each video message. Type 0 reproduces MODELS.md's ε figures; librtmp
    /// actually sends type 1 (4 B less per frame, < 0.03 percentage points).
    pub video_header: MessageHeaderType,
    /// Message header on each audio message (type 1 gives MODELS.md's (2+8)/371 ≈ 2.7%).
    pub audio_header: MessageHeaderType,
    /// Basic header bytes (1 for chunk stream ids 2–63).
    pub basic_header_bytes: f64,
    /// Audio sample rate in Hz (sets the AAC frame rate).
    pub audio_sample_rate_hz: f64,
    /// Samples per audio frame (AAC-LC: 1024).
    pub audio_samples_per_frame: f64,
    /// TCP maximum segment size in bytes (1448 = 1500 MTU − 20 IP − 20 TCP − 12 timestamps).
    pub mss_bytes: f64,
    /// IP + TCP header bytes per segment (52 with the timestamp option).
    pub tcp_ip_header_bytes: f64,
    /// Link-layer bytes per packet (Ethernet: 14 header + 4 FCS + 8 preamble + 12 gap = 38).
    pub link_overhead_bytes: f64,
}

impl Default for WireParams {
    fn default() -> Self {
        WireParams {
            fps: 30.0,
            chunk_size_bytes: 4096.0,
            video_header: MessageHeaderType::Type0,
            audio_header: MessageHeaderType::Type1,
            basic_header_bytes: 1.0,
            audio_sample_rate_hz: 44_100.0,
            audio_samples_per_frame: 1024.0,
            mss_bytes: 1448.0,
            tcp_ip_header_bytes: 52.0,
            link_overhead_bytes: 38.0,
        }
    }
}

/// What a publish costs on the wire, step by step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireBreakdown {
    pub video_bps: f64,
    pub audio_bps: f64,
    pub meta_bps: f64,
    pub video: MessageOverhead,
    pub audio: MessageOverhead,
    /// Audio frames (messages) per second: sample rate ÷ samples per frame.
    pub audio_frames_per_s: f64,
    /// Rate after RTMP chunking: R_v(1+ε_v) + R_a(1+ε_a) + R_meta.
    pub rtmp_bps: f64,
    /// (rtmp − media) ÷ media.
    pub rtmp_overhead_fraction: f64,
    /// (MSS + TCP/IP + link) ÷ MSS, e.g. 1538/1448.
    pub wire_factor: f64,
    pub wire_bps: f64,
    /// (wire − media) ÷ media.
    pub total_overhead_fraction: f64,
}

/// R_wire = (R_v(1+ε_v) + R_a(1+ε_a) + R_meta)·(MSS + H_tcpip + H_link)/MSS (MODELS.md §A4).
///
/// Rates in bit/s. Assumes full-size segments (the sub-MSS tail of each frame would add a little
/// more) and ignores the reverse ACK stream. Invalid inputs give NaN.
pub fn rtmp_wire_rate(
    video_bps: f64,
    audio_bps: f64,
    meta_bps: f64,
    p: &WireParams,
) -> WireBreakdown {
    let nonneg = |x: f64| {
        if x.is_finite() && x >= 0.0 {
            x
        } else {
            f64::NAN
        }
    };
    let pos = |x: f64| {
        if x.is_finite() && x > 0.0 {
            x
        } else {
            f64::NAN
        }
    };
    let rv = nonneg(video_bps);
    let ra = nonneg(audio_bps);
    let rm = nonneg(meta_bps);
    let fps = pos(p.fps);
    let fa = pos(p.audio_sample_rate_hz) / pos(p.audio_samples_per_frame);
    let video = rtmp_message_overhead(
        rv / (8.0 * fps),
        FLV_VIDEO_TAG_BYTES,
        p.chunk_size_bytes,
        p.basic_header_bytes,
        p.video_header,
    );
    let audio = rtmp_message_overhead(
        if ra == 0.0 { 0.0 } else { ra / (8.0 * fa) },
        FLV_AUDIO_TAG_BYTES,
        p.chunk_size_bytes,
        p.basic_header_bytes,
        p.audio_header,
    );
    let media = rv + ra + rm;
    let rtmp = rv * (1.0 + video.fraction) + ra * (1.0 + audio.fraction) + rm;
    let mss = pos(p.mss_bytes);
    let wire_factor = (mss + nonneg(p.tcp_ip_header_bytes) + nonneg(p.link_overhead_bytes)) / mss;
    let wire = rtmp * wire_factor;
    let frac = |x: f64| if media > 0.0 { x / media - 1.0 } else { 0.0 };
    WireBreakdown {
        video_bps: rv,
        audio_bps: ra,
        meta_bps: rm,
        video,
        audio,
        audio_frames_per_s: fa,
        rtmp_bps: rtmp,
        rtmp_overhead_fraction: frac(rtmp),
        wire_factor,
        wire_bps: wire,
        total_overhead_fraction: frac(wire),
    }
}

/// VBV/HRD bound on what an encoder may emit in any window of τ seconds: R_max·τ + B (bits).
pub fn vbv_bound_bits(max_rate_bps: f64, window_s: f64, buffer_bits: f64) -> f64 {
    max_rate_bps * window_s + buffer_bits
}

// =================================================================================================
// Inputs
// =================================================================================================

/// Inputs of A1, R = n·r (defaults: the article's §4.3 example), plus the corrected model's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct A1Inputs {
    /// n: number of TCP connections (the article: 100).
    pub connections: f64,
    /// r: rate of each connection in Mb/s (the article: 1).
    pub rate_per_connection_mbps: f64,
    /// C: capacity of the shared bottleneck / the server's NIC, Mb/s (corrected model).
    pub bottleneck_mbps: f64,
    /// o: egress headroom on top of N·r (Wowza's sizing rule: 0.2).
    pub egress_overhead: f64,
}

impl Default for A1Inputs {
    fn default() -> Self {
        A1Inputs {
            connections: 100.0,
            rate_per_connection_mbps: 1.0,
            bottleneck_mbps: 1000.0,
            egress_overhead: 0.2,
        }
    }
}

/// Inputs of A2, S = w·h·q·f, plus the corrected models' own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct A2Inputs {
    /// w: frame width in pixels (the article: 1920).
    pub width_px: f64,
    /// h: frame height in lines (the article: 1080).
    pub height_px: f64,
    /// q: "quantization step" (the article: 100).
    pub quant_step: f64,
    /// f: frame rate (the article: 30).
    pub fps: f64,
    /// Bits per pixel of uncompressed video (12 for 8-bit 4:2:0, 16 for 4:2:2, 24 for 4:4:4).
    pub raw_bits_per_pixel: f64,
    /// Coded bits per pixel at `reference_qp` (live H.264 runs at about 0.05–0.1).
    pub coded_bits_per_pixel: f64,
    /// QP at which `coded_bits_per_pixel` holds (23 = x264's default CRF).
    pub reference_qp: f64,
    /// A platform's ingest limit for comparison, kb/s (Twitch: 6000).
    pub platform_cap_kbps: f64,
}

impl Default for A2Inputs {
    fn default() -> Self {
        A2Inputs {
            width_px: 1920.0,
            height_px: 1080.0,
            quant_step: 100.0,
            fps: 30.0,
            raw_bits_per_pixel: 12.0,
            coded_bits_per_pixel: 0.1,
            reference_qp: 23.0,
            platform_cap_kbps: 6000.0,
        }
    }
}

/// Inputs of A3, T = b·s·L, plus the corrected models' own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct A3Inputs {
    /// b: audio bit rate, kb/s (the article: 128).
    pub bitrate_kbps: f64,
    /// s: sample rate, kHz (the article: 44.1).
    pub sample_rate_khz: f64,
    /// L: duration, s (the article: 60).
    pub duration_s: f64,
    /// PCM bits per sample (16 for CD audio).
    pub pcm_bits_per_sample: f64,
    /// Channels (2 = stereo).
    pub channels: f64,
    /// Samples per coded frame (AAC-LC: 1024).
    pub samples_per_frame: f64,
}

impl Default for A3Inputs {
    fn default() -> Self {
        A3Inputs {
            bitrate_kbps: 128.0,
            sample_rate_khz: 44.1,
            duration_s: 60.0,
            pcm_bits_per_sample: 16.0,
            channels: 2.0,
            samples_per_frame: 1024.0,
        }
    }
}

/// Inputs of A4, R = R_v + R_a + S, plus the corrected models' own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct A4Inputs {
    /// R_v: video rate, Mb/s (the article: 100).
    pub video_mbps: f64,
    /// R_a: audio rate, Mb/s (the article: 2).
    pub audio_mbps: f64,
    /// S: the "rate-control strategy", Mb/s as printed (the article: 5).
    pub strategy_mbps: f64,
    /// Metadata/data-message rate, kb/s (corrected model; usually ≈ 0).
    pub meta_kbps: f64,
    /// A platform's video ingest limit for comparison and the realistic example, kb/s (Twitch 6000).
    pub platform_cap_kbps: f64,
    /// Audio rate of the realistic example, kb/s (AAC-LC stereo: 128–160).
    pub typical_audio_kbps: f64,
    /// VBV buffer as seconds of R_max (OBS: bufsize = bitrate, so 1 s).
    pub vbv_buffer_s: f64,
    /// Window τ over which the VBV bound is evaluated, s.
    pub vbv_window_s: f64,
    /// RTMP/TCP/Ethernet framing for the wire-rate model.
    pub wire: WireParams,
}

impl Default for A4Inputs {
    fn default() -> Self {
        A4Inputs {
            video_mbps: 100.0,
            audio_mbps: 2.0,
            strategy_mbps: 5.0,
            meta_kbps: 0.0,
            platform_cap_kbps: 6000.0,
            typical_audio_kbps: 160.0,
            vbv_buffer_s: 1.0,
            vbv_window_s: 0.5,
            wire: WireParams::default(),
        }
    }
}

/// Inputs for the numbers that illustrate the prose claims.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimInputs {
    /// Video frame rate (Nagle stall bound 1/f).
    pub fps: f64,
    /// Round-trip time publisher ↔ server, ms.
    pub rtt_ms: f64,
    /// Receiver delayed-ACK timeout, ms (Linux: 40–200).
    pub delayed_ack_ms: f64,
    /// Round trips before the first media byte of an RTMP publish (TCP 1 + handshake 1 +
    /// connect/createStream/publish ≈ 3).
    pub rtmp_setup_rtts: f64,
}

impl Default for ClaimInputs {
    fn default() -> Self {
        ClaimInputs {
            fps: 30.0,
            rtt_ms: 50.0,
            delayed_ack_ms: 40.0,
            rtmp_setup_rtts: 5.0,
        }
    }
}

/// Everything the audit depends on. `Default` = the article's worked examples plus defaults of the
/// corrected models.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeedInputs {
    pub a1: A1Inputs,
    pub a2: A2Inputs,
    pub a3: A3Inputs,
    pub a4: A4Inputs,
    pub claims: ClaimInputs,
}

// =================================================================================================
// The four formulas as written
// =================================================================================================

/// A1 as written: R = n·r, in bit/s.
pub fn a1_as_written(inp: &A1Inputs) -> f64 {
    inp.connections * inp.rate_per_connection_mbps * 1e6
}

/// A2 as written: S = w·h·q·f. Its real unit is pixel/s (the article says bytes per frame).
pub fn a2_as_written(inp: &A2Inputs) -> f64 {
    inp.width_px * inp.height_px * inp.quant_step * inp.fps
}

/// A3 as written: T = b·s·L with b in bit/s, s in sample/s and L in s. Its real unit is
/// bit·sample/s (the article says bytes).
pub fn a3_as_written(inp: &A3Inputs) -> f64 {
    (inp.bitrate_kbps * 1e3) * (inp.sample_rate_khz * 1e3) * inp.duration_s
}

/// A4 as written: R = R_v + R_a + S, in bit/s (S taken at its printed "Mbps").
pub fn a4_as_written(inp: &A4Inputs) -> f64 {
    (inp.video_mbps + inp.audio_mbps + inp.strategy_mbps) * 1e6
}

// =================================================================================================
// Audits
// =================================================================================================

fn s(x: &str) -> String {
    x.to_string()
}

fn tags(list: &[&str]) -> Vec<String> {
    list.iter().map(|t| t.to_string()).collect()
}

/// A1: R = n·r.
pub fn audit_a1(inp: &A1Inputs) -> FormulaAudit {
    let mut g = InputGuard::new("a1");
    let n = g.nonneg("connections", inp.connections);
    let r = g.nonneg("rate_per_connection_mbps", inp.rate_per_connection_mbps);
    let c = g.positive("bottleneck_mbps", inp.bottleneck_mbps);
    let o = g.nonneg("egress_overhead", inp.egress_overhead);

    let factors = vec![
        factor(
            "n",
            "number of TCP connections",
            n,
            "connection",
            1.0,
            Some(Dim::CONNECTION),
        ),
        factor(
            "r",
            "data rate of each connection",
            r,
            "Mbps per connection",
            1e6,
            Some(Dim::BIT / (Dim::SECOND * Dim::CONNECTION)),
        ),
    ];
    let dims = check_dimensions(
        Combine::Product,
        &factors,
        Dim::BIT / Dim::SECOND,
        "bit/s",
        "总数据传输速率: the total data rate, in Mbps",
    );
    let typed = n * r;
    let base = typed * 1e6;
    let claimed = ClaimedValue {
        printed: s("100Mbps"),
        value: 100.0,
        unit: s("Mbps"),
    };
    let reproduces = close(typed, claimed.value);

    let r_bps = r * 1e6;
    let c_bps = c * 1e6;
    let egress = r_bps * n * (1.0 + o);
    let share = min_nan(r_bps, c_bps / n);
    let aggregate = min_nan(n * r_bps, c_bps);
    let n_max = libm::floor(c_bps / (r_bps * (1.0 + o)));

    let mut problems = g.problems;
    problems.push(problem(
        ProblemKind::Model,
        format!(
            "n·r adds the rates as if the {} flows never met on a link. Flows that share a \
             bottleneck of capacity C split it: Σr ≤ C. With C = {} each flow gets at most C/n = \
             {} (it needs {}); loss-based congestion control drifts toward that equal share, \
             and with unequal RTTs Reno favours the shorter ones.",
            fmt_num(n),
            fmt_rate(c_bps),
            fmt_rate(c_bps / n),
            fmt_rate(r_bps)
        ),
    ));
    problems.push(problem(
        ProblemKind::Model,
        s(
            "An RTMP publish uses one TCP connection. Audio, video and control travel in it as \
           multiplexed chunk streams. The n connections of a server are its publishers and \
           viewers, one each, so n·r is the server's egress, not a property of a stream.",
        ),
    ));
    problems.push(problem(
        ProblemKind::Model,
        s(
            "The article's advice to 'optimise n' (§4.2.1: fewer connections) would mean serving \
           fewer viewers. Connections are the audience, not an overhead, and opening them is a \
           one-time cost that does not change steady-state latency.",
        ),
    ));

    let corrected = vec![
        CorrectedModel {
            title: s("Server egress: the one place n·r belongs"),
            formula: s("E = N · r · (1 + o)"),
            value: egress,
            unit: s("bit/s"),
            value_text: fmt_rate(egress),
            explanation: format!(
                "A server that fans one stream out to N = {} viewers at r = {} sends N·r, plus \
                 protocol overhead and headroom. Wowza's sizing rule takes o = 0.2 (users × \
                 bitrate × 1.2); the pure TCP/IP/Ethernet framing is about 6%.",
                fmt_num(n),
                fmt_rate(r_bps)
            ),
            extras: vec![figure(
                "egress without headroom",
                "N · r",
                n * r_bps,
                "bit/s",
                fmt_rate(n * r_bps),
            )],
            sources: tags(&["[W1]"]),
        },
        CorrectedModel {
            title: s("Shared bottleneck: rates do not add past C"),
            formula: s("Σ r_i = min(n·r, C);  r_i = min(r, C/n)"),
            value: aggregate,
            unit: s("bit/s"),
            value_text: fmt_rate(aggregate),
            explanation: format!(
                "Through a bottleneck of C = {} the {} flows together get at most C. Each gets \
                 min(r, C/n) = {}. When that is below r, a live stream falls behind: its \
                 send queue grows and latency climbs until frames are dropped.",
                fmt_rate(c_bps),
                fmt_num(n),
                fmt_rate(share)
            ),
            extras: vec![figure(
                "per-flow share",
                "min(r, C/n)",
                share,
                "bit/s",
                fmt_rate(share),
            )],
            sources: tags(&["[TP]"]),
        },
        CorrectedModel {
            title: s("Viewers one link can serve"),
            formula: s("N_max = ⌊C / (r · (1 + o))⌋"),
            value: n_max,
            unit: s("connection"),
            value_text: format!("{} viewers", fmt_num(n_max)),
            explanation: format!(
                "In practice the NIC saturates before the CPU: at r = {} with {} headroom, C = \
                 {} serves about {} viewers.",
                fmt_rate(r_bps),
                fmt_pct(o),
                fmt_rate(c_bps),
                fmt_num(n_max)
            ),
            extras: Vec::new(),
            sources: tags(&["[W1]"]),
        },
    ];

    FormulaAudit {
        id: s("A1"),
        title: s("\"RTMP protocol model\": total rate R = n·r"),
        section: s("§4.1.1, §4.2.1, §4.3"),
        formula: s("R = n × r"),
        original_zh: s(
            "设RTMP流媒体服务器有 100 个TCP连接，每个连接传输的数据速率为 1Mbps，则总数据\
                        传输速率为：R = 100 × 1Mbps = 100Mbps",
        ),
        article_meaning: s(
            "the total data rate of an RTMP server with n TCP connections of rate r",
        ),
        inputs: factors,
        as_written: AsWritten {
            typed_value: typed,
            typed_unit: s("Mbps"),
            base_value: base,
            base_unit: dims.derived_text.clone(),
            text: format!("{} bit/s = {}", fmt_num(base), fmt_rate(base)),
        },
        claimed,
        reproduces,
        claim_ratio: typed / 100.0,
        coincidences: Vec::new(),
        dimensions: dims,
        problems,
        verdict: Verdict::Misleading,
        corrected,
        sources: tags(&["[W1]", "[TP]", "[R1]"]),
    }
}

/// A2: S = w·h·q·f.
pub fn audit_a2(inp: &A2Inputs) -> FormulaAudit {
    let mut g = InputGuard::new("a2");
    let w = g.nonneg("width_px", inp.width_px);
    let h = g.nonneg("height_px", inp.height_px);
    let q = g.positive("quant_step", inp.quant_step);
    let f = g.positive("fps", inp.fps);
    let bpp_raw = g.nonneg("raw_bits_per_pixel", inp.raw_bits_per_pixel);
    let bpp_c = g.nonneg("coded_bits_per_pixel", inp.coded_bits_per_pixel);
    let qp_ref = g.finite("reference_qp", inp.reference_qp);
    let cap_bps = g.positive("platform_cap_kbps", inp.platform_cap_kbps) * 1e3;

    let factors = vec![
        factor(
            "w",
            "frame width",
            w,
            "pixel/line",
            1.0,
            Some(Dim::PIXEL / Dim::LINE),
        ),
        factor(
            "h",
            "frame height",
            h,
            "line/frame",
            1.0,
            Some(Dim::LINE / Dim::FRAME),
        ),
        factor(
            "q",
            "quantization step",
            q,
            "(pure number)",
            1.0,
            Some(Dim::ONE),
        ),
        factor(
            "f",
            "frame rate",
            f,
            "frame/s",
            1.0,
            Some(Dim::FRAME / Dim::SECOND),
        ),
    ];
    let dims = check_dimensions(
        Combine::Product,
        &factors,
        Dim::BIT / Dim::FRAME,
        "bytes per frame (byte/frame = 8 bit/frame)",
        "每个视频帧的数据量: the amount of data of each video frame, in bytes",
    );
    let typed = w * h * q * f;
    let claimed = ClaimedValue {
        printed: s("58.29 × 10^6 bytes"),
        value: 58.29e6,
        unit: s("byte"),
    };
    let reproduces = close(typed, claimed.value);
    let near = if reproduces {
        Vec::new()
    } else {
        coincidences(&factors, claimed.value, 3)
    };

    let raw_frame = raw_frame_bytes(w, h, bpp_raw);
    let raw_rate = raw_frame * 8.0 * f;
    let coded = coded_rate_bps(w, h, f, bpp_c);
    let coded_frame = raw_frame_bytes(w, h, bpp_c);
    let ratio = bpp_raw / bpp_c;
    let qp_q = qp_from_qstep(q);
    let bits_at_q = bits_ratio_for_qp(qp_q, qp_ref);
    let coded_at_q = coded * bits_at_q;
    let bpp_at_cap = cap_bps / (w * h * f);

    let mut problems = g.problems;
    problems.push(problem(
        ProblemKind::Units,
        format!(
            "w·h·q·f comes out in {}, a pixel rate; the article calls it bytes per frame. \
             Multiplying by f turns a per-frame amount into a per-second one, and no factor \
             converts pixels into bits.",
            dims.derived_text
        ),
    ));
    let mut arith = format!(
        "w·h·q·f = {} ({}), not 58.29×10^6: the printed value is off by ×{}.",
        fmt_num(typed),
        fmt_sci(typed),
        fmt_sig(typed / claimed.value, 4)
    );
    if let Some(c0) = near.first() {
        arith.push_str(&format!(
            " No product of the inputs gives it; the nearest is {} = {} {} ({} from the claim).",
            c0.expression,
            fmt_num(c0.value),
            c0.unit,
            fmt_rel(c0.relative_difference)
        ));
    }
    if !reproduces {
        problems.push(problem(ProblemKind::Arithmetic, arith));
    }
    problems.push(problem(
        ProblemKind::Model,
        format!(
            "q enters the wrong way round. A larger quantizer step throws away more detail and \
             leaves fewer bits; in H.264 the bits fall roughly as 1/Qstep, halving every +6 QP. \
             Read as a Qstep, q = {} is QP ≈ {}, which would cut the bits to {} of those at QP \
             {}.",
            fmt_num(q),
            fmt_sig(qp_q, 3),
            fmt_pct(bits_at_q),
            fmt_num(qp_ref)
        ),
    ));
    problems.push(problem(
        ProblemKind::Magnitude,
        format!(
            "Taken as bytes, the as-written value would be {}× the size of an uncompressed {}×{} \
             frame ({}).",
            fmt_sig(typed / raw_frame, 4),
            fmt_num(w),
            fmt_num(h),
            fmt_bytes(raw_frame)
        ),
    ));
    if qp_q.is_finite() && !(0.0..=51.0).contains(&qp_q) {
        problems.push(problem(
            ProblemKind::Magnitude,
            format!(
                "q = {} as a Qstep is QP {}, outside H.264's range 0–51.",
                fmt_num(q),
                fmt_sig(qp_q, 3)
            ),
        ));
    }

    let corrected = vec![
        CorrectedModel {
            title: s("Uncompressed frame size"),
            formula: s("S_raw = w · h · bpp / 8"),
            value: raw_frame,
            unit: s("byte"),
            value_text: format!("{} per frame", fmt_bytes(raw_frame)),
            explanation: format!(
                "In 8-bit 4:2:0 video each pixel carries one luma sample plus a quarter of each \
                 of the two chroma samples: 8 + 2 + 2 = 12 bits (4:2:2 gives 16, 4:4:4 gives \
                 24). At bpp = {} a {}×{} frame is \
                 {}, and f = {} of them per second is {}. This is what the encoder has to \
                 squeeze.",
                fmt_num(bpp_raw),
                fmt_num(w),
                fmt_num(h),
                fmt_bytes(raw_frame),
                fmt_num(f),
                fmt_rate(raw_rate)
            ),
            extras: vec![figure(
                "raw video rate",
                "w · h · f · bpp",
                raw_rate,
                "bit/s",
                fmt_rate(raw_rate),
            )],
            sources: Vec::new(),
        },
        CorrectedModel {
            title: s("Coded (H.264) rate and mean frame size"),
            formula: s("R = w · h · f · bpp_c;  S̄ = R / (8 f) = w · h · bpp_c / 8"),
            value: coded,
            unit: s("bit/s"),
            value_text: fmt_rate(coded),
            explanation: format!(
                "Live H.264 spends about 0.05–0.1 bit per pixel. At bpp_c = {} that is R = {} \
                 and a mean frame of {} (I-frames are several times larger, B-frames smaller), \
                 a compression ratio of {}:1. A platform cap of {} (Twitch: 6000 kb/s) at this size and rate \
                 corresponds to bpp_c = {}.",
                fmt_sig(bpp_c, 3),
                fmt_rate(coded),
                fmt_bytes(coded_frame),
                fmt_sig(ratio, 3),
                fmt_rate(cap_bps),
                fmt_sig(bpp_at_cap, 3)
            ),
            extras: vec![
                figure(
                    "mean coded frame",
                    "w·h·bpp_c/8",
                    coded_frame,
                    "byte",
                    fmt_bytes(coded_frame),
                ),
                figure(
                    "compression ratio",
                    "bpp / bpp_c",
                    ratio,
                    "",
                    format!("{}:1", fmt_sig(ratio, 3)),
                ),
                figure(
                    "bpp_c at the platform cap",
                    "R_cap / (w·h·f)",
                    bpp_at_cap,
                    "bit/pixel",
                    fmt_sig(bpp_at_cap, 3),
                ),
            ],
            sources: tags(&["[F1]", "[O3]", "[Y1]"]),
        },
        CorrectedModel {
            title: s("What the quantizer step really does"),
            formula: s("Qstep = 2^((QP − 4)/6);  bits(QP) ≈ bits(QP_ref) · 2^(−(QP − QP_ref)/6)"),
            value: coded_at_q,
            unit: s("bit/s"),
            value_text: fmt_rate(coded_at_q),
            explanation: format!(
                "The step doubles every +6 QP (QP 0–51), and the bits roughly halve. x264 \
                 follows the same law (qscale = 0.85·2^((QP−12)/6)), and FFmpeg's guide says \
                 +6 CRF ≈ half the bitrate. Each +1 QP saves about {}. Read as a Qstep, the \
                 article's q = {} is QP {}, so the stream above ({} at QP {}) would shrink to \
                 {}. q divides the size; it does not multiply it.",
                fmt_pct(1.0 - bits_ratio_for_qp(1.0, 0.0)),
                fmt_num(q),
                fmt_sig(qp_q, 3),
                fmt_rate(coded),
                fmt_num(qp_ref),
                fmt_rate(coded_at_q)
            ),
            extras: vec![
                figure(
                    "QP equivalent of q",
                    "4 + 6·log2(q)",
                    qp_q,
                    "",
                    fmt_sig(qp_q, 3),
                ),
                figure(
                    "bits at q relative to QP_ref",
                    "2^(−(QP_q − QP_ref)/6)",
                    bits_at_q,
                    "",
                    fmt_pct(bits_at_q),
                ),
            ],
            sources: tags(&["[V1]", "[X1]", "[F1]"]),
        },
    ];

    FormulaAudit {
        id: s("A2"),
        title: s("\"H.264 model\": frame size S = w·h·q·f"),
        section: s("§4.1.2, §4.2.2, §4.3"),
        formula: s("S = w × h × q × f"),
        original_zh: s(
            "设每个视频帧的宽度为 1920 像素，高度为 1080 像素，帧率为 30 帧/秒，量化步长为 100，则\
                        每个视频帧的数据量为：S = 1920 × 1080 × 100 × 30 = 58.29 × 10^6 bytes",
        ),
        article_meaning: s("the amount of data of each video frame, in bytes"),
        inputs: factors,
        as_written: AsWritten {
            typed_value: typed,
            typed_unit: s("pixel·(step)/s"),
            base_value: typed,
            base_unit: dims.derived_text.clone(),
            text: format!(
                "{} {} ({})",
                fmt_num(typed),
                dims.derived_text,
                fmt_sci(typed)
            ),
        },
        claimed,
        reproduces,
        claim_ratio: typed / 58.29e6,
        coincidences: near,
        dimensions: dims,
        problems,
        verdict: Verdict::Wrong,
        corrected,
        sources: tags(&["[V1]", "[X1]", "[F1]", "[O3]", "[Y1]"]),
    }
}

/// A3: T = b·s·L.
pub fn audit_a3(inp: &A3Inputs) -> FormulaAudit {
    let mut g = InputGuard::new("a3");
    let b_k = g.nonneg("bitrate_kbps", inp.bitrate_kbps);
    let s_k = g.positive("sample_rate_khz", inp.sample_rate_khz);
    let l = g.nonneg("duration_s", inp.duration_s);
    let bits = g.nonneg("pcm_bits_per_sample", inp.pcm_bits_per_sample);
    let ch = g.nonneg("channels", inp.channels);
    let spf = g.positive("samples_per_frame", inp.samples_per_frame);

    let factors = vec![
        factor(
            "b",
            "bit rate",
            b_k,
            "kbps",
            1e3,
            Some(Dim::BIT / Dim::SECOND),
        ),
        factor(
            "s",
            "sample rate",
            s_k,
            "kHz",
            1e3,
            Some(Dim::SAMPLE / Dim::SECOND),
        ),
        factor("L", "duration of the audio", l, "s", 1.0, Some(Dim::SECOND)),
    ];
    let mut dims = check_dimensions(
        Combine::Product,
        &factors,
        Dim::BIT,
        "an amount of data in bytes (byte = 8 bit)",
        "音频流的数据量: the amount of data of the audio stream, in bytes",
    );
    dims.note.push_str(
        ". Even if a sample counts as a pure number (SI writes Hz as 1/s), b·s·L is bit/s² × s = \
         bit/s: a rate, not an amount",
    );
    let typed = b_k * s_k * l;
    let b = b_k * 1e3;
    let sr = s_k * 1e3;
    let base = b * sr * l;
    let claimed = ClaimedValue {
        printed: s("2.633 × 10^6 bytes"),
        value: 2.633e6,
        unit: s("byte"),
    };
    let reproduces = close(typed, claimed.value) || close(base, claimed.value);
    let near = if reproduces {
        Vec::new()
    } else {
        coincidences(&factors, claimed.value, 3)
    };

    let bytes = stream_bytes(b, l);
    let pcm = pcm_rate_bps(sr, bits, ch);
    let pcm_bytes = stream_bytes(pcm, l);
    let aac_fps = sr / spf;
    let bytes_per_frame = b / (8.0 * aac_fps);
    let frame_s = spf / sr;

    let mut problems = g.problems;
    problems.push(problem(
        ProblemKind::Units,
        format!(
            "b·s·L comes out in {}, and the article calls it bytes. For coded audio the sample \
             rate is already inside the bit rate, so multiplying by s counts it twice.",
            dims.derived_text
        ),
    ));
    if !reproduces {
        let mut t = format!(
            "b·s·L = {} in base units ({} with the kilo prefixes dropped); neither is \
             2.633×10^6.",
            fmt_sci(base),
            fmt_num(typed)
        );
        if let Some(c0) = near.first() {
            t.push_str(&format!(
                " The claim is closest to {} = {} {} ({} from the claim), which is a count of \
                 samples per channel, not bytes.",
                c0.expression,
                fmt_num(c0.value),
                c0.unit,
                fmt_rel(c0.relative_difference)
            ));
        }
        problems.push(problem(ProblemKind::Arithmetic, t));
    }
    problems.push(problem(
        ProblemKind::Model,
        s(
            "The formula is attributed to \"AVC-DPCM\", which is not an audio codec: AVC is H.264 \
           video. RTMP audio is normally AAC (FLV SoundFormat 10).",
        ),
    ));

    let corrected = vec![
        CorrectedModel {
            title: s("Size of a coded audio stream"),
            formula: s("bytes = b · L / 8"),
            value: bytes,
            unit: s("byte"),
            value_text: format!("{} B = {}", fmt_num(bytes), fmt_bytes(bytes)),
            explanation: format!(
                "A bit rate already means bits per second of audio: {} for {} s is {} bits, and \
                 8 bits make a byte. The sample rate does not appear; it only matters for \
                 uncompressed PCM and for framing.",
                fmt_rate(b),
                fmt_num(l),
                fmt_num(b * l)
            ),
            extras: Vec::new(),
            sources: Vec::new(),
        },
        CorrectedModel {
            title: s("Where the sample rate does belong: PCM"),
            formula: s("R_PCM = s · bits · channels"),
            value: pcm,
            unit: s("bit/s"),
            value_text: fmt_rate(pcm),
            explanation: format!(
                "Uncompressed audio at {} Hz, {}-bit, {} channel(s) runs at {}, so {} s take {}. \
                 The {} coded stream is {}:1 smaller.",
                fmt_num(sr),
                fmt_num(bits),
                fmt_num(ch),
                fmt_rate(pcm),
                fmt_num(l),
                fmt_bytes(pcm_bytes),
                fmt_rate(b),
                fmt_sig(pcm / b, 3)
            ),
            extras: vec![figure(
                "PCM size over L",
                "R_PCM · L / 8",
                pcm_bytes,
                "byte",
                fmt_bytes(pcm_bytes),
            )],
            sources: Vec::new(),
        },
        CorrectedModel {
            title: s("AAC framing (what RTMP actually carries)"),
            formula: s("f_a = s / N;  bytes/frame = b / (8 f_a)"),
            value: bytes_per_frame,
            unit: s("byte"),
            value_text: format!("{} per audio frame", fmt_bytes(bytes_per_frame)),
            explanation: format!(
                "AAC-LC codes N = {} samples per frame. At {} Hz that is {} frames/s, one every \
                 {}. Each RTMP audio message carries one frame of about {} plus a 2 B FLV audio \
                 tag header.",
                fmt_num(spf),
                fmt_num(sr),
                fmt_sig(aac_fps, 4),
                fmt_ms(frame_s),
                fmt_bytes(bytes_per_frame)
            ),
            extras: vec![
                figure(
                    "audio frames per second",
                    "s / N",
                    aac_fps,
                    "frame/s",
                    fmt_sig(aac_fps, 4),
                ),
                figure(
                    "audio frame duration",
                    "N / s",
                    frame_s,
                    "s",
                    fmt_ms(frame_s),
                ),
            ],
            sources: tags(&["[FLV1]", "[T1]"]),
        },
    ];

    FormulaAudit {
        id: s("A3"),
        title: s("\"AVC-DPCM model\": audio data T = b·s·L"),
        section: s("§4.1.3, §4.2.3, §4.3"),
        formula: s("T = b × s × L"),
        original_zh: s(
            "设音频的比特率为 128kbps，采样率为 44.1kHz，音频流的长度为 60 秒，则音频流的数据量\
                        为：T = 128kbps × 44.1kHz × 60s = 2.633 × 10^6 bytes",
        ),
        article_meaning: s("the amount of data of the audio stream, in bytes"),
        inputs: factors,
        as_written: AsWritten {
            typed_value: typed,
            typed_unit: s("kbps·kHz·s"),
            base_value: base,
            base_unit: dims.derived_text.clone(),
            text: format!(
                "{} {} ({})",
                fmt_sci(base),
                dims.derived_text,
                fmt_num(base)
            ),
        },
        claimed,
        reproduces,
        claim_ratio: base / 2.633e6,
        coincidences: near,
        dimensions: dims,
        problems,
        verdict: Verdict::Wrong,
        corrected,
        sources: tags(&["[FLV1]", "[T1]"]),
    }
}

/// A4: R = R_v + R_a + S.
pub fn audit_a4(inp: &A4Inputs) -> FormulaAudit {
    let mut g = InputGuard::new("a4");
    let rv_m = g.nonneg("video_mbps", inp.video_mbps);
    let ra_m = g.nonneg("audio_mbps", inp.audio_mbps);
    let s_m = g.finite("strategy_mbps", inp.strategy_mbps);
    let meta = g.nonneg("meta_kbps", inp.meta_kbps) * 1e3;
    let cap = g.positive("platform_cap_kbps", inp.platform_cap_kbps) * 1e3;
    let typ_a = g.nonneg("typical_audio_kbps", inp.typical_audio_kbps) * 1e3;
    let vbv_s = g.nonneg("vbv_buffer_s", inp.vbv_buffer_s);
    let tau = g.nonneg("vbv_window_s", inp.vbv_window_s);
    let p = &inp.wire;
    g.positive("wire.fps", p.fps);
    if !(p.chunk_size_bytes.is_finite() && p.chunk_size_bytes >= 1.0) {
        g.reject(
            "wire.chunk_size_bytes",
            p.chunk_size_bytes,
            "a finite number ≥ 1",
        );
    }
    g.nonneg("wire.basic_header_bytes", p.basic_header_bytes);
    g.positive("wire.audio_sample_rate_hz", p.audio_sample_rate_hz);
    g.positive("wire.audio_samples_per_frame", p.audio_samples_per_frame);
    g.positive("wire.mss_bytes", p.mss_bytes);
    g.nonneg("wire.tcp_ip_header_bytes", p.tcp_ip_header_bytes);
    g.nonneg("wire.link_overhead_bytes", p.link_overhead_bytes);

    let factors = vec![
        factor(
            "R_v",
            "video stream rate",
            rv_m,
            "Mbps",
            1e6,
            Some(Dim::BIT / Dim::SECOND),
        ),
        factor(
            "R_a",
            "audio stream rate",
            ra_m,
            "Mbps",
            1e6,
            Some(Dim::BIT / Dim::SECOND),
        ),
        factor(
            "S",
            "rate-control strategy (码率控制策略)",
            s_m,
            "\"Mbps\" as printed",
            1e6,
            None,
        ),
    ];
    let dims = check_dimensions(
        Combine::Sum,
        &factors,
        Dim::BIT / Dim::SECOND,
        "bit/s",
        "总数据传输速率: the total data rate, in Mbps",
    );
    let typed = rv_m + ra_m + s_m;
    let base = typed * 1e6;
    let claimed = ClaimedValue {
        printed: s("107Mbps"),
        value: 107.0,
        unit: s("Mbps"),
    };
    let reproduces = close(typed, claimed.value);

    let rv = rv_m * 1e6;
    let ra = ra_m * 1e6;
    let same = rtmp_wire_rate(rv, ra, meta, p);
    let real = rtmp_wire_rate(cap, typ_a, meta, p);
    let buffer_bits = rv * vbv_s;
    let bound = vbv_bound_bits(rv, tau, buffer_bits);
    let max_delay = buffer_bits / rv;
    let link_needed = same.wire_bps;

    let mut problems = g.problems;
    problems.push(problem(
        ProblemKind::Category,
        s(
            "S is a rate-control strategy (码率控制策略): a rule such as CBR, capped VBR or a VBV \
           buffer size. It is not a quantity. Giving it \"5Mbps\" and adding it to two bit rates \
           is a category error: a strategy shapes R_v over time, it does not add to it.",
        ),
    ));
    problems.push(problem(
        ProblemKind::Magnitude,
        format!(
            "R_v = {} is {}× a platform cap of {} (Twitch: 6000 kb/s; YouTube suggests 3–8 Mb/s for 1080p30), \
             and R_a = {} is {}× a typical {} AAC stream.",
            fmt_rate(rv),
            fmt_sig(rv / cap, 3),
            fmt_rate(cap),
            fmt_rate(ra),
            fmt_sig(ra / typ_a, 3),
            fmt_rate(typ_a)
        ),
    ));
    problems.push(problem(
        ProblemKind::Model,
        format!(
            "The sum also leaves out what the wire carries on top of the media: RTMP chunk and \
             FLV tag headers, then TCP/IP and Ethernet framing, {} at these settings.",
            fmt_rel(same.total_overhead_fraction)
        ),
    ));

    let wire_extras = |w: &WireBreakdown| {
        vec![
            figure(
                "mean video message",
                "R_v / (8 f)",
                w.video.payload_bytes,
                "byte",
                format!(
                    "{} in {} chunk(s)",
                    fmt_bytes(w.video.payload_bytes),
                    fmt_num(w.video.chunks)
                ),
            ),
            figure(
                "ε_v (video RTMP overhead)",
                "overhead / payload",
                w.video.fraction,
                "",
                fmt_pct(w.video.fraction),
            ),
            figure(
                "ε_a (audio RTMP overhead)",
                "overhead / payload",
                w.audio.fraction,
                "",
                fmt_pct(w.audio.fraction),
            ),
            figure(
                "after RTMP chunking",
                "R_v(1+ε_v) + R_a(1+ε_a) + R_meta",
                w.rtmp_bps,
                "bit/s",
                fmt_rate(w.rtmp_bps),
            ),
            figure(
                "TCP/IP + link factor",
                "(MSS + H_tcpip + H_link) / MSS",
                w.wire_factor,
                "",
                format!("×{}", fmt_sig(w.wire_factor, 5)),
            ),
        ]
    };
    let header_note = format!(
        "RTMP adds per video message a {} B basic header, a {} B message header ({:?}) and the 5 B \
         FLV video tag, plus {} B per continuation chunk at chunk size {}. The result, ε_v = {}, \
         shrinks as the chunk size grows. TCP/IP with timestamps adds {} B per {} B segment, and \
         Ethernet {} B more.",
        fmt_num(p.basic_header_bytes),
        fmt_num(p.video_header.message_header_bytes() as f64),
        p.video_header,
        fmt_num(p.basic_header_bytes),
        fmt_num(p.chunk_size_bytes),
        fmt_pct(same.video.fraction),
        fmt_num(p.tcp_ip_header_bytes),
        fmt_num(p.mss_bytes),
        fmt_num(p.link_overhead_bytes)
    );

    let corrected = vec![
        CorrectedModel {
            title: s("Rate on the wire (same R_v, R_a; S dropped)"),
            formula: s(
                "R_wire = (R_v(1+ε_v) + R_a(1+ε_a) + R_meta) · (MSS + H_tcpip + H_link)/MSS",
            ),
            value: same.wire_bps,
            unit: s("bit/s"),
            value_text: fmt_rate(same.wire_bps),
            explanation: format!(
                "{} Media {} + {} + {} become {} on the wire ({}).",
                header_note,
                fmt_rate(rv),
                fmt_rate(ra),
                fmt_rate(meta),
                fmt_rate(same.wire_bps),
                fmt_rel(same.total_overhead_fraction)
            ),
            extras: wire_extras(&same),
            sources: tags(&["[R1]", "[FLV1]", "[O2]", "[N1]", "[S1]"]),
        },
        CorrectedModel {
            title: s("A realistic 1080p30 ingest"),
            formula: s("same model at R_v = platform cap, R_a = typical AAC"),
            value: real.wire_bps,
            unit: s("bit/s"),
            value_text: fmt_rate(real.wire_bps),
            explanation: format!(
                "At the {} video limit with {} audio, the publish needs about {} of uplink \
                 before any congestion-control headroom. A bufferless Reno sawtooth averages \
                 only about 0.75·C.",
                fmt_rate(cap),
                fmt_rate(typ_a),
                fmt_rate(real.wire_bps)
            ),
            extras: wire_extras(&real),
            sources: tags(&["[O3]", "[T1]", "[Y1]"]),
        },
        CorrectedModel {
            title: s("Where \"strategy\" belongs: a peak bound, not a term"),
            formula: s("bits(τ) ≤ R_max · τ + B;  queue delay ≤ B / R_max"),
            value: bound,
            unit: s("bit"),
            value_text: format!("{} bits in τ = {}", fmt_num(bound), fmt_ms(tau)),
            explanation: format!(
                "Rate control (CBR or capped VBR with a VBV buffer of size B) bounds the bits \
                 any window of τ seconds may carry. With R_max = R_v = {} and B = {} s × R_max \
                 = {} bits, a window of {} may carry up to {} bits. If those bits wait in the \
                 sender, they wait at most B/R_max = {}: the buffer is latency. The link must \
                 carry R_max on the wire ({}) plus congestion-control headroom. A \"strategy\" \
                 sets these bounds; it is never an extra 5 Mb/s.",
                fmt_rate(rv),
                fmt_num(vbv_s),
                fmt_num(buffer_bits),
                fmt_ms(tau),
                fmt_num(bound),
                fmt_ms(max_delay),
                fmt_rate(link_needed)
            ),
            extras: vec![
                figure(
                    "VBV buffer B",
                    "R_max · buffer_s",
                    buffer_bits,
                    "bit",
                    fmt_num(buffer_bits),
                ),
                figure(
                    "max sender queue delay",
                    "B / R_max",
                    max_delay,
                    "s",
                    fmt_ms(max_delay),
                ),
            ],
            sources: tags(&["[X1]", "[O1]"]),
        },
    ];

    FormulaAudit {
        id: s("A4"),
        title: s("\"Rate-control model\": R = R_v + R_a + S"),
        section: s("§4.1.4, §4.2.4, §4.3"),
        formula: s("R = R_v + R_a + S"),
        original_zh: s(
            "设视频流的数据速率为 100Mbps，音频流的数据速率为 2Mbps，码率控制策略为 5Mbps，则码率\
                        控制模型的总数据传输速率为：R = 100Mbps + 2Mbps + 5Mbps = 107Mbps",
        ),
        article_meaning: s("the total data rate of the rate-control model"),
        inputs: factors,
        as_written: AsWritten {
            typed_value: typed,
            typed_unit: s("Mbps"),
            base_value: base,
            base_unit: s("undefined (a policy was added to rates)"),
            text: format!(
                "{} \"Mbps\" (arithmetic only; the sum has no meaning)",
                fmt_num(typed)
            ),
        },
        claimed,
        reproduces,
        claim_ratio: typed / 107.0,
        coincidences: Vec::new(),
        dimensions: dims,
        problems,
        verdict: Verdict::Wrong,
        corrected,
        sources: tags(&["[R1]", "[FLV1]", "[O1]", "[O2]", "[O3]", "[X1]", "[Y1]"]),
    }
}

// =================================================================================================
// Claims
// =================================================================================================

/// One prose claim of the article, with a verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// Stable id, e.g. "nagle".
    pub id: String,
    pub topic: String,
    /// Where it is in the article.
    pub section: String,
    /// The article's words.
    pub original_zh: String,
    /// English translation.
    pub translation_en: String,
    pub verdict: Verdict,
    /// What is actually true.
    pub correct: String,
    /// Why, in plain language.
    pub explanation: String,
    /// Numbers that illustrate it, computed from [`ClaimInputs`].
    pub figures: Vec<Figure>,
    /// Tags of MODELS.md's source list, and standards.
    pub sources: Vec<String>,
}

/// The article's prose claims, with numbers computed from `inp`.
pub fn claims(inp: &ClaimInputs) -> Vec<Claim> {
    let nonneg = |x: f64| {
        if x.is_finite() && x >= 0.0 {
            x
        } else {
            f64::NAN
        }
    };
    let fps = if inp.fps.is_finite() && inp.fps > 0.0 {
        inp.fps
    } else {
        f64::NAN
    };
    let rtt = nonneg(inp.rtt_ms) / 1e3;
    let delack = nonneg(inp.delayed_ack_ms) / 1e3;
    let setup_rtts = nonneg(inp.rtmp_setup_rtts);
    let stall = min_nan(1.0 / fps, rtt + delack);
    let setup = setup_rtts * rtt;
    let saved = min_nan(rtt, setup);
    let setup_tfo = setup - saved;

    vec![
        Claim {
            id: s("rtmp-name"),
            topic: s("What RTMP stands for"),
            section: s("§1, §3.1.1"),
            original_zh: s("实时传输协议（Real-Time Transport Protocol，RTMP）作为流媒体传输的标准协议之一"),
            translation_en: s("The Real-Time Transport Protocol (RTMP), one of the standard protocols for \
                               streaming media"),
            verdict: Verdict::Wrong,
            correct: s("RTMP is the Real-Time Messaging Protocol, created by Macromedia for Flash; \
                        Adobe later published its specification. The Real-time Transport Protocol is RTP (RFC 3550), \
                        a different, UDP-based protocol."),
            explanation: s("The two are not variants of each other. RTMP runs over one TCP \
                            connection and cuts messages into chunks; TCP's in-order delivery \
                            means a lost packet holds back everything behind it. RTP carries \
                            timestamped packets over UDP, so a receiver can skip a loss. That is \
                            why RTP sits under WebRTC and SIP video calls and RTMP does not."),
            figures: Vec::new(),
            sources: tags(&["[R1]", "RFC 3550"]),
        },
        Claim {
            id: s("nagle"),
            topic: s("Nagle's algorithm"),
            section: s("§3.1.1, §3.2.1, §9 Q1"),
            original_zh: s("利用Nagle算法：利用Nagle算法，将小的TCP数据包合并成大的TCP数据包，减少TCP协议的延迟和开销。"),
            translation_en: s("Use Nagle's algorithm: it merges small TCP packets into large ones, \
                               reducing TCP's latency and overhead."),
            verdict: Verdict::Wrong,
            correct: s("Nagle (RFC 896) saves header overhead by holding back a small segment while \
                        earlier data is unacknowledged. It adds latency; it never removes it. \
                        For live streaming turn it off with TCP_NODELAY."),
            explanation: format!(
                "A video frame rarely fills a whole number of segments, so its last piece is \
                 small and Nagle holds it until the previous data is acknowledged. The receiver \
                 may itself be delaying that ACK (Linux: 40–200 ms; RFC 1122 allows up to \
                 500 ms). The tail of a frame can therefore wait up to min(1/f, RTT + t_delack): \
                 {} at f = {}, RTT = {}, delayed ACK = {}. SRS's low-latency guide sets \
                 tcp_nodelay on; OBS's librtmp and nginx-rtmp leave Nagle on. This lab measured \
                 +16–22 ms at p50 from it through nginx-rtmp.",
                fmt_ms(stall),
                fmt_num(fps),
                fmt_ms(rtt),
                fmt_ms(delack)
            ),
            figures: vec![figure(
                "worst tail stall per frame",
                "min(1/f, RTT + t_delack)",
                stall,
                "s",
                fmt_ms(stall),
            )],
            sources: tags(&["RFC 896", "RFC 1122", "[K1]", "[S1]", "[O2]"]),
        },
        Claim {
            id: s("tcp-fast-open"),
            topic: s("TCP Fast Open"),
            section: s("§3.1.1, §3.2.1, §9 Q1"),
            original_zh: s("利用TCP Fast Open：利用TCP Fast Open协议，可以在建立TCP连接时跳过三次握手过程，提高连接速度。"),
            translation_en: s("Use TCP Fast Open: it lets a TCP connection skip the three-way \
                               handshake when it is set up, making connecting faster."),
            verdict: Verdict::Wrong,
            correct: s("TFO (RFC 7413) keeps the three-way handshake and lets data ride on the SYN. \
                        That saves at most one RTT, only on a repeat connection that already holds \
                        a cookie, with about one segment of payload, and only if both ends opt in."),
            explanation: format!(
                "An RTMP publish needs about {} round trips before the first media byte: TCP, \
                 the C0/C1–S0/S1/S2 handshake, then connect, createStream and publish. At \
                 RTT = {} that is {}. TFO can trim one round trip, {}, leaving {}, once per \
                 connection. Steady-state glass-to-glass latency does not change. Middleboxes \
                 get in the way: a 2017 measurement found about 20% of access networks \
                 impairing TFO. Linux disabled its blackhole \
                 detection by default in 2021, and the net.ipv4.tcp_fastopen sysctl enables \
                 only the client side by default.",
                fmt_num(setup_rtts),
                fmt_ms(rtt),
                fmt_ms(setup),
                fmt_ms(saved),
                fmt_ms(setup_tfo)
            ),
            figures: vec![
                figure("RTMP setup before media", "N_rtt · RTT", setup, "s", fmt_ms(setup)),
                figure(
                    "with TFO (repeat connection)",
                    "(N_rtt − 1) · RTT",
                    setup_tfo,
                    "s",
                    fmt_ms(setup_tfo),
                ),
                figure(
                    "steady-state latency saved",
                    "none (setup only)",
                    0.0,
                    "s",
                    fmt_ms(0.0),
                ),
            ],
            sources: tags(&["RFC 7413", "[K2]", "[K3]", "[M1]"]),
        },
        Claim {
            id: s("avc-dpcm"),
            topic: s("\"AVC-DPCM\" audio codec"),
            section: s("§2.1, §3.1.3, §4.1.3"),
            original_zh: s("AVC-DPCM编码：一种高效的音频压缩算法，用于音频数据压缩。"),
            translation_en: s("AVC-DPCM coding: an efficient audio compression algorithm, used to \
                               compress audio data."),
            verdict: Verdict::Wrong,
            correct: s("There is no AVC-DPCM codec. AVC is H.264, a video codec (FLV CodecID 7). \
                        DPCM is a generic prediction technique. FLV's SoundFormat values include \
                        0/3 PCM, 1 ADPCM, 2 MP3, 7/8 G.711, 10 AAC and 11 Speex. RTMP audio is \
                        in practice AAC-LC; Enhanced RTMP adds Opus among others."),
            explanation: s("The name glues a video codec to an old audio technique. Searching for \
                            \"AVC-DPCM parameters\" (§3.2.3) leads nowhere; the settings that \
                            matter are the AAC bit rate (e.g. Twitch's 128 kb/s guidance), the \
                            sample rate and the channel count."),
            figures: Vec::new(),
            sources: tags(&["[FLV1]", "[T1]", "[NMS]"]),
        },
        Claim {
            id: s("fewer-connections"),
            topic: s("\"Reduce the number of TCP connections\" / R = n·r"),
            section: s("§3.1.1, §4.1.1, §4.2.1"),
            original_zh: s("减少TCP连接的数量：减少TCP连接的建立和关闭次数，可以降低服务器的负载和延迟。……为了降低服务器\
                            的负载和延迟，减少TCP连接的建立和关闭次数，需要对 n 进行优化。"),
            translation_en: s("Reduce the number of TCP connections: opening and closing fewer TCP \
                               connections lowers server load and latency. … To lower server load \
                               and latency, n must be optimised."),
            verdict: Verdict::Misleading,
            correct: s("An RTMP publish is one TCP connection carrying audio, video and control \
                        as multiplexed chunk streams. A server holds one connection per publisher \
                        or viewer, so n is the audience. What to size is egress, N·r·(1+o), \
                        against the NIC."),
            explanation: s("Avoiding needless reconnects is sensible, since each costs several \
                            round trips and a keyframe wait. But a long-lived stream opens its \
                            connection once; after that connection count does not add latency. \
                            Latency comes from queues: encoder lookahead, the VBV buffer, socket \
                            buffers, the server's cache and the player's buffer."),
            figures: Vec::new(),
            sources: tags(&["[R1]", "[W1]"]),
        },
        Claim {
            id: s("vod-platforms"),
            topic: s("Netflix / Amazon Prime Video run on RTMP servers"),
            section: s("§3.4, §6.2"),
            original_zh: s("点播平台：如Netflix、Amazon Prime Video等，通过优化RTMP流媒体服务器，提供高质量的视频点播服务。"),
            translation_en: s("On-demand platforms such as Netflix and Amazon Prime Video provide \
                               high-quality video on demand by optimising RTMP streaming servers."),
            verdict: Verdict::Misleading,
            correct: s("Video on demand today is delivered by HTTP adaptive streaming (HLS, MPEG-DASH) \
                        from CDNs. Segments are ordinary HTTP objects that caches can serve, and \
                        the player picks a bit rate per segment. RTMP played this role for some \
                        services only in the Flash era."),
            explanation: s("RTMP needs a stateful streaming server per viewer connection and a \
                            Flash-style player. Adobe ended Flash Player at the end of 2020. HTTP \
                            segments scale through ordinary web caches and adapt to bandwidth, \
                            which is what VOD needs; seconds of startup buffer are acceptable \
                            there."),
            figures: Vec::new(),
            sources: tags(&["RFC 8216", "ISO/IEC 23009-1"]),
        },
        Claim {
            id: s("conferencing"),
            topic: s("Zoom / Microsoft Teams run on RTMP servers"),
            section: s("§3.4, §6.5"),
            original_zh: s("会议系统：如Zoom、Microsoft Teams等，通过优化RTMP流媒体服务器，提供高质量的视频会议服务。"),
            translation_en: s("Conferencing systems such as Zoom and Microsoft Teams provide \
                               high-quality video conferencing by optimising RTMP streaming \
                               servers."),
            verdict: Verdict::Misleading,
            correct: s("Conferencing carries media over UDP with RTP (WebRTC, or the vendors' own \
                        RTP-based stacks), aiming at about 150 ms one-way or less (ITU-T G.114). RTMP appears \
                        only at the edge, e.g. to push a meeting out to a live-streaming platform."),
            explanation: s("Interactive talk needs low and steady delay. A TCP stream stalls the \
                            whole connection on one loss (head-of-line blocking) and hides queues \
                            in socket buffers. RTP over UDP lets the receiver conceal a lost packet \
                            and move on."),
            figures: Vec::new(),
            sources: tags(&["RFC 3550", "RFC 8825", "ITU-T G.114"]),
        },
        Claim {
            id: s("live-platforms"),
            topic: s("Twitch / YouTube deliver live video with RTMP servers"),
            section: s("§3.4, §6.1, §6.3"),
            original_zh: s("直播平台：如Twitch、YouTube等，通过优化RTMP流媒体服务器，提供高质量的实时直播服务。"),
            translation_en: s("Live platforms such as Twitch and YouTube provide high-quality live \
                               streaming by optimising RTMP streaming servers."),
            verdict: Verdict::PartlyTrue,
            correct: s("Twitch, YouTube and similar platforms accept RTMP for ingest, the leg from \
                        the broadcaster's encoder (e.g. OBS) to the platform. Viewers receive \
                        HLS or DASH, transcoded into several renditions."),
            explanation: s("This is RTMP's surviving niche: a simple, widely implemented push from \
                            encoder to server. The viewer side switched to HTTP streaming, which \
                            costs seconds of latency (segment length × buffered segments). Low-latency \
                            HLS and WebRTC are used to cut that, not RTMP."),
            figures: Vec::new(),
            sources: tags(&["[O3]", "[T1]", "[Y1]"]),
        },
        Claim {
            id: s("python-server"),
            topic: s("The §5 \"RTMP server\" code"),
            section: s("§5.2, §5.3"),
            original_zh: s("以上就是使用Python对RTMP流媒体服务器进行优化的完整代码实现。可以看到，利用FFmpeg和TensorRT，\
                            我们可以显著提高视频编码的效率和质量，减少传输延迟和抖动。"),
            translation_en: s("That is the complete Python implementation of an optimised RTMP \
                               streaming server. Using FFmpeg and TensorRT, we can markedly improve \
                               encoding efficiency and quality and reduce transmission latency and \
                               jitter."),
            verdict: Verdict::Wrong,
            correct: s("The code never opens a socket or speaks RTMP. It re-encodes a local file with \
                        OpenCV (fourcc 'mp4v', MPEG-4 Part 2, not H.264). TensorRT is a neural-network \
                        inference runtime, not a video encoder, and its Python package offers no `TensorRT` \
                        class that builds or streams video. `librtmp` is imported but never used."),
            explanation: s("The listing also calls start() from __del__, so destroying the object \
                            would restart the loop. The text calls it PyTorch code while it imports \
                            TensorFlow. Nothing in it can be measured for latency; this lab's \
                            simulator and native server exist to fill that gap."),
            figures: Vec::new(),
            sources: tags(&["article §5.2"]),
        },
    ]
}

// =================================================================================================
// The whole audit
// =================================================================================================

/// Identification of the audited article.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArticleInfo {
    pub title_zh: String,
    pub title_en: String,
    /// File name of the copy in the project's shared folder.
    pub file: String,
    pub note: String,
}

/// A source tag and what it refers to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRef {
    pub tag: String,
    pub reference: String,
}

/// Counts for the headline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditSummary {
    pub formulas: u32,
    pub formulas_reproducing: u32,
    pub formulas_dimensionally_consistent: u32,
    pub formulas_with_problems: u32,
    pub claims: u32,
    pub claims_wrong: u32,
    pub claims_misleading: u32,
    pub claims_partly_true: u32,
}

/// Everything the CLI prints and the web lab renders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedAudit {
    pub article: ArticleInfo,
    pub inputs: SeedInputs,
    pub summary: AuditSummary,
    pub formulas: Vec<FormulaAudit>,
    pub claims: Vec<Claim>,
    pub sources: Vec<SourceRef>,
}

fn source_list() -> Vec<SourceRef> {
    let list: [(&str, &str); 28] = [
        ("[R1]", "Adobe's RTMP specification, §5.3 chunking and chunk message headers"),
        ("[FLV1]", "Adobe FLV file format specification (SoundFormat, CodecID); ireader/media-server flv-proto.h"),
        ("[K1]", "Linux include/net/tcp.h: delayed-ACK bounds (HZ/25 … HZ/5) and RTO constants"),
        ("[K2]", "Linux ip-sysctl documentation: the net.ipv4.tcp_fastopen bitmap"),
        ("[K3]", "Linux commit disabling TFO blackhole detection by default (2021)"),
        ("[M1]", "MAMI project measurement report on TCP Fast Open deployment (2017)"),
        ("[O1]", "OBS Studio plugins/obs-x264/obs-x264.c: rate-control defaults"),
        ("[O2]", "OBS Studio plugins/obs-outputs: rtmp-stream.c and librtmp/rtmp.c"),
        ("[O3]", "OBS Studio rtmp-services/data/services.json: platform ingest limits"),
        ("[S1]", "SRS documentation: low-latency guide and full.conf"),
        ("[N1]", "nginx-rtmp-module: ngx_rtmp_core_module.c, ngx_rtmp_live_module.c"),
        ("[NMS]", "Node-Media-Server README (Enhanced RTMP codecs)"),
        ("[T1]", "Twitch Creator Camp: broadcast settings"),
        ("[Y1]", "YouTube Help 2853702: live encoder settings, bitrates"),
        ("[W1]", "Wowza forum/docs: bandwidth sizing = users × bitrate × 1.2"),
        ("[V1]", "Vcodex note on H.264 QP and quantizer step"),
        ("[X1]", "x264 sources: common/base.c, encoder/ratecontrol.c"),
        ("[F1]", "FFmpeg H.264 encoding guide (CRF)"),
        ("[TP]", "TCP throughput models: Mathis 1997, Padhye 1998, RFC 8312"),
        ("RFC 896", "Nagle, Congestion Control in IP/TCP Internetworks (1984)"),
        ("RFC 1122", "Requirements for Internet Hosts: delayed ACK at most 500 ms"),
        ("RFC 7413", "TCP Fast Open"),
        ("RFC 3550", "RTP: A Transport Protocol for Real-Time Applications"),
        ("RFC 8216", "HTTP Live Streaming"),
        ("ISO/IEC 23009-1", "MPEG-DASH"),
        ("RFC 8825", "Overview: Real-Time Protocols for Browser-Based Applications (WebRTC)"),
        ("ITU-T G.114", "One-way transmission time: about 150 ms one-way for interactive use"),
        ("article §5.2", "the seed article's own code listing"),
    ];
    list.iter()
        .map(|(t, r)| SourceRef {
            tag: t.to_string(),
            reference: r.to_string(),
        })
        .collect()
}

/// The audit at the article's own numbers (and the corrected models' defaults).
pub fn audit() -> SeedAudit {
    audit_with(&SeedInputs::default())
}

/// The audit for user-edited inputs (the web lab's sliders).
pub fn audit_with(inputs: &SeedInputs) -> SeedAudit {
    let formulas = vec![
        audit_a1(&inputs.a1),
        audit_a2(&inputs.a2),
        audit_a3(&inputs.a3),
        audit_a4(&inputs.a4),
    ];
    let claims = claims(&inputs.claims);
    let count =
        |pred: &dyn Fn(&FormulaAudit) -> bool| formulas.iter().filter(|f| pred(f)).count() as u32;
    let count_v = |v: Verdict| claims.iter().filter(|c| c.verdict == v).count() as u32;
    let summary = AuditSummary {
        formulas: formulas.len() as u32,
        formulas_reproducing: count(&|f| f.reproduces),
        formulas_dimensionally_consistent: count(&|f| f.dimensions.consistent),
        formulas_with_problems: count(&|f| !f.problems.is_empty()),
        claims: claims.len() as u32,
        claims_wrong: count_v(Verdict::Wrong),
        claims_misleading: count_v(Verdict::Misleading),
        claims_partly_true: count_v(Verdict::PartlyTrue),
    };
    SeedAudit {
        article: ArticleInfo {
            title_zh: s("RTMP流媒体服务器优化"),
            title_en: s("Optimising RTMP streaming servers"),
            file: s("000_5024399d9d661de4.txt"),
            note: s(
                "Machine-written. §4 holds four formulas with worked examples; §2, §3 and §6 \
                     hold the claims below. The formulas are printed exactly as in the article \
                     and evaluated as written.",
            ),
        },
        inputs: inputs.clone(),
        summary,
        formulas,
        claims,
        sources: source_list(),
    }
}

// =================================================================================================
// Plain-text report
// =================================================================================================

const WIDTH: usize = 80;
const LABEL: usize = 14;

fn is_wide(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x115F
            | 0x2E80..=0x303E
            | 0x3041..=0x33FF
            | 0x3400..=0x4DBF
            | 0x4E00..=0x9FFF
            | 0xA000..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6)
}

/// Greedy word wrap by display width (CJK characters count 2 and may break anywhere).
fn wrap_lines(text: &str, width: usize) -> Vec<String> {
    let width = width.max(10);
    let mut lines = Vec::new();
    for para in text.split('\n') {
        // (space before, token, display width)
        let mut tokens: Vec<(bool, String, usize)> = Vec::new();
        let mut pending_space = false;
        let mut open = false;
        for c in para.chars() {
            if c == ' ' {
                pending_space = true;
                open = false;
                continue;
            }
            let w = if is_wide(c) { 2 } else { 1 };
            match tokens.last_mut() {
                Some((_, t, tw)) if open && w == 1 => {
                    t.push(c);
                    *tw += 1;
                }
                _ => {
                    tokens.push((pending_space, c.to_string(), w));
                    open = w == 1;
                }
            }
            pending_space = false;
        }
        let mut line = String::new();
        let mut lw = 0usize;
        for (sp, t, tw) in tokens {
            let need = if lw == 0 { tw } else { tw + usize::from(sp) };
            if lw > 0 && lw + need > width {
                lines.push(core::mem::take(&mut line));
                line.push_str(&t);
                lw = tw;
            } else {
                if lw > 0 && sp {
                    line.push(' ');
                }
                line.push_str(&t);
                lw += need;
            }
        }
        lines.push(line);
    }
    lines
}

fn display_width(text: &str) -> usize {
    text.chars().map(|c| if is_wide(c) { 2 } else { 1 }).sum()
}

fn field(out: &mut String, label: &str, text: &str) {
    for (i, l) in wrap_lines(text, WIDTH - LABEL).iter().enumerate() {
        if i == 0 {
            let pad = (LABEL - 2).saturating_sub(display_width(label));
            out.push_str(&format!("  {label}{:pad$}{l}\n", ""));
        } else {
            out.push_str(&format!("{:w$}{}\n", "", l, w = LABEL));
        }
    }
}

fn bullet(out: &mut String, indent: usize, mark: &str, text: &str) {
    let lead = indent + mark.chars().count() + 1;
    for (i, l) in wrap_lines(text, WIDTH.saturating_sub(lead))
        .iter()
        .enumerate()
    {
        if i == 0 {
            out.push_str(&format!("{:indent$}{} {}\n", "", mark, l, indent = indent));
        } else {
            out.push_str(&format!("{:lead$}{}\n", "", l, lead = lead));
        }
    }
}

fn rule(out: &mut String, c: char) {
    out.extend(core::iter::repeat_n(c, WIDTH));
    out.push('\n');
}

fn render_formula(out: &mut String, f: &FormulaAudit) {
    out.push('\n');
    bullet(out, 0, &f.id, &f.title);
    rule(out, '-');
    field(out, "where", &f.section);
    field(out, "formula", &f.formula);
    field(out, "article", &f.original_zh);
    for (i, x) in f.inputs.iter().enumerate() {
        let text = format!(
            "{} = {} {}  ({}; base dim {})",
            x.symbol,
            fmt_num(x.value),
            x.unit,
            x.meaning,
            x.dim_text
        );
        field(out, if i == 0 { "inputs" } else { "" }, &text);
    }
    field(out, "as written", &f.as_written.text);
    field(out, "claimed", &f.claimed.printed);
    let rep = if f.reproduces {
        "yes, the arithmetic is right".to_string()
    } else {
        format!(
            "NO (the as-written value is {}× the claim)",
            fmt_num(f.claim_ratio)
        )
    };
    field(out, "reproduces?", &rep);
    for c in &f.coincidences {
        field(
            out,
            "",
            &format!(
                "near: {} = {} {} ({})",
                c.expression,
                fmt_num(c.value),
                c.unit,
                fmt_rel(c.relative_difference)
            ),
        );
    }
    field(out, "units", &f.dimensions.note);
    field(out, "verdict", f.verdict.label());
    out.push_str("  problems\n");
    for p in &f.problems {
        bullet(out, 4, &format!("- [{}]", p.kind.tag()), &p.text);
    }
    out.push_str("  corrected\n");
    for c in &f.corrected {
        bullet(
            out,
            4,
            "*",
            &format!("{}: {} = {}", c.title, c.formula, c.value_text),
        );
        for x in &c.extras {
            bullet(
                out,
                8,
                "·",
                &format!("{} ({}) = {}", x.label, x.formula, x.text),
            );
        }
        bullet(out, 6, " ", &c.explanation);
        if !c.sources.is_empty() {
            bullet(out, 6, " ", &format!("sources: {}", c.sources.join(" ")));
        }
    }
    field(out, "sources", &f.sources.join(" "));
}

fn render_claim(out: &mut String, c: &Claim) {
    out.push('\n');
    bullet(
        out,
        0,
        &format!("[{}]", c.id),
        &format!("{}: {}", c.verdict.label(), c.topic),
    );
    field(out, "where", &c.section);
    field(out, "原文", &c.original_zh);
    field(out, "says", &c.translation_en);
    field(out, "correct", &c.correct);
    field(out, "why", &c.explanation);
    for x in &c.figures {
        field(
            out,
            "number",
            &format!("{} = {} = {}", x.label, x.formula, x.text),
        );
    }
    field(out, "sources", &c.sources.join(" "));
}

/// The readable plain-text report (about 80 columns; CJK counted double width).
pub fn render_text(a: &SeedAudit) -> String {
    let mut out = String::new();
    rule(&mut out, '=');
    out.push_str(&format!(
        "SEED ARTICLE AUDIT: {} ({})\n",
        a.article.title_zh, a.article.title_en
    ));
    rule(&mut out, '=');
    bullet(
        &mut out,
        0,
        "",
        &format!("{} ({})", a.article.note, a.article.file),
    );
    let sm = &a.summary;
    bullet(
        &mut out,
        0,
        "",
        &format!(
            "Formulas: {} audited; {} reproduce their printed value; {} have consistent units; \
             {} have problems. Claims: {} checked: {} wrong, {} misleading, {} partly true.",
            sm.formulas,
            sm.formulas_reproducing,
            sm.formulas_dimensionally_consistent,
            sm.formulas_with_problems,
            sm.claims,
            sm.claims_wrong,
            sm.claims_misleading,
            sm.claims_partly_true
        ),
    );
    out.push('\n');
    out.push_str("FORMULAS (§4): as written / claimed / reproduces? / units / corrected\n");
    rule(&mut out, '=');
    for f in &a.formulas {
        render_formula(&mut out, f);
    }
    out.push('\n');
    out.push_str("CLAIMS\n");
    rule(&mut out, '=');
    for c in &a.claims {
        render_claim(&mut out, c);
    }
    out.push('\n');
    out.push_str("SOURCES\n");
    rule(&mut out, '=');
    for src in &a.sources {
        bullet(&mut out, 2, &src.tag, &src.reference);
    }
    out
}

impl fmt::Display for SeedAudit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render_text(self))
    }
}

// =================================================================================================
// Tests
// =================================================================================================

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs()
    }

    fn formula<'a>(a: &'a SeedAudit, id: &str) -> &'a FormulaAudit {
        a.formulas
            .iter()
            .find(|f| f.id == id)
            .expect("formula present")
    }

    #[test]
    fn a1_reproduces_but_model_is_flagged() {
        let a = audit_a1(&A1Inputs::default());
        assert_eq!(a1_as_written(&A1Inputs::default()), 100e6);
        assert!(a.reproduces);
        assert!(a.dimensions.consistent);
        assert_eq!(a.dimensions.derived, Some(Dim::BIT / Dim::SECOND));
        assert!(a.problems.iter().any(|p| p.kind == ProblemKind::Model));
        assert_eq!(a.verdict, Verdict::Misleading);
        // Egress with Wowza's ×1.2, and viewers per 1 Gb/s NIC.
        assert!(rel(a.corrected[0].value, 120e6) < 1e-12);
        assert_eq!(a.corrected[2].value, 833.0);
    }

    #[test]
    fn a1_shared_bottleneck_caps_the_sum() {
        let inp = A1Inputs {
            bottleneck_mbps: 50.0,
            ..A1Inputs::default()
        };
        let a = audit_a1(&inp);
        assert!(rel(a.corrected[1].value, 50e6) < 1e-12);
        assert!(rel(a.corrected[1].extras[0].value, 0.5e6) < 1e-12);
    }

    #[test]
    fn a2_as_written_and_nearest_coincidence() {
        assert_eq!(a2_as_written(&A2Inputs::default()), 6_220_800_000.0);
        let a = audit_a2(&A2Inputs::default());
        assert!(!a.reproduces);
        let c0 = &a.coincidences[0];
        assert_eq!(c0.expression, "w·h·f");
        assert_eq!(c0.value, 62_208_000.0);
        assert_eq!(c0.unit, "pixel/s");
        // Units: pixel/s, not bytes per frame.
        assert!(!a.dimensions.consistent);
        assert_eq!(a.dimensions.derived, Some(Dim::PIXEL / Dim::SECOND));
        assert_eq!(a.dimensions.derived_text, "pixel/s");
        assert!(a.problems.iter().any(|p| p.kind == ProblemKind::Units));
        assert!(a.problems.iter().any(|p| p.kind == ProblemKind::Arithmetic));
    }

    #[test]
    fn a2_corrected_values() {
        let a = audit_a2(&A2Inputs::default());
        assert_eq!(a.corrected[0].value, 3_110_400.0);
        assert!(rel(a.corrected[0].extras[0].value, 746.496e6) < 1e-12);
        assert_eq!(fmt_rate(a.corrected[0].extras[0].value), "746.5 Mb/s");
        assert!(rel(a.corrected[1].value, 6_220_800.0) < 1e-12);
        // q = 100 as a Qstep is QP ≈ 43.86; bits fall to Qstep(23)/100 ≈ 8.98%.
        let qp = qp_from_qstep(100.0);
        assert!((qp - 43.863).abs() < 1e-3);
        assert!(rel(bits_ratio_for_qp(qp, 23.0), qstep_from_qp(23.0) / 100.0) < 1e-12);
    }

    #[test]
    fn qp_law() {
        assert!((qstep_from_qp(4.0) - 1.0).abs() < 1e-15);
        assert!((qstep_from_qp(10.0) - 2.0).abs() < 1e-15);
        assert!((qstep_from_qp(28.0) - 16.0).abs() < 1e-12);
        assert!((bits_ratio_for_qp(29.0, 23.0) - 0.5).abs() < 1e-15);
        assert!(qp_from_qstep(0.0).is_nan());
        assert!(qp_from_qstep(-1.0).is_nan());
    }

    #[test]
    fn a3_as_written_units_and_coincidence() {
        let w = a3_as_written(&A3Inputs::default());
        assert!(rel(w, 3.386_88e11) < 1e-12);
        let a = audit_a3(&A3Inputs::default());
        assert!(!a.reproduces);
        assert!(!a.dimensions.consistent);
        assert_eq!(
            a.dimensions.derived,
            Some(Dim::BIT * Dim::SAMPLE / Dim::SECOND)
        );
        assert!(a.dimensions.note.contains("bit/s"));
        // Compared in base units: 3.39e11 / 2.633e6.
        assert!(rel(a.claim_ratio, 3.386_88e11 / 2.633e6) < 1e-12);
        let c0 = &a.coincidences[0];
        assert_eq!(c0.expression, "s·L");
        assert!(rel(c0.value, 2_646_000.0) < 1e-12);
        assert_eq!(c0.unit, "sample");
        assert!((c0.relative_difference - 0.004_937).abs() < 1e-5);
    }

    #[test]
    fn a3_corrected_values() {
        let a = audit_a3(&A3Inputs::default());
        assert!(rel(a.corrected[0].value, 960_000.0) < 1e-12);
        assert!(rel(a.corrected[1].value, 1_411_200.0) < 1e-12);
        assert!(rel(a.corrected[1].extras[0].value, 10_584_000.0) < 1e-12);
        let aac = &a.corrected[2];
        assert!((aac.value - 371.52).abs() < 0.01);
        assert!((aac.extras[0].value - 43.066).abs() < 1e-3);
    }

    #[test]
    fn a4_category_error_and_magnitude() {
        let a = audit_a4(&A4Inputs::default());
        assert!(a.reproduces);
        assert_eq!(a4_as_written(&A4Inputs::default()), 107e6);
        assert!(!a.dimensions.consistent);
        assert_eq!(a.dimensions.derived, None);
        assert!(a.dimensions.note.contains("category error"));
        assert!(a.problems.iter().any(|p| p.kind == ProblemKind::Category));
        assert!(a.problems.iter().any(|p| p.kind == ProblemKind::Magnitude));
        // The realistic ingest is the 6.55 Mb/s example.
        assert!((a.corrected[1].value / 1e6 - 6.55).abs() < 0.02);
        // VBV: B = 100 Mbit, τ = 0.5 s → 150 Mbit; delay ≤ 1 s.
        assert!(rel(a.corrected[2].value, 150e6) < 1e-12);
        assert!(rel(a.corrected[2].extras[1].value, 1.0) < 1e-12);
    }

    #[test]
    fn rtmp_overhead_matches_models_md() {
        let t0 = MessageHeaderType::Type0;
        let e128 = rtmp_video_overhead_fraction(4e6, 30.0, 128.0, t0) * 100.0;
        let e4096 = rtmp_video_overhead_fraction(4e6, 30.0, 4096.0, t0) * 100.0;
        let e60000 = rtmp_video_overhead_fraction(4e6, 30.0, 60000.0, t0) * 100.0;
        assert!((e128 - 0.88).abs() < 0.05, "{e128}");
        assert!((e4096 - 0.13).abs() < 0.05, "{e4096}");
        assert!((e60000 - 0.10).abs() < 0.05, "{e60000}");
        // Exactly: (12 + 5 + 130)/16666.7 and (12 + 5 + 4)/16666.7.
        assert!((e128 - 147.0 / (4e6 / 240.0) * 100.0).abs() < 1e-9);
        assert!((e4096 - 21.0 / (4e6 / 240.0) * 100.0).abs() < 1e-9);
        // Type 1 (what librtmp sends) is 4 B lighter per frame.
        let t1 = MessageHeaderType::Type1;
        let f128 = rtmp_video_overhead_fraction(4e6, 30.0, 128.0, t1) * 100.0;
        let f4096 = rtmp_video_overhead_fraction(4e6, 30.0, 4096.0, t1) * 100.0;
        assert!((f128 - 0.858).abs() < 1e-3);
        assert!((f4096 - 0.102).abs() < 1e-3);
    }

    #[test]
    fn message_overhead_edges() {
        let m = rtmp_message_overhead(123.0, 2.0, 128.0, 1.0, MessageHeaderType::Type1);
        assert_eq!(m.chunks, 1.0);
        assert_eq!(m.overhead_bytes, 10.0);
        let m = rtmp_message_overhead(126.0, 2.0, 128.0, 1.0, MessageHeaderType::Type1);
        assert_eq!(m.chunks, 1.0);
        let m = rtmp_message_overhead(127.0, 2.0, 128.0, 1.0, MessageHeaderType::Type1);
        assert_eq!(m.chunks, 2.0);
        assert_eq!(m.overhead_bytes, 11.0);
        let z = rtmp_message_overhead(0.0, 5.0, 128.0, 1.0, MessageHeaderType::Type0);
        assert_eq!(z.fraction, 0.0);
        assert!(
            rtmp_message_overhead(10.0, 5.0, 0.0, 1.0, MessageHeaderType::Type0)
                .fraction
                .is_nan()
        );
        assert!(
            rtmp_message_overhead(-1.0, 5.0, 128.0, 1.0, MessageHeaderType::Type0)
                .fraction
                .is_nan()
        );
    }

    #[test]
    fn wire_rate_example() {
        let w = rtmp_wire_rate(6e6, 160e3, 0.0, &WireParams::default());
        assert!((w.wire_bps / 1e6 - 6.55).abs() < 0.02, "{}", w.wire_bps);
        assert!((w.wire_factor - 1538.0 / 1448.0).abs() < 1e-15);
        // Audio ≈ (2 + 8)/464 B at 160 kb/s; (2+8)/371.5 ≈ 2.7% at 128 kb/s.
        let w128 = rtmp_wire_rate(0.0, 128e3, 0.0, &WireParams::default());
        assert!((w128.audio.fraction - 0.0269).abs() < 1e-3);
        assert_eq!(w128.video.fraction, 0.0);
    }

    #[test]
    fn claims_cover_the_brief() {
        let c = claims(&ClaimInputs::default());
        for id in [
            "rtmp-name",
            "nagle",
            "tcp-fast-open",
            "avc-dpcm",
            "fewer-connections",
            "vod-platforms",
            "conferencing",
        ] {
            let claim = c.iter().find(|x| x.id == id).expect(id);
            assert!(!claim.original_zh.is_empty() && !claim.translation_en.is_empty());
            assert!(!claim.sources.is_empty());
        }
        let nagle = c.iter().find(|x| x.id == "nagle").unwrap();
        assert_eq!(nagle.verdict, Verdict::Wrong);
        assert!((nagle.figures[0].value - 1.0 / 30.0).abs() < 1e-12);
        let tfo = c.iter().find(|x| x.id == "tcp-fast-open").unwrap();
        assert!((tfo.figures[0].value - 0.25).abs() < 1e-12);
        assert!((tfo.figures[1].value - 0.20).abs() < 1e-12);
        let live = c.iter().find(|x| x.id == "live-platforms").unwrap();
        assert_eq!(live.verdict, Verdict::PartlyTrue);
    }

    #[test]
    fn default_audit_summary_and_json_round_trip() {
        let a = audit();
        assert_eq!(a.summary.formulas, 4);
        assert_eq!(a.summary.formulas_reproducing, 2);
        assert_eq!(a.summary.formulas_dimensionally_consistent, 1);
        assert_eq!(a.summary.formulas_with_problems, 4);
        assert!(formula(&a, "A1").reproduces);
        assert!(!formula(&a, "A2").reproduces);
        assert!(!formula(&a, "A3").reproduces);
        assert!(formula(&a, "A4").reproduces);
        let json = serde_json::to_string(&a).unwrap();
        let back: SeedAudit = serde_json::from_str(&json).unwrap();
        assert_eq!(back.summary, a.summary);
        assert_eq!(back.inputs, a.inputs);
        assert_eq!(back.claims.len(), a.claims.len());
        // Partial inputs deserialize with defaults.
        let inp: SeedInputs = serde_json::from_str(r#"{"a2":{"fps":60}}"#).unwrap();
        assert_eq!(inp.a2.fps, 60.0);
        assert_eq!(inp.a2.width_px, 1920.0);
    }

    #[test]
    fn text_report_is_readable() {
        let t = audit().to_string();
        // Wrapping may split a needle across lines: compare with whitespace collapsed.
        let flat = t.split_whitespace().collect::<Vec<_>>().join(" ");
        for needle in [
            "58.29",
            "reproduces?",
            "6,220,800,000",
            "746.5 Mb/s",
            "960,000 B",
            "w·h·f = 62,208,000 pixel/s",
            "s·L = 2,646,000 sample",
            "category error",
            "TCP_NODELAY",
            "NO (the as-written value is 128,632× the claim)",
            "6.552 Mb/s",
        ] {
            assert!(flat.contains(needle), "missing {needle}");
        }
        for line in t.lines() {
            let w: usize = line.chars().map(|c| if is_wide(c) { 2 } else { 1 }).sum();
            // A single unbreakable token may overflow; nothing here is that long.
            assert!(w <= WIDTH, "line too wide ({w}): {line}");
        }
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let bad = [
            0.0,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
            -1e300,
            5e-324,
        ];
        for &x in &bad {
            let inp = SeedInputs {
                a1: A1Inputs {
                    connections: x,
                    rate_per_connection_mbps: x,
                    bottleneck_mbps: x,
                    egress_overhead: x,
                },
                a2: A2Inputs {
                    width_px: x,
                    height_px: x,
                    quant_step: x,
                    fps: x,
                    raw_bits_per_pixel: x,
                    coded_bits_per_pixel: x,
                    reference_qp: x,
                    platform_cap_kbps: x,
                },
                a3: A3Inputs {
                    bitrate_kbps: x,
                    sample_rate_khz: x,
                    duration_s: x,
                    pcm_bits_per_sample: x,
                    channels: x,
                    samples_per_frame: x,
                },
                a4: A4Inputs {
                    video_mbps: x,
                    audio_mbps: x,
                    strategy_mbps: x,
                    meta_kbps: x,
                    platform_cap_kbps: x,
                    typical_audio_kbps: x,
                    vbv_buffer_s: x,
                    vbv_window_s: x,
                    wire: WireParams {
                        fps: x,
                        chunk_size_bytes: x,
                        video_header: MessageHeaderType::Type3,
                        audio_header: MessageHeaderType::Type2,
                        basic_header_bytes: x,
                        audio_sample_rate_hz: x,
                        audio_samples_per_frame: x,
                        mss_bytes: x,
                        tcp_ip_header_bytes: x,
                        link_overhead_bytes: x,
                    },
                },
                claims: ClaimInputs {
                    fps: x,
                    rtt_ms: x,
                    delayed_ack_ms: x,
                    rtmp_setup_rtts: x,
                },
            };
            let a = audit_with(&inp);
            let _ = render_text(&a);
            let _ = serde_json::to_string(&a).unwrap();
            if x < 0.0 || !x.is_finite() {
                assert!(a.formulas[0]
                    .problems
                    .iter()
                    .any(|p| p.kind == ProblemKind::Input));
            }
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_sci(6_220_800_000.0), "6.22e9");
        assert_eq!(fmt_sci(2_646_000.0), "2.65e6");
        assert_eq!(fmt_sci(9.999e5), "1e6");
        assert_eq!(fmt_num(6_220_800_000.0), "6,220,800,000");
        assert_eq!(fmt_num(-1234.0), "-1,234");
        assert_eq!(fmt_num(43.0664), "43.07");
        assert_eq!(fmt_num(f64::NAN), "n/a");
        assert_eq!(fmt_rate(746_496_000.0), "746.5 Mb/s");
        assert_eq!(fmt_rate(100e6), "100 Mb/s");
        assert_eq!(fmt_bytes(3_110_400.0), "3.11 MB");
        assert_eq!(fmt_bytes(960_000.0), "960 kB");
        assert_eq!(fmt_pct(0.00882), "0.882%");
        assert_eq!(fmt_sig(0.0, 3), "0");
        assert_eq!(
            Dim::BIT / (Dim::SECOND * Dim::CONNECTION),
            Dim {
                bit: 1,
                second: -1,
                connection: -1,
                ..Dim::ONE
            }
        );
        assert_eq!(
            (Dim::BIT / (Dim::SECOND * Dim::CONNECTION)).symbol(),
            "bit/(connection·s)"
        );
        assert_eq!((Dim::BIT / (Dim::SECOND * Dim::SECOND)).symbol(), "bit/s^2");
        assert_eq!(Dim::ONE.symbol(), "1");
    }

    #[test]
    fn wrap_handles_cjk_and_long_words() {
        let lines = wrap_lines(
            "设RTMP流媒体服务器有 100 个TCP连接，每个连接传输的数据速率为 1Mbps",
            20,
        );
        for l in &lines {
            let w: usize = l.chars().map(|c| if is_wide(c) { 2 } else { 1 }).sum();
            assert!(w <= 20, "{l}");
        }
        let joined: String = lines.concat();
        assert!(joined.contains("100"));
        assert_eq!(wrap_lines("", 20), vec![String::new()]);
    }
}
