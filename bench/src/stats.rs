//! Figures over repeated runs: median with min and max, and percentiles.

/// One figure measured `n` times.
#[derive(Debug, Clone)]
pub struct Stat {
    /// Every run's value.
    pub values: Vec<f64>,
}

impl Stat {
    /// From the runs' values.
    pub fn of(values: Vec<f64>) -> Stat {
        assert!(!values.is_empty(), "a figure needs at least one run");
        Stat { values }
    }

    /// The median (upper median for an even count).
    pub fn median(&self) -> f64 {
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    /// The smallest value.
    pub fn min(&self) -> f64 {
        self.values.iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// The largest value.
    pub fn max(&self) -> f64 {
        self.values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// `median (min–max)` with `decimals` digits; just the value for one run.
    pub fn show(&self, decimals: usize) -> String {
        if self.values.len() == 1 {
            return format!("{:.*}", decimals, self.values[0]);
        }
        format!(
            "{:.*} ({:.*}–{:.*})",
            decimals,
            self.median(),
            decimals,
            self.min(),
            decimals,
            self.max()
        )
    }
}

/// The `p` quantile (0..=1) of sorted values, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Collects named figures run by run: `add("x", v)` once per run.
#[derive(Default)]
pub struct Figures {
    names: Vec<String>,
    values: Vec<Vec<f64>>,
}

impl Figures {
    /// Records one run's value of `name`.
    pub fn add(&mut self, name: &str, value: f64) {
        match self.names.iter().position(|n| n == name) {
            Some(i) => self.values[i].push(value),
            None => {
                self.names.push(name.to_string());
                self.values.push(vec![value]);
            }
        }
    }

    /// The names recorded so far that start with `prefix`, in the order first recorded.
    pub fn names_with(&self, prefix: &str) -> Vec<String> {
        self.names.iter().filter(|n| n.starts_with(prefix)).cloned().collect()
    }

    /// The figure `name` over all runs.
    pub fn get(&self, name: &str) -> Stat {
        let i = self
            .names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("no figure `{name}`"));
        Stat::of(self.values[i].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max_and_percentiles() {
        let s = Stat::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.median(), s.min(), s.max()), (2.0, 1.0, 3.0));
        assert_eq!(s.show(1), "2.0 (1.0–3.0)");
        assert_eq!(Stat::of(vec![5.0]).show(0), "5");
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 501.0);
        assert_eq!(percentile(&v, 0.999), 999.0);
    }
}
