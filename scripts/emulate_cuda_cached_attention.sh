#!/usr/bin/env bash
# Runs the CUDA cached-attention kernels on the CPU (emulate_cuda_cached_attention.cpp) against attention
# in double on decode, prefill, GQA, window, padding, key-split and softcap geometries. Needs python3 and a C++20 compiler.
exec "$(dirname "$0")/emulate_cuda.sh" emulate_cuda_cached_attention.cpp CachedAttentionKernels.swift
