#!/usr/bin/env bash
# One device run (docs/gpu.md): probe the host, then the shipped models on the GPU provider against the
# host's CPU cores. Run at the project root on the GPU host with the kit from bench/gpu/kit.sh and dist/:
#   bash .gpu-kit/run.sh bash bench/gpu/run.sh OUT_DIR [gpu-bench.mjs flags…]
set -uo pipefail
out=${1:?usage: run.sh OUT_DIR [flags]}; shift
mkdir -p "$out"
{
  echo "## date"; date -u
  echo "## uname"; uname -a
  echo "## cpu"; grep -m1 'model name' /proc/cpuinfo; nproc
  echo "## nvidia-smi"; nvidia-smi 2>&1 | head -25
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1
  echo "## vulkan ICD files"
  for d in /usr/local/nvidia/share/vulkan/icd.d /usr/share/vulkan/icd.d /etc/vulkan/icd.d; do
    [ -d "$d" ] && for f in "$d"/*; do echo "$f"; cat "$f"; done
  done
  echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"
  echo "## libraries the NVIDIA Vulkan ICD lacks"
  for l in /usr/local/nvidia/lib64/libGLX_nvidia.so.0 /lib/libGLX_nvidia.so.0; do [ -e "$l" ] && { echo "$l"; ldd "$l" | grep "not found" || echo "(none missing)"; }; done
  echo "## ldconfig: CUDA, cuDNN, Vulkan"
  ldconfig -p | grep -E 'libcudart|libcudnn|libcublas|libvulkan|libnvidia-gpucomp|libcuda\.so' || echo "(none in the linker cache)"
  echo "## CUDA 12 / cuDNN 9 runtime libraries anywhere on disk"
  find / -xdev \( -name 'libcudart.so.12*' -o -name 'libcudnn.so.9*' -o -name 'libcudart.so.13*' -o -name 'libcublas.so.1[23]*' \) 2>/dev/null | head -20
  echo "## onnxruntime-node binaries (the CUDA provider is an install-time download)"
  ls -la node_modules/onnxruntime-node/bin/napi-v6/linux/x64/
  echo "## the host's own python onnxruntime providers"
  python3 -c 'import onnxruntime as o; print(o.__version__, o.get_available_providers())' 2>&1 | tail -1
  echo "## node"; node --version
} > "$out/probe.txt" 2>&1
cat "$out/probe.txt"
# Each part in its own process, so that a native abort in one loses none of the others' figures:
# every finished part appends one JSON line to results.jsonl.
res="$out/results.jsonl"; : > "$res"
for m in fashion-mnist-jr fashion-mnist-plain brown-lm-jr; do
  timeout 150 node bench/gpu/gpu-bench.mjs --part solve --only "$m" "$@" >> "$res" 2>> "$out/gpu-bench.log" || echo "solve $m: exit $?" >> "$out/gpu-bench.log"
done
for m in fashion-mnist-jr fashion-mnist-plain brown-lm-jr; do
  timeout 150 node bench/gpu/gpu-bench.mjs --part device --only "$m" "$@" >> "$res" 2>> "$out/gpu-bench.log" || echo "device $m: exit $?" >> "$out/gpu-bench.log"
done
for m in fashion-mnist-jr fashion-mnist-plain brown-lm-jr; do
  timeout 120 node bench/gpu/gpu-bench.mjs --part iobinding --only "$m" "$@" >> "$res" 2>> "$out/gpu-bench.log" || echo "iobinding $m: exit $?" >> "$out/gpu-bench.log"
done
# CUDA: tried, so the record says why it cannot load here (its provider library is an install-time download).
timeout 60 node bench/gpu/gpu-bench.mjs --ep cuda --part solve --batches 1 --only fashion-mnist-jr >> "$res" 2>> "$out/gpu-bench.log" || echo "cuda: exit $?" >> "$out/gpu-bench.log"
grep -v 'VerifyEachNodeIsAssignedToAnEp' "$out/gpu-bench.log" | tail -60
