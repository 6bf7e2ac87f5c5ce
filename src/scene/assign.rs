//! Minimum-cost assignment of tracks to detections (the Hungarian method), as SORT and
//! ByteTrack use it: each track gets at most one detection and each detection at most one
//! track, with the total cost (1 − IoU) the least possible, leaving a track unmatched costing
//! as much as the worst pair allowed (ByteTrack's `cost_limit`): a pair is made only where it
//! does better than leaving its track without a detection.
//!
//! A greedy match (best overlap first) is what simpler trackers do, and it swaps identities
//! when two objects cross: the first track takes the detection the second one needed. The
//! optimal assignment costs O(n²·(n + m)) for n tracks and m detections; the tracker solves it
//! per label and caps both (see [`super::tracker`]).

/// Pairs `(row, column)` that minimise the total cost, where pairing costs the entry of `cost`
/// (rows × cols, row-major; `None`: never paired) and leaving a row unpaired costs `unpaired`.
/// Every row and column appears at most once; columns may stay unpaired at no cost.
pub fn assign(
    rows: usize,
    cols: usize,
    cost: &[Option<f64>],
    unpaired: f64,
) -> Vec<(usize, usize)> {
    debug_assert_eq!(cost.len(), rows * cols);
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    // One "unpaired" column per row makes the matrix rows × (cols + rows), so every row can be
    // placed; pairs never allowed cost more than any placement of every row otherwise.
    let m = cols + rows;
    let finite_total: f64 =
        cost.iter().flatten().map(|c| c.abs()).sum::<f64>() + rows as f64 * unpaired.abs();
    let forbidden = 1.0 + 2.0 * finite_total;
    let at = |i: usize, j: usize| {
        if j < cols {
            cost[i * cols + j].unwrap_or(forbidden)
        } else {
            unpaired
        }
    };
    // The potentials formulation (1-based, column 0 a sentinel): u, v are the dual variables,
    // way[j] the column before j on the shortest augmenting path.
    let n = rows;
    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; m + 1];
    let mut row_of = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    let mut min_to = vec![f64::INFINITY; m + 1];
    let mut used = vec![false; m + 1];
    for i in 1..=n {
        row_of[0] = i;
        let mut j0 = 0;
        min_to.fill(f64::INFINITY);
        used.fill(false);
        loop {
            used[j0] = true;
            let i0 = row_of[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0;
            for j in 1..=m {
                if !used[j] {
                    let reduced = at(i0 - 1, j - 1) - u[i0] - v[j];
                    if reduced < min_to[j] {
                        min_to[j] = reduced;
                        way[j] = j0;
                    }
                    if min_to[j] < delta {
                        delta = min_to[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[row_of[j]] += delta;
                    v[j] -= delta;
                } else {
                    min_to[j] -= delta;
                }
            }
            j0 = j1;
            if row_of[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            row_of[j0] = row_of[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut pairs: Vec<(usize, usize)> = (1..=cols)
        .filter(|&j| row_of[j] != 0)
        .map(|j| (row_of[j] - 1, j - 1))
        .filter(|&(i, j)| cost[i * cols + j].is_some())
        .collect();
    pairs.sort_unstable();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The least total cost by brute force, over every matching of allowed pairs, each row left
    /// unpaired costing `unpaired`.
    fn best_by_brute_force(rows: usize, cols: usize, cost: &[Option<f64>], unpaired: f64) -> f64 {
        #[allow(clippy::too_many_arguments)]
        fn go(
            i: usize,
            rows: usize,
            cols: usize,
            cost: &[Option<f64>],
            unpaired: f64,
            used: &mut Vec<bool>,
            acc: f64,
            best: &mut f64,
        ) {
            if i == rows {
                *best = best.min(acc);
                return;
            }
            go(
                i + 1,
                rows,
                cols,
                cost,
                unpaired,
                used,
                acc + unpaired,
                best,
            );
            for j in 0..cols {
                if let (false, Some(c)) = (used[j], cost[i * cols + j]) {
                    used[j] = true;
                    go(i + 1, rows, cols, cost, unpaired, used, acc + c, best);
                    used[j] = false;
                }
            }
        }
        let mut best = f64::INFINITY;
        go(
            0,
            rows,
            cols,
            cost,
            unpaired,
            &mut vec![false; cols],
            0.0,
            &mut best,
        );
        best
    }

    #[test]
    fn crossing_objects_are_not_matched_greedily() {
        // Track 0 overlaps detection 0 best (0.1), but track 1 can only take detection 0: the
        // greedy match would leave track 1 unmatched.
        let cost = [Some(0.1), Some(0.3), Some(0.2), None];
        assert_eq!(assign(2, 2, &cost, 0.7), vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn two_poor_pairs_do_not_beat_one_good_pair() {
        // Track 0 fits detection 0 well (0.1) and detection 1 barely (0.68); track 1 fits only
        // detection 0, barely (0.69). Two pairs would cost 1.37, against 0.1 + 0.7 for one
        // pair and track 1 unmatched: the good pair wins, as in ByteTrack.
        let cost = [Some(0.1), Some(0.68), Some(0.69), None];
        assert_eq!(assign(2, 2, &cost, 0.7), vec![(0, 0)]);
    }

    #[test]
    fn matches_brute_force_on_random_matrices() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..600 {
            let (rows, cols) = (rng.usize(0..6), rng.usize(0..6));
            let cost: Vec<Option<f64>> = (0..rows * cols)
                .map(|_| rng.bool().then(|| f64::from(rng.u8(0..100)) / 100.0))
                .collect();
            let unpaired = f64::from(rng.u8(0..100)) / 100.0;
            let pairs = assign(rows, cols, &cost, unpaired);
            let mut row_seen = vec![false; rows];
            let mut col_seen = vec![false; cols];
            let mut total = 0.0;
            for &(i, j) in &pairs {
                assert!(!row_seen[i] && !col_seen[j], "{pairs:?}");
                row_seen[i] = true;
                col_seen[j] = true;
                total += cost[i * cols + j].expect("only allowed pairs");
            }
            total += (rows - pairs.len()) as f64 * unpaired;
            let best = best_by_brute_force(rows, cols, &cost, unpaired);
            assert!(
                (total - best).abs() < 1e-9,
                "{total} vs {best}: {rows}x{cols} {cost:?} unpaired {unpaired}"
            );
        }
    }
}
