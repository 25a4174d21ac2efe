//! Search spaces: parameter distributions, conditional parameters, and their
//! mapping to the unit interval that samplers work in.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A parameter value as users see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// A boolean (categorical choice).
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string (categorical choice).
    Str(String),
}

impl ParamValue {
    /// The value as a float, for numeric values.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            ParamValue::Int(i) => Some(i as f64),
            ParamValue::Float(f) => Some(f),
            _ => None,
        }
    }

    /// The value as an integer, for integer values.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            ParamValue::Int(i) => Some(i),
            _ => None,
        }
    }

    /// The value as a string, for string values.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ParamValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl From<f64> for ParamValue {
    fn from(x: f64) -> Self {
        ParamValue::Float(x)
    }
}
impl From<i64> for ParamValue {
    fn from(x: i64) -> Self {
        ParamValue::Int(x)
    }
}
impl From<&str> for ParamValue {
    fn from(x: &str) -> Self {
        ParamValue::Str(x.to_owned())
    }
}
impl From<bool> for ParamValue {
    fn from(x: bool) -> Self {
        ParamValue::Bool(x)
    }
}

/// A parameter's distribution (its domain and scale).
///
/// Internally every value is a float: the value itself for floats and integers, the
/// index for categorical choices. Samplers work on the unit interval through
/// [`Distribution::from_unit`] and [`Distribution::to_unit`], which apply log scales
/// and steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
#[non_exhaustive]
pub enum Distribution {
    /// A float in `[low, high]`, optionally on a log scale or on a grid `low + k·step`.
    Float {
        /// Lower bound (inclusive).
        low: f64,
        /// Upper bound (inclusive).
        high: f64,
        /// Sample uniformly in log space.
        #[serde(default)]
        log: bool,
        /// Grid step.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<f64>,
    },
    /// An integer in `[low, high]` on the grid `low + k·step`, optionally on a log scale.
    Int {
        /// Lower bound (inclusive).
        low: i64,
        /// Upper bound (inclusive).
        high: i64,
        /// Sample uniformly in log space (step must be 1).
        #[serde(default)]
        log: bool,
        /// Grid step (default 1).
        #[serde(default = "one")]
        step: i64,
    },
    /// One of a list of choices (no order among them).
    Categorical {
        /// The choices.
        choices: Vec<ParamValue>,
    },
}

fn one() -> i64 {
    1
}

/// Whole steps of size `s` from `low` to `high` (tolerating rounding just below a
/// multiple), i.e. the index of the last grid point of a stepped float.
fn grid_steps(low: f64, high: f64, s: f64) -> f64 {
    ((high - low) / s + 1e-9).floor()
}

impl Distribution {
    /// A float in `[low, high]`.
    pub fn float(low: f64, high: f64) -> Self {
        Distribution::Float {
            low,
            high,
            log: false,
            step: None,
        }
    }

    /// An integer in `[low, high]`.
    pub fn int(low: i64, high: i64) -> Self {
        Distribution::Int {
            low,
            high,
            log: false,
            step: 1,
        }
    }

    /// One of `choices`.
    pub fn categorical<T: Into<ParamValue>>(choices: impl IntoIterator<Item = T>) -> Self {
        Distribution::Categorical {
            choices: choices.into_iter().map(Into::into).collect(),
        }
    }

    /// The same distribution on a log scale (floats and integers).
    pub fn log(mut self) -> Self {
        match &mut self {
            Distribution::Float { log, .. } | Distribution::Int { log, .. } => *log = true,
            Distribution::Categorical { .. } => {}
        }
        self
    }

    /// The same distribution on a grid with this step (floats).
    pub fn step(mut self, s: f64) -> Self {
        if let Distribution::Float { step, .. } = &mut self {
            *step = Some(s);
        }
        self
    }

    /// The same distribution on a grid with this step (integers).
    pub fn int_step(mut self, s: i64) -> Self {
        if let Distribution::Int { step, .. } = &mut self {
            *step = s;
        }
        self
    }

    /// Checks the definition and snaps `high` down onto the step grid (as Optuna does).
    ///
    /// # Errors
    /// [`Error::InvalidDistribution`] naming the parameter.
    pub fn validated(self, name: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidDistribution {
            name: name.to_owned(),
            reason,
        };
        match self {
            Distribution::Float {
                low,
                high,
                log,
                step,
            } => {
                if !low.is_finite() || !high.is_finite() {
                    return Err(bad(format!("bounds must be finite, got [{low}, {high}]")));
                }
                if low > high {
                    return Err(bad(format!("low {low} is above high {high}")));
                }
                if log && low <= 0.0 {
                    return Err(bad(format!("a log scale needs low > 0, got {low}")));
                }
                let high = match step {
                    Some(s) if !(s.is_finite() && s > 0.0) => {
                        return Err(bad(format!("step must be positive, got {s}")))
                    }
                    Some(_) if log => return Err(bad("step and log cannot be combined".into())),
                    Some(s) => low + grid_steps(low, high, s) * s,
                    None => high,
                };
                Ok(Distribution::Float {
                    low,
                    high,
                    log,
                    step,
                })
            }
            Distribution::Int {
                low,
                high,
                log,
                step,
            } => {
                if low > high {
                    return Err(bad(format!("low {low} is above high {high}")));
                }
                if step < 1 {
                    return Err(bad(format!("step must be at least 1, got {step}")));
                }
                if log && (low < 1 || step != 1) {
                    return Err(bad("a log scale needs low >= 1 and step 1".into()));
                }
                let high = low + (high - low) / step * step;
                Ok(Distribution::Int {
                    low,
                    high,
                    log,
                    step,
                })
            }
            Distribution::Categorical { choices } => {
                if choices.is_empty() {
                    return Err(bad("no choices".into()));
                }
                for (i, c) in choices.iter().enumerate() {
                    if matches!(c, ParamValue::Float(x) if !x.is_finite()) {
                        return Err(bad(format!("choice {c} is not finite")));
                    }
                    if choices[..i].contains(c) {
                        return Err(bad(format!("choice {c} is listed twice")));
                    }
                }
                Ok(Distribution::Categorical { choices })
            }
        }
    }

    /// Whether the distribution is categorical.
    pub fn is_categorical(&self) -> bool {
        matches!(self, Distribution::Categorical { .. })
    }

    /// Number of distinct values, if finite (integers, stepped floats, categorical).
    pub fn cardinality(&self) -> Option<u64> {
        match *self {
            Distribution::Float {
                low,
                high,
                step: Some(s),
                ..
            } => Some(grid_steps(low, high, s) as u64 + 1),
            Distribution::Float { .. } => None,
            Distribution::Int {
                low, high, step, ..
            } => Some(((high - low) / step) as u64 + 1),
            Distribution::Categorical { ref choices } => Some(choices.len() as u64),
        }
    }

    /// The internal float of a user value, or `None` if the value is not in the distribution.
    pub fn to_internal(&self, v: &ParamValue) -> Option<f64> {
        match self {
            Distribution::Float {
                low, high, step, ..
            } => {
                let x = v.as_f64()?;
                let on_grid = step.is_none_or(|s| {
                    let k = (x - low) / s;
                    (k - k.round()).abs() < 1e-8
                });
                (x >= *low && x <= *high && on_grid).then_some(x)
            }
            Distribution::Int {
                low, high, step, ..
            } => {
                let x = v.as_i64()?;
                (x >= *low && x <= *high && (x - low) % step == 0).then_some(x as f64)
            }
            Distribution::Categorical { choices } => {
                choices.iter().position(|c| c == v).map(|i| i as f64)
            }
        }
    }

    /// The user value of an internal float (which must come from this distribution).
    pub fn to_external(&self, x: f64) -> ParamValue {
        match self {
            Distribution::Float { .. } => ParamValue::Float(x),
            Distribution::Int { .. } => ParamValue::Int(x.round() as i64),
            Distribution::Categorical { choices } => {
                choices[(x.round().max(0.0) as usize).min(choices.len() - 1)].clone()
            }
        }
    }

    /// Maps `u` in `[0, 1]` to an internal value: uniform on the (log) scale, rounded
    /// onto the step grid; integers and choices get equal-width cells.
    pub fn from_unit(&self, u: f64) -> f64 {
        let u = u.clamp(0.0, 1.0);
        match *self {
            Distribution::Float {
                low,
                high,
                log,
                step,
            } => {
                if log {
                    (low.ln() + u * (high.ln() - low.ln()))
                        .exp()
                        .clamp(low, high)
                } else if let Some(s) = step {
                    let n = grid_steps(low, high, s);
                    let k = (u * (n + 1.0)).floor().min(n);
                    (low + k * s).min(high)
                } else {
                    (low + u * (high - low)).clamp(low, high)
                }
            }
            Distribution::Int {
                low,
                high,
                log,
                step,
            } => {
                if log {
                    let (a, b) = ((low as f64 - 0.5).ln(), (high as f64 + 0.5).ln());
                    ((a + u * (b - a)).exp().round() as i64).clamp(low, high) as f64
                } else {
                    let n = (high - low) / step;
                    let k = ((u * (n + 1) as f64).floor() as i64).min(n);
                    (low + k * step) as f64
                }
            }
            Distribution::Categorical { ref choices } => {
                let n = choices.len();
                ((u * n as f64).floor() as usize).min(n - 1) as f64
            }
        }
    }

    /// Maps an internal value to the centre of its cell in `[0, 1]` (inverse of
    /// [`Distribution::from_unit`] up to rounding).
    pub fn to_unit(&self, x: f64) -> f64 {
        match *self {
            Distribution::Float {
                low,
                high,
                log,
                step,
            } => {
                if high == low {
                    return 0.5;
                }
                if log {
                    (x.ln() - low.ln()) / (high.ln() - low.ln())
                } else if let Some(s) = step {
                    let n = grid_steps(low, high, s);
                    (((x - low) / s).round() + 0.5) / (n + 1.0)
                } else {
                    (x - low) / (high - low)
                }
            }
            Distribution::Int {
                low,
                high,
                log,
                step,
            } => {
                if log {
                    let (a, b) = ((low as f64 - 0.5).ln(), (high as f64 + 0.5).ln());
                    (x.ln() - a) / (b - a)
                } else {
                    let n = ((high - low) / step) as f64;
                    (((x - low as f64) / step as f64).round() + 0.5) / (n + 1.0)
                }
            }
            Distribution::Categorical { ref choices } => (x + 0.5) / choices.len() as f64,
        }
    }
}

/// A parameter that exists only when its parent takes one of some values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The parent parameter (defined earlier in the space).
    pub parent: String,
    /// The parent values for which this parameter is active.
    pub values: Vec<ParamValue>,
}

/// One parameter of a search space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    /// The parameter's name.
    pub name: String,
    /// Its distribution.
    pub distribution: Distribution,
    /// When it is active (always, if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
}

/// Parameter values of one trial, by name.
pub type Params = BTreeMap<String, ParamValue>;

/// A search space defined up front (for the define-by-run style, see
/// [`crate::Trial::suggest`]): parameters in order, each possibly conditional on an
/// earlier one.
///
/// # Examples
/// ```
/// use autoglm_tune::{Distribution, SearchSpace};
/// # fn main() -> autoglm_tune::Result<()> {
/// let space = SearchSpace::default()
///     .with("lr", Distribution::float(1e-5, 1e-1).log())?
///     .with("optimizer", Distribution::categorical(["sgd", "adamw"]))?
///     .with_conditional("momentum", Distribution::float(0.0, 0.99), "optimizer", ["sgd"])?;
/// assert_eq!(space.params().len(), 3);
/// let json = serde_json::to_string(&space).unwrap();
/// assert_eq!(SearchSpace::from_json(&json)?, space);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSpace {
    params: Vec<ParamSpec>,
}

impl SearchSpace {
    /// Adds an unconditional parameter.
    ///
    /// # Errors
    /// An invalid distribution or a duplicate name.
    pub fn with(self, name: &str, distribution: Distribution) -> Result<Self> {
        self.push(ParamSpec {
            name: name.to_owned(),
            distribution,
            condition: None,
        })
    }

    /// Adds a parameter active only when `parent` (defined earlier) takes one of `values`.
    ///
    /// # Errors
    /// An invalid distribution, a duplicate name, an unknown parent or parent values
    /// outside the parent's distribution.
    pub fn with_conditional<T: Into<ParamValue>>(
        self,
        name: &str,
        distribution: Distribution,
        parent: &str,
        values: impl IntoIterator<Item = T>,
    ) -> Result<Self> {
        self.push(ParamSpec {
            name: name.to_owned(),
            distribution,
            condition: Some(Condition {
                parent: parent.to_owned(),
                values: values.into_iter().map(Into::into).collect(),
            }),
        })
    }

    fn push(mut self, mut spec: ParamSpec) -> Result<Self> {
        spec.distribution = spec.distribution.validated(&spec.name)?;
        if self.params.iter().any(|p| p.name == spec.name) {
            return Err(Error::Space(format!(
                "parameter '{}' is defined twice",
                spec.name
            )));
        }
        if let Some(c) = &spec.condition {
            let parent = self
                .params
                .iter()
                .find(|p| p.name == c.parent)
                .ok_or_else(|| {
                    Error::Space(format!(
                        "parameter '{}': condition parent '{}' is not defined before it",
                        spec.name, c.parent
                    ))
                })?;
            for v in &c.values {
                if parent.distribution.to_internal(v).is_none() {
                    return Err(Error::Space(format!(
                        "parameter '{}': condition value {v} is not a value of '{}'",
                        spec.name, c.parent
                    )));
                }
            }
        }
        self.params.push(spec);
        Ok(self)
    }

    /// Parses and validates a space from JSON (`{"params": [{"name", "distribution",
    /// "condition"?}, …]}`); unknown fields are errors with their line and column.
    ///
    /// # Errors
    /// [`Error::Space`] naming the line, column and field, or what is invalid.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text)
            .map_err(|e| Error::Space(e.to_string()))
            .and_then(SearchSpace::revalidated)
    }

    /// Validates a deserialised space by rebuilding it parameter by parameter.
    fn revalidated(raw: SearchSpace) -> Result<Self> {
        raw.params
            .into_iter()
            .try_fold(SearchSpace::default(), |s, p| s.push(p))
    }

    /// Parses and validates a space from YAML, with the same schema as
    /// [`SearchSpace::from_json`]:
    ///
    /// ```
    /// # fn main() -> autoglm_tune::Result<()> {
    /// let space = autoglm_tune::SearchSpace::from_yaml(
    ///     "params:
    ///   - name: lr
    ///     distribution: {type: float, low: 1.0e-5, high: 0.1, log: true}
    ///   - name: optimizer
    ///     distribution: {type: categorical, choices: [sgd, adamw]}
    ///   - name: momentum
    ///     distribution: {type: float, low: 0.0, high: 0.99}
    ///     condition: {parent: optimizer, values: [sgd]}
    /// ",
    /// )?;
    /// assert_eq!(space.params().len(), 3);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Space`] naming the line, column and field, or what is invalid.
    #[cfg(feature = "yaml")]
    pub fn from_yaml(text: &str) -> Result<Self> {
        serde_saphyr::from_str(text)
            .map_err(|e| Error::Space(e.to_string()))
            .and_then(SearchSpace::revalidated)
    }

    /// The parameters, in definition order.
    pub fn params(&self) -> &[ParamSpec] {
        &self.params
    }

    /// Whether `spec` is active given the values chosen so far.
    pub fn is_active(&self, spec: &ParamSpec, chosen: &Params) -> bool {
        match &spec.condition {
            None => true,
            Some(c) => chosen.get(&c.parent).is_some_and(|v| c.values.contains(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_mapping_respects_scale_and_steps() {
        let d = Distribution::float(0.0, 1.0)
            .step(0.25)
            .validated("x")
            .unwrap();
        let vals: Vec<f64> = [0.0, 0.19, 0.21, 0.99, 1.0]
            .iter()
            .map(|&u| d.from_unit(u))
            .collect();
        assert_eq!(vals, [0.0, 0.0, 0.25, 1.0, 1.0]);
        let d = Distribution::int(1, 8).validated("n").unwrap();
        assert_eq!(d.from_unit(0.0), 1.0);
        assert_eq!(d.from_unit(0.999), 8.0);
        assert_eq!(d.from_unit(d.to_unit(5.0)), 5.0);
        let d = Distribution::float(1e-5, 1e-1)
            .log()
            .validated("lr")
            .unwrap();
        assert!((d.from_unit(0.5) - 1e-3).abs() < 1e-12);
        let d = Distribution::int(0, 10).int_step(3).validated("k").unwrap();
        assert_eq!(
            d,
            Distribution::Int {
                low: 0,
                high: 9,
                log: false,
                step: 3
            }
        );
    }

    #[test]
    fn invalid_definitions_name_the_parameter() {
        let e = Distribution::float(1.0, 0.0).validated("lr").unwrap_err();
        assert_eq!(e.to_string(), "parameter 'lr': low 1 is above high 0");
        let e = Distribution::float(0.0, 1.0)
            .log()
            .validated("lr")
            .unwrap_err();
        assert!(e.to_string().contains("log scale needs low > 0"));
        let e = SearchSpace::from_json(r#"{"params": [{"name": "x", "distribution": {"type": "float", "low": 0, "hihg": 1}}]}"#)
            .unwrap_err();
        assert!(
            e.to_string().contains("unknown field `hihg`") && e.to_string().contains("line 1"),
            "{e}"
        );
        let e = SearchSpace::default()
            .with_conditional("m", Distribution::float(0.0, 1.0), "opt", ["sgd"])
            .unwrap_err();
        assert!(e.to_string().contains("parent 'opt' is not defined"));
    }

    #[cfg(feature = "yaml")]
    #[test]
    fn malformed_yaml_names_the_line_and_field() {
        let text = "params:\n  - name: x\n    distribution: {type: float, low: 0, hihg: 1}\n";
        let e = SearchSpace::from_yaml(text).unwrap_err().to_string();
        assert!(e.contains("hihg") && e.contains("line 3"), "{e}");
        let text = "params:\n  - name: x\n    distribution:\n      type: int\n      low: a\n      high: 3\n";
        let e = SearchSpace::from_yaml(text).unwrap_err().to_string();
        // Tagged distributions are buffered, so the position is the distribution's.
        assert!(
            e.contains("line 3") && e.contains(r#"string "a", expected i64"#),
            "{e}"
        );
        let text = "params:\n  - name: x\n    distribution: {type: float, low: 2, high: 1}\n";
        let e = SearchSpace::from_yaml(text).unwrap_err().to_string();
        assert_eq!(e, "parameter 'x': low 2 is above high 1");
        let text = "params:\n  - name: m\n    distribution: {type: float, low: 0, high: 1}\n    condition: {parent: opt, values: [sgd]}\n";
        let e = SearchSpace::from_yaml(text).unwrap_err().to_string();
        assert!(e.to_string().contains("parent 'opt' is not defined"));
    }
}
