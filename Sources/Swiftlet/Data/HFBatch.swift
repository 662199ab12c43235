import Foundation

extension Batch {
    /// A batch exactly as transformers sees `model(input_ids, labels, attention_mask, position_ids)`:
    /// labels shifted across the whole row, positions from position_ids (else column indices),
    /// padding where attention_mask is 0, and a new packed sequence wherever a position is 0.
    /// `json` holds 2-D lists under those keys (attention_mask and position_ids may be absent).
    public init(huggingFace json: [String: Any], source: String) throws {
        func rows(_ key: String) -> [[Int32]]? {
            (json[key] as? [[NSNumber]])?.map { $0.map(\.int32Value) }
        }
        guard let ids = rows("input_ids"), let first = ids.first else {
            throw DataError(file: source, line: nil, field: "input_ids", problem: "is missing or not a list of lists")
        }
        let labels = rows("labels") ?? ids
        let mask = rows("attention_mask"), positionIds = rows("position_ids")
        let columns = first.count
        for (key, value) in [("input_ids", ids), ("labels", labels), ("attention_mask", mask ?? ids), ("position_ids", positionIds ?? ids)]
        where value.count != ids.count || value.contains(where: { $0.count != columns }) {
            throw DataError(file: source, line: nil, field: key, problem: "must be \(ids.count) rows of \(columns)")
        }
        var tokens: [Int32] = [], targets: [Int32] = [], positions: [Int32] = [], sequences: [Int32] = []
        for r in ids.indices {
            var sequence: Int32 = -1
            for t in 0..<columns {
                tokens.append(ids[r][t])
                let position = positionIds?[r][t] ?? Int32(t)
                positions.append(position)
                if position == 0 { sequence += 1 }
                sequences.append(mask.map { $0[r][t] == 0 } == true ? -1 : Swift.max(sequence, 0))
                targets.append(t + 1 < columns ? labels[r][t + 1] : Batch.ignoreIndex)
            }
        }
        self.init(rows: ids.count, columns: columns, tokens: tokens, targets: targets,
                  positions: positions, sequenceIds: sequences)
    }

    /// Reads a `batch.json` of that form.
    public init(huggingFaceFile url: URL) throws {
        guard let json = (try? JSONSerialization.jsonObject(with: Data(contentsOf: url))) as? [String: Any] else {
            throw DataError(file: url.path, line: nil, field: nil, problem: "is not a JSON object")
        }
        try self.init(huggingFace: json, source: url.path)
    }
}
