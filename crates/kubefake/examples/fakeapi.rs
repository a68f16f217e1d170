//! Run the fake API server as a process (for benchmarks and trying the tools by hand):
//! `cargo run --release -p kubefake --example fakeapi -- KUBECONFIG_PATH`. It writes a
//! kubeconfig there and serves until killed. It registers the wardle Flunder custom resource.

// Tests and examples may print (see clippy.toml).
#![allow(clippy::disallowed_macros)]

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "kubeconfig-fake".into());
    let api = kubefake::FakeApi::start();
    api.register(kubefake::Resource {
        group: "wardle.example.com".into(),
        version: "v1alpha1".into(),
        plural: "flunders".into(),
        kind: "Flunder".into(),
        namespaced: true,
    });
    let written = api.kubeconfig(std::path::Path::new("."));
    std::fs::rename(&written, &path).expect("move the kubeconfig into place");
    println!("fake API at {} (kubeconfig {path})", api.url());
    loop {
        std::thread::park();
    }
}
