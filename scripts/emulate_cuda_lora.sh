#!/usr/bin/env bash
# Runs the LoRA kernels (LoRAKernels.swift: lora_down, lora_up_add and lora_gradient for padded ranks 16, 32
# and 64, and lora_finalize) on the CPU (emulate_cuda_lora.cpp) against double, with the host code's launch
# geometry. Needs python3 and a C++20 compiler.
exec "$(dirname "$0")/emulate_cuda.sh" emulate_cuda_lora.cpp LoRAKernels.swift
