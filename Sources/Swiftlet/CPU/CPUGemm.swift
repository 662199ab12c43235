import Foundation

/// Single-precision matrix multiply for the CPU backend, BLAS `sgemm` semantics, row-major.
///
/// How it works (the classic Goto/BLIS scheme, simplified):
///   1. C is cut into fixed tiles of `tileM × tileN`. Tiles are independent, so they run in
///      parallel with `DispatchQueue.concurrentPerform` when the problem is big enough.
///   2. Inside a tile, k is walked in blocks of `kc`. For each block, the needed slices of
///      op(A) and op(B) are copied ("packed") into contiguous buffers laid out exactly in the
///      order the micro-kernel reads them. Packing is where transposes are resolved, so all
///      four transpose combinations share one inner kernel.
///   3. The micro-kernel computes an `mr × nr` block of C in SIMD registers over one k block,
///      then adds alpha · (that block) into C.
///
/// Determinism: the tiling depends only on (m, n, k), never on the thread count or timing,
/// and each element of C is owned by exactly one tile. Its sum order is therefore fixed:
/// p ascending within each k block, k blocks added into C in ascending order. Swift does not
/// contract `x * y + z` into FMA, so the vector and scalar paths round identically.
public enum CPUGemm {
    // Micro-tile: mr rows × nr columns of C held in registers. 6 × SIMD8 accumulators is 12
    // SSE registers on baseline x86-64 (16 available), leaving room for B and a broadcast.
    @usableFromInline static let mr = 6
    @usableFromInline static let nr = 8
    // k block: a packed B micro-panel (kc × nr floats = 8 KiB) stays in L1 while the packed
    // A block (tileM × kc = 96 KiB) streams from L2.
    static let kc = 256
    // C tile owned by one task (multiples of mr and nr).
    static let tileM = 96
    static let tileN = 128
    // Below this many multiply-adds, dispatching to threads costs more than it saves.
    static let parallelThreshold = 1 << 20

    /// C[m×n] = alpha · op(A) · op(B) + beta · C, row-major. op(A) is [m×k]: A is stored [m×k]
    /// with row stride lda (transA == false) or [k×m] with row stride lda (transA == true); same
    /// for B ([k×n] or, transposed, [n×k], row stride ldb). C has row stride ldc. beta == 0
    /// means C is overwritten without being read (NaNs in C do not propagate), as in BLAS.
    /// Also as in BLAS, k == 0 or alpha == 0 only computes C = beta · C (A and B are not read).
    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                             alpha: Float, a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
              b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, allowParallel: true)
    }

    /// Same as the public entry point; `allowParallel: false` forces the serial path (tests use
    /// it to check that threading does not change a single bit).
    static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                      alpha: Float, a: UnsafePointer<Float>, lda: Int,
                      b: UnsafePointer<Float>, ldb: Int,
                      beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                      allowParallel: Bool) {
        precondition(m >= 0 && n >= 0 && k >= 0, "sgemm: negative size")
        precondition(ldc >= n, "sgemm: ldc < n")
        precondition(lda >= (transA ? m : k) || m == 0 || k == 0, "sgemm: lda too small")
        precondition(ldb >= (transB ? k : n) || n == 0 || k == 0, "sgemm: ldb too small")
        if m == 0 || n == 0 { return }

        let tilesM = (m + tileM - 1) / tileM
        let tilesN = (n + tileN - 1) / tileN
        let tileCount = tilesM * tilesN
        let operands = Operands(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                                a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)

        if allowParallel && tileCount > 1 && m * n * k >= parallelThreshold {
            DispatchQueue.concurrentPerform(iterations: tileCount) { t in
                computeTile(operands, row: (t / tilesN) * tileM, col: (t % tilesN) * tileN)
            }
        } else {
            for t in 0..<tileCount {
                computeTile(operands, row: (t / tilesN) * tileM, col: (t % tilesN) * tileN)
            }
        }
    }

    /// The arguments of one call, bundled so tile tasks can share them.
    struct Operands {
        let transA: Bool, transB: Bool
        let m: Int, n: Int, k: Int
        let alpha: Float
        let a: UnsafePointer<Float>, lda: Int
        let b: UnsafePointer<Float>, ldb: Int
        let beta: Float
        let c: UnsafeMutablePointer<Float>, ldc: Int
    }

    /// Computes C[row ..< row+tileM, col ..< col+tileN] (clipped to m × n).
    static func computeTile(_ o: Operands, row: Int, col: Int) {
        let rows = min(tileM, o.m - row)
        let cols = min(tileN, o.n - col)

        // C = beta · C first; beta == 0 writes zeros so whatever was in C (even NaN) is gone.
        for i in 0..<rows {
            let cRow = o.c + (row + i) * o.ldc + col
            if o.beta == 0 {
                cRow.update(repeating: 0, count: cols)
            } else if o.beta != 1 {
                for j in 0..<cols { cRow[j] *= o.beta }
            }
        }
        if o.k == 0 || o.alpha == 0 { return }

        // Packing buffers sized to this tile (rounded up to whole micro-panels, zero padded).
        let kcMax = min(kc, o.k)
        let panelRows = (rows + mr - 1) / mr * mr
        let panelCols = (cols + nr - 1) / nr * nr
        let aPacked = UnsafeMutablePointer<Float>.allocate(capacity: panelRows * kcMax)
        let bPacked = UnsafeMutablePointer<Float>.allocate(capacity: panelCols * kcMax)
        defer { aPacked.deallocate(); bPacked.deallocate() }

        var p0 = 0
        while p0 < o.k {
            let kb = min(kc, o.k - p0)
            packB(o, p0: p0, kb: kb, col: col, cols: cols, into: bPacked)
            packA(o, p0: p0, kb: kb, row: row, rows: rows, into: aPacked)
            // B micro-panel outer: it stays in L1 while every A micro-panel passes over it.
            var j = 0
            while j < cols {
                var i = 0
                while i < rows {
                    microKernel(kb: kb, a: aPacked + i * kb, b: bPacked + j * kb, alpha: o.alpha,
                                c: o.c + (row + i) * o.ldc + (col + j), ldc: o.ldc,
                                rows: min(mr, rows - i), cols: min(nr, cols - j))
                    i += mr
                }
                j += nr
            }
            p0 += kb
        }
    }

    /// Packs op(A)[row ..< row+rows, p0 ..< p0+kb] as micro-panels of mr rows: within a panel,
    /// for each p, the mr values of column p are contiguous. Missing rows are zero.
    static func packA(_ o: Operands, p0: Int, kb: Int, row: Int, rows: Int,
                      into dst: UnsafeMutablePointer<Float>) {
        var i0 = 0
        while i0 < rows {
            let panel = dst + i0 * kb
            let h = min(mr, rows - i0)
            if o.transA {
                // A is [k×m]: the mr values for one p are contiguous in memory.
                for p in 0..<kb {
                    let src = o.a + (p0 + p) * o.lda + (row + i0)
                    for ii in 0..<mr { panel[p * mr + ii] = ii < h ? src[ii] : 0 }
                }
            } else {
                // A is [m×k]: read each row contiguously, scatter with stride mr.
                for ii in 0..<mr {
                    if ii < h {
                        let src = o.a + (row + i0 + ii) * o.lda + p0
                        for p in 0..<kb { panel[p * mr + ii] = src[p] }
                    } else {
                        for p in 0..<kb { panel[p * mr + ii] = 0 }
                    }
                }
            }
            i0 += mr
        }
    }

    /// Packs op(B)[p0 ..< p0+kb, col ..< col+cols] as micro-panels of nr columns: within a
    /// panel, for each p, the nr values of row p are contiguous. Missing columns are zero.
    static func packB(_ o: Operands, p0: Int, kb: Int, col: Int, cols: Int,
                      into dst: UnsafeMutablePointer<Float>) {
        var j0 = 0
        while j0 < cols {
            let panel = dst + j0 * kb
            let w = min(nr, cols - j0)
            if o.transB {
                // B is [n×k]: read each column of op(B) contiguously, scatter with stride nr.
                for jj in 0..<nr {
                    if jj < w {
                        let src = o.b + (col + j0 + jj) * o.ldb + p0
                        for p in 0..<kb { panel[p * nr + jj] = src[p] }
                    } else {
                        for p in 0..<kb { panel[p * nr + jj] = 0 }
                    }
                }
            } else if w == nr {
                // B is [k×n]: a full row of the panel is one contiguous vector.
                for p in 0..<kb {
                    let v = UnsafeRawPointer(o.b + (p0 + p) * o.ldb + (col + j0))
                        .loadUnaligned(as: SIMD8<Float>.self)
                    UnsafeMutableRawPointer(panel + p * nr).storeBytes(of: v, as: SIMD8<Float>.self)
                }
            } else {
                for p in 0..<kb {
                    let src = o.b + (p0 + p) * o.ldb + (col + j0)
                    for jj in 0..<nr { panel[p * nr + jj] = jj < w ? src[jj] : 0 }
                }
            }
            j0 += nr
        }
    }

    /// C[0..<rows, 0..<cols] += alpha · (Apanel · Bpanel) over kb steps, where Apanel is
    /// mr × kb and Bpanel is kb × nr, both packed. The 6 × 8 block lives in six SIMD8
    /// accumulators; each step broadcasts one A value per row against one B row.
    @inline(__always)
    static func microKernel(kb: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                            alpha: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                            rows: Int, cols: Int) {
        var c0 = SIMD8<Float>(), c1 = SIMD8<Float>(), c2 = SIMD8<Float>()
        var c3 = SIMD8<Float>(), c4 = SIMD8<Float>(), c5 = SIMD8<Float>()
        var ap = a
        var bp = UnsafeRawPointer(b)
        for _ in 0..<kb {
            let bv = bp.loadUnaligned(as: SIMD8<Float>.self)
            c0 += SIMD8(repeating: ap[0]) * bv
            c1 += SIMD8(repeating: ap[1]) * bv
            c2 += SIMD8(repeating: ap[2]) * bv
            c3 += SIMD8(repeating: ap[3]) * bv
            c4 += SIMD8(repeating: ap[4]) * bv
            c5 += SIMD8(repeating: ap[5]) * bv
            ap += mr
            bp += nr * MemoryLayout<Float>.stride
        }

        let va = SIMD8<Float>(repeating: alpha)
        if rows == mr && cols == nr {
            // Full block: update C directly with vector loads and stores.
            @inline(__always) func update(_ row: Int, _ acc: SIMD8<Float>) {
                let p = UnsafeMutableRawPointer(c + row * ldc)
                let old = p.loadUnaligned(as: SIMD8<Float>.self)
                p.storeBytes(of: old + va * acc, as: SIMD8<Float>.self)
            }
            update(0, c0); update(1, c1); update(2, c2)
            update(3, c3); update(4, c4); update(5, c5)
        } else {
            // Edge block: same arithmetic (c + alpha·acc) element by element, only in bounds.
            for i in 0..<rows {
                let acc: SIMD8<Float>
                switch i {
                case 0: acc = c0
                case 1: acc = c1
                case 2: acc = c2
                case 3: acc = c3
                case 4: acc = c4
                default: acc = c5
                }
                let scaled = va * acc
                for j in 0..<cols { c[i * ldc + j] += scaled[j] }
            }
        }
    }

    /// Plain triple-loop GEMM with the same semantics as `sgemm`, in any floating-point type.
    /// The oracle for tests (run in Double) and for finite-difference checks.
    @inlinable
    public static func reference<T: BinaryFloatingPoint>(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: T, a: UnsafePointer<T>, lda: Int,
        b: UnsafePointer<T>, ldb: Int,
        beta: T, c: UnsafeMutablePointer<T>, ldc: Int
    ) {
        for i in 0..<m {
            for j in 0..<n {
                var sum: T = 0
                for p in 0..<k {
                    let x = transA ? a[p * lda + i] : a[i * lda + p]
                    let y = transB ? b[j * ldb + p] : b[p * ldb + j]
                    sum += x * y
                }
                let idx = i * ldc + j
                // beta == 0: C is not read, as in BLAS.
                c[idx] = beta == 0 ? alpha * sum : alpha * sum + beta * c[idx]
            }
        }
    }
}
