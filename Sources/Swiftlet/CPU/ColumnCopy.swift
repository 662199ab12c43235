/// A block of columns copied between row-major tensors (Backend.copyColumns): one memcpy per row,
/// any dtype.
enum ColumnCopy {
    /// Checks the block fits both tensors and returns (rows, source row bytes, destination row bytes).
    static func validated(_ source: Tensor, sourceColumn: Int, _ destination: Tensor, destinationColumn: Int,
                          width: Int) -> (rows: Int, sourceColumns: Int, destinationColumns: Int) {
        precondition(source.shape.rank == 2 && destination.shape.rank == 2 && source.dtype == destination.dtype
                     && source.shape[0] == destination.shape[0],
                     "copyColumns from \(source) into \(destination)")
        precondition(width >= 0 && sourceColumn >= 0 && destinationColumn >= 0
                     && sourceColumn + width <= source.shape[1] && destinationColumn + width <= destination.shape[1],
                     "copyColumns: columns \(sourceColumn)..<\(sourceColumn + width) of \(source.shape) into "
                     + "\(destinationColumn)..<\(destinationColumn + width) of \(destination.shape)")
        return (source.shape[0], source.shape[1], destination.shape[1])
    }
}

extension CPUBackend {
    public func copyColumns(_ source: Tensor, sourceColumn: Int, into destination: Tensor, destinationColumn: Int, width: Int) {
        let (rows, sourceColumns, destinationColumns) = ColumnCopy.validated(
            source, sourceColumn: sourceColumn, destination, destinationColumn: destinationColumn, width: width)
        let size = source.dtype.size
        for r in 0..<rows {
            (destination.address + (r * destinationColumns + destinationColumn) * size)
                .copyMemory(from: source.address + (r * sourceColumns + sourceColumn) * size, byteCount: width * size)
        }
    }
}
