#!/usr/bin/env bash
# Runs the mixture-of-experts kernels (MixtureOfExpertsKernels.swift) on the CPU (emulate_cuda_experts.cpp): routing
# and its backward, statistics, the stable sort by expert, gather, combine and its backward, against plain C++ on
# Mixtral- and Qwen3-MoE-shaped problems. Needs python3 and a C++20 compiler.
exec "$(dirname "$0")/emulate_cuda.sh" emulate_cuda_experts.cpp MixtureOfExpertsKernels.swift
