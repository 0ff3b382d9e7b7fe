//! The Prometheus text exposition format, version 0.0.4: `# HELP` and `# TYPE` once per
//! family, then its samples, one per line, label values escaped.
//!
//! A family is written only when it has at least one sample, so a broker without TLS
//! ports shows no certificate family rather than an empty one.

use std::fmt::Write as _;

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A sample value: counts are integers; signed for quantities that can be negative
/// (seconds until a certificate expires, once it has expired); floating point for the
/// `process_*` seconds (CPU time, start time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Unsigned(v)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::Unsigned(v as u64)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Signed(v)
    }
}

/// The whole exposition, built family by family.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Start a family. `name` and label names are constants of this crate, checked by the
    /// tests to be valid Prometheus names; only label *values* come from outside.
    pub fn family<'e>(&'e mut self, name: &'static str, kind: Kind, help: &str) -> Family<'e> {
        debug_assert!(is_metric_name(name), "{name}");
        let mut header = String::new();
        let _ = writeln!(header, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(header, "# TYPE {name} {}", kind.as_str());
        Family {
            exposition: self,
            name,
            header,
            samples: String::new(),
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// One family being written; its text reaches the exposition on drop, if it has samples.
pub struct Family<'e> {
    exposition: &'e mut Exposition,
    name: &'static str,
    header: String,
    samples: String,
}

impl Family<'_> {
    /// One sample with these labels (name, value).
    pub fn sample(
        &mut self,
        labels: &[(&'static str, &str)],
        value: impl Into<Value>,
    ) -> &mut Self {
        let s = &mut self.samples;
        s.push_str(self.name);
        if !labels.is_empty() {
            s.push('{');
            for (i, (name, value)) in labels.iter().enumerate() {
                debug_assert!(is_label_name(name), "{name}");
                if i > 0 {
                    s.push(',');
                }
                s.push_str(name);
                s.push_str("=\"");
                escape_label_value(s, value);
                s.push('"');
            }
            s.push('}');
        }
        let _ = match value.into() {
            Value::Unsigned(v) => writeln!(s, " {v}"),
            Value::Signed(v) => writeln!(s, " {v}"),
            // `Display` never uses an exponent; the text format's own spellings for the
            // values it lacks.
            Value::Float(v) if v.is_nan() => writeln!(s, " NaN"),
            Value::Float(v) if v.is_infinite() => {
                writeln!(s, " {}", if v > 0.0 { "+Inf" } else { "-Inf" })
            }
            Value::Float(v) => writeln!(s, " {v}"),
        };
        self
    }
}

impl Drop for Family<'_> {
    fn drop(&mut self) {
        if !self.samples.is_empty() {
            self.exposition.out.push_str(&self.header);
            self.exposition.out.push_str(&self.samples);
        }
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text escapes backslash and line feed (not double quotes).
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_help_type_and_samples_with_escaped_label_values() {
        let mut e = Exposition::default();
        e.family(
            "demo_total",
            Kind::Counter,
            "Line one\nback\\slash \"quoted\"",
        )
        .sample(&[("listener", "a\"b\\c\nd"), ("port", "1883")], 7u64)
        .sample(&[("listener", "plain"), ("port", "8883")], 0u64);
        e.family("demo_seconds", Kind::Gauge, "Signed.")
            .sample(&[], -5i64);
        e.family("demo_float", Kind::Gauge, "Float.")
            .sample(&[("v", "a")], 1733500000.25f64)
            .sample(&[("v", "b")], f64::INFINITY);
        assert_eq!(
            e.finish(),
            "# HELP demo_total Line one\\nback\\\\slash \"quoted\"\n\
             # TYPE demo_total counter\n\
             demo_total{listener=\"a\\\"b\\\\c\\nd\",port=\"1883\"} 7\n\
             demo_total{listener=\"plain\",port=\"8883\"} 0\n\
             # HELP demo_seconds Signed.\n\
             # TYPE demo_seconds gauge\n\
             demo_seconds -5\n\
             # HELP demo_float Float.\n\
             # TYPE demo_float gauge\n\
             demo_float{v=\"a\"} 1733500000.25\n\
             demo_float{v=\"b\"} +Inf\n"
        );
    }

    #[test]
    fn a_family_without_samples_is_left_out() {
        let mut e = Exposition::default();
        e.family("empty", Kind::Gauge, "Nothing.");
        e.family("one", Kind::Gauge, "One.").sample(&[], 1u64);
        assert_eq!(e.finish(), "# HELP one One.\n# TYPE one gauge\none 1\n");
    }

    #[test]
    fn names_follow_the_prometheus_grammar() {
        assert!(is_metric_name("gatehouse_messages_received_total"));
        assert!(is_metric_name("a:b_c9"));
        assert!(!is_metric_name("9a"));
        assert!(!is_metric_name("a-b"));
        assert!(!is_metric_name(""));
        assert!(is_label_name("listener"));
        assert!(!is_label_name("__name__"));
        assert!(!is_label_name("a:b"));
        assert!(!is_label_name("1a"));
    }
}
