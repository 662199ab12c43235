#!/usr/bin/env bash
# Runs the optimizer step's multi-tensor kernels (MultiTensorKernels.swift: the gradient norm's reduction and
# the zero fill; OptimizerKernels.swift: AdamW and SGD; AdamW8bitKernels.swift: bnb's blockwise 8-bit AdamW and
# its 32-bit path) on the CPU (emulate_cuda_optimizers.cpp) through the multi-tensor table, against C++
# transcriptions of the kernels' expressions and of the CPU twins. Needs python3 and a C++20 compiler.
exec "$(dirname "$0")/emulate_cuda.sh" emulate_cuda_optimizers.cpp MultiTensorKernels.swift OptimizerKernels.swift AdamW8bitKernels.swift
