//! Readings at the resolution their sensor has, not the float noise of a conversion formula.
//!
//! A BME280 measures temperature to 0.01 °C; its compensation formula in floating point
//! returns 22.471_932 all the same. The digits past the sensor's resolution carry no
//! information, and they are what costs bytes on the wire and on the hub's disk (the hub's
//! storage payload stores a value with two decimals in about a byte, a full-precision float in
//! three or more). The board and the simulator round each reading with [`round_to`].

/// `value` rounded to the nearest multiple of `1 / per_unit` (`per_unit` 100: hundredths),
/// as the `f32` nearest to that decimal. Non-finite values and values too large for the
/// rounding (beyond ±2^24 steps, where an `f32` has no finer digits anyway) pass unchanged.
pub fn round_to(value: f32, per_unit: u32) -> f32 {
    let steps = value * per_unit as f32;
    if !steps.is_finite() || steps.abs() >= 16_777_216.0 {
        return value;
    }
    let nearest = if steps >= 0.0 {
        (steps + 0.5) as i32
    } else {
        (steps - 0.5) as i32
    };
    // An integer below 2^24 and `per_unit` are exact in f32, and IEEE division rounds
    // correctly: the result is the f32 nearest to the decimal.
    nearest as f32 / per_unit as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_the_nearest_step_and_prints_as_that_decimal() {
        assert_eq!(round_to(22.471_932, 100), 22.47);
        assert_eq!(round_to(22.475_1, 100), 22.48);
        assert_eq!(round_to(-3.456, 100), -3.46);
        assert_eq!(round_to(4.123_456, 1000), 4.123);
        assert_eq!(round_to(1_013.254_9, 100), 1_013.25);
        assert_eq!(format!("{}", round_to(47.309_998, 100)), "47.31");
        assert_eq!(round_to(0.0, 100), 0.0);
    }

    #[test]
    fn leaves_what_it_cannot_round() {
        assert!(round_to(f32::NAN, 100).is_nan());
        assert_eq!(round_to(f32::INFINITY, 100), f32::INFINITY);
        assert_eq!(round_to(1.0e9, 100), 1.0e9);
    }
}
