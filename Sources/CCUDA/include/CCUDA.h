// C declarations of the CUDA driver API, NVRTC and cuBLASLt entry points that Swiftlet calls.
// They are written here (not taken from the CUDA SDK) and resolved with dlopen at run time, so the
// package builds on machines without CUDA. The CUDA backend issue fills this in.
#ifndef CCUDA_H
#define CCUDA_H

/// Version of these declarations; lets Swift code check it links the header it expects.
static const int ccuda_declarations_version = 0;

#endif
