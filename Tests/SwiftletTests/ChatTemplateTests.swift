import Foundation
import XCTest
@testable import Swiftlet

/// Every case in Fixtures/chat_templates/cases.json was rendered by transformers 5.24's (5.25's for qwen3, phi-3, gemma) own
/// `render_jinja_template` (scripts/make_chat_template_fixtures.py); our rendering must match byte for byte.
final class ChatTemplateTests: XCTestCase {
    struct Fixture {
        var templates: JinjaObject
        var cases: [JinjaValue]
        var now: Date
    }

    static func loadFixture() throws -> Fixture {
        let dir = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let url = dir.appendingPathComponent("chat_templates/cases.json")
        let doc = try JinjaValue.parseJSON(String(decoding: try Data(contentsOf: url), as: UTF8.self))
        guard case .object(let root) = doc, case .object(let templates)? = root["templates"],
              case .array(let cases)? = root["cases"], case .string(let nowText)? = root["now"]
        else { throw ChatTemplateError(.runtime, "bad fixture layout") }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd'T'HH:mm:ss"
        return Fixture(templates: templates, cases: cases, now: try XCTUnwrap(f.date(from: nowText)))
    }

    private func str(_ v: JinjaValue?) -> String? { if case .string(let s)? = v { return s }; return nil }

    func testFixturesMatchTransformers() throws {
        let fx = try Self.loadFixture()
        XCTAssertGreaterThan(fx.cases.count, 250)
        var compiled: [String: ChatTemplate] = [:]
        for (name, t) in fx.templates.pairs {
            guard case .object(let o) = t, let src = str(o["source"]) else { return XCTFail("template \(name)") }
            compiled[name] = try ChatTemplate(source: src)
        }
        var rendered = 0, errors = 0
        for c in fx.cases {
            guard case .object(let o) = c, let tname = str(o["template"]), let cname = str(o["name"]),
                  case .array(let messages)? = o["messages"], case .object(let kwargs)? = o["kwargs"],
                  let template = compiled[tname]
            else { return XCTFail("bad case \(c.pythonRepr.prefix(200))") }
            let label = "\(tname) \(cname)"
            var extra: [String: JinjaValue] = [:]
            var tools: [JinjaValue]? = nil
            for (k, v) in kwargs.pairs {
                if k == "tools", case .array(let t) = v { tools = t } else { extra[k] = v }
            }
            let result = Result {
                try template.render(messageValues: messages, addGenerationPrompt: o["add_generation_prompt"]?.truthy ?? false,
                                    bosToken: str(o["bos_token"]), eosToken: str(o["eos_token"]), tools: tools,
                                    extra: extra, now: fx.now, timeZone: TimeZone(identifier: "UTC")!)
            }
            if let expected = str(o["expected"]) {
                rendered += 1
                switch result {
                case .success(let got):
                    if got != expected {
                        XCTFail("\(label): rendering differs from transformers\n--- expected\n\(expected.debugDescription)\n--- got\n\(got.debugDescription)")
                    }
                case .failure(let e):
                    XCTFail("\(label): unexpected error \(e)")
                }
            } else {
                errors += 1
                let message = try XCTUnwrap(str(o["error"]), label)
                switch result {
                case .success(let got):
                    XCTFail("\(label): expected error \(message.debugDescription), rendered \(got.debugDescription)")
                case .failure(let e as ChatTemplateError):
                    if str(o["error_kind"]) == "TemplateError" {
                        XCTAssertEqual(e.kind, .raised, label)
                        XCTAssertEqual(e.message, message, label)
                        XCTAssertTrue("\(e)".contains(message), label)
                    }
                case .failure(let e):
                    XCTFail("\(label): wrong error type \(e)")
                }
            }
        }
        XCTAssertGreaterThan(rendered, 200)
        XCTAssertGreaterThan(errors, 20)
    }

    func testBuiltInTemplatesAreTheFixtureTexts() throws {
        let fx = try Self.loadFixture()
        let pairs = [("llama-2", "llama-2"), ("llama-3", "llama-3"), ("llama-3.1", "llama-3.1"), ("llama-3.2", "llama-3.2"),
                     ("mistral", "mistral"), ("mistral-v0.2", "mistral-v0.2"), ("mistral-v0.3", "mistral-v0.3"),
                     ("chatml", "chatml"), ("qwen2", "qwen2"), ("qwen2.5", "qwen2.5"), ("yi", "yi"),
                     ("zephyr", "zephyr"), ("tinyllama", "zephyr"), ("alpaca", "alpaca"), ("vicuna", "vicuna"),
                     ("gemma", "gemma"), ("gemma-2", "gemma"), ("gemma-3", "gemma-3"), ("gemma3", "gemma-3")]
        for (builtin, fixture) in pairs {
            guard case .object(let o)? = fx.templates[fixture] else { return XCTFail(fixture) }
            XCTAssertEqual(try ChatTemplate.named(builtin).source, str(o["source"]), builtin)
        }
    }

    func testUnknownNameListsKnownNames() {
        XCTAssertThrowsError(try ChatTemplate.named("gpt-9")) { e in
            let err = e as? ChatTemplateError
            XCTAssertEqual(err?.kind, .unknownTemplate)
            XCTAssertTrue(err?.message.contains("gpt-9") ?? false)
            for n in ["llama-2", "llama-3", "mistral", "chatml", "zephyr", "alpaca", "vicuna"] {
                XCTAssertTrue(err?.message.contains(n) ?? false, n)
            }
        }
    }

    func testChatMessageAPI() throws {
        let t = try ChatTemplate.named("llama-2")
        let out = try t.render(messages: [.system("Sys"), .user(" Hi "), .assistant("Hello"), .user("Bye")],
                               bosToken: "<s>", eosToken: "</s>")
        XCTAssertEqual(out, "<s>[INST] <<SYS>>\nSys\n<</SYS>>\n\n Hi [/INST] Hello </s><s>[INST] Bye [/INST]")
        XCTAssertThrowsError(try t.render(messages: [.user("a"), .user("b")], bosToken: "<s>", eosToken: "</s>")) { e in
            XCTAssertEqual((e as? ChatTemplateError)?.kind, .raised)
            XCTAssertEqual((e as? ChatTemplateError)?.message, "Conversation roles must alternate user/assistant/user/assistant/...")
        }
        let chatml = try ChatTemplate.named("chatml")
        XCTAssertEqual(try chatml.render(messages: [.user("x")], addGenerationPrompt: true),
                       "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n")
        // Tool calls go in `extra`; a nil content drops the key (like transformers).
        let qwen = try ChatTemplate.named("qwen2.5")
        let call: JinjaValue = ["name": "f", "arguments": ["a": 1]]
        let rendered = try qwen.render(messages: [.user("q"), ChatMessage(role: "assistant", content: nil, extra: [("tool_calls", [call])])])
        XCTAssertTrue(rendered.hasSuffix("<|im_start|>assistant\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call><|im_end|>\n"), rendered)
    }

    func testStrftimeNowUsesGivenDate() throws {
        let t = try ChatTemplate.named("llama-3.2")
        let date = Date(timeIntervalSince1970: 1_700_000_000)  // 2023-11-14 22:13:20 UTC
        let out = try t.render(messages: [.user("hi")], bosToken: "<|begin_of_text|>", now: date, timeZone: TimeZone(identifier: "UTC")!)
        XCTAssertTrue(out.contains("Today Date: 14 Nov 2023\n"), out)
    }
}
