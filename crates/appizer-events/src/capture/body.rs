//! Turning an ingestion request body into JSON bytes: gzip (by header, by
//! `compression=gzip-js`, or by its magic bytes), form bodies `data=<base64>`, and
//! `compression=lz64` (lz-string base64). Decompressed size is bounded, so a small
//! compressed body cannot expand without limit.

use std::borrow::Cow;
use std::io::Read;

use base64::Engine;

use super::CaptureError;

/// How the request says its body is encoded.
#[derive(Debug, Default, Clone)]
pub struct Encoding<'a> {
    /// `Content-Encoding` header.
    pub content_encoding: Option<&'a str>,
    /// `Content-Type` header.
    pub content_type: Option<&'a str>,
    /// `compression` query parameter (PostHog: `gzip-js`, `gzip`, `lz64`, `base64`).
    pub compression: Option<&'a str>,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The JSON bytes carried by `body`, at most `limit` bytes once decoded.
pub fn decode_body<'a>(
    body: &'a [u8],
    encoding: &Encoding<'_>,
    limit: usize,
) -> Result<Cow<'a, [u8]>, CaptureError> {
    let is_form = encoding.content_type.is_some_and(|t| {
        t.trim_start()
            .starts_with("application/x-www-form-urlencoded")
    });
    let mut compression = encoding.compression.map(str::to_ascii_lowercase);
    // Plain JSON, the common case, is returned without a copy.
    let mut payload: Cow<'a, [u8]> = Cow::Borrowed(body);

    if is_form || (body.starts_with(b"data=") && !body.starts_with(b"data={")) {
        let mut data = None;
        for (key, value) in form_urlencoded::parse(body) {
            match key.as_ref() {
                "data" => data = Some(value.into_owned()),
                "compression" if compression.is_none() => {
                    compression = Some(value.to_ascii_lowercase())
                }
                _ => {}
            }
        }
        let data =
            data.ok_or_else(|| CaptureError::malformed("data", "form body has no `data` field"))?;
        payload = Cow::Owned(if compression.as_deref() == Some("lz64") {
            data.into_bytes()
        } else {
            decode_base64(data.trim())?
        });
    }

    if compression.as_deref() == Some("lz64") {
        let text = std::str::from_utf8(&payload)
            .map_err(|_| CaptureError::malformed("body", "lz64 body is not text"))?;
        let decoded = lz_str::decompress_from_base64(text.trim())
            .ok_or_else(|| CaptureError::malformed("body", "body is not valid lz64"))?;
        let json = String::from_utf16(&decoded)
            .map_err(|_| CaptureError::malformed("body", "lz64 body is not valid UTF-16"))?;
        if json.len() > limit {
            return Err(CaptureError::TooLarge { limit });
        }
        return Ok(Cow::Owned(json.into_bytes()));
    }

    let declared = encoding
        .content_encoding
        .map(str::trim)
        .filter(|e| !e.is_empty());
    if let Some(other) =
        declared.filter(|e| !e.eq_ignore_ascii_case("gzip") && !e.eq_ignore_ascii_case("identity"))
    {
        return Err(CaptureError::UnsupportedEncoding(other.to_string()));
    }
    let gzip = declared.is_some_and(|e| e.eq_ignore_ascii_case("gzip"))
        || matches!(compression.as_deref(), Some("gzip-js" | "gzip"))
        || payload.starts_with(&GZIP_MAGIC);
    if gzip {
        payload = Cow::Owned(gunzip(&payload, limit)?);
    } else if compression.as_deref() == Some("base64") {
        payload = Cow::Owned(decode_base64(
            std::str::from_utf8(&payload).unwrap_or("").trim(),
        )?);
    }
    if payload.len() > limit {
        return Err(CaptureError::TooLarge { limit });
    }
    Ok(payload)
}

fn gunzip(data: &[u8], limit: usize) -> Result<Vec<u8>, CaptureError> {
    let mut out = Vec::with_capacity(data.len() * 4);
    flate2::read::MultiGzDecoder::new(data)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| CaptureError::malformed("body", format!("body is not valid gzip: {e}")))?;
    if out.len() > limit {
        return Err(CaptureError::TooLarge { limit });
    }
    Ok(out)
}

fn decode_base64(text: &str) -> Result<Vec<u8>, CaptureError> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    // Clients differ on padding and alphabet; accept both.
    let text = text.trim_end_matches('=');
    let bytes = STANDARD_NO_PAD
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text))
        .map_err(|_| CaptureError::malformed("data", "`data` is not valid base64"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const JSON: &[u8] = br#"{"api_key":"k","batch":[{"event":"e","distinct_id":"d"}]}"#;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn encodings_other_than_gzip_are_refused_as_unsupported() {
        for name in ["br", "deflate", "zstd", "gzip, br"] {
            let encoding = Encoding {
                content_encoding: Some(name),
                ..Default::default()
            };
            assert_eq!(
                decode_body(JSON, &encoding, 1 << 20).unwrap_err(),
                CaptureError::UnsupportedEncoding(name.to_string())
            );
        }
        for name in ["identity", "", "GZIP"] {
            let body = if name == "GZIP" {
                gzip(JSON)
            } else {
                JSON.to_vec()
            };
            let encoding = Encoding {
                content_encoding: Some(name),
                ..Default::default()
            };
            assert_eq!(
                &*decode_body(&body, &encoding, 1 << 20).unwrap(),
                JSON,
                "{name}"
            );
        }
    }

    #[test]
    fn plain_gzip_by_header_by_flag_and_by_magic() {
        let plain = decode_body(JSON, &Encoding::default(), 1 << 20).unwrap();
        assert_eq!(plain, JSON);
        let gz = gzip(JSON);
        let by_header = Encoding {
            content_encoding: Some("gzip"),
            ..Default::default()
        };
        assert_eq!(decode_body(&gz, &by_header, 1 << 20).unwrap(), JSON);
        let by_flag = Encoding {
            compression: Some("gzip-js"),
            ..Default::default()
        };
        assert_eq!(decode_body(&gz, &by_flag, 1 << 20).unwrap(), JSON);
        assert_eq!(
            decode_body(&gz, &Encoding::default(), 1 << 20).unwrap(),
            JSON
        );
    }

    #[test]
    fn form_bodies_with_base64_gzip_and_lz64() {
        let form = |data: &str, compression: Option<&str>| {
            let mut s = form_urlencoded::Serializer::new(String::new());
            s.append_pair("data", data);
            if let Some(c) = compression {
                s.append_pair("compression", c);
            }
            s.finish()
        };
        let form_type = Encoding {
            content_type: Some("application/x-www-form-urlencoded"),
            ..Default::default()
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(JSON);
        assert_eq!(
            decode_body(form(&b64, None).as_bytes(), &form_type, 1 << 20).unwrap(),
            JSON
        );
        let unpadded = b64.trim_end_matches('=').to_string();
        assert_eq!(
            decode_body(form(&unpadded, None).as_bytes(), &form_type, 1 << 20).unwrap(),
            JSON
        );
        let gz64 = base64::engine::general_purpose::STANDARD.encode(gzip(JSON));
        assert_eq!(
            decode_body(form(&gz64, None).as_bytes(), &form_type, 1 << 20).unwrap(),
            JSON
        );
        let lz = lz_str::compress_to_base64(std::str::from_utf8(JSON).unwrap());
        assert_eq!(
            decode_body(form(&lz, Some("lz64")).as_bytes(), &form_type, 1 << 20).unwrap(),
            JSON
        );
        let lz_query = Encoding {
            compression: Some("lz64"),
            ..Default::default()
        };
        assert_eq!(
            decode_body(lz.as_bytes(), &lz_query, 1 << 20).unwrap(),
            JSON
        );
    }

    #[test]
    fn bombs_and_garbage_are_refused() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![b' '; 2 << 20]).unwrap();
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        assert_eq!(
            decode_body(&bomb, &Encoding::default(), 1 << 20).unwrap_err(),
            CaptureError::TooLarge { limit: 1 << 20 }
        );
        let broken = [0x1f, 0x8b, 1, 2, 3];
        assert!(matches!(
            decode_body(&broken, &Encoding::default(), 1 << 20),
            Err(CaptureError::Malformed { .. })
        ));
        assert!(decode_body(JSON, &Encoding::default(), 10).is_err());
    }
}
