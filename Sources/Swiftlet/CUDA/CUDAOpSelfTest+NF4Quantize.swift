/// The doctor's check of NF4 quantization on the GPU (`CUDABackend.quantizeNF4`, CUDA/Kernels/NF4Kernels.swift):
/// the codes and absmax must be the host's (`NF4.quantize` of the downloaded values) bit for bit, so that a
/// model quantized on the GPU is the one the host would have made. Shapes with full blocks only, with a
/// partial last block and an odd count, and a view that starts unaligned (the kernel's scalar loads and byte
/// stores); values like weights plus zero blocks, ±largest, ±inf, NaN and subnormals. Then `NF4Weight
/// (quantizing:doubleQuant:)` against `NF4.quantize(…, doubleQuant: true)`, and a timed Mixtral-sized
/// quantization (4096 × 14336).
extension CUDAOpSelfTest {
    mutating func nf4Quantize() throws {
        say("NF4 quantize on the GPU (bit-exact against the host's NF4.quantize):")
        let cases: [(Shape, DType)] = [([4096, 4096], storage), ([300, 130], storage), ([7, 37], storage),
                                       ([1000, 96], .f32), ([33, 17], .f32)]
        for (shape, dtype) in cases {
            let dense = try gpu.upload(nf4ProbeValues(shape.count), shape, dtype)
            try nf4QuantizeCase("\(shape) \(dtype)", dense)
        }
        // Rows 1... of a [301, 37] tensor: 74 bytes in, so neither 16-byte loads nor 4-byte stores line up.
        let whole = try gpu.upload(nf4ProbeValues(301 * 37), [301, 37], storage)
        try nf4QuantizeCase("[300, 37] \(storage), unaligned view", whole.rows(1..<301))

        let weight = try gpu.upload((0..<(300 * 130)).map { _ in generator.uniform(in: -0.05..<0.05) },
                                    [300, 130], storage)
        let viaWeight = try NF4Weight(quantizing: weight, doubleQuant: true).host()
        verdict(viaWeight == NF4.quantize(gpu.download(weight), shape: [300, 130], doubleQuant: true),
                "NF4Weight(quantizing:) double-quantized", "bit for bit")

        let big = try gpu.empty([4096, 14336], storage)
        gpu.fillUniform(big, seed: 7, bound: 0.03)
        let n = big.count, blockSize = NF4.defaultBlockSize
        let packed = try gpu.empty([(n + 1) / 2], .u8), absmax = try gpu.empty([n / blockSize], .f32)
        time("quantize 4096×14336 \(storage) → NF4", bytes: Double(n * storage.size + n / 2 + n / blockSize * 4)) {
            gpu.quantizeNF4(big, blockSize: blockSize, into: packed, absmax: absmax)
        }
    }

    /// The GPU's codes and absmax of `dense` against the host's of its downloaded values, byte for byte and
    /// bit for bit (an absmax is never NaN, but compared as bits all the same).
    mutating func nf4QuantizeCase(_ name: String, _ dense: Tensor) throws {
        let blockSize = NF4.defaultBlockSize
        let packed = try output([(dense.count + 1) / 2], .u8).gpu
        let absmax = try output([(dense.count + blockSize - 1) / blockSize], .f32).gpu
        gpu.quantizeNF4(dense, blockSize: blockSize, into: packed, absmax: absmax)
        let host = NF4.codes(gpu.download(dense), blockSize: blockSize)
        let codes = gpu.downloadBytes(packed), scales = gpu.download(absmax).map(\.bitPattern)
        let wrong = zip(codes, host.packed).filter { $0 != $1 }.count + zip(scales, host.absmax.map(\.bitPattern)).filter { $0 != $1 }.count
        verdict(wrong == 0, name, "\(wrong) of \(codes.count) bytes + \(scales.count) absmax differ")
    }

    /// Weight-like values (±0.05) with, block by block, the cases the quantizer treats apart: a block of
    /// zeros (+0 and -0), ±3e38 (bf16's largest; inf in fp16), ±inf (the block's products turn NaN), NaN
    /// (never the absmax), subnormals.
    mutating func nf4ProbeValues(_ count: Int) -> [Float] {
        (0..<count).map { i in
            let v = generator.uniform(in: -0.05..<0.05)
            switch (i / 64 % 13, generator.next() % 97) {
            case (5, _): return 0
            case (6, _): return i % 2 == 0 ? 0 : -0.0
            case (_, 0): return 3e38
            case (_, 1): return -3e38
            case (1, 2): return .infinity
            case (2, 3): return -.infinity
            case (3, 4): return .nan
            case (_, 5): return Float(bitPattern: UInt32(1 + i % 7) << 16)   // subnormals, bf16 ones
            default: return v
            }
        }
    }
}
