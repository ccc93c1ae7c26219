//! Repeated measurements, their medians, and the markdown tables the macro benchmark prints.

use std::time::Duration;

/// The repeated timings of one thing measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples(pub Vec<Duration>);

impl Samples {
    /// Adds one timing.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// The median in seconds (the mean of the middle two for an even count); NaN when empty.
    pub fn median(&self) -> f64 {
        let mut s: Vec<f64> = self.0.iter().map(Duration::as_secs_f64).collect();
        if s.is_empty() {
            return f64::NAN;
        }
        s.sort_by(f64::total_cmp);
        let mid = s.len() / 2;
        if s.len() % 2 == 1 {
            s[mid]
        } else {
            (s[mid - 1] + s[mid]) / 2.0
        }
    }

    /// The smallest timing in seconds; NaN when empty.
    pub fn min(&self) -> f64 {
        self.0
            .iter()
            .map(Duration::as_secs_f64)
            .min_by(f64::total_cmp)
            .unwrap_or(f64::NAN)
    }

    /// The largest timing in seconds; NaN when empty.
    pub fn max(&self) -> f64 {
        self.0
            .iter()
            .map(Duration::as_secs_f64)
            .max_by(f64::total_cmp)
            .unwrap_or(f64::NAN)
    }
}

/// The median of the paired differences `a[i] - b[i]` in seconds: for measurements taken in turns,
/// so a slow moment of the machine hits both members of a pair. NaN when there is no pair.
pub fn paired_difference(a: &Samples, b: &Samples) -> f64 {
    let diffs =
        a.0.iter()
            .zip(&b.0)
            .map(|(x, y)| x.as_secs_f64() - y.as_secs_f64());
    let mut d: Vec<f64> = diffs.collect();
    if d.is_empty() {
        return f64::NAN;
    }
    d.sort_by(f64::total_cmp);
    let mid = d.len() / 2;
    if d.len() % 2 == 1 {
        d[mid]
    } else {
        (d[mid - 1] + d[mid]) / 2.0
    }
}

/// A markdown table built row by row.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headings; the first column is left-aligned, the rest right.
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are left empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cols = self.header.len();
        let mut width: Vec<usize> = self.header.iter().map(|h| h.len().max(3)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(cols) {
                width[i] = width[i].max(cell.len());
            }
        }
        let line = |cells: &[String], f: &mut std::fmt::Formatter<'_>| -> std::fmt::Result {
            write!(f, "|")?;
            for (i, w) in width.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                if i == 0 {
                    write!(f, " {cell:<w$} |")?;
                } else {
                    write!(f, " {cell:>w$} |")?;
                }
            }
            writeln!(f)
        };
        line(&self.header, f)?;
        write!(f, "|")?;
        for (i, w) in width.iter().enumerate() {
            let dashes = "-".repeat(*w);
            if i == 0 {
                write!(f, "{dashes}--|")?;
            } else {
                write!(f, "-{dashes}:|")?;
            }
        }
        writeln!(f)?;
        for row in &self.rows {
            line(row, f)?;
        }
        Ok(())
    }
}

/// Seconds with two decimals, or `n/a`.
pub fn secs(s: f64) -> String {
    if s.is_finite() {
        format!("{s:.2}")
    } else {
        "n/a".into()
    }
}

/// Milliseconds, or `n/a`.
pub fn millis(s: f64) -> String {
    if s.is_finite() {
        format!("{:.0} ms", s * 1000.0)
    } else {
        "n/a".into()
    }
}

/// `a / b` as `1.23x`, or `n/a`.
pub fn ratio(a: f64, b: f64) -> String {
    let r = a / b;
    if r.is_finite() {
        format!("{r:.2}x")
    } else {
        "n/a".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(secs: &[f64]) -> Samples {
        Samples(secs.iter().map(|s| Duration::from_secs_f64(*s)).collect())
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(samples(&[3.0, 1.0, 2.0]).median(), 2.0);
        assert_eq!(samples(&[4.0, 1.0, 2.0, 3.0]).median(), 2.5);
        assert!(samples(&[]).median().is_nan());
        assert_eq!(samples(&[3.0, 1.0, 2.0]).min(), 1.0);
        assert_eq!(samples(&[3.0, 1.0, 2.0]).max(), 3.0);
    }

    #[test]
    fn paired_differences_take_the_median() {
        let a = samples(&[5.0, 2.0, 3.0]);
        let b = samples(&[4.5, 1.0, 2.9]);
        assert!((paired_difference(&a, &b) - 0.5).abs() < 1e-9);
        assert!(paired_difference(&a, &samples(&[])).is_nan());
    }

    #[test]
    fn table_is_markdown() {
        let mut t = Table::new(&["what", "s"]);
        t.row(vec!["library".into(), secs(1.234)]);
        let text = t.to_string();
        assert_eq!(
            text,
            "| what    |    s |\n|---------|-----:|\n| library | 1.23 |\n"
        );
        assert_eq!(ratio(2.0, 1.0), "2.00x");
        assert_eq!(ratio(1.0, 0.0), "n/a");
        assert_eq!(millis(0.1234), "123 ms");
    }
}
