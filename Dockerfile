# The tandem image: the self-contained runtime in /opt/tandem on a small base. A pod's init
# container runs `/opt/tandem/bin/tandem install /tandem --pod-json JSON` to copy it into the
# shared volume.
#
# Build arguments:
#   BUILDER       Debian 12 image with Node.js >= 20.19 that assembles the runtime. The runtime
#                 copies the builder's glibc libraries, tini and procps ps, so it must be Debian
#                 based. Offline, images/build.ts uses localhost/tandem-builder, which it makes
#                 from the host's Debian packages (images/builder/).
#   BASE          final stage; the runtime needs nothing from it, so busybox or
#                 gcr.io/distroless/static-debian12 both work.
#   DEPENDENCIES  where node_modules comes from: `npm` runs `npm ci` in the build stage and needs
#                 the npm registry; `context` copies the node_modules of the build context, which
#                 must then come from `npm ci` on Linux x86-64 (esbuild and Node.js are native
#                 packages). .dockerignore leaves node_modules out, so `context` needs an ignore
#                 file that admits it, as images/build.ts writes. An npm cache would also work
#                 offline, but the builder image has no npm, and node_modules is already installed
#                 wherever the tests run.
#   VERSION       the version label; images/build.ts passes the version of agent/version.ts.
ARG BUILDER=docker.io/library/node:24-bookworm
ARG BASE=docker.io/library/busybox:stable
ARG DEPENDENCIES=npm

FROM ${BUILDER} AS tools
# The runtime assembly runs gcc -static (gcc, libc6-dev), strip (binutils) and ldd, and copies
# tini-static and ps. node:24-bookworm lacks tini; the offline builder has everything, so apt-get,
# which needs the network, runs only for what is missing.
RUN missing=""; \
    for file in /usr/bin/gcc:gcc /usr/lib/x86_64-linux-gnu/libc.a:libc6-dev /usr/bin/strip:binutils \
                /usr/bin/tini-static:tini /usr/bin/ps:procps; do \
      [ -e "${file%%:*}" ] || missing="$missing ${file#*:}"; \
    done; \
    if [ -n "$missing" ]; then \
      apt-get update && \
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing && \
      rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
COPY package.json package-lock.json ./

FROM tools AS dependencies-npm
RUN npm ci --no-audit --no-fund

FROM tools AS dependencies-context
COPY node_modules/ node_modules/

FROM dependencies-${DEPENDENCIES} AS build
COPY tsconfig.json ./
COPY agent/ agent/
COPY supervisor/ supervisor/
# The same two steps as `npm run build`, without npm, which the offline builder does not have.
# build/cache holds the stripped Node.js that the runtime already contains, so the layer drops it.
RUN node node_modules/typescript/bin/tsc -p tsconfig.json && node dist/agent/runtime/build.js && rm -rf build/cache

FROM ${BASE}
ARG BASE
ARG VERSION=dev
LABEL org.opencontainers.image.title="tandem" \
      org.opencontainers.image.description="Sidecar lifecycle agent for Kubernetes pods" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE}"

# Owned by root and not writable by the image's user; tandem install only reads it.
COPY --from=build /src/build/runtime/ /opt/tandem/

# A numeric user, so that Kubernetes' runAsNonRoot can check it without an /etc/passwd entry.
USER 65534:65534
ENTRYPOINT ["/opt/tandem/bin/tandem"]
