#!/usr/bin/env bash
# Runs the CUDA training-attention kernels on the CPU (emulate_cuda_attention.cpp) against attention and its
# gradients in double, plain and softcapped (Gemma 2): the simple kernels and the tensor-core tiles of every
# head dim (64, 96, 128, 256, and 256's pair split). Argument "simple" or "tiled": only those; STORAGE=f16: in f16.
# Needs python3 and a C++20 compiler.
exec "$(dirname "$0")/emulate_cuda.sh" emulate_cuda_attention.cpp AttentionKernels.swift FlashAttentionKernels.swift -- "$@"
