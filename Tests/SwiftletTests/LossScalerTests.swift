import XCTest
@testable import Swiftlet

/// Dynamic loss scaling (fp16 training) with GradScaler's semantics.
final class LossScalerTests: XCTestCase {
    func testBacksOffOnOverflowAndGrowsAfterCleanSteps() {
        var scaler = LossScaler(initialScale: 1024)
        scaler.growthInterval = 3
        XCTAssertFalse(scaler.update(gradientsFinite: false))
        XCTAssertEqual(scaler.scale, 512)
        XCTAssertTrue(scaler.update(gradientsFinite: true))
        XCTAssertTrue(scaler.update(gradientsFinite: true))
        XCTAssertEqual(scaler.scale, 512)
        XCTAssertTrue(scaler.update(gradientsFinite: true))
        XCTAssertEqual(scaler.scale, 1024, "three clean steps in a row double the scale")
        XCTAssertFalse(scaler.update(gradientsFinite: false))
        XCTAssertTrue(scaler.update(gradientsFinite: true))
        XCTAssertEqual(scaler.scale, 512, "an overflow restarts the count")
    }

    func testOptimizerUnscalesAndSkipsOverflowedSteps() throws {
        let backend = CPUBackend()
        let adapter = try LoRAAdapter(module: "m", a: backend.upload([1, 2], [1, 2], .f32), b: backend.upload([3], [1, 1], .f32),
                                      scaling: 1, dropout: 0)
        var arguments = TrainingArguments()
        arguments.optimizer = .sgd
        arguments.maxGradNorm = 0
        let optimizer = try LoRAOptimizer(adapters: [adapter], arguments: arguments)
        var scaler: LossScaler? = LossScaler(initialScale: 8)
        // gradients as the scaled loss produced them: 8x the true ones
        backend.copy(try backend.upload([8, 16], [1, 2], .f32), into: adapter.gradA)
        backend.copy(try backend.upload([-8], [1, 1], .f32), into: adapter.gradB)
        let norm = optimizer.step(lr: 0.5, scaler: &scaler)
        XCTAssertEqual(norm, (1.0 + 4 + 1).squareRoot(), accuracy: 1e-9, "the norm of the unscaled gradients")
        XCTAssertEqual(backend.download(adapter.a), [0.5, 1])
        XCTAssertEqual(backend.download(adapter.b), [3.5])
        // an overflowed step changes nothing and halves the scale
        backend.copy(try backend.upload([.infinity, 1], [1, 2], .f32), into: adapter.gradA)
        XCTAssertFalse(optimizer.step(lr: 0.5, scaler: &scaler).isFinite)
        XCTAssertEqual(backend.download(adapter.a), [0.5, 1])
        XCTAssertEqual(scaler?.scale, 4)
        XCTAssertEqual(optimizer.steps, 1)
    }
}
