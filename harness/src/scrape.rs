//! Reading metrics in the Prometheus text format the proxy serves.

/// One scrape of metrics, in Prometheus (OpenMetrics) text format: a harness's
/// ([`super::Harness::scrape`]) or a proxy's `/metrics`.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// The exposition text, as served.
    pub text: String,
}

impl Scrape {
    /// The sum of the samples named exactly `name` whose labels include every pair in
    /// `labels` (other labels may be present); `None` when no sample matches.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples(name)
            .filter(|sample| {
                labels
                    .iter()
                    .all(|(k, v)| sample.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .map(|sample| sample.value)
            .reduce(|a, b| a + b)
    }

    /// Like [`Scrape::value`], but an error listing the samples of that name when none matches.
    pub fn require(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64, MissingSample> {
        self.value(name, labels).ok_or_else(|| MissingSample {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect::<Vec<_>>()
                .join(","),
            same_name: self
                .text
                .lines()
                .filter(|line| line.starts_with(name))
                .collect::<Vec<_>>()
                .join("\n"),
        })
    }

    fn samples<'a>(&'a self, name: &'a str) -> impl Iterator<Item = Sample> + 'a {
        self.text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(parse_sample)
            .filter(move |sample| sample.name == name)
    }
}

#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Parses `name{k="v",...} value [timestamp]`. Label values with escaped quotes are not
/// needed by these tests and are not handled.
fn parse_sample(line: &str) -> Option<Sample> {
    let (series, rest) = match line.find('{') {
        Some(open) => {
            let close = open + line[open..].find('}')?;
            (&line[..=close], &line[close + 1..])
        }
        None => line.split_at(line.find(' ')?),
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, labels)) => (name, labels.trim_end_matches('}')),
        None => (series, ""),
    };
    let labels = labels
        .split(',')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        })
        .collect();
    Some(Sample {
        name: name.trim().to_owned(),
        labels,
        value,
    })
}

/// No sample matched a [`Scrape::require`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("no sample {name}{{{labels}}}; samples of that name:\n{same_name}")]
pub struct MissingSample {
    name: String,
    labels: String,
    same_name: String,
}
