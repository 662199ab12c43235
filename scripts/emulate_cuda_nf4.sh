#!/usr/bin/env bash
# Runs the NF4 dequantization kernels (NF4Kernels.swift) on the CPU (emulate_cuda_nf4.cpp): the wide kernel
# against the one-byte-a-thread kernel and a plain C++ loop, bit for bit. Needs g++ with C++20.
exec "$(dirname "$0")/emulate_cuda.sh" emulate_cuda_nf4.cpp NF4Kernels.swift
