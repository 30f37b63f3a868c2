//! The board's sensors: the chip's internal temperature sensor (esp-hal `tsens`, always there)
//! and an optional BME280 on I2C0 (SDA GPIO4, SCL GPIO5; address 0x76, SDO to GND).

use bme280::i2c::BME280;
use esp_hal::Blocking;
use esp_hal::delay::Delay;
use esp_hal::i2c::master::{Config as I2cConfig, I2c};
use esp_hal::peripherals::{GPIO4, GPIO5, I2C0, TSENS};
use esp_hal::tsens::{Config as TsensConfig, TemperatureSensor};
use firmware::core::resolution::round_to;
use heapless::Vec;
use shared::limits::MAX_SENSORS;
use shared::{SensorDecl, SensorKind};

pub const CHIP_TEMPERATURE: u8 = 0;
pub const BME_TEMPERATURE: u8 = 1;
pub const BME_HUMIDITY: u8 = 2;
pub const BME_PRESSURE: u8 = 3;

pub struct Sensors {
    tsens: Option<TemperatureSensor<'static>>,
    bme: Option<BME280<I2c<'static, Blocking>>>,
    delay: Delay,
}

impl Sensors {
    pub fn new(
        tsens: TSENS<'static>,
        i2c: I2C0<'static>,
        sda: GPIO4<'static>,
        scl: GPIO5<'static>,
    ) -> Self {
        let mut delay = Delay::new();
        let tsens = TemperatureSensor::new(tsens, TsensConfig::default()).ok();
        let bme = I2c::new(i2c, I2cConfig::default())
            .ok()
            .map(|i2c| i2c.with_sda(sda).with_scl(scl))
            .and_then(|i2c| {
                let mut bme = BME280::new_primary(i2c);
                bme.init(&mut delay).is_ok().then_some(bme)
            });
        Self { tsens, bme, delay }
    }

    pub fn has_bme280(&self) -> bool {
        self.bme.is_some()
    }

    /// What Hello declares: only what answered at boot.
    pub fn declarations(&self) -> Vec<SensorDecl, MAX_SENSORS> {
        let mut v = Vec::new();
        let mut add = |id, kind, unit: &str| {
            let _ = v.push(SensorDecl {
                id,
                kind,
                unit: unit.try_into().unwrap_or_default(),
            });
        };
        if self.tsens.is_some() {
            add(CHIP_TEMPERATURE, SensorKind::Temperature, "°C");
        }
        if self.bme.is_some() {
            add(BME_TEMPERATURE, SensorKind::Temperature, "°C");
            add(BME_HUMIDITY, SensorKind::Humidity, "%RH");
            add(BME_PRESSURE, SensorKind::Pressure, "hPa");
        }
        v
    }

    /// One reading; `None` if the sensor did not answer this time (the sample is skipped).
    pub fn read(&mut self, sensor: u8) -> Option<f32> {
        match sensor {
            CHIP_TEMPERATURE => self
                .tsens
                .as_ref()
                .map(|t| t.get_temperature().to_celsius()),
            BME_TEMPERATURE | BME_HUMIDITY | BME_PRESSURE => {
                let m = self.bme.as_mut()?.measure(&mut self.delay).ok()?;
                // Hundredths of each unit: every digit of the BME280's 0.01 °C temperature,
                // humidity and pressure far inside their accuracy (±3 %RH, ±1 hPa); the float
                // formula's further digits are noise that costs bytes on the wire and on disk.
                let value = match sensor {
                    BME_TEMPERATURE => m.temperature,
                    BME_HUMIDITY => m.humidity,
                    _ => m.pressure / 100.0,
                };
                Some(round_to(value, 100))
            }
            _ => None,
        }
    }
}
