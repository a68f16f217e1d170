//! Run the fake API server as a process (for benchmarks and trying the tools by hand):
//! `cargo run --release -p kubefake --example fakeapi -- KUBECONFIG_PATH`. It writes a
//! kubeconfig there and serves until killed. It registers the wardle Flunder custom resource.
//! With `FAKEAPI_CALLS=FILE` it writes its request log (calls by verb and resource, as
//! [`kubefake::FakeApi::calls`]) to FILE as JSON every second, for benchmarks to read. With
//! `FAKEAPI_BOOKMARK_S=S` an idle watch gets a bookmark every S seconds (the API server sends
//! one about every minute; the fake's default is shorter, for tests). With
//! `FAKEAPI_STREAMS=N` it advertises N concurrent HTTP/2 streams per connection instead of
//! kube-apiserver v1.28.7's 100 (250: servers before 1.28.3 / 1.27.7 / 1.26.10).

// Tests and examples may print (see clippy.toml).
#![allow(clippy::disallowed_macros)]

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "kubeconfig-fake".into());
    let mut opts = kubefake::Options::default();
    if let Some(s) = std::env::var("FAKEAPI_BOOKMARK_S")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
    {
        opts.bookmark_every = std::time::Duration::from_secs_f64(s);
    }
    if let Some(n) = std::env::var("FAKEAPI_STREAMS")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
    {
        opts.max_concurrent_streams = n;
    }
    let api = kubefake::FakeApi::start_with(opts);
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
    let calls = std::env::var_os("FAKEAPI_CALLS");
    loop {
        match &calls {
            Some(f) => {
                let text = serde_json::to_string(&api.calls()).expect("json");
                let tmp = std::path::PathBuf::from(f).with_extension("tmp");
                std::fs::write(&tmp, text).expect("write the request log");
                std::fs::rename(&tmp, f).expect("move the request log into place");
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            None => std::thread::park(),
        }
    }
}
