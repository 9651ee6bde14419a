# Sluice container image: `docker build -t sluice .`, then
# `docker run -p 8000:8000 sluice` is a working single node (no Redis,
# the sample rules); see docker-compose.yml for a cluster.

# Build stage: a static binary (no cgo), so the runtime image needs no libc.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/sluice ./cmd/sluice \
 && mkdir -p /out/data

# Runtime stage: distroless, no shell, runs as the non-root user 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sluice /usr/local/bin/sluice
COPY --from=build --chown=65532:65532 /out/data /var/lib/sluice
COPY testdata/rules.json /etc/sluice/rules.json
ENV SLUICE_DATA_DIR=/var/lib/sluice \
    SLUICE_RULES=/etc/sluice/rules.json \
    SLUICE_LOG_FORMAT=json
USER 65532:65532
EXPOSE 8000 7000
VOLUME /var/lib/sluice
# `sluice health` GETs /healthz on the port of SLUICE_HTTP_ADDR (default 8000):
# no curl or shell needed in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["/usr/local/bin/sluice", "health"]
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["serve"]
