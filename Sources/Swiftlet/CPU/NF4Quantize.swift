extension CPUBackend {
    /// The host quantizer itself (`NF4.codes`) on the tensor's values, written into the two tensors.
    public func quantizeNF4(_ x: Tensor, blockSize: Int, into packed: Tensor, absmax: Tensor) {
        precondition(packed.dtype == .u8 && packed.count == (x.count + 1) / 2
                     && absmax.count == (x.count + blockSize - 1) / blockSize,
                     "quantize \(x) to NF4 (block \(blockSize)) into \(packed) and \(absmax)")
        let (codes, scales) = NF4.codes(download(x), blockSize: blockSize)
        UnsafeMutableRawBufferPointer(start: packed.address, count: codes.count).copyBytes(from: codes)
        _ = absmax.floats.update(fromContentsOf: scales)
    }
}
