import Foundation

/// Replays a fixture recorded with the real bitsandbytes `AdamW8bit` (scripts/check_adamw8bit_bnb.py
/// on CUDA, scripts/make_adamw8bit_fixtures.py on the CPU) on one of our backends and measures how
/// far our parameters and state are from bnb's.
///
/// Each step is checked on its own, starting from bnb's parameters and state after the step before, so
/// one differently rounded code does not compound over the following steps; the free-running
/// trajectory's final parameters are reported too.
///
/// Fixture layout (safetensors): metadata `names` (comma-separated), `steps`, `lr`, `beta1`, `beta2`,
/// `eps`, `weight_decay`; per tensor `<name>.param0` (initial f32 values), `<name>.grad<k>`, and bnb's
/// results after step k, `<name>.param.<k>`, `<name>.state1.<k>`, `<name>.state2.<k>` (u8 codes, or
/// f32 moments for tensors under `AdamW8bit.minimumSize`) and, for 8-bit state,
/// `<name>.absmax1.<k>`/`.absmax2.<k>`, for k = 1...steps.
public enum AdamW8bitReplay {
    public struct TensorResult: Codable, Equatable, Sendable {
        public var name: String
        public var count: Int
        public var quantized: Bool
        /// Worst over the single steps: max |ours − bnb| / max |bnb| of the parameters.
        public var paramMaxRelative: Double
        /// Worst over the single steps: 8-bit codes that differ from bnb's, and the largest
        /// difference in code index (outside all-zero blocks, see `zeroBlockCodeMismatches`).
        public var state1Mismatches: Int
        public var state2Mismatches: Int
        public var maxCodeDistance: Int
        /// Worst over the single steps: max |ours − bnb| / max |bnb| of the dequantized (or f32) moments.
        public var state1MaxRelative: Double
        public var state2MaxRelative: Double
        /// Worst over the single steps: codes (of both states) that differ in blocks whose absmax is 0 on
        /// both sides, where every code means 0.
        public var zeroBlockCodeMismatches: Int
        /// Worst over the single steps, both absmax vectors (0 for 32-bit state).
        public var absmaxMaxRelative: Double
        /// All steps run freely from the initial values: the final parameters against bnb's.
        public var trajectoryParamMaxRelative: Double
    }

    public struct Fixture {
        public var names: [String]
        public var steps: Int
        public var hyper: AdamWHyper
        public let file: SafetensorsFile

        public init(url: URL) throws {
            let file = try SafetensorsFile(url: url)
            self.file = file
            func value(_ key: String) throws -> String {
                guard let text = file.metadata[key] else { throw FixtureError.missing("metadata \(key) in \(url.path)") }
                return text
            }
            func number(_ key: String) throws -> Float {
                guard let x = Float(try value(key)) else { throw FixtureError.missing("a number for \(key) in \(url.path)") }
                return x
            }
            names = try value("names").split(separator: ",").map(String.init)
            guard let steps = Int(try value("steps")), steps >= 1 else { throw FixtureError.missing("steps ≥ 1 in \(url.path)") }
            self.steps = steps
            hyper = AdamWHyper(lr: try number("lr"), beta1: try number("beta1"), beta2: try number("beta2"),
                               eps: try number("eps"), weightDecay: try number("weight_decay"))
        }

        public func floats(_ name: String) throws -> [Float] { try file.floats(name) }
        public func bytes(_ name: String) throws -> [UInt8] { Array(try file.rawBytes(name)) }
    }

    public enum FixtureError: Error, CustomStringConvertible {
        case missing(String)
        public var description: String {
            switch self { case let .missing(what): return "AdamW8bit fixture: needs \(what)" }
        }
    }

    /// bnb's name for one of our state tensors in the fixture.
    static func fixtureName(_ suffix: String) -> String {
        switch suffix {
        case "exp_avg": return "state1"
        case "exp_avg_sq": return "state2"
        default: return suffix
        }
    }

    /// Replays every tensor of the fixture and compares with bnb's results.
    public static func run(_ fixture: Fixture, on backend: any Backend) throws -> [TensorResult] {
        try fixture.names.map { name in
            let initial = try fixture.floats(name + ".param0")
            let shape: Shape = [initial.count]
            var result = TensorResult(name: name, count: initial.count, quantized: AdamW8bit.isQuantized(count: initial.count),
                                      paramMaxRelative: 0, state1Mismatches: 0, state2Mismatches: 0, maxCodeDistance: 0,
                                      state1MaxRelative: 0, state2MaxRelative: 0, zeroBlockCodeMismatches: 0,
                                      absmaxMaxRelative: 0, trajectoryParamMaxRelative: 0)
            let free = try backend.upload(initial, shape, .f32)
            let freeState = try AdamW8bitState.zeros(for: free)
            for step in 1...fixture.steps {
                let gradient = try backend.upload(try fixture.floats("\(name).grad\(step)"), shape, .f32)
                backend.adamw8bit(parameter: free, gradient: gradient, state: freeState, step: step, hyper: fixture.hyper)

                // This step alone, from bnb's parameters and state after the one before.
                let parameter = try backend.upload(step == 1 ? initial : try fixture.floats("\(name).param.\(step - 1)"), shape, .f32)
                let state = try AdamW8bitState.zeros(for: parameter)
                if step > 1 {
                    for (suffix, tensor) in state.tensors {
                        let bytes = try fixture.bytes("\(name).\(fixtureName(suffix)).\(step - 1)")
                        backend.copy(try backend.upload(bytes: bytes, tensor.shape, tensor.dtype), into: tensor)
                    }
                }
                backend.adamw8bit(parameter: parameter, gradient: gradient, state: state, step: step, hyper: fixture.hyper)
                try compare(parameter, state, with: fixture, name: name, step: step, on: backend, into: &result)
            }
            result.trajectoryParamMaxRelative = ErrorMeasure.measure(
                gpu: backend.download(free), cpu: try fixture.floats("\(name).param.\(fixture.steps)")).maxRelative
            return result
        }
    }

    /// Folds one step's differences from bnb into `result` (keeping the worst).
    static func compare(_ parameter: Tensor, _ state: AdamW8bitState, with fixture: Fixture, name: String, step: Int,
                        on backend: any Backend, into result: inout TensorResult) throws {
        func theirs(_ key: String) throws -> [Float] { try fixture.floats("\(name).\(key).\(step)") }
        func relative(_ ours: [Float], _ theirs: [Float]) -> Double { ErrorMeasure.measure(gpu: ours, cpu: theirs).maxRelative }
        result.paramMaxRelative = max(result.paramMaxRelative, relative(backend.download(parameter), try theirs("param")))
        switch state {
        case let .quantized(codes1, codes2, absmax1, absmax2):
            let scales = (backend.download(absmax1), backend.download(absmax2))
            let theirScales = (try theirs("absmax1"), try theirs("absmax2"))
            result.absmaxMaxRelative = max(result.absmaxMaxRelative, relative(scales.0, theirScales.0),
                                           relative(scales.1, theirScales.1))
            var zeroBlockMismatches = 0
            defer { result.zeroBlockCodeMismatches = max(result.zeroBlockCodeMismatches, zeroBlockMismatches) }
            for (k, codes, codebook) in [(1, codes1, DynamicMap.signed), (2, codes2, DynamicMap.unsigned)] {
                let mine = backend.downloadBytes(codes), other = try fixture.bytes("\(name).state\(k).\(step)")
                // A block whose absmax is 0 on both sides means 0 whatever its codes; bnb's CUDA kernel (and
                // we) code it 255 (signed) / 0, its CPU backend 0 / 0. Counted apart from the others.
                let ourScale = k == 1 ? scales.0 : scales.1, theirScale = k == 1 ? theirScales.0 : theirScales.1
                let zeroBlock = { (i: Int) in ourScale[i / AdamW8bit.blockSize] == 0 && theirScale[i / AdamW8bit.blockSize] == 0 }
                let compared = mine.indices.filter { !zeroBlock($0) }
                let mismatches = compared.filter { mine[$0] != other[$0] }.count
                result.maxCodeDistance = max(result.maxCodeDistance,
                                             compared.map { abs(Int(mine[$0]) - Int(other[$0])) }.max() ?? 0)
                zeroBlockMismatches += mine.indices.filter { zeroBlock($0) && mine[$0] != other[$0] }.count
                let error = relative(dequantize(mine, codebook, k == 1 ? scales.0 : scales.1),
                                     dequantize(other, codebook, k == 1 ? theirScales.0 : theirScales.1))
                if k == 1 {
                    result.state1Mismatches = max(result.state1Mismatches, mismatches)
                    result.state1MaxRelative = max(result.state1MaxRelative, error)
                } else {
                    result.state2Mismatches = max(result.state2Mismatches, mismatches)
                    result.state2MaxRelative = max(result.state2MaxRelative, error)
                }
            }
        case let .full(state1, state2):
            result.state1MaxRelative = max(result.state1MaxRelative, relative(backend.download(state1), try theirs("state1")))
            result.state2MaxRelative = max(result.state2MaxRelative, relative(backend.download(state2), try theirs("state2")))
        }
    }

    /// code[c] · absmax of c's block, per element.
    public static func dequantize(_ codes: [UInt8], _ codebook: [Float], _ absmax: [Float]) -> [Float] {
        codes.enumerated().map { codebook[Int($1)] * absmax[$0 / AdamW8bit.blockSize] }
    }
}
