//! The chooser: which model to start a kind of work with. With enough history
//! (vault-mcp's thresholds: 50 closed workflows of the pair, models with at least
//! 5) it scores models by first-attempt success, cost, latency and the absence of
//! human correction (weights 0.35 / 0.25 / 0.15 / 0.25); otherwise it falls back
//! to rules. Pure: the store supplies the per-model statistics.

use schemars::JsonSchema;
use serde::Serialize;

pub const MIN_PAIR_HISTORY: i64 = 50;
pub const MIN_MODEL_HISTORY: i64 = 5;
pub const HIGH_CONFIDENCE: i64 = 20;

/// Per-model statistics over closed workflows of one (task_type, complexity).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ModelStats {
    pub model: String,
    pub workflows: i64,
    pub first_attempt_success_rate: f64,
    pub human_correction_rate: f64,
    pub avg_cost_nanos: f64,
    pub avg_latency_ms: f64,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Scored {
    pub model: String,
    pub score: f64,
    pub workflows: i64,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Recommendation {
    pub model: String,
    /// `history` or `rules`.
    pub basis: String,
    /// low, medium or high.
    pub confidence: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ranking: Vec<Scored>,
}

/// Rule-based fallback, as vault-mcp's chooser had it.
pub fn by_rules(
    task_type: Option<&str>,
    complexity: Option<&str>,
    context_tokens: Option<u64>,
) -> Recommendation {
    let (model, reason) = if complexity == Some("complex") {
        ("claude-sonnet", "complex work starts at a strong model")
    } else if context_tokens.is_some_and(|t| t > 100_000) {
        ("claude-sonnet", "more than 100k tokens of context")
    } else if matches!(task_type, Some("review" | "docs")) {
        ("claude-haiku", "reviews and docs go to a fast model")
    } else if complexity == Some("trivial") {
        ("claude-haiku", "trivial work goes to a fast model")
    } else {
        ("claude-sonnet", "default")
    };
    Recommendation {
        model: model.into(),
        basis: "rules".into(),
        confidence: "low".into(),
        reason: reason.into(),
        ranking: vec![],
    }
}

/// Scores models when the pair has enough history; `None` otherwise.
pub fn by_history(pair_total: i64, stats: &[ModelStats]) -> Option<Recommendation> {
    if pair_total < MIN_PAIR_HISTORY {
        return None;
    }
    let eligible: Vec<&ModelStats> = stats
        .iter()
        .filter(|s| s.workflows >= MIN_MODEL_HISTORY)
        .collect();
    if eligible.is_empty() {
        return None;
    }
    let max_cost = eligible
        .iter()
        .map(|s| s.avg_cost_nanos)
        .fold(0.0, f64::max);
    let max_lat = eligible
        .iter()
        .map(|s| s.avg_latency_ms)
        .fold(0.0, f64::max);
    let rel = |v: f64, max: f64| if max > 0.0 { 1.0 - v / max } else { 1.0 };
    let mut ranking: Vec<Scored> = eligible
        .iter()
        .map(|s| Scored {
            model: s.model.clone(),
            score: 0.35 * s.first_attempt_success_rate
                + 0.25 * rel(s.avg_cost_nanos, max_cost)
                + 0.15 * rel(s.avg_latency_ms, max_lat)
                + 0.25 * (1.0 - s.human_correction_rate),
            workflows: s.workflows,
        })
        .collect();
    ranking.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.model.cmp(&b.model))
    });
    let best = ranking.first()?.clone();
    let confidence = if pair_total >= MIN_PAIR_HISTORY && best.workflows >= HIGH_CONFIDENCE {
        "high"
    } else {
        "medium"
    };
    Some(Recommendation {
        reason: format!(
            "best score {:.3} over {} models with ≥{MIN_MODEL_HISTORY} of {pair_total} closed workflows",
            best.score,
            ranking.len()
        ),
        model: best.model,
        basis: "history".into(),
        confidence: confidence.into(),
        ranking,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(model: &str, n: i64, success: f64, human: f64, cost: f64, lat: f64) -> ModelStats {
        ModelStats {
            model: model.into(),
            workflows: n,
            first_attempt_success_rate: success,
            human_correction_rate: human,
            avg_cost_nanos: cost,
            avg_latency_ms: lat,
        }
    }

    #[test]
    fn rules_table() {
        let cases = [
            (Some("fix"), Some("complex"), None, "claude-sonnet"),
            (Some("fix"), Some("simple"), Some(200_000), "claude-sonnet"),
            (Some("docs"), Some("simple"), None, "claude-haiku"),
            (Some("feature"), Some("trivial"), None, "claude-haiku"),
            (Some("feature"), Some("moderate"), None, "claude-sonnet"),
        ];
        for (t, c, ctx, want) in cases {
            assert_eq!(by_rules(t, c, ctx).model, want, "{t:?} {c:?}");
        }
    }

    #[test]
    fn history_needs_enough_data_and_scores_by_the_weights() {
        let stats = vec![
            s("cheap", 30, 0.8, 0.1, 1e6, 1000.0),
            s("dear", 20, 0.9, 0.0, 1e8, 4000.0),
            s("rare", 4, 1.0, 0.0, 1.0, 1.0),
        ];
        assert!(by_history(49, &stats).is_none());
        let r = by_history(54, &stats).unwrap();
        // cheap: .35*.8 + .25*.99 + .15*.75 + .25*.9 = 0.8648; dear: .315 + 0 + 0 + .25 = 0.565
        assert_eq!(r.model, "cheap");
        assert_eq!(
            r.ranking.len(),
            2,
            "models under 5 workflows are not scored"
        );
        assert!(
            (r.ranking[0].score - 0.8650).abs() < 1e-3,
            "{}",
            r.ranking[0].score
        );
        assert_eq!(r.confidence, "high");
    }
}
