import Foundation

/// bitsandbytes' serialized 4-bit weight (`Params4bit` + `QuantState.as_dict(packed=True)`), for a
/// weight `<w>` (e.g. `model.layers.0.mlp.up_proj.weight`):
///
///     <w>                                   u8 [ceil(n/2), 1]  packed codes, first element high
///     <w>.absmax                            u8 (double quant) or f32, one per block
///     <w>.quant_map                         f32 [16]   the NF4 code book
///     <w>.nested_absmax                     f32        (double quant) one per 256 absmax codes
///     <w>.nested_quant_map                  f32 [256]  (double quant) the signed dynamic map
///     <w>.quant_state.bitsandbytes__nf4     u8         JSON: quant_type, blocksize, dtype, shape,
///                                                      nested_blocksize, nested_offset, nested_dtype
public enum BnbNF4Layout {
    public static let stateSuffix = ".quant_state.bitsandbytes__nf4"

    public enum LayoutError: Error, CustomStringConvertible {
        case missing(tensor: String, path: String)
        case invalid(tensor: String, path: String, reason: String)
        public var description: String {
            switch self {
            case let .missing(tensor, path): return "\(path): 4-bit tensor '\(tensor)' is missing"
            case let .invalid(tensor, path, reason): return "\(path): tensor '\(tensor)': \(reason)"
            }
        }
    }

    /// Whether `checkpoint` stores `weightName` in this layout.
    public static func isQuantized(_ weightName: String, in checkpoint: Checkpoint) -> Bool {
        checkpoint.contains(weightName + stateSuffix)
    }

    /// Reads one weight, checking its quant state against `expectedShape`.
    public static func read(_ w: String, from checkpoint: Checkpoint, expectedShape: Shape) throws -> NF4Tensor {
        let path = checkpoint.directory.path
        func bytes(_ name: String) throws -> [UInt8] {
            guard checkpoint.contains(name) else { throw LayoutError.missing(tensor: name, path: path) }
            return Array(try checkpoint.rawBytes(name))
        }
        func floats(_ name: String) throws -> [Float] {
            guard checkpoint.contains(name) else { throw LayoutError.missing(tensor: name, path: path) }
            guard try checkpoint.info(name).dtype == .f32 else {
                throw LayoutError.invalid(tensor: name, path: path, reason: "expected F32, found \(try checkpoint.info(name).dtype)")
            }
            return try checkpoint.floats(name)
        }
        func invalid(_ name: String, _ reason: String) -> LayoutError { .invalid(tensor: name, path: path, reason: reason) }

        let stateName = w + stateSuffix
        guard let state = try JSONSerialization.jsonObject(with: Data(try bytes(stateName))) as? [String: Any] else {
            throw invalid(stateName, "quant state is not a JSON object")
        }
        guard (state["quant_type"] as? String) == "nf4" else {
            throw invalid(stateName, "quant_type \(state["quant_type"] ?? "(missing)") is not supported (only nf4)")
        }
        guard let blockSize = state["blocksize"] as? Int, blockSize > 0 else { throw invalid(stateName, "bad or missing blocksize") }
        guard let shape = (state["shape"] as? [Int]).map(Shape.init), shape == expectedShape else {
            throw invalid(stateName, "shape \(state["shape"] ?? "(missing)") does not match \(expectedShape) from config.json")
        }
        let packed = try bytes(w)
        guard try checkpoint.info(w).dtype == .u8, packed.count == (shape.count + 1) / 2 else {
            throw invalid(w, "expected \((shape.count + 1) / 2) packed U8 codes, found \(packed.count) \(try checkpoint.info(w).dtype)")
        }
        let quantMap = try floats(w + ".quant_map")
        guard quantMap.map(\.bitPattern) == NF4.codebook.map(\.bitPattern) else {
            throw invalid(w + ".quant_map", "is not bitsandbytes' NF4 code book")
        }
        let blocks = (shape.count + blockSize - 1) / blockSize
        let absmaxName = w + ".absmax"
        let absmax: NF4Absmax
        if let nestedBlock = state["nested_blocksize"] as? Int {
            guard let offset = (state["nested_offset"] as? NSNumber)?.floatValue else {
                throw invalid(stateName, "nested_blocksize without nested_offset")
            }
            let codes = try bytes(absmaxName)
            guard try checkpoint.info(absmaxName).dtype == .u8, codes.count == blocks else {
                throw invalid(absmaxName, "expected \(blocks) U8 codes (double quantization)")
            }
            let scales = try floats(w + ".nested_absmax")
            guard nestedBlock > 0, scales.count == (blocks + nestedBlock - 1) / nestedBlock else {
                throw invalid(w + ".nested_absmax", "expected one scale per \(nestedBlock) blocks")
            }
            let map = try floats(w + ".nested_quant_map")
            guard map.map(\.bitPattern) == DynamicMap.signed.map(\.bitPattern) else {
                throw invalid(w + ".nested_quant_map", "is not bitsandbytes' signed dynamic map")
            }
            absmax = .nested(NestedAbsmax(codes: codes, scales: scales, offset: offset, blockSize: nestedBlock))
        } else {
            let values = try floats(absmaxName)
            guard values.count == blocks else { throw invalid(absmaxName, "expected \(blocks) F32 values") }
            absmax = .plain(values)
        }
        return NF4Tensor(packed: packed, absmax: absmax, shape: shape, blockSize: blockSize)
    }
}
