//! [`MetricsPage`]: one scrape of a daemon's `GET /metrics` over HTTP, parsed from Prometheus'
//! text format into series (a name, its labels, its value) that tests look up.
use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use anyhow::{Context, Result, bail};

/// One series: its labels and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed /metrics page.
#[derive(Clone, Debug, Default)]
pub struct MetricsPage {
    /// Every sample line, by metric name, in the page's order.
    series: BTreeMap<String, Vec<Series>>,
    /// The page as served (the body only).
    pub text: String,
}

impl MetricsPage {
    /// Scrapes `GET /metrics` on 127.0.0.1:`port` once.
    pub fn scrape(port: u16) -> Result<Self> {
        let mut c = TcpStream::connect(("127.0.0.1", port))
            .with_context(|| format!("connecting to /metrics on port {port}"))?;
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        c.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut reply = String::new();
        c.read_to_string(&mut reply)?;
        let Some((head, body)) = reply.split_once("\r\n\r\n") else {
            bail!("no HTTP reply: {reply:?}");
        };
        if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
            bail!("/metrics answered {head:?}");
        }
        Ok(Self::parse(body))
    }

    /// Parses a page in Prometheus' (or OpenMetrics') text format. Comments and lines it cannot
    /// read are skipped.
    pub fn parse(text: &str) -> Self {
        let mut series: BTreeMap<String, Vec<Series>> = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if let Some((name, s)) = parse_line(line) {
                series.entry(name).or_default().push(s);
            }
        }
        Self {
            series,
            text: text.to_string(),
        }
    }

    /// Every series of `name`.
    pub fn series(&self, name: &str) -> &[Series] {
        self.series.get(name).map_or(&[], Vec::as_slice)
    }

    /// The series of `name` whose labels include all of `labels`.
    pub fn matching(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Series> {
        self.series(name)
            .iter()
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
            })
            .collect()
    }

    /// The value of the one series of `name` with exactly `labels`, if the page has it.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.series(name)
            .iter()
            .find(|s| {
                s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
            })
            .map(|s| s.value)
    }
}

/// `name{k="v",...} value` (labels optional), with `\"`, `\\` and `\n` escapes in values.
fn parse_line(line: &str) -> Option<(String, Series)> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut end = None;
        let (mut key, mut value) = (String::new(), String::new());
        let mut in_value = false;
        while let Some((i, c)) = chars.next() {
            match (in_value, c) {
                (false, '}') => {
                    end = Some(i);
                    break;
                }
                (false, ',') | (false, ' ') => {}
                (false, '=') => {
                    // The opening quote.
                    chars.next();
                    in_value = true;
                }
                (false, c) => key.push(c),
                (true, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (true, '"') => {
                    labels.insert(std::mem::take(&mut key), std::mem::take(&mut value));
                    in_value = false;
                }
                (true, c) => value.push(c),
            }
        }
        rest = &inner[end? + 1..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name, Series { labels, value }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_read_into_series_by_name_and_labels() {
        let page = MetricsPage::parse(
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total{cause=\"down\",datastore=\"a,b\"} 2\n\
             x_total{cause=\"odd \\\"q\\\" \\\\\"} 1\nup 1\nh_bucket{le=\"+Inf\"} 3\n# EOF\n",
        );
        assert_eq!(
            page.value("x_total", &[("cause", "down"), ("datastore", "a,b")]),
            Some(2.0)
        );
        assert_eq!(page.value("x_total", &[("cause", "down")]), None);
        assert_eq!(
            page.value("x_total", &[("cause", "odd \"q\" \\")]),
            Some(1.0)
        );
        assert_eq!(page.matching("x_total", &[("cause", "down")]).len(), 1);
        assert_eq!(page.value("up", &[]), Some(1.0));
        assert_eq!(page.value("h_bucket", &[("le", "+Inf")]), Some(3.0));
        assert!(page.series("missing").is_empty());
    }
}
