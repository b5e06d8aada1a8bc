//! Country, region and city from the client IP, when a MaxMind-format (GeoIP2 /
//! GeoLite2 City) database is configured (`ingest.geoip_database`). Written into
//! `context.location` unless the client sent a location of its own.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use appizer_core::event::Event;
use serde::Deserialize;
use serde_json::{Map, Value};

/// A loaded City database.
pub struct GeoIp {
    reader: maxminddb::Reader<Vec<u8>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp").finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Deserialize)]
struct Named {
    #[serde(default)]
    iso_code: Option<String>,
    #[serde(default)]
    names: BTreeMap<String, String>,
}

impl Named {
    fn english(&self) -> Option<String> {
        self.names.get("en").cloned()
    }
}

#[derive(Debug, Default, Deserialize)]
struct CityRecord {
    #[serde(default)]
    country: Named,
    #[serde(default)]
    subdivisions: Vec<Named>,
    #[serde(default)]
    city: Named,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot open the GeoIP database {path}: {message}")]
pub struct GeoIpError {
    pub path: String,
    pub message: String,
}

impl GeoIp {
    pub fn open(path: &Path) -> Result<Self, GeoIpError> {
        maxminddb::Reader::open_readfile(path)
            .map(|reader| Self { reader })
            .map_err(|e| GeoIpError {
                path: path.display().to_string(),
                message: e.to_string(),
            })
    }

    /// The location of `ip` as `context.location` fields, if the database knows it.
    pub fn locate(&self, ip: IpAddr) -> Option<Map<String, Value>> {
        let record: CityRecord = self.reader.lookup(ip).ok()?.decode().ok()??;
        let mut location = Map::new();
        let mut put = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                location.insert(key.to_string(), Value::String(v));
            }
        };
        put("country", record.country.english());
        put("country_code", record.country.iso_code.clone());
        let region = record.subdivisions.first();
        put("region", region.and_then(Named::english));
        put("region_code", region.and_then(|r| r.iso_code.clone()));
        put("city", record.city.english());
        (!location.is_empty()).then_some(location)
    }

    /// Fills `context.location` from the event's IP when the client did not set one.
    pub fn enrich(&self, event: &mut Event) {
        let Some(ip) = event.ip.as_deref().and_then(|ip| ip.parse().ok()) else {
            return;
        };
        if event.context.fields(["location"])[0].is_some() {
            return;
        }
        if let Some(location) = self.locate(ip) {
            event
                .context
                .prepend(&[("location", Value::Object(location))]);
        }
    }
}
