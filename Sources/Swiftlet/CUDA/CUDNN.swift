import CCUDA

/// cuDNN 9's graph API (libcudnn.so.9, loaded at run time like the other CUDA libraries): operation
/// graphs of tensors and ops, finalised into an execution plan by cuDNN's heuristics, run on the
/// backend's stream. Swiftlet uses it for fused attention (CUDNNAttention.swift), where cuDNN's
/// Hopper kernels are faster than ours; everything else stays on NVRTC kernels and cuBLASLt.
final class CUDNN {
    private let createDescriptor: PFN_cudnnBackendCreateDescriptor
    private let destroyDescriptor: PFN_cudnnBackendDestroyDescriptor
    private let finalizeCall: PFN_cudnnBackendFinalize
    private let setAttribute: PFN_cudnnBackendSetAttribute
    private let getAttribute: PFN_cudnnBackendGetAttribute
    private let executeCall: PFN_cudnnBackendExecute
    private let errorString: PFN_cudnnGetErrorString
    private let lastError: PFN_cudnnGetLastErrorString?
    let handle: cudnnHandle_t
    /// 91400 for 9.14.0.
    let version: Int
    let path: String

    static let sonames = ["libcudnn.so.9"]

    init(library: LoadedLibrary, stream: CUstream) throws {
        path = library.path
        version = Int(try library.symbol("cudnnGetVersion", as: PFN_cudnnGetVersion.self)())
        guard version >= 90000 else { throw CUDAError.invalid("cuDNN \(version) at \(path): the graph API needs 9.0 or newer") }
        createDescriptor = try library.symbol("cudnnBackendCreateDescriptor", as: PFN_cudnnBackendCreateDescriptor.self)
        destroyDescriptor = try library.symbol("cudnnBackendDestroyDescriptor", as: PFN_cudnnBackendDestroyDescriptor.self)
        finalizeCall = try library.symbol("cudnnBackendFinalize", as: PFN_cudnnBackendFinalize.self)
        setAttribute = try library.symbol("cudnnBackendSetAttribute", as: PFN_cudnnBackendSetAttribute.self)
        getAttribute = try library.symbol("cudnnBackendGetAttribute", as: PFN_cudnnBackendGetAttribute.self)
        executeCall = try library.symbol("cudnnBackendExecute", as: PFN_cudnnBackendExecute.self)
        errorString = try library.symbol("cudnnGetErrorString", as: PFN_cudnnGetErrorString.self)
        lastError = try? library.symbol("cudnnGetLastErrorString", as: PFN_cudnnGetLastErrorString.self)
        let create = try library.symbol("cudnnCreate", as: PFN_cudnnCreate.self)
        let setStream = try library.symbol("cudnnSetStream", as: PFN_cudnnSetStream.self)
        var h: cudnnHandle_t?
        guard create(&h) == SWIFTLET_CUDNN_STATUS_SUCCESS, let h else {
            throw CUDAError.invalid("cudnnCreate failed (cuDNN \(version) at \(path))")
        }
        handle = h
        guard setStream(h, stream) == SWIFTLET_CUDNN_STATUS_SUCCESS else { throw CUDAError.invalid("cudnnSetStream failed") }
    }

    /// "9.14.0".
    var versionString: String { "\(version / 10000).\(version / 100 % 100).\(version % 100)" }

    func check(_ status: cudnnStatus_t, _ call: String) throws {
        guard status != SWIFTLET_CUDNN_STATUS_SUCCESS else { return }
        var detail = ""
        if let lastError {
            var buffer = [CChar](repeating: 0, count: 512)
            lastError(&buffer, buffer.count)
            detail = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        let name = errorString(status).map { String(cString: $0) } ?? "status \(status)"
        throw CUDAError.invalid("\(call) failed: \(name)\(detail.isEmpty ? "" : " (\(detail))")")
    }

    /// One backend descriptor, destroyed with its last reference.
    final class Descriptor {
        let raw: cudnnBackendDescriptor_t
        private let library: CUDNN

        init(_ library: CUDNN, _ type: Int32) throws {
            var d: cudnnBackendDescriptor_t?
            try library.check(library.createDescriptor(type, &d), "cudnnBackendCreateDescriptor(\(type))")
            raw = d!
            self.library = library
        }

        deinit { _ = library.destroyDescriptor(raw) }

        func set<T>(_ attribute: Int32, _ type: Int32, _ values: [T]) throws {
            try values.withUnsafeBufferPointer {
                try library.check(library.setAttribute(raw, attribute, type, Int64(values.count), $0.baseAddress),
                                  "cudnnBackendSetAttribute(\(attribute))")
            }
        }
        func set(_ attribute: Int32, int64 value: Int64) throws { try set(attribute, SWIFTLET_CUDNN_TYPE_INT64, [value]) }
        func set(_ attribute: Int32, int64 values: [Int64]) throws { try set(attribute, SWIFTLET_CUDNN_TYPE_INT64, values) }
        func set(_ attribute: Int32, dataType value: Int32) throws { try set(attribute, SWIFTLET_CUDNN_TYPE_DATA_TYPE, [value]) }
        func set(_ attribute: Int32, bool value: Bool) throws { try set(attribute, SWIFTLET_CUDNN_TYPE_BOOLEAN, [value]) }
        func set(_ attribute: Int32, descriptors: [Descriptor]) throws {
            try set(attribute, SWIFTLET_CUDNN_TYPE_BACKEND_DESCRIPTOR, descriptors.map { Optional($0.raw) })
        }
        func set(_ attribute: Int32, descriptor: Descriptor) throws { try set(attribute, descriptors: [descriptor]) }

        func finalize() throws { try library.check(library.finalizeCall(raw), "cudnnBackendFinalize") }

        func getInt64(_ attribute: Int32) throws -> Int64 {
            var value: Int64 = 0, count: Int64 = 0
            try library.check(library.getAttribute(raw, attribute, SWIFTLET_CUDNN_TYPE_INT64, 1, &count, &value),
                              "cudnnBackendGetAttribute(\(attribute))")
            return value
        }
    }

    func descriptor(_ type: Int32) throws -> Descriptor { try Descriptor(self, type) }

    /// A finalised plan with the workspace it needs.
    struct Plan {
        let plan: Descriptor
        let workspaceBytes: Int
    }

    /// The graph of `operations`, finalised with the first engine configuration, in cuDNN's
    /// heuristic order (mode A, then the fallback list), that builds into a plan.
    func plan(operations: [Descriptor]) throws -> Plan {
        let graph = try descriptor(SWIFTLET_CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR)
        try graph.set(SWIFTLET_CUDNN_ATTR_OPERATIONGRAPH_HANDLE, SWIFTLET_CUDNN_TYPE_HANDLE, [Optional(handle)])
        try graph.set(SWIFTLET_CUDNN_ATTR_OPERATIONGRAPH_OPS, descriptors: operations)
        try graph.finalize()
        var failures: [String] = []
        for mode in [SWIFTLET_CUDNN_HEUR_MODE_A, SWIFTLET_CUDNN_HEUR_MODE_FALLBACK] {
            let heuristics = try descriptor(SWIFTLET_CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR)
            try heuristics.set(SWIFTLET_CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, descriptor: graph)
            try heuristics.set(SWIFTLET_CUDNN_ATTR_ENGINEHEUR_MODE, SWIFTLET_CUDNN_TYPE_HEUR_MODE, [mode])
            do { try heuristics.finalize() } catch { failures.append("heuristics \(mode): \(error)"); continue }
            var count: Int64 = 0
            try check(getAttribute(heuristics.raw, SWIFTLET_CUDNN_ATTR_ENGINEHEUR_RESULTS, SWIFTLET_CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                   0, &count, nil), "engine heuristics (count)")
            guard count > 0 else { failures.append("heuristics \(mode): no engine"); continue }
            let configs = try (0..<count).map { _ in try descriptor(SWIFTLET_CUDNN_BACKEND_ENGINECFG_DESCRIPTOR) }
            var raw = configs.map { Optional($0.raw) }
            var returned: Int64 = 0
            try check(getAttribute(heuristics.raw, SWIFTLET_CUDNN_ATTR_ENGINEHEUR_RESULTS, SWIFTLET_CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                   count, &returned, &raw), "engine heuristics (configs)")
            for config in configs.prefix(Int(returned)) {
                do {
                    let plan = try descriptor(SWIFTLET_CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR)
                    try plan.set(SWIFTLET_CUDNN_ATTR_EXECUTION_PLAN_HANDLE, SWIFTLET_CUDNN_TYPE_HANDLE, [Optional(handle)])
                    try plan.set(SWIFTLET_CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, descriptor: config)
                    try plan.finalize()
                    return Plan(plan: plan, workspaceBytes: Int(try plan.getInt64(SWIFTLET_CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE)))
                } catch {
                    failures.append("\(error)")
                }
            }
        }
        throw CUDAError.invalid("cuDNN \(versionString) has no engine for this graph: "
                                + failures.prefix(3).joined(separator: "; "))
    }

    /// Runs `plan` on the stream with the device (or, for by-value scalars, host) pointers of the
    /// graph's tensors by unique id.
    func execute(_ plan: Plan, pointers: [(uid: Int64, pointer: UnsafeMutableRawPointer?)],
                 workspace: UnsafeMutableRawPointer?) throws {
        let pack = try descriptor(SWIFTLET_CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR)
        try pack.set(SWIFTLET_CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, int64: pointers.map(\.uid))
        try pack.set(SWIFTLET_CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, SWIFTLET_CUDNN_TYPE_VOID_PTR, pointers.map(\.pointer))
        try pack.set(SWIFTLET_CUDNN_ATTR_VARIANT_PACK_WORKSPACE, SWIFTLET_CUDNN_TYPE_VOID_PTR, [workspace])
        try pack.finalize()
        try check(executeCall(handle, plan.plan.raw, pack.raw), "cudnnBackendExecute")
    }
}
