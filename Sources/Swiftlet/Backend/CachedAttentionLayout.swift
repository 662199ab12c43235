/// Who attends to whom when new queries meet a KV cache (generation's prefill and decode steps).
///
/// The cache holds `rows` sequences of `capacity` columns each ([rows·capacity, kvHeads·headDim]).
/// Prompts are left-padded, so every row's new tokens occupy the same columns: query i of a row
/// sits at column `start + i` and sees that row's cached keys at columns ≤ its own (its own key is
/// written before the call) whose `keyValid` flag is set (0 marks left padding), within the
/// sliding window if any. Scores are scaled and softcapped as in `AttentionLayout`.
public struct CachedAttentionLayout {
    public var rows: Int
    /// New tokens per row (all prompt tokens at prefill, 1 at decode).
    public var queries: Int
    public var start: Int
    public var capacity: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    /// [rows·capacity] i32: 1 where the cache column holds a real token, 0 for padding.
    public var keyValid: Tensor
    public var slidingWindow: Int?
    public var scale: Float
    public var softcap: Float?

    public init(rows: Int, queries: Int, start: Int, capacity: Int, heads: Int, kvHeads: Int, headDim: Int,
                keyValid: Tensor, slidingWindow: Int?, scale: Float? = nil, softcap: Float? = nil) {
        precondition(heads % kvHeads == 0, "heads \(heads) not a multiple of kv heads \(kvHeads)")
        precondition(start + queries <= capacity, "cache of \(capacity) columns overflows")
        self.rows = rows; self.queries = queries; self.start = start; self.capacity = capacity
        self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim
        self.keyValid = keyValid; self.slidingWindow = slidingWindow
        self.scale = scale ?? 1 / Float(headDim).squareRoot()
        self.softcap = softcap
    }

    /// Whether query i (column start + i) may see cache column j.
    @inlinable
    public func allows(query i: Int, key j: Int, valid: Int32) -> Bool {
        let column = start + i
        guard j <= column, valid != 0 else { return false }
        if let w = slidingWindow, column - j >= w { return false }
        return true
    }
}
