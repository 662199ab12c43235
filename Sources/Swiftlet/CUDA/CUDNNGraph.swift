import CCUDA

/// Builds one cuDNN operation graph: tensor descriptors with unique ids, and the pointwise,
/// matmul, reduction and reshape ops between them. Dims and strides are 4-D ([batch, heads, rows,
/// columns] for attention), as cuDNN's attention engines expect.
struct CUDNNGraph {
    let library: CUDNN
    private(set) var operations: [CUDNN.Descriptor] = []
    private var nextUID: Int64 = 1

    init(_ library: CUDNN) { self.library = library }

    struct TensorRef {
        let uid: Int64
        let descriptor: CUDNN.Descriptor
        let dims: [Int64]
        let strides: [Int64]
    }

    /// Row-major strides of `dims`.
    static func packed(_ dims: [Int64]) -> [Int64] {
        var strides = [Int64](repeating: 1, count: dims.count)
        for i in stride(from: dims.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * dims[i + 1] }
        return strides
    }

    /// A tensor of the graph. Virtual tensors live only inside the fused kernel; by-value tensors
    /// are host scalars handed over at execution.
    mutating func tensor(_ dims: [Int64], strides: [Int64]? = nil, _ dataType: Int32,
                         virtual: Bool = false, byValue: Bool = false) throws -> TensorRef {
        let d = try library.descriptor(SWIFTLET_CUDNN_BACKEND_TENSOR_DESCRIPTOR)
        let uid = nextUID
        nextUID += 1
        let strides = strides ?? Self.packed(dims)
        try d.set(SWIFTLET_CUDNN_ATTR_TENSOR_DATA_TYPE, dataType: dataType)
        try d.set(SWIFTLET_CUDNN_ATTR_TENSOR_DIMENSIONS, int64: dims)
        try d.set(SWIFTLET_CUDNN_ATTR_TENSOR_STRIDES, int64: strides)
        try d.set(SWIFTLET_CUDNN_ATTR_TENSOR_UNIQUE_ID, int64: uid)
        try d.set(SWIFTLET_CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, int64: 16)
        try d.set(SWIFTLET_CUDNN_ATTR_TENSOR_IS_VIRTUAL, bool: virtual)
        if byValue { try d.set(SWIFTLET_CUDNN_ATTR_TENSOR_IS_BY_VALUE, bool: true) }
        try d.finalize()
        return TensorRef(uid: uid, descriptor: d, dims: dims, strides: strides)
    }

    /// A virtual f32 tensor (or `dataType`) of `dims`, packed.
    mutating func virtual(_ dims: [Int64], _ dataType: Int32 = SWIFTLET_CUDNN_DATA_FLOAT, strides: [Int64]? = nil) throws -> TensorRef {
        try tensor(dims, strides: strides, dataType, virtual: true)
    }

    /// A host f32 scalar [1, 1, 1, 1].
    mutating func scalar() throws -> TensorRef {
        try tensor([1, 1, 1, 1], SWIFTLET_CUDNN_DATA_FLOAT, byValue: true)
    }

    /// y = mode(x, b) (or mode(x) / gen-index of x along `axis`; binary select takes t, the condition).
    mutating func pointwise(_ mode: Int32, _ x: TensorRef, _ b: TensorRef? = nil, t: TensorRef? = nil, into y: TensorRef,
                            precision: Int32 = SWIFTLET_CUDNN_DATA_FLOAT, axis: Int64? = nil) throws {
        let pw = try library.descriptor(SWIFTLET_CUDNN_BACKEND_POINTWISE_DESCRIPTOR)
        try pw.set(SWIFTLET_CUDNN_ATTR_POINTWISE_MODE, SWIFTLET_CUDNN_TYPE_POINTWISE_MODE, [mode])
        try pw.set(SWIFTLET_CUDNN_ATTR_POINTWISE_MATH_PREC, dataType: precision)
        if let axis { try pw.set(SWIFTLET_CUDNN_ATTR_POINTWISE_AXIS, int64: axis) }
        try pw.finalize()
        let op = try library.descriptor(SWIFTLET_CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR)
        try op.set(SWIFTLET_CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, descriptor: pw)
        try op.set(SWIFTLET_CUDNN_ATTR_OPERATION_POINTWISE_XDESC, descriptor: x.descriptor)
        if let b { try op.set(SWIFTLET_CUDNN_ATTR_OPERATION_POINTWISE_BDESC, descriptor: b.descriptor) }
        if let t { try op.set(SWIFTLET_CUDNN_ATTR_OPERATION_POINTWISE_TDESC, descriptor: t.descriptor) }
        try op.set(SWIFTLET_CUDNN_ATTR_OPERATION_POINTWISE_YDESC, descriptor: y.descriptor)
        try op.finalize()
        operations.append(op)
    }

    /// c = a · b over the last two dims (batched over the first two), f32 accumulation.
    mutating func matmul(_ a: TensorRef, _ b: TensorRef, into c: TensorRef) throws {
        let desc = try library.descriptor(SWIFTLET_CUDNN_BACKEND_MATMUL_DESCRIPTOR)
        try desc.set(SWIFTLET_CUDNN_ATTR_MATMUL_COMP_TYPE, dataType: SWIFTLET_CUDNN_DATA_FLOAT)
        try desc.finalize()
        let op = try library.descriptor(SWIFTLET_CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR)
        try op.set(SWIFTLET_CUDNN_ATTR_OPERATION_MATMUL_ADESC, descriptor: a.descriptor)
        try op.set(SWIFTLET_CUDNN_ATTR_OPERATION_MATMUL_BDESC, descriptor: b.descriptor)
        try op.set(SWIFTLET_CUDNN_ATTR_OPERATION_MATMUL_CDESC, descriptor: c.descriptor)
        try op.set(SWIFTLET_CUDNN_ATTR_OPERATION_MATMUL_DESC, descriptor: desc)
        try op.finalize()
        operations.append(op)
    }

    /// y = reduce(x) over the dims where y has extent 1.
    mutating func reduce(_ mode: Int32, _ x: TensorRef, into y: TensorRef) throws {
        let desc = try library.descriptor(SWIFTLET_CUDNN_BACKEND_REDUCTION_DESCRIPTOR)
        try desc.set(SWIFTLET_CUDNN_ATTR_REDUCTION_OPERATOR, SWIFTLET_CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, [mode])
        try desc.set(SWIFTLET_CUDNN_ATTR_REDUCTION_COMP_TYPE, dataType: SWIFTLET_CUDNN_DATA_FLOAT)
        try desc.finalize()
        let op = try library.descriptor(SWIFTLET_CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR)
        try op.set(SWIFTLET_CUDNN_ATTR_OPERATION_REDUCTION_XDESC, descriptor: x.descriptor)
        try op.set(SWIFTLET_CUDNN_ATTR_OPERATION_REDUCTION_YDESC, descriptor: y.descriptor)
        try op.set(SWIFTLET_CUDNN_ATTR_OPERATION_REDUCTION_DESC, descriptor: desc)
        try op.finalize()
        operations.append(op)
    }

    /// y = x seen with y's dims and strides (a transpose, no data movement).
    mutating func reshape(_ x: TensorRef, into y: TensorRef) throws {
        let op = try library.descriptor(SWIFTLET_CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR)
        try op.set(SWIFTLET_CUDNN_ATTR_OPERATION_RESHAPE_XDESC, descriptor: x.descriptor)
        try op.set(SWIFTLET_CUDNN_ATTR_OPERATION_RESHAPE_YDESC, descriptor: y.descriptor)
        try op.finalize()
        operations.append(op)
    }

    func plan() throws -> CUDNN.Plan { try library.plan(operations: operations) }
}
