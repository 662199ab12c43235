import Foundation

/// Packing as TRL 1.16's default `packing_strategy="bfd"` (`trl.data_utils._pack_bfd`): examples longer than
/// `seqLength` are cut to their first `seqLength` tokens (overflow dropped), empty ones dropped; then, in
/// order of decreasing length (ties in data set order), each goes into the open bin whose free space is the
/// smallest that still fits it (ties: the bin that reached that free space first), or a new bin.
/// Bins come out in creation order, examples inside a bin in insertion order.
///
/// Each bin is one row of `seqLength` columns (right-padded; TRL leaves packed rows shorter and its
/// padding-free collator concatenates them — the same tokens, positions and boundaries). Positions restart
/// at 0 for each example and sequence ids number the examples in the row, so attention and labels never cross
/// an example boundary. Padding-free batching is this same layout: examples laid end to end with per-example
/// positions (TRL's `padding_free=True` uses `position_ids` exactly so).
public enum Packing {
    /// Indices of `lengths` per bin, as TRL's BFD.
    public static func bestFitDecreasing(lengths: [Int], seqLength: Int) -> [[Int]] {
        precondition(seqLength > 0)
        let items = lengths.enumerated().filter { $0.element > 0 }.map { ($0.offset, min($0.element, seqLength)) }
        // stable sort, decreasing length
        let order = items.enumerated().sorted { a, b in a.element.1 != b.element.1 ? a.element.1 > b.element.1 : a.offset < b.offset }.map(\.element)
        var tree = MaxSegmentTree(maxValue: seqLength)
        tree.add(seqLength)
        var spaceToBins: [Int: [Int]] = [:]  // FIFO queues of bin indices
        var bins: [[Int]] = []
        for (index, length) in order {
            var space = tree.search(length)
            let bin: Int
            if space < seqLength {
                bin = spaceToBins[space]!.removeFirst()
                if spaceToBins[space]!.isEmpty { tree.remove(space) }
            } else {
                bin = bins.count
                bins.append([])
            }
            bins[bin].append(index)
            space -= length
            spaceToBins[space, default: []].append(bin)
            if space > 0 { tree.add(space) }
        }
        return bins
    }

    /// The examples' real tokens (attention mask 1), first `seqLength` kept.
    static func trimmed(_ e: Example, _ seqLength: Int) -> Example {
        var ids = e.inputIds, labels = e.labels ?? e.inputIds
        if let mask = e.attentionMask {
            let keep = mask.indices.filter { mask[$0] != 0 }
            ids = keep.map { ids[$0] }; labels = keep.map { labels[$0] }
        }
        return Example(inputIds: Array(ids.prefix(seqLength)), labels: Array(labels.prefix(seqLength)))
    }

    /// Packed rows: each a list of (truncated) examples totalling at most `seqLength` tokens.
    public static func pack(_ examples: [Example], seqLength: Int) -> [[Example]] {
        let trimmedExamples = examples.map { trimmed($0, seqLength) }
        return bestFitDecreasing(lengths: trimmedExamples.map(\.inputIds.count), seqLength: seqLength)
            .map { $0.map { trimmedExamples[$0] } }
    }
}

extension Batch {
    /// All examples packed (TRL's BFD, see `Packing`) into rows of exactly `columns` tokens.
    public static func packed(_ examples: [Example], columns: Int) -> Batch {
        let rows = Packing.pack(examples, seqLength: columns).map { Batch(packing: $0, columns: columns) }
        return Batch(stacking: rows, columns: columns)
    }

    /// Rows of equal width, one under another.
    public init(stacking rows: [Batch], columns: Int) {
        precondition(rows.allSatisfy { $0.columns == columns })
        self.init(rows: rows.reduce(0) { $0 + $1.rows }, columns: columns, tokens: rows.flatMap(\.tokens),
                  targets: rows.flatMap(\.targets), positions: rows.flatMap(\.positions), sequenceIds: rows.flatMap(\.sequenceIds))
    }
}

/// `trl.data_utils._SegmentTree`: max over free-space values 1...maxValue; `search(v)` is the smallest
/// present value >= v.
struct MaxSegmentTree {
    let maxValue: Int
    let size: Int
    var tree: [Int]

    init(maxValue: Int) {
        self.maxValue = maxValue
        var s = 1
        while s < maxValue { s <<= 1 }
        size = s
        tree = [Int](repeating: 0, count: 2 * s)
    }

    mutating func set(_ val: Int, _ x: Int) {
        var i = size + val - 1
        tree[i] = x
        while i > 1 { i >>= 1; tree[i] = max(tree[2 * i], tree[2 * i + 1]) }
    }
    mutating func add(_ val: Int) { set(val, val) }
    mutating func remove(_ val: Int) { set(val, 0) }

    func search(_ val: Int) -> Int {
        var i = 1
        while i < size { i = tree[2 * i] >= val ? 2 * i : 2 * i + 1 }
        return tree[i]
    }
}
