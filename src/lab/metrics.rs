//! Accuracy measures: COCO-style mean average precision for detectors, top-k for classifiers.
//!
//! [`coco_map`] follows pycocotools' `COCOeval` for boxes step by step, so numbers are
//! comparable with what every detector paper and tool reports (and the tests check it against
//! pycocotools itself): per image and class, detections sorted by score (stable) and cut to
//! 100; greedy matching in that order, each detection taking the still-unmatched ground truth
//! of highest IoU at or above the threshold; precision made monotone from the right and read
//! at 101 recall points 0, 0.01, …, 1; AP averaged over IoU thresholds 0.50:0.05:0.95 and over
//! the classes that have ground truth. All areas count (COCO's `area=all`), nothing is crowd.

use serde::Serialize;

/// COCO's 10 IoU thresholds, computed as numpy's `linspace(0.5, 0.95, 10)` does.
fn iou_thresholds() -> [f64; 10] {
    std::array::from_fn(|k| 0.5 + k as f64 * ((0.95 - 0.5) / 9.0))
}

/// Recall points of the interpolated precision curve: `linspace(0, 1, 101)`.
const RECALL_POINTS: usize = 101;

/// Detections kept per image and class, COCO's `maxDets` for the headline numbers.
pub const COCO_MAX_DETECTIONS: usize = 100;

/// A scored box from the model, corners in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredBox {
    /// Class id.
    pub class_id: usize,
    /// Confidence.
    pub score: f32,
    /// `[x0, y0, x1, y1]`.
    pub bbox: [f32; 4],
}

/// A ground-truth box, corners in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TruthBox {
    /// Class id.
    pub class_id: usize,
    /// `[x0, y0, x1, y1]`.
    pub bbox: [f32; 4],
}

/// One image's ground truth and detections.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageBoxes {
    /// Ground truth.
    pub truth: Vec<TruthBox>,
    /// Model output.
    pub detections: Vec<ScoredBox>,
}

/// Average precision of one class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClassAp {
    /// Class id.
    pub class_id: usize,
    /// Ground-truth objects of this class.
    pub objects: usize,
    /// Detections of this class (after the per-image cut).
    pub detections: usize,
    /// AP at IoU 0.5; `None` when the class has no ground truth.
    pub ap50: Option<f64>,
    /// AP averaged over IoU 0.50:0.95.
    pub ap50_95: Option<f64>,
}

/// Mean average precision over classes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapReport {
    /// mAP@0.5.
    pub map50: f64,
    /// mAP@0.75.
    pub map75: f64,
    /// mAP@0.5:0.95, COCO's headline number.
    pub map50_95: f64,
    /// Per class, in class-id order.
    pub classes: Vec<ClassAp>,
}

/// Counts at one operating point (a score threshold), IoU 0.5.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OperatingPoint {
    /// Score threshold.
    pub score: f32,
    /// Detections at or above it that match an object.
    pub true_positives: usize,
    /// Detections at or above it that match nothing.
    pub false_positives: usize,
    /// Objects not found.
    pub missed: usize,
    /// TP / (TP + FP); 1 when nothing was detected.
    pub precision: f64,
    /// TP / objects; 1 when there are no objects.
    pub recall: f64,
}

fn box_iou(a: &[f32; 4], b: &[f32; 4]) -> f64 {
    let [ax0, ay0, ax1, ay1] = a.map(f64::from);
    let [bx0, by0, bx1, by1] = b.map(f64::from);
    let iw = (ax1.min(bx1) - ax0.max(bx0)).max(0.0);
    let ih = (ay1.min(by1) - ay0.max(by0)).max(0.0);
    let inter = iw * ih;
    let union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// One class's detections over all images, matched at one IoU threshold: `(score, is_tp)` in
/// image order then score order.
fn match_class(images: &[ImageBoxes], class_id: usize, threshold: f64) -> Vec<(f32, bool)> {
    let mut out = Vec::new();
    for image in images {
        let truth: Vec<&TruthBox> = image
            .truth
            .iter()
            .filter(|t| t.class_id == class_id)
            .collect();
        let mut dets: Vec<&ScoredBox> = image
            .detections
            .iter()
            .filter(|d| d.class_id == class_id)
            .collect();
        // Stable, like pycocotools' mergesort: equal scores keep their order.
        dets.sort_by(|a, b| b.score.total_cmp(&a.score));
        dets.truncate(COCO_MAX_DETECTIONS);
        let mut taken = vec![false; truth.len()];
        for det in dets {
            let mut best_iou = threshold.min(1.0 - 1e-10);
            let mut best = None;
            for (j, t) in truth.iter().enumerate() {
                if taken[j] {
                    continue;
                }
                let iou = box_iou(&det.bbox, &t.bbox);
                // `>=`, and a later equal IoU wins: exactly pycocotools' loop.
                if iou < best_iou {
                    continue;
                }
                best_iou = iou;
                best = Some(j);
            }
            if let Some(j) = best {
                taken[j] = true;
            }
            out.push((det.score, best.is_some()));
        }
    }
    out
}

/// 101-point interpolated average precision of matched detections against `objects`.
fn average_precision(mut matched: Vec<(f32, bool)>, objects: usize) -> f64 {
    matched.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut fp) = (0.0f64, 0.0f64);
    let mut recall = Vec::with_capacity(matched.len());
    let mut precision = Vec::with_capacity(matched.len());
    for (_, is_tp) in &matched {
        if *is_tp {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        recall.push(tp / objects as f64);
        precision.push(tp / (tp + fp + f64::EPSILON));
    }
    for i in (1..precision.len()).rev() {
        if precision[i] > precision[i - 1] {
            precision[i - 1] = precision[i];
        }
    }
    let mut sum = 0.0;
    for k in 0..RECALL_POINTS {
        // numpy's linspace(0, 1, 101) computes k * 0.01, which differs from k / 100 in the last
        // bit for some k; a recall landing exactly there must read the same detection.
        let point = k as f64 * 0.01;
        // First detection whose recall reaches the point (numpy searchsorted, side='left').
        let i = recall.partition_point(|r| *r < point);
        if i < precision.len() {
            sum += precision[i];
        }
    }
    sum / RECALL_POINTS as f64
}

/// COCO mAP over `classes` classes.
pub fn coco_map(images: &[ImageBoxes], classes: usize) -> MapReport {
    let thresholds = iou_thresholds();
    let mut per_class = Vec::with_capacity(classes);
    for class_id in 0..classes {
        let objects = images
            .iter()
            .flat_map(|i| &i.truth)
            .filter(|t| t.class_id == class_id)
            .count();
        let aps: Vec<f64> = thresholds
            .iter()
            .map(|&t| average_precision(match_class(images, class_id, t), objects))
            .collect();
        let detections = match_class(images, class_id, 0.5).len();
        let (ap50, ap50_95) = if objects == 0 {
            (None, None)
        } else {
            (
                Some(aps[0]),
                Some(aps.iter().sum::<f64>() / aps.len() as f64),
            )
        };
        per_class.push((
            ClassAp {
                class_id,
                objects,
                detections,
                ap50,
                ap50_95,
            },
            aps[5],
        ));
    }
    let measured: Vec<&(ClassAp, f64)> =
        per_class.iter().filter(|(c, _)| c.ap50.is_some()).collect();
    let mean = |f: &dyn Fn(&(ClassAp, f64)) -> f64| {
        if measured.is_empty() {
            0.0
        } else {
            measured.iter().map(|c| f(c)).sum::<f64>() / measured.len() as f64
        }
    };
    MapReport {
        map50: mean(&|(c, _)| c.ap50.unwrap_or(0.0)),
        map75: mean(&|(_, ap75)| *ap75),
        map50_95: mean(&|(c, _)| c.ap50_95.unwrap_or(0.0)),
        classes: per_class.into_iter().map(|(c, _)| c).collect(),
    }
}

/// What a deployment at score threshold `score` would report, matched at IoU 0.5.
pub fn operating_point(
    images: &[ImageBoxes],
    classes: usize,
    score: f32,
    max_detections: usize,
) -> OperatingPoint {
    // What the deployment reports: per image, the best `max_detections` at or above `score`.
    let reported: Vec<ImageBoxes> = images
        .iter()
        .map(|image| {
            let mut detections: Vec<ScoredBox> = image
                .detections
                .iter()
                .filter(|d| d.score >= score)
                .copied()
                .collect();
            detections.sort_by(|a, b| b.score.total_cmp(&a.score));
            detections.truncate(max_detections);
            ImageBoxes {
                truth: image.truth.clone(),
                detections,
            }
        })
        .collect();
    let (mut tp, mut fp) = (0, 0);
    for class_id in 0..classes {
        for (_, is_tp) in match_class(&reported, class_id, 0.5) {
            if is_tp {
                tp += 1;
            } else {
                fp += 1;
            }
        }
    }
    let objects: usize = images.iter().map(|i| i.truth.len()).sum();
    OperatingPoint {
        score,
        true_positives: tp,
        false_positives: fp,
        missed: objects - tp,
        precision: if tp + fp == 0 {
            1.0
        } else {
            tp as f64 / (tp + fp) as f64
        },
        recall: if objects == 0 {
            1.0
        } else {
            tp as f64 / objects as f64
        },
    }
}

/// Classification accuracy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopK {
    /// Images measured.
    pub images: usize,
    /// Share whose true class ranked first.
    pub top1: f64,
    /// Share whose true class ranked in the first five.
    pub top5: f64,
    /// `confusion[truth][predicted]` counts of the first-ranked class.
    pub confusion: Vec<Vec<usize>>,
}

/// Top-1/top-5 from `(true class, classes ranked best first)` pairs.
pub fn top_k<'a>(results: impl IntoIterator<Item = (usize, &'a [usize])>, classes: usize) -> TopK {
    let mut confusion = vec![vec![0; classes]; classes];
    let (mut images, mut top1, mut top5) = (0usize, 0usize, 0usize);
    for (truth, ranked) in results {
        images += 1;
        if let Some(&first) = ranked.first() {
            if truth < classes && first < classes {
                confusion[truth][first] += 1;
            }
        }
        top1 += usize::from(ranked.first() == Some(&truth));
        top5 += usize::from(ranked.iter().take(5).any(|&c| c == truth));
    }
    let share = |n: usize| {
        if images == 0 {
            0.0
        } else {
            n as f64 / images as f64
        }
    };
    TopK {
        images,
        top1: share(top1),
        top5: share(top5),
        confusion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truth(class_id: usize, bbox: [f32; 4]) -> TruthBox {
        TruthBox { class_id, bbox }
    }

    fn det(class_id: usize, score: f32, bbox: [f32; 4]) -> ScoredBox {
        ScoredBox {
            class_id,
            score,
            bbox,
        }
    }

    /// Precision is `tp / (tp + fp + eps)` as in pycocotools, so "1" is one ulp short.
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn perfect_detections_score_one() {
        let images = vec![ImageBoxes {
            truth: vec![
                truth(0, [0.0, 0.0, 10.0, 10.0]),
                truth(1, [20.0, 20.0, 40.0, 30.0]),
            ],
            detections: vec![
                det(0, 0.9, [0.0, 0.0, 10.0, 10.0]),
                det(1, 0.8, [20.0, 20.0, 40.0, 30.0]),
            ],
        }];
        let r = coco_map(&images, 3);
        assert!(
            close(r.map50, 1.0) && close(r.map75, 1.0) && close(r.map50_95, 1.0),
            "{r:?}"
        );
        assert_eq!(
            r.classes[2].ap50, None,
            "class 2 has no ground truth and is not averaged"
        );
    }

    #[test]
    fn a_miss_and_a_false_positive_follow_the_101_point_rule() {
        // Two objects; detections: TP (0.9), FP (0.8), nothing for the second object.
        // Recall reaches 0.5 with precision 1: points 0..=50 read 1, points 51..=100 read 0.
        let images = vec![ImageBoxes {
            truth: vec![
                truth(0, [0.0, 0.0, 10.0, 10.0]),
                truth(0, [50.0, 50.0, 60.0, 60.0]),
            ],
            detections: vec![
                det(0, 0.9, [0.0, 0.0, 10.0, 10.0]),
                det(0, 0.8, [100.0, 100.0, 110.0, 110.0]),
            ],
        }];
        let r = coco_map(&images, 1);
        assert!((r.map50 - 51.0 / 101.0).abs() < 1e-12, "{}", r.map50);
        let op = operating_point(&images, 1, 0.85, 100);
        assert_eq!(
            (op.true_positives, op.false_positives, op.missed),
            (1, 0, 1)
        );
        assert_eq!((op.precision, op.recall), (1.0, 0.5));
    }

    #[test]
    fn ranking_matters_an_early_false_positive_lowers_ap() {
        // FP ranked above the TP: precision at recall 1 is 1/2, interpolated back to every point.
        let images = vec![ImageBoxes {
            truth: vec![truth(0, [0.0, 0.0, 10.0, 10.0])],
            detections: vec![
                det(0, 0.9, [30.0, 30.0, 40.0, 40.0]),
                det(0, 0.5, [0.0, 0.0, 10.0, 10.0]),
            ],
        }];
        let r = coco_map(&images, 1);
        assert!((r.map50 - 0.5).abs() < 1e-12, "{}", r.map50);
    }

    #[test]
    fn iou_thresholds_grade_loose_boxes() {
        // IoU = 80/100 = 0.8: a hit for thresholds 0.50..0.80 (7 of 10), a miss above.
        let images = vec![ImageBoxes {
            truth: vec![truth(0, [0.0, 0.0, 10.0, 10.0])],
            detections: vec![det(0, 0.9, [0.0, 0.0, 10.0, 8.0])],
        }];
        let r = coco_map(&images, 1);
        assert!(close(r.map50, 1.0) && close(r.map75, 1.0), "{r:?}");
        assert!(close(r.map50_95, 0.7), "{}", r.map50_95);
    }

    #[test]
    fn a_duplicate_detection_is_a_false_positive() {
        let images = vec![ImageBoxes {
            truth: vec![truth(0, [0.0, 0.0, 10.0, 10.0])],
            detections: vec![
                det(0, 0.9, [0.0, 0.0, 10.0, 10.0]),
                det(0, 0.8, [0.0, 0.0, 10.0, 10.0]),
            ],
        }];
        let op = operating_point(&images, 1, 0.0, 100);
        assert_eq!((op.true_positives, op.false_positives), (1, 1));
        // A deployment limited to one detection per frame reports only the first.
        let op = operating_point(&images, 1, 0.0, 1);
        assert_eq!((op.true_positives, op.false_positives), (1, 0));
        // The duplicate ranks after the only TP, so AP stays 1.
        assert!(close(coco_map(&images, 1).map50, 1.0));
    }

    #[test]
    fn wrong_class_never_matches() {
        let images = vec![ImageBoxes {
            truth: vec![truth(0, [0.0, 0.0, 10.0, 10.0])],
            detections: vec![det(1, 0.9, [0.0, 0.0, 10.0, 10.0])],
        }];
        let r = coco_map(&images, 2);
        assert_eq!(r.map50, 0.0);
        assert_eq!(r.classes[1].detections, 1);
    }

    #[test]
    fn recall_points_are_numpys() {
        // 10 objects, TP x7, FP, TP: recall 0.7 exactly at numpy's point 0.7000000000000001,
        // which reads the next detection. pycocotools gives 0.7898789878987899.
        let truth: Vec<TruthBox> = (0..10)
            .map(|i| truth(0, [i as f32 * 20.0, 0.0, i as f32 * 20.0 + 10.0, 10.0]))
            .collect();
        let mut detections: Vec<ScoredBox> = (0..7)
            .map(|i| det(0, 0.9 - i as f32 * 0.01, truth[i].bbox))
            .collect();
        detections.push(det(0, 0.5, [500.0, 500.0, 510.0, 510.0]));
        detections.push(det(0, 0.4, truth[7].bbox));
        let r = coco_map(&[ImageBoxes { truth, detections }], 1);
        assert!(
            (r.map50 - 0.789_878_987_898_79).abs() < 1e-12,
            "{}",
            r.map50
        );
    }

    #[test]
    fn top_k_and_confusion() {
        let ranked: [(usize, &[usize]); 4] = [
            (0, &[0, 1]),
            (1, &[0, 1]),
            (2, &[2]),
            (1, &[2, 0, 3, 4, 5, 1]),
        ];
        let r = top_k(ranked, 6);
        assert_eq!(r.images, 4);
        assert_eq!(r.top1, 0.5);
        assert_eq!(r.top5, 0.75);
        assert_eq!(r.confusion[1][0], 1);
        assert_eq!(r.confusion[1][2], 1);
    }
}
