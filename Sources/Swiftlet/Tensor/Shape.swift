/// The dimensions of a tensor, outermost first (row-major).
public struct Shape: Equatable, Hashable, Sendable, CustomStringConvertible,
    ExpressibleByArrayLiteral
{
    public var dims: [Int]

    public init(_ dims: [Int]) {
        precondition(dims.allSatisfy { $0 >= 0 }, "negative dimension in \(dims)")
        self.dims = dims
    }
    public init(arrayLiteral dims: Int...) { self.init(dims) }

    public var rank: Int { dims.count }
    public var count: Int { dims.reduce(1, *) }
    public subscript(i: Int) -> Int { dims[i < 0 ? dims.count + i : i] }
    public var description: String { "[" + dims.map(String.init).joined(separator: ", ") + "]" }
}
