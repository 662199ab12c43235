/// Which keys each query may see, and the head geometry of one attention call.
///
/// Tokens are `rows × columns` (batch rows of equal length, flattened). A query sees a key of
/// its own row when both carry the same sequence id (packed examples never see each other;
/// padding has id -1 and is seen by nobody), the key is not later than the query, and, with a
/// sliding window w, the query is less than w positions after the key (Mistral). Scores are q·k·scale,
/// then, with a softcap (Gemma 2's attn_logit_softcapping), cap·tanh(score / cap) before the softmax.
public struct AttentionLayout {
    public var rows: Int
    public var columns: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    /// [rows·columns] i32: the sequence each token belongs to (-1: padding).
    public var sequenceIds: Tensor
    public var slidingWindow: Int?
    public var scale: Float
    public var softcap: Float?
    /// Every row is one whole sequence (no packing, no padding), so the mask is plain causal: what
    /// fused attention libraries (cuDNN) take without a mask tensor. False when not known.
    public var wholeRows: Bool

    public init(rows: Int, columns: Int, heads: Int, kvHeads: Int, headDim: Int,
                sequenceIds: Tensor, slidingWindow: Int?, scale: Float? = nil, softcap: Float? = nil,
                wholeRows: Bool = false) {
        precondition(heads % kvHeads == 0, "heads \(heads) not a multiple of kv heads \(kvHeads)")
        self.rows = rows
        self.columns = columns
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.sequenceIds = sequenceIds
        self.slidingWindow = slidingWindow
        self.scale = scale ?? 1 / Float(headDim).squareRoot()
        self.softcap = softcap
        self.wholeRows = wholeRows
    }

    /// Whether each row of `sequenceIds` ([rows × columns], row-major) holds one sequence throughout.
    public static func rowsAreWhole(_ sequenceIds: [Int32], columns: Int) -> Bool {
        guard columns > 0 else { return false }
        return stride(from: 0, to: sequenceIds.count, by: columns).allSatisfy { start in
            let id = sequenceIds[start]
            return id >= 0 && sequenceIds[start..<start + columns].allSatisfy { $0 == id }
        }
    }

    /// Whether query column i may attend to key column j of the same row.
    @inlinable
    public func allows(query i: Int, key j: Int, querySequence qs: Int32, keySequence ks: Int32) -> Bool {
        guard j <= i, qs >= 0, qs == ks else { return false }
        if let w = slidingWindow, i - j >= w { return false }
        return true
    }
}
