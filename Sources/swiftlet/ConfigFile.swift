import ArgumentParser
import Foundation
import Yams

/// `--config train.yaml`: a YAML mapping whose keys are the command's flag names (`max-steps` or
/// `max_steps`), expanded into arguments placed before the command line's own, so flags given on
/// the command line win (the last value of an option counts).
enum ConfigFile {
    static func expand(_ arguments: [String]) throws -> [String] {
        guard let index = arguments.firstIndex(of: "--config") else { return arguments }
        guard index + 1 < arguments.count else { throw ValidationError("--config needs a file") }
        let path = arguments[index + 1]
        var rest = arguments
        rest.removeSubrange(index...(index + 1))
        let text: String
        do { text = try String(contentsOf: URL(fileURLWithPath: path), encoding: .utf8) } catch {
            throw ValidationError("\(path): cannot be read")
        }
        let loaded: Any?
        do { loaded = try Yams.load(yaml: text) } catch { throw ValidationError("\(path): not valid YAML (\(error))") }
        guard let mapping = loaded as? [String: Any] else {
            throw ValidationError("\(path): must be a mapping of flag names to values")
        }
        var expanded: [String] = []
        for key in mapping.keys.sorted() {
            let flag = "--" + key.replacingOccurrences(of: "_", with: "-")
            switch mapping[key] {
            case let value as Bool: if value { expanded.append(flag) }
            case let list as [Any]: expanded += [flag, list.map { "\($0)" }.joined(separator: ",")]
            case let value?: expanded += [flag, "\(value)"]
            case nil: throw ValidationError("\(path): '\(key)' has no value")
            }
        }
        // The subcommand name stays first; the file's flags come before the command line's.
        let command = rest.isEmpty || rest[0].hasPrefix("-") ? [] : [rest.removeFirst()]
        return command + expanded + rest
    }
}
