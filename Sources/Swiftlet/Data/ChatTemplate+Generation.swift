import Foundation

extension ChatTemplate {
    /// Whether the template marks assistant output with `{% generation %}` (TRL's `has_generation_markers`).
    public var hasGenerationMarkers: Bool {
        source.range(of: #"\{%-?\s*generation\s*-?%\}"#, options: .regularExpression) != nil
    }

    /// Renders like `render(messages:...)` and also returns the spans of `{% generation %}` blocks, in
    /// Unicode scalars (Python string indices), as transformers' `AssistantTracker` records them.
    public func renderTrackingGeneration(messages: [ChatMessage], addGenerationPrompt: Bool = false,
                                         bosToken: String? = nil, eosToken: String? = nil,
                                         extra: [String: JinjaValue] = [:], now: Date = Date(),
                                         timeZone: TimeZone = .current) throws -> (text: String, spans: [Range<Int>]) {
        var vars = ChatTemplate.globals(now: now, timeZone: timeZone)
        if let bosToken { vars["bos_token"] = .string(bosToken) }
        if let eosToken { vars["eos_token"] = .string(eosToken) }
        vars["messages"] = .array(messages.map(\.jinjaValue).map(ChatTemplate.dropNoneKeys))
        vars["tools"] = JinjaValue.none
        vars["documents"] = JinjaValue.none
        vars["add_generation_prompt"] = .bool(addGenerationPrompt)
        for (k, v) in extra { vars[k] = v }
        let interpreter = JinjaInterpreter(globals: vars)
        let text = try interpreter.render(nodes)
        return (text, interpreter.generationSpans.map { $0.start..<max($0.start, $0.end) })
    }
}
