//! Placeholder until the HTML report lands (replaced on merge).
use crate::RunFile;
/// The report page.
pub fn render(run: &RunFile) -> String {
    format!(
        "<!doctype html><title>scaletest</title><pre>{}</pre>",
        run.total.responses
    )
}
