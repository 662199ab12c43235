#!/usr/bin/env bash
# Runs the split-bf16 LoRA kernels (SplitBF16Kernels.swift) on the CPU (emulate_cuda_split.cpp): planes
# written stacked or into the columns of a wider matrix, block sums over wider matrices. Needs python3 and a C++20 compiler.
exec "$(dirname "$0")/emulate_cuda.sh" emulate_cuda_split.cpp SplitBF16Kernels.swift
