//! One module per subcommand: its clap arguments, their conversion into the library's typed
//! configuration, and one call into the library.

pub mod load;
pub mod report;
