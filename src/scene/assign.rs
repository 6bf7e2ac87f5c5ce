//! Minimum-cost assignment of tracks to detections (the Hungarian method), as SORT and
//! ByteTrack use it: each track gets at most one detection and each detection at most one
//! track, with the total cost (1 − IoU) the least possible.
//!
//! A greedy match (best overlap first) is what simpler trackers do, and it swaps identities
//! when two objects cross: the first track takes the detection the second one needed. The
//! optimal assignment costs O(n²·m) for n tracks and m detections, a few microseconds for the
//! tens of objects a camera frame holds.

/// Pairs `(row, column)` that minimise the total cost, over the entries of `cost` (rows × cols,
/// row-major) that are `Some`; `None` entries are never paired. Every row and column appears at
/// most once; a row is left unpaired when pairing it would need a `None` entry.
pub fn assign(rows: usize, cols: usize, cost: &[Option<f64>]) -> Vec<(usize, usize)> {
    debug_assert_eq!(cost.len(), rows * cols);
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    // Forbidden pairs cost more than any set of allowed ones; pairs made through them are
    // dropped at the end. The method needs rows <= columns: transpose otherwise.
    let allowed_total: f64 = cost.iter().flatten().map(|c| c.abs()).sum();
    let forbidden = 1.0 + 2.0 * allowed_total;
    let transpose = rows > cols;
    let (n, m) = if transpose {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let at = |i: usize, j: usize| {
        let entry = if transpose {
            cost[j * cols + i]
        } else {
            cost[i * cols + j]
        };
        entry.unwrap_or(forbidden)
    };
    // The potentials formulation (1-based, column 0 a sentinel): u, v are the dual variables,
    // way[j] the column before j on the shortest augmenting path.
    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; m + 1];
    let mut row_of = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    for i in 1..=n {
        row_of[0] = i;
        let mut j0 = 0;
        let mut min_to = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
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
    let mut pairs: Vec<(usize, usize)> = (1..=m)
        .filter(|&j| row_of[j] != 0)
        .map(|j| (row_of[j] - 1, j - 1))
        .filter(|&(i, j)| at(i, j) < forbidden)
        .map(|(i, j)| if transpose { (j, i) } else { (i, j) })
        .collect();
    pairs.sort_unstable();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every assignment by brute force: the least total cost over all matchings of allowed
    /// pairs that pair as many rows as possible.
    fn best_by_brute_force(rows: usize, cols: usize, cost: &[Option<f64>]) -> (usize, f64) {
        fn go(
            i: usize,
            rows: usize,
            cols: usize,
            cost: &[Option<f64>],
            used: &mut Vec<bool>,
            acc: (usize, f64),
            best: &mut (usize, f64),
        ) {
            if i == rows {
                if acc.0 > best.0 || (acc.0 == best.0 && acc.1 < best.1 - 1e-9) {
                    *best = acc;
                }
                return;
            }
            go(i + 1, rows, cols, cost, used, acc, best);
            for j in 0..cols {
                if let (false, Some(c)) = (used[j], cost[i * cols + j]) {
                    used[j] = true;
                    go(i + 1, rows, cols, cost, used, (acc.0 + 1, acc.1 + c), best);
                    used[j] = false;
                }
            }
        }
        let mut best = (0, 0.0);
        go(
            0,
            rows,
            cols,
            cost,
            &mut vec![false; cols],
            (0, 0.0),
            &mut best,
        );
        best
    }

    #[test]
    fn crossing_objects_are_not_matched_greedily() {
        // Track 0 overlaps detection 0 best (0.1), but track 1 can only take detection 0: the
        // greedy match would leave track 1 unmatched.
        let cost = [Some(0.1), Some(0.3), Some(0.2), None];
        assert_eq!(assign(2, 2, &cost), vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn matches_brute_force_on_random_matrices() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..400 {
            let (rows, cols) = (rng.usize(0..6), rng.usize(0..6));
            let cost: Vec<Option<f64>> = (0..rows * cols)
                .map(|_| rng.bool().then(|| f64::from(rng.u8(0..100)) / 100.0))
                .collect();
            let pairs = assign(rows, cols, &cost);
            let mut row_seen = vec![false; rows];
            let mut col_seen = vec![false; cols];
            let mut total = 0.0;
            for &(i, j) in &pairs {
                assert!(!row_seen[i] && !col_seen[j], "{pairs:?}");
                row_seen[i] = true;
                col_seen[j] = true;
                total += cost[i * cols + j].expect("only allowed pairs");
            }
            let (count, best) = best_by_brute_force(rows, cols, &cost);
            assert_eq!(pairs.len(), count, "{rows}x{cols} {cost:?}");
            assert!((total - best).abs() < 1e-9, "{total} vs {best}: {cost:?}");
        }
    }
}
