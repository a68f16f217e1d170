# The scaletest image: one static binary in an empty image; every component (serve, bot,
# aggregate) runs it with a different subcommand. For users with Docker:
#   docker build -t scaletest:0.1.0 .
# Without Docker (CI does this): scripts/image.sh builds the same image with umoci and checks it.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# glibc, statically linked (its files and dns NSS modules are inside libc since 2.34, so the
# pods resolve Service names through the resolv.conf Kubernetes mounts).
RUN RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --locked --release --target "$(rustc -vV | sed -n 's/^host: //p')" -p scaletest \
 && install -m 0755 target/*/release/scaletest /scaletest \
 && /scaletest --version

FROM scratch
COPY --from=build /scaletest /scaletest
USER 65532:65532
EXPOSE 8080 8089
ENTRYPOINT ["/scaletest"]
CMD ["--help"]
