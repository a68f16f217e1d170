//! Third-party files embedded in the binary, so that every page scaletest writes or serves works
//! offline: nothing is fetched at run time.
//!
//! uPlot 1.6.32 (MIT, `assets/uplot/LICENSE`), the chart library k6's web dashboard uses, taken
//! unmodified from the npm package's `dist/`; and our own chart helpers over it, shared by the
//! HTML report and the aggregator's live page.

/// uPlot's self-contained build: defines the global `uPlot`.
pub const UPLOT_JS: &str = include_str!("../assets/uplot/uPlot.iife.min.js");

/// uPlot's stylesheet.
pub const UPLOT_CSS: &str = include_str!("../assets/uplot/uPlot.min.css");

/// uPlot's licence, to ship beside it.
pub const UPLOT_LICENSE: &str = include_str!("../assets/uplot/LICENSE");

/// Number formatting and event markers both pages draw with: defines the global `stCharts`.
pub const CHARTS_JS: &str = include_str!("../assets/charts.js");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uplot_can_be_inlined_in_a_script_element() {
        assert!(UPLOT_JS.starts_with("/*! https://github.com/leeoniya/uPlot (v1.6.32) */"));
        // Inlined as-is, so it must not contain anything that ends a <script> or <style>.
        assert!(!UPLOT_JS.to_ascii_lowercase().contains("</script"));
        assert!(!UPLOT_CSS.to_ascii_lowercase().contains("</style"));
        assert!(UPLOT_LICENSE.contains("MIT"));
        assert!(!CHARTS_JS.to_ascii_lowercase().contains("</script"));
    }
}
