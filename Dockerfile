# One image for every role: runner (`chaosflow run`) and sidecar (`chaosflow sidecar`); the
# operator will use the same binary. The binary is linked statically, so the runtime stage only
# needs what process providers call (a shell and coreutils).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# scripts/build-release: static glibc, hot functions laid out together (less resident memory).
RUN cp "$(./scripts/build-release)" /chaosflow

FROM debian:bookworm-slim
RUN useradd --uid 1000 --create-home --home-dir /home/svc svc
COPY --from=build /chaosflow /usr/local/bin/chaosflow
USER 1000
WORKDIR /home/svc
ENTRYPOINT ["/usr/local/bin/chaosflow"]
CMD ["--help"]
