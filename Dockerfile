# fedrisk container image: the one static binary on an empty base.
#
# Build it with `make image`. No registry is reachable from the build
# machines, so nothing is pulled: `make image` builds a static
# (CGO_ENABLED=0) binary on the host with the tag nodemodata (the demo's 7 MB
# of bundled data stay out), stages it with the CA bundle, a passwd/group entry
# for the non-root user and the empty /data and /tmp directories under
# bin/image/, and this file only copies them (the GoReleaser convention).
#
# One image runs any service set:
#   fedrisk serve --services consent      (7002)
#   fedrisk serve --services psi          (7001)
#   fedrisk serve --services serving      (7003)
#   fedrisk serve --services console      (8080)
# Every container also has the ops listener on 7000 (FEDRISK_OPS_ADDR):
# /health, /ready and /metrics in plain HTTP, never asking for a client
# certificate, for probes, this healthcheck and Prometheus.
#
# Check the built image by its contents (podman run is not available on
# the build machines): `make image-check`.
FROM scratch

ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z

LABEL org.opencontainers.image.title="fedrisk" \
      org.opencontainers.image.description="Federated credit-risk platform: consent, private set intersection, federated training and scoring, one binary" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.vendor="fedrisk" \
      org.opencontainers.image.documentation="docs/deploy.md"

# CA bundle (public TLS: peers behind public CAs, webhooks), /etc/passwd and
# /etc/group naming UID/GID 65532 "fedrisk".
COPY bin/image/etc/ /etc/
# The data directory and a temporary directory, owned by the non-root user
# (a scratch image has no shell to mkdir or chown in).
COPY --chown=65532:65532 bin/image/data/ /data/
COPY --chown=65532:65532 bin/image/tmp/ /tmp/
COPY bin/image/fedrisk /fedrisk

# Listen on every interface inside the container (the binary's defaults are
# 127.0.0.1); data under the volume.
ENV FEDRISK_DATA_DIR=/data \
    FEDRISK_CONSENT_ADDR=:7002 \
    FEDRISK_PSI_ADDR=:7001 \
    FEDRISK_SERVING_ADDR=:7003 \
    FEDRISK_CONSOLE_ADDR=:8080 \
    FEDRISK_OPS_ADDR=:7000 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

USER 65532:65532
WORKDIR /data
VOLUME ["/data"]
# ops, psi-service, consent-service, model-serving, console
EXPOSE 7000 7001 7002 7003 8080

# The binary checks its own ops listener: a scratch image has no curl.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["/fedrisk", "health", "--liveness", "--only", "ops", "--timeout", "5s"]

ENTRYPOINT ["/fedrisk"]
CMD ["serve"]
