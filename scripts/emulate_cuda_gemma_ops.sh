#!/usr/bin/env bash
# Runs the gated-linear-unit (SiLU, GELU-tanh), RMSNorm (weight offset 0 and 1) and cross-entropy (with and
# without a logit softcap) CUDA kernels on the CPU (emulate_cuda_gemma_ops.cpp) against double. Needs python3 and a C++20 compiler.
exec "$(dirname "$0")/emulate_cuda.sh" emulate_cuda_gemma_ops.cpp GatedLinearUnitKernels.swift RMSNormKernels.swift \
    CrossEntropyKernels.swift
