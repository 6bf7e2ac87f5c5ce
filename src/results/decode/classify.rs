//! Classification: one score per class, optionally softmaxed, reported as the best `top_k`.

use super::{best_first, single_shape, single_view, ClassScore, DecodeError, OutputView};

const DECODER: &str = "classify";

/// Decoder for `[1, C]` score vectors.
#[derive(Debug, Clone)]
pub(super) struct Classifier {
    softmax: bool,
    top_k: usize,
    num_classes: usize,
    /// Scores of the current frame (after softmax); reused between frames.
    scores: Vec<f32>,
    /// Classes passing the threshold, ranked; reused between frames.
    ranked: Vec<ClassScore>,
}

impl Classifier {
    /// Checks the single output's shape against the label count.
    pub(super) fn new(
        softmax: bool,
        top_k: usize,
        num_classes: usize,
        shapes: &[(&str, &[usize])],
    ) -> Result<Self, DecodeError> {
        let (name, shape) = single_shape(DECODER, shapes)?;
        check_shape(name, shape, num_classes)?;
        Ok(Self {
            softmax,
            top_k,
            num_classes,
            scores: Vec::with_capacity(num_classes),
            ranked: Vec::with_capacity(num_classes),
        })
    }

    /// The best `top_k` classes scoring at least `threshold`, best first, ties to the lower id.
    /// The view's data length has been checked against its shape.
    pub(super) fn decode(
        &mut self,
        outputs: &[OutputView<'_>],
        threshold: f32,
    ) -> Result<Vec<ClassScore>, DecodeError> {
        let view = single_view(DECODER, outputs)?;
        check_shape(view.name, view.shape, self.num_classes)?;
        self.scores.clear();
        self.scores.extend_from_slice(view.data);
        if self.softmax {
            softmax(&mut self.scores);
        }
        self.ranked.clear();
        // `>=` is false for NaN, so a NaN score never ranks.
        self.ranked.extend(
            self.scores
                .iter()
                .enumerate()
                .filter(|(_, s)| **s >= threshold)
                .map(|(class_id, &score)| ClassScore { class_id, score }),
        );
        let order =
            |a: &ClassScore, b: &ClassScore| best_first(a.score, a.class_id, b.score, b.class_id);
        // With many classes (ImageNet's 1000) only the top k need sorting: partition first.
        if self.top_k > 0 && self.ranked.len() > self.top_k {
            self.ranked.select_nth_unstable_by(self.top_k - 1, order);
        }
        self.ranked.truncate(self.top_k);
        // `order` is a strict total order (ids are unique), so unstable sorting is deterministic.
        self.ranked.sort_unstable_by(order);
        Ok(self.ranked.clone())
    }
}

/// Accepts `[C]`, `[1, C]` and `[1, C, 1, 1]` (a classifier head ending in a 1x1 convolution)
/// with C equal to the number of labels.
fn check_shape(name: &str, shape: &[usize], num_classes: usize) -> Result<(), DecodeError> {
    let classes = match shape {
        [c] | [1, c] | [1, c, 1, 1] => Some(*c),
        _ => None,
    };
    if classes == Some(num_classes) {
        Ok(())
    } else {
        Err(DecodeError::Shape {
            output: name.to_owned(),
            decoder: DECODER,
            expected: format!("[1, {num_classes}] (one score per label)"),
            got: shape.to_vec(),
        })
    }
}

/// Numerically stable softmax in place: subtracting the maximum keeps `exp` from overflowing on
/// large logits, and the sum is accumulated in f64 so a thousand small terms do not lose
/// precision. Any NaN (or +inf) logit turns every value to NaN, which the threshold then drops:
/// a broken output must not produce a confident-looking answer.
fn softmax(values: &mut [f32]) {
    // f32::max ignores NaN, so `max` is the largest real logit.
    let max = f64::from(values.iter().copied().fold(f32::NEG_INFINITY, f32::max));
    let mut sum = 0.0f64;
    for v in values.iter() {
        sum += (f64::from(*v) - max).exp();
    }
    for v in values.iter_mut() {
        *v = ((f64::from(*v) - max).exp() / sum) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Decoded, Decoder};
    use super::*;
    use crate::manifest::{OutputSpec, Thresholds};

    fn classify(
        softmax: bool,
        top_k: usize,
        num_classes: usize,
        shape: &[usize],
        data: &[f32],
        score: f32,
    ) -> Vec<ClassScore> {
        let spec = OutputSpec::Classify { softmax, top_k };
        let mut decoder = Decoder::new(
            &spec,
            num_classes,
            8,
            8,
            &[("logits".to_string(), shape.to_vec())],
        )
        .expect("shape fits");
        let view = OutputView {
            name: "logits",
            shape,
            data,
        };
        let thresholds = Thresholds {
            score,
            ..Thresholds::default()
        };
        match decoder.decode(&[view], &thresholds).expect("decodes") {
            Decoded::Classes(list) => list,
            other => panic!("classes expected, got {other:?}"),
        }
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn softmax_of_known_logits() {
        // e^1 : e^2 : e^3 normalised = 0.0900306, 0.2447285, 0.6652410.
        let mut v = [1.0, 2.0, 3.0];
        softmax(&mut v);
        assert!(close(v[0], 0.0900306), "{v:?}");
        assert!(close(v[1], 0.2447285), "{v:?}");
        assert!(close(v[2], 0.665_241), "{v:?}");
    }

    #[test]
    fn softmax_is_stable_for_huge_logits() {
        // Naive exp(1000) overflows to inf and gives NaN; shifted, this is [1, 2, 3] again.
        let mut v = [1000.0, 1001.0, 1002.0];
        softmax(&mut v);
        assert!(close(v[0], 0.0900306), "{v:?}");
        assert!(close(v[2], 0.665_241), "{v:?}");
        let mut v = [0.0, 0.0];
        softmax(&mut v);
        assert_eq!(v, [0.5, 0.5]);
    }

    #[test]
    fn softmax_with_nan_reports_nothing() {
        let got = classify(true, 3, 3, &[1, 3], &[1.0, f32::NAN, 3.0], 0.0);
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn top_k_after_softmax_best_first() {
        let got = classify(true, 2, 3, &[1, 3], &[1.0, 3.0, 2.0], 0.0);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].class_id, 1);
        assert!(close(got[0].score, 0.665_241));
        assert_eq!(got[1].class_id, 2);
        assert!(close(got[1].score, 0.2447285));
    }

    #[test]
    fn ties_go_to_the_lower_class_id() {
        let got = classify(false, 4, 5, &[5], &[0.2, 0.5, 0.1, 0.5, 0.5], 0.0);
        let ids: Vec<usize> = got.iter().map(|c| c.class_id).collect();
        assert_eq!(ids, [1, 3, 4, 0]);
        // Also through the partitioning path (top_k smaller than the candidates).
        let got = classify(false, 2, 5, &[1, 5], &[0.5, 0.5, 0.5, 0.5, 0.5], 0.0);
        let ids: Vec<usize> = got.iter().map(|c| c.class_id).collect();
        assert_eq!(ids, [0, 1]);
    }

    #[test]
    fn top_k_is_capped_at_the_class_count() {
        let got = classify(false, 10, 3, &[1, 3, 1, 1], &[0.3, 0.9, 0.6], 0.0);
        let ids: Vec<usize> = got.iter().map(|c| c.class_id).collect();
        assert_eq!(ids, [1, 2, 0]);
    }

    #[test]
    fn threshold_drops_low_scores_and_keeps_equal_ones() {
        let got = classify(false, 5, 4, &[1, 4], &[0.1, 0.4, 0.25, 0.24], 0.25);
        assert_eq!(
            got,
            [
                ClassScore {
                    class_id: 1,
                    score: 0.4
                },
                ClassScore {
                    class_id: 2,
                    score: 0.25
                }
            ]
        );
    }

    #[test]
    fn wrong_class_count_is_reported() {
        let spec = OutputSpec::Classify {
            softmax: true,
            top_k: 5,
        };
        let err = Decoder::new(&spec, 3, 8, 8, &[("logits".into(), vec![1, 5])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "output `logits`: classify expects [1, 3] (one score per label), got [1, 5]"
        );
    }

    #[test]
    fn wrong_rank_is_reported() {
        let spec = OutputSpec::Classify {
            softmax: false,
            top_k: 1,
        };
        let err = Decoder::new(&spec, 3, 8, 8, &[("logits".into(), vec![2, 3])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "output `logits`: classify expects [1, 3] (one score per label), got [2, 3]"
        );
    }

    #[test]
    fn frame_shape_is_checked_again() {
        let spec = OutputSpec::Classify {
            softmax: false,
            top_k: 1,
        };
        let mut decoder =
            Decoder::new(&spec, 3, 8, 8, &[("logits".into(), vec![1, 3])]).expect("fits");
        let view = OutputView {
            name: "logits",
            shape: &[1, 4],
            data: &[0.0; 4],
        };
        let err = decoder.decode(&[view], &Thresholds::default()).unwrap_err();
        assert!(matches!(err, DecodeError::Shape { ref got, .. } if got == &[1, 4]));
    }
}
