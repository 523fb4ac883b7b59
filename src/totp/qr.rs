//! The enrollment QR code as inline SVG: presentation attributes only (the page's CSP
//! forbids inline styles), no script, no external references.

use std::fmt::Write;

use qrcodegen::{QrCode, QrCodeEcc, QrSegment, Version};

use super::TotpError;

const QUIET_ZONE: i32 = 4;
const PIXELS_PER_MODULE: i32 = 5;

pub(crate) fn svg(text: &str) -> Result<String, TotpError> {
    let qr = encode(text)?;
    let size = qr.size();
    let dim = size + 2 * QUIET_ZONE;
    let px = dim * PIXELS_PER_MODULE;
    // One subpath per horizontal run of dark modules keeps the path short.
    let mut path = String::new();
    for y in 0..size {
        let mut x = 0;
        while x < size {
            if !qr.get_module(x, y) {
                x += 1;
                continue;
            }
            let start = x;
            while x < size && qr.get_module(x, y) {
                x += 1;
            }
            let run = x - start;
            let _ = write!(
                path,
                "M{},{}h{run}v1h-{run}z",
                start + QUIET_ZONE,
                y + QUIET_ZONE
            );
        }
    }
    Ok(format!(
        concat!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {dim} {dim}" "##,
            r##"width="{px}" height="{px}" shape-rendering="crispEdges" role="img" "##,
            r##"aria-label="QR code for your authenticator app">"##,
            r##"<rect width="{dim}" height="{dim}" fill="#ffffff"/>"##,
            r##"<path d="{path}" fill="#000000"/></svg>"##
        ),
        dim = dim,
        px = px,
        path = path
    ))
}

/// Error correction exactly Medium (no automatic boost), smallest version that fits.
fn encode(text: &str) -> Result<QrCode, TotpError> {
    let segments = QrSegment::make_segments(text);
    QrCode::encode_segments_advanced(
        &segments,
        QrCodeEcc::Medium,
        Version::MIN,
        Version::MAX,
        None,
        false,
    )
    .map_err(|_| TotpError::Crypto("the otpauth URI is too long for a QR code"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Redraws the path onto a grid and compares it with the encoder's modules.
    #[test]
    fn path_draws_exactly_the_dark_modules() {
        let text =
            "otpauth://totp/passgate:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=passgate";
        let svg = svg(text).expect("fits");
        let qr = encode(text).expect("fits");
        assert_eq!(qr.error_correction_level(), QrCodeEcc::Medium);
        let size = qr.size();
        let dim = (size + 2 * QUIET_ZONE) as usize;
        assert!(svg.contains(&format!(r#"viewBox="0 0 {dim} {dim}""#)));
        let d = svg
            .split(r#"<path d=""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("path");
        let mut grid = vec![vec![false; dim]; dim];
        for sub in d.split('z').filter(|s| !s.is_empty()) {
            // M{x},{y}h{run}v1h-{run}
            let rest = sub.strip_prefix('M').expect("move");
            let (xy, rest) = rest.split_once('h').expect("h");
            let (x, y) = xy.split_once(',').expect("x,y");
            let (run, back) = rest.split_once("v1h-").expect("v1h-");
            assert_eq!(run, back);
            let (x, y, run): (usize, usize, usize) = (
                x.parse().expect("x"),
                y.parse().expect("y"),
                run.parse().expect("run"),
            );
            for cell in &mut grid[y][x..x + run] {
                assert!(!*cell, "overlapping runs");
                *cell = true;
            }
        }
        let q = QUIET_ZONE as usize;
        for (y, row) in grid.iter().enumerate() {
            for (x, &dark) in row.iter().enumerate() {
                let inside = (q..dim - q).contains(&x) && (q..dim - q).contains(&y);
                let expected = inside && qr.get_module((x - q) as i32, (y - q) as i32);
                assert_eq!(dark, expected, "module {x},{y}");
            }
        }
    }

    #[test]
    fn too_long_is_an_error() {
        assert!(svg(&"x".repeat(5000)).is_err());
    }
}
