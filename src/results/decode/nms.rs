//! Class-aware greedy non-maximum suppression.
//!
//! A detector fires on many neighbouring anchors for one object; NMS keeps the best of each
//! cluster. It is class-aware (a cat box never suppresses a dog box, so two overlapping objects
//! of different kinds both survive) and greedy, exactly as the reference decoder
//! (`tools/reference.py`): candidates by score, best first, ties by candidate order; a candidate
//! is dropped if its IoU with an already kept box of the same class is above the threshold; stop
//! once `max_detections` are kept.

use super::{best_first, Detection};

/// Reusable NMS state: the ranking buffer survives between frames so that a frame costs no
/// allocation besides the returned list.
#[derive(Debug, Clone, Default)]
pub struct Nms {
    /// (candidate index, candidate), sorted best first.
    ranked: Vec<(usize, Detection)>,
}

impl Nms {
    /// An empty NMS state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The candidates kept, best first. Candidates with a NaN score or an unusable box (see
    /// [`BBox::is_valid`](super::BBox::is_valid)) are dropped first, since they can neither be
    /// ranked nor compared.
    pub fn run(
        &mut self,
        candidates: &[Detection],
        iou_threshold: f32,
        max_detections: usize,
    ) -> Vec<Detection> {
        self.kept(candidates, iou_threshold, max_detections)
            .into_iter()
            .map(|i| candidates[i])
            .collect()
    }

    /// As [`run`](Self::run), but the indices of the kept candidates in `candidates`, best
    /// first: what a decoder needs to find what else it holds per candidate (keypoints). An
    /// `iou_threshold` of infinity suppresses nothing: ranking and `max_detections` only.
    pub fn kept(
        &mut self,
        candidates: &[Detection],
        iou_threshold: f32,
        max_detections: usize,
    ) -> Vec<usize> {
        self.ranked.clear();
        self.ranked.extend(
            candidates
                .iter()
                .copied()
                .enumerate()
                .filter(|(_, d)| !d.score.is_nan() && d.bbox.is_valid()),
        );
        // The index tie-break makes the order total, so the unstable (allocation-free) sort is
        // as deterministic as a stable one.
        self.ranked
            .sort_unstable_by(|(ia, a), (ib, b)| best_first(a.score, *ia, b.score, *ib));
        let mut kept: Vec<usize> = Vec::with_capacity(max_detections.min(self.ranked.len()));
        for (index, candidate) in &self.ranked {
            if kept.len() >= max_detections {
                break;
            }
            let suppressed = kept.iter().any(|&k| {
                let k = &candidates[k];
                k.class_id == candidate.class_id && k.bbox.iou(&candidate.bbox) > iou_threshold
            });
            if !suppressed {
                kept.push(*index);
            }
        }
        kept
    }
}

/// Class-aware greedy NMS in place: `candidates` becomes the kept detections, best first. For
/// one-off use; [`Nms::run`] reuses its buffer across frames.
pub fn nms(candidates: &mut Vec<Detection>, iou_threshold: f32, max_detections: usize) {
    *candidates = Nms::new().run(candidates, iou_threshold, max_detections);
}

#[cfg(test)]
mod tests {
    use super::super::BBox;
    use super::*;

    fn det(class_id: usize, score: f32, x0: f32, y0: f32, x1: f32, y1: f32) -> Detection {
        Detection {
            class_id,
            score,
            bbox: BBox { x0, y0, x1, y1 },
        }
    }

    fn summary(list: &[Detection]) -> Vec<(usize, f32)> {
        list.iter().map(|d| (d.class_id, d.score)).collect()
    }

    #[test]
    fn same_class_overlap_is_suppressed_other_class_kept() {
        // a-b IoU 90/110 = 0.82 (same class: b goes); a-c IoU 72/128 = 0.56 (other class: stays).
        let a = det(0, 0.9, 15.0, 15.0, 25.0, 25.0);
        let b = det(0, 0.8, 16.0, 15.0, 26.0, 25.0);
        let c = det(1, 0.7, 17.0, 16.0, 27.0, 26.0);
        let mut list = vec![c, b, a];
        nms(&mut list, 0.45, 100);
        assert_eq!(list, [a, c]);
    }

    #[test]
    fn greedy_a_suppressed_box_suppresses_nothing() {
        // a-b IoU 70/130 = 0.54 > 0.45: b goes. c-a IoU 40/160 = 0.25: c stays, although it
        // overlaps b by 0.54 -- b is no longer a kept box.
        let a = det(0, 0.9, 0.0, 0.0, 10.0, 10.0);
        let b = det(0, 0.8, 3.0, 0.0, 13.0, 10.0);
        let c = det(0, 0.7, 6.0, 0.0, 16.0, 10.0);
        let mut list = vec![a, b, c];
        nms(&mut list, 0.45, 100);
        assert_eq!(list, [a, c]);
    }

    #[test]
    fn iou_equal_to_the_threshold_is_not_suppressed() {
        // IoU exactly 0.5: suppression needs IoU > threshold.
        let a = det(0, 0.9, 0.0, 0.0, 2.0, 2.0);
        let b = det(0, 0.8, 0.0, 0.0, 2.0, 1.0);
        let mut list = vec![a, b];
        nms(&mut list, 0.5, 100);
        assert_eq!(list.len(), 2);
        let mut list = vec![a, b];
        nms(&mut list, 0.49, 100);
        assert_eq!(list, [a]);
    }

    #[test]
    fn max_detections_keeps_the_best() {
        let boxes: Vec<Detection> = [0.5, 0.9, 0.6, 0.8, 0.7]
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let x = i as f32 * 10.0;
                det(0, s, x, 0.0, x + 5.0, 5.0)
            })
            .collect();
        let mut list = boxes.clone();
        nms(&mut list, 0.45, 3);
        assert_eq!(summary(&list), [(0, 0.9), (0, 0.8), (0, 0.7)]);
        let mut list = boxes;
        nms(&mut list, 0.45, 0);
        assert!(list.is_empty());
    }

    #[test]
    fn equal_scores_keep_candidate_order() {
        // Same score, same class, overlapping (IoU 0.54): the earlier candidate wins, whatever
        // the sort algorithm does internally.
        let first = det(2, 0.5, 3.0, 0.0, 13.0, 10.0);
        let second = det(2, 0.5, 0.0, 0.0, 10.0, 10.0);
        let far = det(2, 0.5, 50.0, 50.0, 60.0, 60.0);
        let mut list = vec![first, second, far];
        nms(&mut list, 0.45, 100);
        assert_eq!(list, [first, far]);
        let mut list = vec![far, second, first];
        nms(&mut list, 0.45, 100);
        assert_eq!(list, [far, second]);
    }

    #[test]
    fn nan_scores_and_bad_boxes_are_dropped() {
        let good = det(0, 0.3, 0.0, 0.0, 1.0, 1.0);
        let mut list = vec![
            det(0, f32::NAN, 0.0, 0.0, 1.0, 1.0),
            det(0, 0.9, 0.0, 0.0, f32::NAN, 1.0),
            det(0, 0.9, 5.0, 0.0, 1.0, 1.0),
            good,
        ];
        nms(&mut list, 0.45, 100);
        assert_eq!(list, [good]);
    }

    #[test]
    fn reused_state_gives_the_same_answer() {
        let a = det(0, 0.9, 0.0, 0.0, 10.0, 10.0);
        let b = det(0, 0.8, 1.0, 0.0, 11.0, 10.0);
        let mut state = Nms::new();
        let first = state.run(&[a, b], 0.45, 10);
        let second = state.run(&[b, a], 0.45, 10);
        assert_eq!(first, [a]);
        assert_eq!(second, [a]);
    }
}
