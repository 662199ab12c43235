import Foundation
import Swiftlet

extension ChatTemplate {
    /// `--chat-template` / `--template`: a .jinja file (or any existing file), else a built-in name.
    static func fromArgument(_ argument: String) throws -> ChatTemplate {
        if argument.hasSuffix(".jinja") || FileManager.default.fileExists(atPath: argument) {
            return try ChatTemplate(source: String(contentsOf: URL(fileURLWithPath: argument), encoding: .utf8))
        }
        return try ChatTemplate.named(argument)
    }
}
