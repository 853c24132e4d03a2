//! How numbers read in tables and on charts.

/// A measured value with three significant digits and no exponent: `0.215`, `12.3`, `5040`.
pub fn value(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (2 - magnitude).clamp(0, 9) as usize;
    format!("{x:.decimals$}")
}

/// A count such as a concurrency level: whole numbers without decimals (`8`), others as
/// [`value`].
pub fn count(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        value(x)
    }
}

/// A rate (operations or requests per second) with three significant digits and an SI
/// prefix from a thousand on: `912`, `12.3k`, `3.83M`.
pub fn rate(x: f64) -> String {
    let a = x.abs();
    if a >= 1e9 {
        format!("{}G", value(x / 1e9))
    } else if a >= 1e6 {
        format!("{}M", value(x / 1e6))
    } else if a >= 1e3 {
        format!("{}k", value(x / 1e3))
    } else {
        value(x)
    }
}

/// A slowdown factor with two decimals: `1.42×`.
pub fn factor(x: f64) -> String {
    format!("{x:.2}×")
}

/// A relative spread (fraction of the median) as `±1.3%`.
pub fn spread(rel: f64) -> String {
    format!("±{:.1}%", rel * 100.0)
}

/// A relative change (`after / before − 1`) as `+4.2%` or `−3.1%`.
pub fn change(rel: f64) -> String {
    let pct = rel * 100.0;
    if pct < 0.0 {
        format!("−{:.1}%", -pct)
    } else {
        format!("+{pct:.1}%")
    }
}

/// Text made safe for a markdown table cell.
pub fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Numbered footnotes for a markdown document; the same text gets the same number.
#[derive(Debug, Default)]
pub struct Footnotes(Vec<String>);

impl Footnotes {
    /// The marker (`[n]`) for `text`, adding it if new.
    pub fn mark(&mut self, text: String) -> String {
        let n = match self.0.iter().position(|t| *t == text) {
            Some(i) => i + 1,
            None => {
                self.0.push(text);
                self.0.len()
            }
        };
        format!("[{n}]")
    }

    /// The notes as a markdown list, `[n] text` per line; empty when there are none.
    pub fn render(&self) -> String {
        self.0
            .iter()
            .enumerate()
            .map(|(i, t)| format!("[{}] {}\n", i + 1, t))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_three_significant_digits() {
        assert_eq!(value(0.2149), "0.215");
        assert_eq!(value(12.34), "12.3");
        assert_eq!(value(123.4), "123");
        assert_eq!(value(5040.2), "5040");
        assert_eq!(value(0.001234), "0.00123");
    }

    #[test]
    fn rates_take_an_si_prefix_from_a_thousand() {
        assert_eq!(rate(912.4), "912");
        assert_eq!(rate(1000.0), "1.00k");
        assert_eq!(rate(12_345.0), "12.3k");
        assert_eq!(rate(3_826_001.0), "3.83M");
        assert_eq!(rate(2.5e9), "2.50G");
    }

    #[test]
    fn changes_carry_a_sign() {
        assert_eq!(change(-0.031), "−3.1%");
        assert_eq!(change(0.042), "+4.2%");
    }
}
