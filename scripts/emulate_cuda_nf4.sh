#!/usr/bin/env bash
# Runs the NF4 kernels (NF4Kernels.swift) on the CPU (emulate_cuda_nf4.cpp), bit for bit: the wide dequantization
# kernel against the one-byte-a-thread kernel and a plain C++ loop; the quantization kernel against a plain C++
# transcription of the host quantizer. Needs python3 and a C++20 compiler.
exec "$(dirname "$0")/emulate_cuda.sh" emulate_cuda_nf4.cpp NF4Kernels.swift
