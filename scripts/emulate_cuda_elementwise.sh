#!/usr/bin/env bash
# Runs the elementwise (add, bias, scale, multiply, conversions, random fill, dropout, embedding), RoPE (forward and
# inverse, eight-wide and scalar) and column-copy CUDA kernels on the CPU (emulate_cuda_elementwise.cpp) against the
# CPU backend's semantics, bit for bit or in double. Needs python3 and a C++20 compiler.
exec "$(dirname "$0")/emulate_cuda.sh" emulate_cuda_elementwise.cpp ElementwiseKernels.swift RoPEKernels.swift ColumnCopyKernels.swift
