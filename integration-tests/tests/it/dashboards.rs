//! The Grafana dashboards (`helm/legato/dashboards`) and Prometheus alerts
//! (`helm/legato/alerts`) use only metrics Legato exports (issue 14, item 7). Every selector of
//! every panel query, template variable and alert rule is parsed with promql-parser and looked
//! up in the `/metrics` of a single binary that has done a bit of everything: ingest, a refused
//! span, probabilistic and tail sampling, the metrics generator, a flush, compaction cycles and
//! queries. A metric renamed in the code, or misspelt in a dashboard, fails here.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use integration_tests::{Legato, Ports, config_yaml, get_text, otlp_request, post_otlp};
use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr, VectorSelector};
use promql_parser::util::{ExprVisitor, walk_expr};

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../helm/legato")
}

/// A PromQL query and where it was found, for messages.
struct Query {
    origin: String,
    expr: String,
}

/// Grafana's interval variables replaced by a range PromQL accepts (other variables only
/// appear inside label matcher strings).
fn without_grafana_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
}

/// The queries of every panel (rows' nested panels too) and every query variable of every
/// dashboard. A variable's `label_values(<selector>, <label>)` counts as its selector.
fn dashboard_queries() -> Vec<Query> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "dashboards: {files:?}");
    let mut out = Vec::new();
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{file}: {e}"));
        for var in dashboard["templating"]["list"].as_array().unwrap() {
            if var["type"] != "query" {
                continue;
            }
            let definition = var["definition"].as_str().unwrap();
            let selector = definition
                .strip_prefix("label_values(")
                .and_then(|rest| rest.rsplit_once(','))
                .map(|(selector, _label)| selector)
                .unwrap_or_else(|| panic!("{file}: variable {} is not label_values(...)", var["name"]));
            out.push(Query {
                origin: format!("{file} variable {}", var["name"]),
                expr: selector.to_string(),
            });
        }
        collect_panels(&file, &dashboard["panels"], &mut out);
    }
    out
}

fn collect_panels(file: &str, panels: &serde_json::Value, out: &mut Vec<Query>) {
    for panel in panels.as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                origin: format!(
                    "{file} panel {:?} {}",
                    panel["title"].as_str().unwrap_or(""),
                    target["refId"]
                ),
                expr: without_grafana_variables(target["expr"].as_str().unwrap()),
            });
        }
        collect_panels(file, &panel["panels"], out);
    }
}

/// The `expr` of every rule of the alert rule file.
fn alert_queries() -> Vec<Query> {
    let path = chart().join("alerts/legato-alerts.yaml");
    let doc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for group in doc["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            out.push(Query {
                origin: format!("legato-alerts.yaml {}", rule["alert"].as_str().unwrap()),
                expr: rule["expr"].as_str().unwrap().to_string(),
            });
        }
    }
    out
}

/// Every metric name a query selects, as written (`foo_bucket` stays `foo_bucket`).
fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    struct Names(BTreeSet<String>);
    impl Names {
        fn add(&mut self, vs: &VectorSelector) -> Result<(), String> {
            let by_matcher = vs
                .matchers
                .matchers
                .iter()
                .find(|m| m.name == "__name__" && m.op == MatchOp::Equal)
                .map(|m| m.value.clone());
            match vs.name.clone().or(by_matcher) {
                Some(name) => {
                    self.0.insert(name);
                    Ok(())
                }
                None => Err(format!("selector {vs} names no metric")),
            }
        }
    }
    impl ExprVisitor for Names {
        type Error = String;
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
            match expr {
                Expr::VectorSelector(vs) => self.add(vs)?,
                Expr::MatrixSelector(ms) => self.add(&ms.vs)?,
                _ => {}
            }
            Ok(true)
        }
    }
    let ast = parser::parse(expr)?;
    let mut names = Names(BTreeSet::new());
    walk_expr(&mut names, &ast)?;
    Ok(names.0)
}

/// The metric names a `/metrics` page exports: every sample's name, and for every `# TYPE`
/// family the names its samples take.
fn exported_names(page: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in page.lines() {
        if let Some(typed) = line.strip_prefix("# TYPE ") {
            let mut words = typed.split_whitespace();
            let (Some(family), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{family}{s}")));
        } else if !line.starts_with('#')
            && let Some(name) = line.split(['{', ' ']).next().filter(|n| !n.is_empty())
        {
            names.insert(name.to_string());
        }
    }
    names
}

/// One line per query that does not parse or selects a metric `exported` lacks.
fn problems(queries: &[Query], exported: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for q in queries {
        match metric_names(&q.expr) {
            Err(e) => out.push(format!("{}: does not parse: {e}: {}", q.origin, q.expr)),
            Ok(names) => out.extend(
                names
                    .iter()
                    .filter(|n| !exported.contains(*n))
                    .map(|n| format!("{}: {n} is not in /metrics", q.origin)),
            ),
        }
    }
    out
}

#[test]
fn every_query_parses_and_names_its_metrics() {
    let queries: Vec<Query> = dashboard_queries().into_iter().chain(alert_queries()).collect();
    let mut all = BTreeSet::new();
    for q in &queries {
        let names = metric_names(&q.expr).unwrap_or_else(|e| panic!("{}: {e}: {}", q.origin, q.expr));
        assert!(!names.is_empty(), "{} selects no metric: {}", q.origin, q.expr);
        all.extend(names);
    }
    // Not vacuous: the dashboards and alerts cover most of what /metrics documents.
    assert!(all.len() >= 50, "only {} metrics referenced: {all:?}", all.len());
    assert!(all.iter().all(|n| n.starts_with("legato_")), "{all:?}");
}

#[test]
fn a_metric_missing_from_metrics_is_reported_with_where_it_is_used() {
    let page = "# HELP legato_x Some.\n# TYPE legato_x counter\nlegato_x_total 0\n\
                # TYPE legato_h histogram\nlegato_h_bucket{le=\"+Inf\"} 0\n";
    let exported = exported_names(page);
    let queries = [
        Query {
            origin: "good".into(),
            expr: "sum(rate(legato_x_total[5m])) / histogram_quantile(0.9, rate(legato_h_bucket[5m]))".into(),
        },
        Query {
            origin: "typed family".into(),
            expr: "rate(legato_h_count[5m]) + rate(legato_h_sum[5m])".into(),
        },
        Query {
            origin: "bogus".into(),
            expr: without_grafana_variables(
                "sum by (op) (rate(legato_bogus_total{job=~\"$job\"}[$__rate_interval])) > on() legato_x_total",
            ),
        },
        Query {
            origin: "broken".into(),
            expr: "sum(rate(legato_x_total[5m])".into(),
        },
    ];
    let found = problems(&queries, &exported);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0], "bogus: legato_bogus_total is not in /metrics");
    assert!(found[1].starts_with("broken: does not parse"), "{found:?}");
}

/// Single binary with both samplers, the generator with tight limits (so refusals, drops and
/// expiries happen), and a compaction cycle every second.
fn busy_config(ports: Ports, dir: &Path) -> String {
    let extra = "compactor:
  compaction:
    compaction_cycle: 1s
metrics_generator:
  registry:
    collection_interval: 1s
    max_active_series: 3
  processor:
    service_graphs:
      wait: 1s
      max_items: 2
overrides:
  defaults:
    metrics_generator:
      processors: [service-graphs, span-metrics]
    sampling:
      probabilistic:
        sampling_percentage: 50
      tail_sampling:
        decision_wait: 1s
        num_traces: 4
        policies:
          - name: everything
            type: always_sample
";
    config_yaml(ports, dir, None, extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboards_and_alerts_use_is_in_metrics() {
    let queries: Vec<Query> = dashboard_queries().into_iter().chain(alert_queries()).collect();
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let legato = Legato::start(dir.path(), ports, &busy_config(ports, dir.path()));
    let client = reqwest::Client::new();

    // Twelve traces: probabilistic sampling keeps about half, tail sampling (num_traces 4)
    // decides some early, the generator passes max_active_series and service-graph max_items.
    let mut kept = None;
    for seed in 1..=12 {
        let (request, trace_id) = otlp_request(seed, 3);
        assert_eq!(post_otlp(&client, &legato, &request).await.0, 200);
        if legato_model::ratio_keeps(&trace_id, 0.5) {
            kept = Some(seed);
        }
    }
    let kept = kept.expect("probabilistic sampling keeps one of twelve traces");
    // A span with a 4-byte trace id: refused in partial_success (invalid_trace_id).
    let (mut bad, _) = otlp_request(100, 1);
    bad.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![1, 2, 3, 4];
    assert_eq!(post_otlp(&client, &legato, &bad).await.0, 200);
    for path in ["/api/search?q=%7B%7D", "/api/search/tags", "/api/v2/search/tags"] {
        get_text(&client, &legato.url(path)).await;
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut flushed = false;
    let missing = loop {
        // A span of a trace tail sampling has decided by now: a late span.
        let (late, trace_id) = otlp_request(kept, 1);
        assert_eq!(post_otlp(&client, &legato, &late).await.0, 200);
        if !flushed {
            let flush = client.post(legato.url("/flush")).send().await.unwrap();
            flushed = flush.status().is_success();
            let id = hex::encode(trace_id);
            get_text(&client, &legato.url(&format!("/api/v2/traces/{id}"))).await;
        }
        let page = get_text(&client, &legato.url("/metrics")).await;
        let missing = problems(&queries, &exported_names(&page));
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        missing.is_empty(),
        "dashboards or alerts use metrics Legato does not export:\n{}\nlog:\n{}",
        missing.join("\n"),
        legato.log_text()
    );
}
