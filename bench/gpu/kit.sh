#!/usr/bin/env bash
# Packs .gpu-kit/ for bench/gpu/run.sh: like ../shared/gpu/pack.sh (node, the Vulkan loader, run.sh), but
# node_modules holds only what the GPU bench loads (ONNX Runtime for linux-x64, sharp, ajv), so the kit,
# the working tree and dist/ stay under the device tool's 64 MiB.
# Usage, at the project root after `npm ci && npm run build`: bash bench/gpu/kit.sh
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
shared=$(cd "$root/../shared/gpu" 2>/dev/null && pwd) || { echo "kit.sh: ../shared/gpu (run.sh) not found beside the checkout" >&2; exit 1; }
kit=.gpu-kit; rm -rf "$kit"; mkdir -p "$kit"
grep -qx '/.gpu-kit/' .git/info/exclude 2>/dev/null || echo '/.gpu-kit/' >> .git/info/exclude
xz -T2 -6 -c "$(readlink -f "$(command -v node)")" > "$kit/node.xz"
mods=(onnxruntime-node onnxruntime-common sharp @img/colour @img/sharp-linux-x64 @img/sharp-libvips-linux-x64 detect-libc semver
      ajv fast-deep-equal fast-uri json-schema-traverse require-from-string)
tar -cf - --exclude='node_modules/onnxruntime-node/bin/napi-v6/win32' --exclude='node_modules/onnxruntime-node/bin/napi-v6/darwin' \
  --exclude='node_modules/onnxruntime-node/bin/napi-v6/linux/arm64' --exclude='*.map' --exclude='*.md' \
  "${mods[@]/#/node_modules/}" | xz -T2 -6 > "$kit/node_modules.tar.xz"
if command -v apt-get >/dev/null; then
  mkdir -p /tmp/gpu-kit-apt/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/gpu-kit-apt'
  apt-get $o update >/dev/null 2>&1 || true
  # The Vulkan loader, and libglvnd: NVIDIA's Vulkan ICD (libGLX_nvidia.so.0) cannot start without it.
  (cd "$kit" && apt-get $o download libvulkan1 libglvnd0 libglx0 libgl1 libegl1 libopengl0 libgles2 >/dev/null 2>&1) || echo "note: could not download the Vulkan loader and libglvnd; WebGPU will need them on the host"
fi
cp "$shared/run.sh" "$kit/run.sh"
du -sh "$kit"
