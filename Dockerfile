# syntax=docker/dockerfile:1
# deq-serve image. CPU by default:
#   docker build -t deq-serve .
# CUDA 12 + cuDNN 9 variant (onnxruntime-node downloads its CUDA provider at npm ci):
#   docker build --build-arg VARIANT=cuda -t deq-serve:cuda .
# See docs/server.md for run commands.
ARG VARIANT=cpu
ARG NODE_IMAGE=node:20-bookworm-slim
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu22.04

# ---- build: TypeScript → dist (dev dependencies live only here)
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# The solver's WebAssembly kernels (AssemblyScript), compiled by npm run build into dist/.
COPY assembly ./assembly
RUN npm run build

# ---- production dependencies, one stage per variant
FROM ${NODE_IMAGE} AS deps-cpu
WORKDIR /app
# .npmrc keeps onnxruntime-node-install=skip: CPU (and WebGPU) ship in the package.
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev && npm cache clean --force

FROM ${NODE_IMAGE} AS deps-cuda
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# The environment variable overrides .npmrc's skip: fetch the CUDA 12 provider.
RUN ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci --omit=dev && npm cache clean --force

# ---- runtime bases
FROM ${NODE_IMAGE} AS base-cpu
ENV DEQ_PROVIDERS=cpu

FROM ${CUDA_IMAGE} AS base-cuda
# Node 20 from the official image (its binary needs only glibc ≥ 2.28; Ubuntu 22.04 has 2.35).
COPY --from=build /usr/local/bin/node /usr/local/bin/node
# CUDA first, CPU if the GPU provider cannot load (no --gpus, driver mismatch).
ENV DEQ_PROVIDERS=cuda,cpu

FROM deps-${VARIANT} AS deps

# ---- final image
FROM base-${VARIANT}
WORKDIR /app
ENV NODE_ENV=production \
    DEQ_HOST=0.0.0.0 \
    DEQ_PORT=8080 \
    DEQ_MODELS_DIR=/app/models
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin deq
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY models ./models
USER deq
EXPOSE 8080
# Ready = every model loaded and warmed up. slim images have no curl: use node's fetch.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.DEQ_PORT||8080)+'/v2/health/ready').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# exec form: node is PID 1 and receives SIGTERM directly (graceful drain).
CMD ["node", "dist/cli/main.js", "serve"]
