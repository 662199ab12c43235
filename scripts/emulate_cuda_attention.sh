#!/usr/bin/env bash
# Runs the simple CUDA training-attention kernels (forward, dQ, dK/dV) on the CPU (emulate_cuda_attention.cpp)
# against attention and its gradients in double, plain and softcapped (Gemma 2). Needs g++ with C++20.
exec "$(dirname "$0")/emulate_cuda.sh" emulate_cuda_attention.cpp AttentionKernels.swift
