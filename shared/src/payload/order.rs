//! The payload's order of points: by sensor (ascending), then by timestamp, points with the same
//! sensor and timestamp in the order they came; exactly what a stable sort by
//! `(sensor, ts_ms)` gives.
//!
//! The encoder reads the sorted points as two columns, timestamps and value bits, and one run
//! per sensor in them. Devices send each sensor's readings in time order, interleaved with the
//! other sensors' in one order (sample 1 of every sensor, then sample 2, ...): then each
//! sensor's points lie a period apart and are copied to its run directly. Any other order goes
//! through a counting sort by sensor, which places each point once; both keep each sensor's
//! points in the order they came, so a run is usually already in time order; the encoder sorts
//! one that is not on its own, stably ([`sort_by_time`]), when it looks at the run's
//! timestamps anyway.

use alloc::vec::Vec;

use crate::limits::{MAX_READINGS_PER_BATCH, MAX_SENSORS};

use super::Point;

/// The points of one sensor: `start..start + len` in the columns.
#[derive(Clone, Copy)]
pub(super) struct Run {
    pub(super) sensor: u8,
    pub(super) start: usize,
    pub(super) len: usize,
}

impl Run {
    pub(super) fn range(self) -> core::ops::Range<usize> {
        self.start..self.start + self.len
    }
}

/// One run per sensor: sensors are `u8`s.
pub(super) type Runs = heapless::Vec<Run, 256>;

/// Fills `ts` and `values` (each as long as `points`) with the points' timestamps and value
/// bits grouped by sensor, ascending, each sensor's in the order they came, and `runs` (empty)
/// with each sensor's run. A run whose timestamps go back still needs [`sort_by_time`].
pub(super) fn group_by_sensor(
    points: &[Point],
    ts: &mut [i64],
    values: &mut [u32],
    runs: &mut Runs,
) {
    debug_assert!(points.len() == ts.len() && points.len() == values.len() && runs.is_empty());
    // Small tables for the usual few sensors; tables for every sensor only when needed.
    if !place_interleaved(points, ts, values, runs)
        && !place_by_sensor::<MAX_SENSORS>(points, ts, values, runs)
    {
        place_by_sensor::<256>(points, ts, values, runs);
    }
}

/// The points as devices send them: one per sensor per sample, the sensors in the same order
/// every time, so each sensor's points lie a period apart and are copied to its run without
/// counting; false (and no runs) for any other order, found at the latest while copying.
fn place_interleaved(
    points: &[Point],
    ts: &mut [i64],
    values: &mut [u32],
    runs: &mut Runs,
) -> bool {
    let Some(first) = points.first() else {
        return false;
    };
    // The period: where the first point's sensor comes again.
    let period = points[1..]
        .iter()
        .position(|p| p.sensor == first.sensor)
        .map_or(points.len(), |i| i + 1);
    if period > MAX_SENSORS || !points.len().is_multiple_of(period) {
        return false;
    }
    // Where each sensor first comes, in the order of the sensors; a sensor twice in a period is
    // not this order.
    let mut slots: [u8; MAX_SENSORS] = core::array::from_fn(|slot| slot as u8);
    let slots = &mut slots[..period];
    let sensor_at = |slot: u8| points[usize::from(slot)].sensor;
    let ascending = |slots: &[u8]| slots.is_sorted_by(|&a, &b| sensor_at(a) < sensor_at(b));
    // Devices usually list their sensors in order already.
    if !ascending(slots) {
        slots.sort_unstable_by_key(|&slot| sensor_at(slot));
        if !ascending(slots) {
            return false;
        }
    }
    let len = points.len() / period;
    let columns = ts.chunks_exact_mut(len).zip(values.chunks_exact_mut(len));
    for ((&slot, (ts, values)), start) in slots.iter().zip(columns).zip((0..).step_by(len)) {
        let (sensor, slot) = (sensor_at(slot), usize::from(slot));
        // At most `MAX_SENSORS` runs.
        let _ = runs.push(Run { sensor, start, len });
        for (samples, (t, v)) in points.chunks_exact(period).zip(ts.iter_mut().zip(values)) {
            let p = &samples[slot];
            if p.sensor != sensor {
                runs.clear();
                return false;
            }
            (*t, *v) = (p.ts_ms, p.value.to_bits());
        }
    }
    true
}

/// The counting sort by sensor, with a slot per sensor in order of first appearance; false
/// (and nothing written) when the batch has more than `SLOTS` sensors.
fn place_by_sensor<const SLOTS: usize>(
    points: &[Point],
    ts: &mut [i64],
    values: &mut [u32],
    runs: &mut Runs,
) -> bool {
    const NO_SLOT: u16 = u16::MAX;
    let mut slot_of = [NO_SLOT; 256];
    let mut sensors = [0u8; SLOTS];
    let mut counts = [0usize; SLOTS];
    let mut used = 0;
    for p in points {
        let slot = &mut slot_of[usize::from(p.sensor)];
        if *slot == NO_SLOT {
            if used == SLOTS {
                return false;
            }
            *slot = used as u16;
            sensors[used] = p.sensor;
            used += 1;
        }
        // `SLOTS` is a power of two: the mask spares a bounds check.
        counts[usize::from(*slot) & (SLOTS - 1)] += 1;
    }
    let sensors = &mut sensors[..used];
    sensors.sort_unstable();
    // `counts` becomes where each slot's next point goes.
    let mut at = 0;
    for &sensor in sensors.iter() {
        let slot = usize::from(slot_of[usize::from(sensor)]);
        let len = counts[slot];
        // At most 256 sensors, so never full.
        let _ = runs.push(Run {
            sensor,
            start: at,
            len,
        });
        counts[slot] = at;
        at += len;
    }
    for p in points {
        let next = &mut counts[usize::from(slot_of[usize::from(p.sensor)]) & (SLOTS - 1)];
        ts[*next] = p.ts_ms;
        values[*next] = p.value.to_bits();
        *next += 1;
    }
    true
}

/// Sorts one run by timestamp, stably. Only reordered batches need it.
pub(super) fn sort_by_time(ts: &mut [i64], values: &mut [u32]) {
    // (timestamp, arrival, value): the arrival breaks ties, so the unstable sort is stable and
    // needs no buffer. Only an oversized batch (a caller bug) takes the heap.
    let mut on_stack: heapless::Vec<(i64, u32, u32), MAX_READINGS_PER_BATCH> = heapless::Vec::new();
    let mut on_heap = Vec::new();
    let entries = ts.iter().zip(values.iter()).enumerate();
    let entries = entries.map(|(i, (&t, &v))| (t, i as u32, v));
    let sorted: &mut [(i64, u32, u32)] = if ts.len() <= on_stack.capacity() {
        on_stack.extend(entries);
        &mut on_stack
    } else {
        on_heap.extend(entries);
        &mut on_heap
    };
    sorted.sort_unstable();
    for ((t, v), &(sorted_t, _, sorted_v)) in ts.iter_mut().zip(values.iter_mut()).zip(&*sorted) {
        (*t, *v) = (sorted_t, sorted_v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(sensor: u8, ts_ms: i64) -> Point {
        Point {
            sensor,
            ts_ms,
            value: f32::from(sensor) + ts_ms as f32 / 1000.0,
        }
    }

    fn stable_sorted(points: &[Point]) -> Vec<(i64, u32)> {
        let mut expected = points.to_vec();
        expected.sort_by_key(|p| (p.sensor, p.ts_ms));
        expected
            .iter()
            .map(|p| (p.ts_ms, p.value.to_bits()))
            .collect()
    }

    /// The columns as (timestamp, value bits), and the runs as (sensor, start, len).
    type Sorted = (Vec<(i64, u32)>, Vec<(u8, usize, usize)>);

    fn sorted(points: &[Point]) -> Sorted {
        let (mut ts, mut values) = (alloc::vec![0; points.len()], alloc::vec![0; points.len()]);
        let mut runs = Runs::new();
        group_by_sensor(points, &mut ts, &mut values, &mut runs);
        for run in &runs {
            if !ts[run.range()].is_sorted() {
                sort_by_time(&mut ts[run.range()], &mut values[run.range()]);
            }
        }
        let runs = runs.iter().map(|r| (r.sensor, r.start, r.len)).collect();
        (ts.into_iter().zip(values).collect(), runs)
    }

    #[test]
    fn interleaved_sensors_come_out_grouped_in_time_order_as_a_stable_sort_puts_them() {
        let points = [
            p(3, 0),
            p(1, 0),
            p(3, 1000),
            p(1, 1000),
            p(1, 1000),
            p(9, 5),
        ];
        let (columns, runs) = sorted(&points);
        assert_eq!(columns, stable_sorted(&points));
        assert_eq!(runs, [(1, 0, 3), (3, 3, 2), (9, 5, 1)]);
    }

    #[test]
    fn sensors_repeating_in_one_order_come_out_as_a_stable_sort_puts_them() {
        let sample = |t: i64, sensors: &[u8]| sensors.iter().map(|&s| p(s, t)).collect::<Vec<_>>();
        let interleaved: Vec<Point> = (0..8).flat_map(|i| sample(1000 * i, &[7, 2, 5])).collect();
        let (columns, runs) = sorted(&interleaved);
        assert_eq!(columns, stable_sorted(&interleaved));
        assert_eq!(runs, [(2, 0, 8), (5, 8, 8), (7, 16, 8)]);
        // Almost that order: a sensor twice in a period, a period cut short, time going back
        // within a sensor, a period changing its order.
        let cases = [
            [sample(0, &[1, 2, 2]), sample(1, &[1, 2, 2])].concat(),
            [sample(0, &[1, 2, 3]), sample(1, &[1, 2])].concat(),
            [sample(5, &[4, 3]), sample(1, &[4, 3]), sample(5, &[4, 3])].concat(),
            [sample(0, &[1, 2, 3]), sample(1, &[1, 3, 2])].concat(),
        ];
        for points in cases {
            assert_eq!(sorted(&points).0, stable_sorted(&points), "{points:?}");
        }
    }

    #[test]
    fn time_going_back_and_many_sensors_sort_as_a_stable_sort_does() {
        let back = [p(1, 1000), p(2, 0), p(1, 999), p(1, 999), p(1, 5)];
        assert_eq!(sorted(&back).0, stable_sorted(&back));

        let many: Vec<Point> = (0..=255u8).rev().flat_map(|s| [p(s, 7), p(s, 3)]).collect();
        let (columns, runs) = sorted(&many);
        assert_eq!(columns, stable_sorted(&many));
        assert_eq!(runs.len(), 256);
        assert_eq!(runs[255], (255, 510, 2));
    }
}
