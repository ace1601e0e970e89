# One image for every role: the runner (`chaosflow run`), the sidecar that delivers its events
# (`chaosflow sidecar`) and the Kubernetes operator (`chaosflow operator`), which starts runner
# pods from this same image. The binary is linked statically, so the runtime stage only needs
# what process providers call (a shell and coreutils).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# scripts/build-release: static glibc, hot functions laid out together (less resident memory).
RUN cp "$(./scripts/build-release)" /chaosflow

FROM debian:bookworm-slim
# The upstream runner image's user: svc, uid/gid 1001, home /home/svc. Runner pods run as 1001
# and mount the settings Secret at /home/svc/.chaostoolkit/ and the experiment under /home/svc,
# so existing ChaosToolkitExperiment resources keep working unchanged.
RUN groupadd --gid 1001 svc \
    && useradd --uid 1001 --gid 1001 --create-home --home-dir /home/svc --shell /bin/sh svc
COPY --from=build /chaosflow /usr/local/bin/chaosflow
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 1001:1001
WORKDIR /home/svc
ENTRYPOINT ["/usr/local/bin/chaosflow"]
CMD ["--help"]
