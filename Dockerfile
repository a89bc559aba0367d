# The tandem image: the self-contained runtime in /opt/tandem. A pod's init container runs
# `/opt/tandem/bin/tandem install /tandem --pod-json JSON` to copy it into the shared volume.
#
# NOTE: the runtime is assembled on the host by `npm run build` before this build, because a build
# stage would need a Node.js base image, which cannot be pulled offline. images/build.ts builds it.
ARG BASE=docker.io/library/busybox:latest
FROM ${BASE}

ARG VERSION=dev
LABEL org.opencontainers.image.title="tandem" \
      org.opencontainers.image.description="Sidecar lifecycle agent for Kubernetes pods" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY build/runtime/ /opt/tandem/

USER 65534
ENTRYPOINT ["/opt/tandem/bin/tandem"]
