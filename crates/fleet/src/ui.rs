//! The live web UI, embedded in the binary (nothing is fetched at run time); the chart
//! library (uPlot) and the chart helpers (`charts.js`) come from `report::assets`, which the
//! HTML report uses too.

/// The page.
pub const INDEX: &str = include_str!("../assets/index.html");
/// Its script.
pub const APP_JS: &str = include_str!("../assets/app.js");
/// Its style.
pub const APP_CSS: &str = include_str!("../assets/app.css");
