//! Simulated sensors: plausible, deterministic from a seed.
//!
//! - temperature (°C): a daily curve (coolest near 03:00, warmest near 15:00) around a
//!   per-device base, plus noise;
//! - humidity (%RH): anti-correlated with temperature (warm air holds more water, so relative
//!   humidity falls as it warms), plus noise;
//! - pressure (hPa): a slow mean-reverting random walk around a per-device mean;
//! - battery (V): a Li-ion cell draining slowly from nearly full.
//!
//! Each is reported at the resolution of the sensor it imitates, as the board does.
//!
//! Values depend only on the seed, the sensor and the uptime of each call, so a test can
//! replay a device exactly.

use heapless::String;
use shared::{SensorDecl, SensorKind};

use crate::core::XorShift64;
use crate::core::resolution::round_to;

pub const TEMPERATURE: u8 = 0;
pub const HUMIDITY: u8 = 1;
pub const PRESSURE: u8 = 2;
pub const BATTERY: u8 = 3;

const DAY_MS: f64 = 24.0 * 3600.0 * 1000.0;

/// The sensors every simulated device declares, in sampling order.
pub fn declarations() -> [SensorDecl; 4] {
    let decl = |id, kind, unit: &str| SensorDecl {
        id,
        kind,
        unit: String::try_from(unit).unwrap_or_default(),
    };
    [
        decl(TEMPERATURE, SensorKind::Temperature, "°C"),
        decl(HUMIDITY, SensorKind::Humidity, "%RH"),
        decl(PRESSURE, SensorKind::Pressure, "hPa"),
        decl(BATTERY, SensorKind::Battery, "V"),
    ]
}

/// One device's sensors.
#[derive(Debug, Clone)]
pub struct SimSensors {
    rng: XorShift64,
    /// Hour of the day at boot.
    boot_hour: f64,
    temp_mean: f32,
    temp_swing: f32,
    humidity_mean: f32,
    pressure: f32,
    pressure_mean: f32,
    battery_full: f32,
}

impl SimSensors {
    pub fn new(seed: u64) -> Self {
        let mut rng = XorShift64::new(seed ^ 0x5EED_5E45_0125);
        let mut uniform = |lo: f32, hi: f32| lo + (hi - lo) * rng.unit_f32();
        let boot_hour = f64::from(uniform(0.0, 24.0));
        let temp_mean = uniform(17.0, 24.0);
        let temp_swing = uniform(2.0, 5.0);
        let humidity_mean = uniform(40.0, 60.0);
        let pressure_mean = uniform(1000.0, 1025.0);
        let battery_full = uniform(4.10, 4.20);
        Self {
            rng,
            boot_hour,
            temp_mean,
            temp_swing,
            humidity_mean,
            pressure: pressure_mean,
            pressure_mean,
            battery_full,
        }
    }

    /// Read `sensor` at `uptime_ms`, at the resolution of the sensor it imitates (a BME280's
    /// 0.01 °C, 0.01 %RH and 0.01 hPa; a 1 mV battery ADC). Unknown sensors read 0.
    pub fn read(&mut self, sensor: u8, uptime_ms: u64) -> f32 {
        let per_unit = if sensor == BATTERY { 1000 } else { 100 };
        round_to(self.exact(sensor, uptime_ms), per_unit)
    }

    fn exact(&mut self, sensor: u8, uptime_ms: u64) -> f32 {
        match sensor {
            TEMPERATURE => self.temperature_curve(uptime_ms) + 0.15 * self.gaussian(),
            HUMIDITY => {
                let warmer = self.temperature_curve(uptime_ms) - self.temp_mean;
                (self.humidity_mean - 3.0 * warmer + 0.5 * self.gaussian()).clamp(5.0, 100.0)
            }
            PRESSURE => {
                // Mean-reverting so a long run stays in a believable band.
                self.pressure +=
                    0.03 * self.gaussian() + 0.002 * (self.pressure_mean - self.pressure);
                self.pressure = self.pressure.clamp(950.0, 1050.0);
                self.pressure
            }
            BATTERY => {
                let hours = uptime_ms as f32 / 3_600_000.0;
                (self.battery_full - 0.01 * hours + 0.003 * self.gaussian()).max(3.3)
            }
            _ => 0.0,
        }
    }

    fn temperature_curve(&self, uptime_ms: u64) -> f32 {
        let hour = (self.boot_hour + uptime_ms as f64 / DAY_MS * 24.0) % 24.0;
        // Peak at 15:00, trough at 03:00.
        let phase = (hour - 9.0) / 24.0 * core::f64::consts::TAU;
        self.temp_mean + self.temp_swing * phase.sin() as f32
    }

    /// Roughly standard normal: the sum of four uniforms, centred and scaled (Irwin-Hall).
    fn gaussian(&mut self) -> f32 {
        let sum: f32 = (0..4).map(|_| self.rng.unit_f32()).sum();
        (sum - 2.0) * 3.0f32.sqrt()
    }
}
