import Foundation

/// The `BPE` model of tokenizer.json: vocab, merges (as "a b" strings or ["a", "b"] pairs, rank = position),
/// `byte_fallback`, `unk_token` / `fuse_unk`, `ignore_merges`. Merging follows `tokenizers`' `Word::merge_all`
/// exactly: a priority queue of (rank, position), lowest first, stale entries skipped.
final class BPEModel {
    /// token (exact scalars) → id
    let vocab: [[UInt32]: Int32]
    /// id → token scalars
    let idToToken: [Int32: [UInt32]]
    /// single-scalar tokens (the first step of every word)
    private let charIds: [UInt32: Int32]
    private let asciiIds: [Int32]
    /// (left << 32 | right) → (rank << 32 | new id)
    private let merges: [UInt64: UInt64]
    private let byteFallbackIds: [Int32]?
    private let unkId: Int32?
    private let fuseUnk: Bool
    private let ignoreMerges: Bool

    private var cache: [[UInt32]: [Int32]] = [:]
    private let cacheLock = NSLock()
    static let cacheCapacity = 100_000
    /// words longer than this are not cached (like `tokenizers`' MAX_LENGTH)
    static let cacheMaxWordLength = 256

    init(json: TokenizerJSON, file: String) throws {
        let field = "model"
        let type = json["type"]?.stringValue ?? "BPE"  // files without "type" are BPE
        guard type == "BPE" else {
            throw TokenizerError.unsupported(file: file, field: "\(field).type", value: "\"\(type)\"")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let v = json[key], !v.isNull {
                throw TokenizerError.unsupported(file: file, field: "\(field).\(key)", value: "\(v.stringValue.map { "\"\($0)\"" } ?? "non-null")")
            }
        }
        if let d = json["dropout"], !d.isNull, case let .number(x) = d, x != 0 {
            throw TokenizerError.unsupported(file: file, field: "\(field).dropout", value: "\(x) (dropout is random)")
        }
        guard let vocabJSON = json["vocab"]?.objectValue else {
            throw TokenizerError.invalidField(file: file, field: "\(field).vocab", reason: "expected an object")
        }
        var vocab: [[UInt32]: Int32] = [:]
        vocab.reserveCapacity(vocabJSON.count)
        var idToToken: [Int32: [UInt32]] = [:]
        idToToken.reserveCapacity(vocabJSON.count)
        for (token, value) in vocabJSON {
            guard let id = value.intValue, id >= 0, id <= Int(Int32.max) else {
                throw TokenizerError.invalidField(file: file, field: "\(field).vocab[\"\(token)\"]", reason: "expected an id")
            }
            let s = scalarValues(token)
            vocab[s] = Int32(id)
            idToToken[Int32(id)] = s
        }
        self.vocab = vocab
        self.idToToken = idToToken
        var charIds: [UInt32: Int32] = [:]
        var asciiIds = [Int32](repeating: -1, count: 128)
        for (s, id) in vocab where s.count == 1 {
            charIds[s[0]] = id
            if s[0] < 128 { asciiIds[Int(s[0])] = id }
        }
        self.charIds = charIds
        self.asciiIds = asciiIds

        guard let mergesJSON = json["merges"]?.arrayValue ?? (json["merges"] == nil ? [] : nil) else {
            throw TokenizerError.invalidField(file: file, field: "\(field).merges", reason: "expected a list")
        }
        var merges: [UInt64: UInt64] = [:]
        merges.reserveCapacity(mergesJSON.count)
        for (rank, m) in mergesJSON.enumerated() {
            let a: [UInt32], b: [UInt32]
            if let str = m.stringValue {
                let s = scalarValues(str)
                guard let sp = s.firstIndex(of: 0x20) else {
                    throw TokenizerError.invalidField(file: file, field: "\(field).merges[\(rank)]", reason: "expected \"a b\"")
                }
                a = Array(s[..<sp]); b = Array(s[(sp + 1)...])
            } else if let pair = m.arrayValue, pair.count == 2, let x = pair[0].stringValue, let y = pair[1].stringValue {
                a = scalarValues(x); b = scalarValues(y)
            } else {
                throw TokenizerError.invalidField(file: file, field: "\(field).merges[\(rank)]", reason: "expected \"a b\" or [\"a\", \"b\"]")
            }
            guard let ia = vocab[a], let ib = vocab[b], let inew = vocab[a + b] else {
                throw TokenizerError.invalidField(file: file, field: "\(field).merges[\(rank)]",
                                                  reason: "a token of the merge is not in the vocab")
            }
            merges[UInt64(UInt32(ia)) << 32 | UInt64(UInt32(ib))] = UInt64(rank) << 32 | UInt64(UInt32(inew))
        }
        self.merges = merges

        if json["byte_fallback"]?.boolValue == true {
            var ids = [Int32](repeating: -1, count: 256)
            for b in 0..<256 {
                let name = String(format: "<0x%02X>", b)
                if let id = vocab[scalarValues(name)] { ids[b] = id }
            }
            byteFallbackIds = ids
        } else {
            byteFallbackIds = nil
        }
        if let unk = json["unk_token"]?.stringValue {
            guard let id = vocab[scalarValues(unk)] else {
                throw TokenizerError.invalidField(file: file, field: "\(field).unk_token", reason: "\"\(unk)\" is not in the vocab")
            }
            unkId = id
        } else {
            unkId = nil
        }
        fuseUnk = json["fuse_unk"]?.boolValue ?? false
        ignoreMerges = json["ignore_merges"]?.boolValue ?? false
    }

    func tokenId(_ token: [UInt32]) -> Int32? { vocab[token] }

    /// Token ids of one pre-tokenized word.
    func tokenize(_ word: [UInt32], into out: inout [Int32]) {
        if word.isEmpty { return }
        let cacheable = word.count <= BPEModel.cacheMaxWordLength
        if cacheable {
            cacheLock.lock()
            let hit = cache[word]
            cacheLock.unlock()
            if let hit { out.append(contentsOf: hit); return }
        }
        var ids: [Int32]
        if ignoreMerges, let id = vocab[word] {
            ids = [id]
        } else {
            ids = mergeWord(word)
        }
        out.append(contentsOf: ids)
        if cacheable {
            cacheLock.lock()
            if cache.count >= BPEModel.cacheCapacity { cache.removeAll(keepingCapacity: true) }
            cache[word] = ids
            cacheLock.unlock()
        }
    }

    /// `BPE::merge_word`: initial symbols (one per char, byte fallback, unk) then `merge_all`.
    func mergeWord(_ word: [UInt32]) -> [Int32] {
        var symbols: [Int32] = []
        symbols.reserveCapacity(word.count)
        var pendingUnk = false
        for c in word {
            let id: Int32? = c < 128 ? (asciiIds[Int(c)] >= 0 ? asciiIds[Int(c)] : nil) : charIds[c]
            if let id {
                if pendingUnk { symbols.append(unkId!); pendingUnk = false }
                symbols.append(id)
                continue
            }
            if let fallback = byteFallbackIds {
                var bytes: [UInt8] = []
                utf8Bytes(CollectionOfOne(c), into: &bytes)
                if bytes.allSatisfy({ fallback[Int($0)] >= 0 }) {
                    for b in bytes { symbols.append(fallback[Int(b)]) }
                    continue
                }
            }
            guard let unk = unkId else { continue }  // no unk token: the char is dropped, as in `tokenizers`
            if pendingUnk {
                if !fuseUnk { symbols.append(unk) }
            } else {
                pendingUnk = true
            }
        }
        if pendingUnk { symbols.append(unkId!) }
        if symbols.count < 2 || merges.isEmpty { return symbols }
        return mergeAll(symbols)
    }

    private struct QueueEntry {
        var key: UInt64  // rank << 32 | pos: the queue pops the smallest
        var newId: Int32
    }

    private func mergeAll(_ initial: [Int32]) -> [Int32] {
        let n = initial.count
        var c = initial
        var prev = [Int32](repeating: -1, count: n)
        var next = [Int32](repeating: -1, count: n)
        var alive = [Bool](repeating: true, count: n)
        for i in 0..<n {
            prev[i] = Int32(i - 1)
            next[i] = i + 1 < n ? Int32(i + 1) : -1
        }
        var heap: [QueueEntry] = []
        heap.reserveCapacity(n)

        func push(_ e: QueueEntry) {
            heap.append(e)
            var i = heap.count - 1
            while i > 0 {
                let p = (i - 1) >> 1
                if heap[p].key <= heap[i].key { break }
                heap.swapAt(p, i)
                i = p
            }
        }
        func pop() -> QueueEntry? {
            guard let last = heap.popLast() else { return nil }
            if heap.isEmpty { return last }
            let top = heap[0]
            heap[0] = last
            var i = 0
            let count = heap.count
            while true {
                let l = 2 * i + 1
                if l >= count { break }
                var m = l
                if l + 1 < count && heap[l + 1].key < heap[l].key { m = l + 1 }
                if heap[i].key <= heap[m].key { break }
                heap.swapAt(i, m)
                i = m
            }
            return top
        }
        @inline(__always) func lookup(_ a: Int32, _ b: Int32) -> UInt64? {
            merges[UInt64(UInt32(a)) << 32 | UInt64(UInt32(b))]
        }

        for i in 0..<(n - 1) {
            if let m = lookup(c[i], c[i + 1]) {
                push(QueueEntry(key: (m >> 32) << 32 | UInt64(i), newId: Int32(truncatingIfNeeded: m & 0xFFFF_FFFF)))
            }
        }
        while let top = pop() {
            let pos = Int(top.key & 0xFFFF_FFFF)
            if !alive[pos] { continue }
            let nx = next[pos]
            if nx < 0 { continue }
            let right = Int(nx)
            // skip expired entries: the pair at pos must still merge into the same token
            guard let m = lookup(c[pos], c[right]), Int32(truncatingIfNeeded: m & 0xFFFF_FFFF) == top.newId else { continue }
            c[pos] = top.newId
            alive[right] = false
            let rn = next[right]
            next[pos] = rn
            if rn >= 0 { prev[Int(rn)] = Int32(pos) }
            let pv = prev[pos]
            if pv >= 0, let m2 = lookup(c[Int(pv)], c[pos]) {
                push(QueueEntry(key: (m2 >> 32) << 32 | UInt64(pv), newId: Int32(truncatingIfNeeded: m2 & 0xFFFF_FFFF)))
            }
            if rn >= 0, let m3 = lookup(c[pos], c[Int(rn)]) {
                push(QueueEntry(key: (m3 >> 32) << 32 | UInt64(pos), newId: Int32(truncatingIfNeeded: m3 & 0xFFFF_FFFF)))
            }
        }
        var out: [Int32] = []
        out.reserveCapacity(n)
        var i = 0
        while i >= 0 && i < n {
            out.append(c[i])
            let nx = next[i]
            i = nx < 0 ? n : Int(nx)
        }
        return out
    }
}
