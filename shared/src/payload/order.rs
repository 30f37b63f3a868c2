//! The payload's order of points: by sensor (ascending), then by timestamp, points with the same
//! sensor and timestamp in the order they came; exactly what a stable sort by
//! `(sensor, ts_ms)` gives.
//!
//! Devices send each sensor's readings in time order, interleaved with the other sensors'
//! (sample 1 of every sensor, then sample 2, ...). For such input the stable sort is a
//! counting sort by sensor, one pass to count and one to place, which is what runs when a batch
//! has at most [`MAX_SENSORS`] sensors and each one's timestamps never go back; any other
//! input takes the general sort.

use crate::limits::MAX_SENSORS;

use super::Point;

/// No slot yet: the sensor has not been seen.
const NO_SLOT: u8 = u8::MAX;

/// Fills `sorted` (as long as `points`) with `points` in the payload's order.
pub(super) fn sort_into(points: &[Point], sorted: &mut [Point]) {
    debug_assert_eq!(points.len(), sorted.len());
    if !counting_sort(points, sorted) {
        sorted.copy_from_slice(points);
        sorted.sort_by_key(|p| (p.sensor, p.ts_ms));
    }
}

/// The counting sort; false (and `sorted` unspecified) when some sensor's timestamps go back
/// or there are more than [`MAX_SENSORS`] sensors.
fn counting_sort(points: &[Point], sorted: &mut [Point]) -> bool {
    // Slot of each sensor, in order of first appearance.
    let mut slot_of = [NO_SLOT; 256];
    let mut sensors = [0u8; MAX_SENSORS];
    let mut counts = [0usize; MAX_SENSORS];
    let mut last_ts = [0i64; MAX_SENSORS];
    let mut used = 0;
    for p in points {
        let slot = slot_of[usize::from(p.sensor)];
        if slot == NO_SLOT {
            if used == MAX_SENSORS {
                return false;
            }
            slot_of[usize::from(p.sensor)] = used as u8;
            sensors[used] = p.sensor;
            counts[used] = 1;
            last_ts[used] = p.ts_ms;
            used += 1;
        } else {
            let slot = usize::from(slot);
            if p.ts_ms < last_ts[slot] {
                return false;
            }
            last_ts[slot] = p.ts_ms;
            counts[slot] += 1;
        }
    }
    let sensors = &mut sensors[..used];
    sensors.sort_unstable();
    let mut next = [0usize; MAX_SENSORS];
    let mut at = 0;
    for &sensor in sensors.iter() {
        let slot = usize::from(slot_of[usize::from(sensor)]);
        next[slot] = at;
        at += counts[slot];
    }
    for p in points {
        let slot = usize::from(slot_of[usize::from(p.sensor)]);
        sorted[next[slot]] = *p;
        next[slot] += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn p(sensor: u8, ts_ms: i64) -> Point {
        Point {
            sensor,
            ts_ms,
            value: f32::from(sensor) + ts_ms as f32 / 1000.0,
        }
    }

    fn stable_sorted(points: &[Point]) -> Vec<Point> {
        let mut expected = points.to_vec();
        expected.sort_by_key(|p| (p.sensor, p.ts_ms));
        expected
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
        let mut sorted = points;
        assert!(counting_sort(&points, &mut sorted));
        assert_eq!(sorted.to_vec(), stable_sorted(&points));
    }

    #[test]
    fn time_going_back_or_too_many_sensors_take_the_general_sort() {
        let back = [p(1, 1000), p(2, 0), p(1, 999)];
        let mut sorted = back;
        assert!(!counting_sort(&back, &mut sorted));
        sort_into(&back, &mut sorted);
        assert_eq!(sorted.to_vec(), stable_sorted(&back));

        let many: Vec<Point> = (0..=MAX_SENSORS as u8).rev().map(|s| p(s, 0)).collect();
        let mut sorted = many.clone();
        assert!(!counting_sort(&many, &mut sorted));
        sort_into(&many, &mut sorted);
        assert_eq!(sorted, stable_sorted(&many));
    }
}
