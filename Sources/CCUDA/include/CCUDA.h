// C declarations of the CUDA driver API and NVRTC entry points that Swiftlet calls.
// Written by hand from the public cuda.h / nvrtc.h (not taken from the CUDA SDK) and resolved with
// dlopen/dlsym at run time, so the package builds on machines without CUDA.
//
// ABI notes:
//  * Every enum of the CUDA API (CUresult, CUdevice_attribute, nvrtcResult) is a C enum, i.e. an
//    `int` on the x86_64 / aarch64 Linux ABIs; we declare them as int.
//  * Several functions exist under versioned symbol names; the names we resolve are the ones the
//    cuda.h macros map to (cuMemAlloc -> cuMemAlloc_v2, ...). The typedef names say which.
#ifndef CCUDA_H
#define CCUDA_H

#include <stddef.h>
#include <stdint.h>

/// Version of these declarations; lets Swift code check it links the header it expects.
static const int ccuda_declarations_version = 1;

// ---- Driver API types ---------------------------------------------------------------------------
typedef int CUresult;
typedef int CUdevice;
typedef int CUdevice_attribute;
typedef unsigned long long CUdeviceptr;   // CUdeviceptr_v2: unsigned long long on 64-bit
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;

#define CCUDA_SUCCESS 0
#define CCUDA_ERROR_OUT_OF_MEMORY 2
#define CCUDA_ERROR_NOT_INITIALIZED 3
#define CCUDA_ERROR_NO_DEVICE 100

#define CCUDA_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT 16
#define CCUDA_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR 75
#define CCUDA_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR 76
#define CCUDA_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN 97
#define CCUDA_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES 8

#define CCUDA_STREAM_NON_BLOCKING 0x1
#define CCUDA_EVENT_DEFAULT 0x0
#define CCUDA_EVENT_DISABLE_TIMING 0x2

// ---- Driver API entry points (symbol name = the typedef name without PFN_) ------------------------
typedef CUresult (*PFN_cuInit)(unsigned int flags);
typedef CUresult (*PFN_cuDriverGetVersion)(int *driverVersion);
typedef CUresult (*PFN_cuDeviceGet)(CUdevice *device, int ordinal);
typedef CUresult (*PFN_cuDeviceGetCount)(int *count);
typedef CUresult (*PFN_cuDeviceGetName)(char *name, int len, CUdevice dev);
typedef CUresult (*PFN_cuDeviceGetAttribute)(int *pi, CUdevice_attribute attrib, CUdevice dev);
typedef CUresult (*PFN_cuDeviceTotalMem_v2)(size_t *bytes, CUdevice dev);
typedef CUresult (*PFN_cuDevicePrimaryCtxRetain)(CUcontext *pctx, CUdevice dev);
typedef CUresult (*PFN_cuCtxSetCurrent)(CUcontext ctx);
typedef CUresult (*PFN_cuCtxSynchronize)(void);
typedef CUresult (*PFN_cuStreamCreate)(CUstream *phStream, unsigned int flags);
typedef CUresult (*PFN_cuStreamSynchronize)(CUstream hStream);
typedef CUresult (*PFN_cuMemAlloc_v2)(CUdeviceptr *dptr, size_t bytesize);
typedef CUresult (*PFN_cuMemFree_v2)(CUdeviceptr dptr);
typedef CUresult (*PFN_cuMemcpyHtoD_v2)(CUdeviceptr dstDevice, const void *srcHost, size_t byteCount);
typedef CUresult (*PFN_cuMemcpyDtoH_v2)(void *dstHost, CUdeviceptr srcDevice, size_t byteCount);
typedef CUresult (*PFN_cuMemAllocHost_v2)(void **pp, size_t bytesize);
typedef CUresult (*PFN_cuMemFreeHost)(void *p);
typedef CUresult (*PFN_cuMemcpyHtoDAsync_v2)(CUdeviceptr dstDevice, const void *srcHost, size_t byteCount, CUstream hStream);
typedef CUresult (*PFN_cuMemcpyDtoHAsync_v2)(void *dstHost, CUdeviceptr srcDevice, size_t byteCount, CUstream hStream);
typedef CUresult (*PFN_cuMemsetD8Async)(CUdeviceptr dstDevice, unsigned char uc, size_t n, CUstream hStream);
typedef CUresult (*PFN_cuMemcpyDtoDAsync_v2)(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t byteCount, CUstream hStream);
typedef CUresult (*PFN_cuMemsetD8_v2)(CUdeviceptr dstDevice, unsigned char uc, size_t n);
typedef CUresult (*PFN_cuMemGetInfo_v2)(size_t *freeBytes, size_t *totalBytes);
typedef CUresult (*PFN_cuModuleLoadData)(CUmodule *module, const void *image);
typedef CUresult (*PFN_cuModuleGetFunction)(CUfunction *hfunc, CUmodule hmod, const char *name);
typedef CUresult (*PFN_cuFuncSetAttribute)(CUfunction hfunc, int attrib, int value);
typedef CUresult (*PFN_cuLaunchKernel)(CUfunction f,
                                       unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
                                       unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
                                       unsigned int sharedMemBytes, CUstream hStream,
                                       void **kernelParams, void **extra);
typedef CUresult (*PFN_cuEventCreate)(CUevent *phEvent, unsigned int flags);
typedef CUresult (*PFN_cuEventRecord)(CUevent hEvent, CUstream hStream);
typedef CUresult (*PFN_cuEventSynchronize)(CUevent hEvent);
typedef CUresult (*PFN_cuEventElapsedTime)(float *pMilliseconds, CUevent hStart, CUevent hEnd);
typedef CUresult (*PFN_cuEventDestroy_v2)(CUevent hEvent);
typedef CUresult (*PFN_cuStreamWaitEvent)(CUstream hStream, CUevent hEvent, unsigned int flags);
typedef CUresult (*PFN_cuGetErrorString)(CUresult error, const char **pStr);

// ---- NVRTC --------------------------------------------------------------------------------------
typedef int nvrtcResult;
typedef struct _nvrtcProgram *nvrtcProgram;
#define CCUDA_NVRTC_SUCCESS 0

typedef nvrtcResult (*PFN_nvrtcVersion)(int *major, int *minor);
typedef nvrtcResult (*PFN_nvrtcCreateProgram)(nvrtcProgram *prog, const char *src, const char *name,
                                              int numHeaders, const char *const *headers,
                                              const char *const *includeNames);
typedef nvrtcResult (*PFN_nvrtcCompileProgram)(nvrtcProgram prog, int numOptions, const char *const *options);
typedef nvrtcResult (*PFN_nvrtcGetProgramLogSize)(nvrtcProgram prog, size_t *logSizeRet);
typedef nvrtcResult (*PFN_nvrtcGetProgramLog)(nvrtcProgram prog, char *log);
typedef nvrtcResult (*PFN_nvrtcGetCUBINSize)(nvrtcProgram prog, size_t *cubinSizeRet);
typedef nvrtcResult (*PFN_nvrtcGetCUBIN)(nvrtcProgram prog, char *cubin);
typedef nvrtcResult (*PFN_nvrtcDestroyProgram)(nvrtcProgram *prog);
typedef const char *(*PFN_nvrtcGetErrorString)(nvrtcResult result);

// ---- cuBLASLt (libcublasLt.so.13 / .12) ----
typedef int cublasStatus_t;
typedef struct cublasLtContext *cublasLtHandle_t;
typedef struct { uint64_t data[8]; } cublasLtMatrixLayoutOpaque_t;
typedef cublasLtMatrixLayoutOpaque_t *cublasLtMatrixLayout_t;
typedef struct { uint64_t data[12]; } cublasLtMatmulDescOpaque_t;
typedef cublasLtMatmulDescOpaque_t *cublasLtMatmulDesc_t;
typedef struct { uint64_t data[10]; } cublasLtMatmulPreferenceOpaque_t;
typedef cublasLtMatmulPreferenceOpaque_t *cublasLtMatmulPreference_t;
typedef struct { uint64_t data[8]; } cublasLtMatmulAlgo_t;
typedef struct {
    cublasLtMatmulAlgo_t algo;
    size_t workspaceSize;
    cublasStatus_t state;
    float wavesCount;
    int reserved[4];
} cublasLtMatmulHeuristicResult_t;

#define SWIFTLET_CUDA_R_32F 0
#define SWIFTLET_CUDA_R_16F 2
#define SWIFTLET_CUDA_R_16BF 14
#define SWIFTLET_CUBLAS_COMPUTE_32F 68
#define SWIFTLET_CUBLAS_OP_N 0
#define SWIFTLET_CUBLAS_OP_T 1
#define SWIFTLET_CUBLASLT_MATMUL_DESC_TRANSA 3
#define SWIFTLET_CUBLASLT_MATMUL_DESC_TRANSB 4
#define SWIFTLET_CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES 1

typedef cublasStatus_t (*PFN_cublasLtCreate)(cublasLtHandle_t *handle);
typedef size_t (*PFN_cublasLtGetVersion)(void);
typedef cublasStatus_t (*PFN_cublasLtMatmulDescCreate)(cublasLtMatmulDesc_t *desc, int computeType, int scaleType);
typedef cublasStatus_t (*PFN_cublasLtMatmulDescDestroy)(cublasLtMatmulDesc_t desc);
typedef cublasStatus_t (*PFN_cublasLtMatmulDescSetAttribute)(cublasLtMatmulDesc_t desc, int attr, const void *buf, size_t size);
typedef cublasStatus_t (*PFN_cublasLtMatrixLayoutCreate)(cublasLtMatrixLayout_t *layout, int type, uint64_t rows, uint64_t cols, int64_t ld);
typedef cublasStatus_t (*PFN_cublasLtMatrixLayoutDestroy)(cublasLtMatrixLayout_t layout);
typedef cublasStatus_t (*PFN_cublasLtMatmulPreferenceCreate)(cublasLtMatmulPreference_t *pref);
typedef cublasStatus_t (*PFN_cublasLtMatmulPreferenceDestroy)(cublasLtMatmulPreference_t pref);
typedef cublasStatus_t (*PFN_cublasLtMatmulPreferenceSetAttribute)(cublasLtMatmulPreference_t pref, int attr, const void *buf, size_t size);
typedef cublasStatus_t (*PFN_cublasLtMatmulAlgoGetHeuristic)(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
    cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
    cublasLtMatmulPreference_t pref, int requested, cublasLtMatmulHeuristicResult_t *results, int *returned);
typedef cublasStatus_t (*PFN_cublasLtMatmul)(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
    const void *alpha, const void *A, cublasLtMatrixLayout_t aDesc, const void *B, cublasLtMatrixLayout_t bDesc,
    const void *beta, const void *C, cublasLtMatrixLayout_t cDesc, void *D, cublasLtMatrixLayout_t dDesc,
    const cublasLtMatmulAlgo_t *algo, void *workspace, size_t workspaceSize, void *stream);

// ---- cuBLAS (libcublas.so.13 / .12): only the grouped GEMM of a mixture's experts (cuBLAS 12.5+) ----
typedef struct cublasContext *cublasHandle_t;
typedef cublasStatus_t (*PFN_cublasCreate_v2)(cublasHandle_t *handle);
typedef cublasStatus_t (*PFN_cublasDestroy_v2)(cublasHandle_t handle);
typedef cublasStatus_t (*PFN_cublasSetStream_v2)(cublasHandle_t handle, CUstream stream);
typedef cublasStatus_t (*PFN_cublasGemmGroupedBatchedEx)(cublasHandle_t handle, const int *transa, const int *transb,
    const int *m, const int *n, const int *k, const void *alpha, const void *const *A, int aType, const int *lda,
    const void *const *B, int bType, const int *ldb, const void *beta, void *const *C, int cType, const int *ldc,
    int groupCount, const int *groupSize, int computeType);

// ---- cuDNN 9 graph (backend) API (libcudnn.so.9), declared from the public cudnn_graph.h ----
// Only what the fused attention graphs use (CUDA/CUDNNAttention.swift); the enum values are
// cuDNN's, stable across 9.x.
typedef int cudnnStatus_t;
typedef struct cudnnContext *cudnnHandle_t;
typedef void *cudnnBackendDescriptor_t;
#define SWIFTLET_CUDNN_STATUS_SUCCESS 0
// cudnnDataType_t
#define SWIFTLET_CUDNN_DATA_FLOAT 0
#define SWIFTLET_CUDNN_DATA_HALF 2
#define SWIFTLET_CUDNN_DATA_INT32 4
#define SWIFTLET_CUDNN_DATA_BFLOAT16 9
#define SWIFTLET_CUDNN_DATA_BOOLEAN 11
// cudnnBackendAttributeType_t
#define SWIFTLET_CUDNN_TYPE_HANDLE 0
#define SWIFTLET_CUDNN_TYPE_DATA_TYPE 1
#define SWIFTLET_CUDNN_TYPE_BOOLEAN 2
#define SWIFTLET_CUDNN_TYPE_INT64 3
#define SWIFTLET_CUDNN_TYPE_VOID_PTR 6
#define SWIFTLET_CUDNN_TYPE_HEUR_MODE 8
#define SWIFTLET_CUDNN_TYPE_NUMERICAL_NOTE 11
#define SWIFTLET_CUDNN_TYPE_POINTWISE_MODE 14
#define SWIFTLET_CUDNN_TYPE_BACKEND_DESCRIPTOR 15
#define SWIFTLET_CUDNN_TYPE_REDUCTION_OPERATOR_TYPE 18
// cudnnBackendDescriptorType_t
#define SWIFTLET_CUDNN_BACKEND_POINTWISE_DESCRIPTOR 0
#define SWIFTLET_CUDNN_BACKEND_ENGINE_DESCRIPTOR 2
#define SWIFTLET_CUDNN_BACKEND_ENGINECFG_DESCRIPTOR 3
#define SWIFTLET_CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR 4
#define SWIFTLET_CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR 5
#define SWIFTLET_CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR 13
#define SWIFTLET_CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR 15
#define SWIFTLET_CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR 16
#define SWIFTLET_CUDNN_BACKEND_TENSOR_DESCRIPTOR 17
#define SWIFTLET_CUDNN_BACKEND_MATMUL_DESCRIPTOR 18
#define SWIFTLET_CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR 19
#define SWIFTLET_CUDNN_BACKEND_REDUCTION_DESCRIPTOR 21
#define SWIFTLET_CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR 22
#define SWIFTLET_CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR 31
// cudnnBackendAttributeName_t
#define SWIFTLET_CUDNN_ATTR_POINTWISE_MODE 0
#define SWIFTLET_CUDNN_ATTR_POINTWISE_MATH_PREC 1
#define SWIFTLET_CUDNN_ATTR_POINTWISE_AXIS 9
#define SWIFTLET_CUDNN_ATTR_ENGINEHEUR_MODE 200
#define SWIFTLET_CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH 201
#define SWIFTLET_CUDNN_ATTR_ENGINEHEUR_RESULTS 202
#define SWIFTLET_CUDNN_ATTR_ENGINECFG_ENGINE 300
#define SWIFTLET_CUDNN_ATTR_EXECUTION_PLAN_HANDLE 400
#define SWIFTLET_CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG 401
#define SWIFTLET_CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE 402
#define SWIFTLET_CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR 750
#define SWIFTLET_CUDNN_ATTR_OPERATION_POINTWISE_XDESC 751
#define SWIFTLET_CUDNN_ATTR_OPERATION_POINTWISE_BDESC 752
#define SWIFTLET_CUDNN_ATTR_OPERATION_POINTWISE_YDESC 753
#define SWIFTLET_CUDNN_ATTR_OPERATION_POINTWISE_TDESC 758
#define SWIFTLET_CUDNN_ATTR_OPERATIONGRAPH_HANDLE 800
#define SWIFTLET_CUDNN_ATTR_OPERATIONGRAPH_OPS 801
#define SWIFTLET_CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT 900
#define SWIFTLET_CUDNN_ATTR_TENSOR_DATA_TYPE 901
#define SWIFTLET_CUDNN_ATTR_TENSOR_DIMENSIONS 902
#define SWIFTLET_CUDNN_ATTR_TENSOR_STRIDES 903
#define SWIFTLET_CUDNN_ATTR_TENSOR_UNIQUE_ID 906
#define SWIFTLET_CUDNN_ATTR_TENSOR_IS_VIRTUAL 907
#define SWIFTLET_CUDNN_ATTR_TENSOR_IS_BY_VALUE 908
#define SWIFTLET_CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS 1000
#define SWIFTLET_CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS 1001
#define SWIFTLET_CUDNN_ATTR_VARIANT_PACK_WORKSPACE 1003
#define SWIFTLET_CUDNN_ATTR_ENGINE_NUMERICAL_NOTE 1303
#define SWIFTLET_CUDNN_ATTR_MATMUL_COMP_TYPE 1500
#define SWIFTLET_CUDNN_ATTR_OPERATION_MATMUL_ADESC 1520
#define SWIFTLET_CUDNN_ATTR_OPERATION_MATMUL_BDESC 1521
#define SWIFTLET_CUDNN_ATTR_OPERATION_MATMUL_CDESC 1522
#define SWIFTLET_CUDNN_ATTR_OPERATION_MATMUL_DESC 1523
#define SWIFTLET_CUDNN_ATTR_REDUCTION_OPERATOR 1600
#define SWIFTLET_CUDNN_ATTR_REDUCTION_COMP_TYPE 1601
#define SWIFTLET_CUDNN_ATTR_OPERATION_REDUCTION_XDESC 1610
#define SWIFTLET_CUDNN_ATTR_OPERATION_REDUCTION_YDESC 1611
#define SWIFTLET_CUDNN_ATTR_OPERATION_REDUCTION_DESC 1612
#define SWIFTLET_CUDNN_ATTR_OPERATION_RESHAPE_XDESC 2200
#define SWIFTLET_CUDNN_ATTR_OPERATION_RESHAPE_YDESC 2201
// modes
#define SWIFTLET_CUDNN_HEUR_MODE_INSTANT 0
#define SWIFTLET_CUDNN_HEUR_MODE_FALLBACK 2
#define SWIFTLET_CUDNN_HEUR_MODE_A 3
#define SWIFTLET_CUDNN_POINTWISE_ADD 0
#define SWIFTLET_CUDNN_POINTWISE_MUL 1
#define SWIFTLET_CUDNN_POINTWISE_DIV 6
#define SWIFTLET_CUDNN_POINTWISE_SUB 9
#define SWIFTLET_CUDNN_POINTWISE_EXP 13
#define SWIFTLET_CUDNN_POINTWISE_LOG 15
#define SWIFTLET_CUDNN_POINTWISE_IDENTITY 21
#define SWIFTLET_CUDNN_POINTWISE_CMP_GT 302
#define SWIFTLET_CUDNN_POINTWISE_CMP_GE 303
#define SWIFTLET_CUDNN_POINTWISE_GEN_INDEX 501
#define SWIFTLET_CUDNN_POINTWISE_BINARY_SELECT 601
#define SWIFTLET_CUDNN_REDUCE_TENSOR_ADD 0
#define SWIFTLET_CUDNN_REDUCE_TENSOR_MAX 3

typedef size_t (*PFN_cudnnGetVersion)(void);
typedef const char *(*PFN_cudnnGetErrorString)(cudnnStatus_t status);
typedef void (*PFN_cudnnGetLastErrorString)(char *message, size_t max_size);
typedef cudnnStatus_t (*PFN_cudnnCreate)(cudnnHandle_t *handle);
typedef cudnnStatus_t (*PFN_cudnnSetStream)(cudnnHandle_t handle, CUstream stream);
typedef cudnnStatus_t (*PFN_cudnnBackendCreateDescriptor)(int descriptorType, cudnnBackendDescriptor_t *descriptor);
typedef cudnnStatus_t (*PFN_cudnnBackendDestroyDescriptor)(cudnnBackendDescriptor_t descriptor);
typedef cudnnStatus_t (*PFN_cudnnBackendFinalize)(cudnnBackendDescriptor_t descriptor);
typedef cudnnStatus_t (*PFN_cudnnBackendSetAttribute)(cudnnBackendDescriptor_t descriptor, int attributeName,
                                                      int attributeType, int64_t elementCount, const void *arrayOfElements);
typedef cudnnStatus_t (*PFN_cudnnBackendGetAttribute)(cudnnBackendDescriptor_t const descriptor, int attributeName,
                                                      int attributeType, int64_t requestedElementCount,
                                                      int64_t *elementCount, void *arrayOfElements);
typedef cudnnStatus_t (*PFN_cudnnBackendExecute)(cudnnHandle_t handle, cudnnBackendDescriptor_t executionPlan,
                                                 cudnnBackendDescriptor_t variantPack);

// ---- NCCL (libnccl.so.2), declared from the public nccl.h ----
typedef int ncclResult_t;
typedef struct ncclComm *ncclComm_t;
#define SWIFTLET_NCCL_UNIQUE_ID_BYTES 128
typedef struct { char internal[SWIFTLET_NCCL_UNIQUE_ID_BYTES]; } ncclUniqueId;
#define SWIFTLET_NCCL_SUCCESS 0
#define SWIFTLET_NCCL_IN_PROGRESS 7
#define SWIFTLET_NCCL_FLOAT32 7
#define SWIFTLET_NCCL_FLOAT64 8
#define SWIFTLET_NCCL_SUM 0

typedef ncclResult_t (*PFN_ncclGetVersion)(int *version);
typedef ncclResult_t (*PFN_ncclGetUniqueId)(ncclUniqueId *uniqueId);
// The unique id is passed by value, as nccl.h declares it.
typedef ncclResult_t (*PFN_ncclCommInitRank)(ncclComm_t *comm, int nranks, ncclUniqueId commId, int rank);
typedef ncclResult_t (*PFN_ncclCommDestroy)(ncclComm_t comm);
typedef ncclResult_t (*PFN_ncclCommAbort)(ncclComm_t comm);
typedef ncclResult_t (*PFN_ncclCommGetAsyncError)(ncclComm_t comm, ncclResult_t *asyncError);
typedef const char *(*PFN_ncclGetErrorString)(ncclResult_t result);
typedef ncclResult_t (*PFN_ncclAllReduce)(const void *sendbuff, void *recvbuff, size_t count, int datatype, int op,
                                          ncclComm_t comm, CUstream stream);
typedef ncclResult_t (*PFN_ncclBroadcast)(const void *sendbuff, void *recvbuff, size_t count, int datatype, int root,
                                          ncclComm_t comm, CUstream stream);
typedef ncclResult_t (*PFN_ncclGroupStart)(void);
typedef ncclResult_t (*PFN_ncclGroupEnd)(void);

// ---- Helpers (CCUDA.c) --------------------------------------------------------------------------
/// The path the dynamic loader actually loaded `handle` from (dlinfo RTLD_DI_LINKMAP), or NULL.
const char *ccuda_loaded_path(void *handle);

#endif
