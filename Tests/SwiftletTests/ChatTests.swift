import Foundation
import XCTest
@testable import Swiftlet

/// Multi-turn chat on the demo model: the history is rendered with the template each turn, the
/// cache is reused where the rendering is unchanged, and every reply equals a fresh generation
/// from the full rendered conversation (so reusing the cache changed nothing). Then the same
/// two turns through `swiftlet chat` with stdin piped.
final class ChatTests: XCTestCase {
    static let turns = ["Count by 3 from 14.", "Count by 2 from 5."]

    func demoFolder() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("swiftlet-chat-\(UUID().uuidString)")
        try DemoTask.write(to: directory)
        addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
        return directory.appendingPathComponent("model")
    }

    /// The replies of the two turns, checked against fresh generations on the way.
    func libraryReplies(_ folder: URL, maxNewTokens: Int) throws -> [String] {
        let model = try LlamaModel.load(directory: folder, on: CPUBackend())
        let tokenizer = try Tokenizer(directory: folder)
        let template = try tokenizer.chatTemplate(folder: folder.path)
        let generator = Generator(model: model, eosTokenIds: Generator.eosTokenIds(modelDirectory: folder))
        let session = try ChatSession(generator: generator, tokenizer: tokenizer, template: template, capacity: 256)
        var history: [ChatMessage] = []
        var replies: [String] = []
        for (n, user) in Self.turns.enumerated() {
            var streamed = ""
            let turn = try session.send(user, maxNewTokens: maxNewTokens, onText: { streamed += $0 })
            history.append(.user(user))
            let rendered = try tokenizer.encodeChatPrompt(history, template: template)
            XCTAssertEqual(turn.promptTokens, rendered, "turn \(n): the prompt is the whole conversation rendered")
            let fresh = try generator.generate(prompts: [rendered], maxNewTokens: maxNewTokens)
            XCTAssertEqual(turn.result.tokens, fresh.tokens, "turn \(n): cached and fresh generation agree")
            XCTAssertEqual(streamed, turn.reply, "turn \(n): the streamed text is the reply")
            if n == 0 {
                XCTAssertEqual(turn.reusedTokens, 0)
            } else {
                // At least the first turn's user message comes from the cache.
                let firstPrompt = try tokenizer.encodeChatPrompt([.user(Self.turns[0])], template: template)
                XCTAssertGreaterThanOrEqual(turn.reusedTokens, firstPrompt.count - 1, "turn \(n)")
                XCTAssertEqual(Array(session.cachedTokens.prefix(rendered.count)), rendered)
            }
            history.append(.assistant(turn.reply))
            replies.append(turn.reply)
        }
        XCTAssertEqual(session.messages.map(\.content), [Self.turns[0], replies[0], Self.turns[1], replies[1]])
        session.reset()
        let again = try session.send(Self.turns[0], maxNewTokens: maxNewTokens)
        XCTAssertEqual(again.reusedTokens, 0)
        XCTAssertEqual(again.reply, replies[0], "after /reset the conversation starts over")
        return replies
    }

    func testChatSessionReusesTheCacheAndMatchesFreshGeneration() throws {
        _ = try libraryReplies(try demoFolder(), maxNewTokens: 12)
    }

    func testChatCommandThroughAPipe() throws {
        let binary = try swiftletBinary
        let folder = try demoFolder()
        let expected = try libraryReplies(folder, maxNewTokens: 12)
        let process = Process()
        process.executableURL = binary
        process.arguments = ["chat", "--model", folder.path, "--device", "cpu", "--max-new-tokens", "12"]
        let input = Pipe(), output = Pipe(), errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        input.fileHandleForWriting.write(Data((Self.turns.joined(separator: "\n") + "\n/unknown\n/exit\n").utf8))
        try input.fileHandleForWriting.close()
        let stdout = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, stderr)
        XCTAssertEqual(stdout, expected.map { $0 + "\n" }.joined(), stderr)
        XCTAssertTrue(stderr.contains("unknown command /unknown"), stderr)
        XCTAssertEqual(stderr.components(separatedBy: "prompt tokens from the cache").count - 1, 2, stderr)
    }
}

extension ChatTests {
    func testEndOfTurnTokenOfTheTemplate() throws {
        let tokenizer = try Tokenizer(directory: try demoFolder())
        let end = try ChatSession.endOfTurnToken(template: try ChatTemplate(source: DemoTask.chatTemplate), tokenizer: tokenizer)
        XCTAssertEqual(end, 259)  // <|im_end|>
        XCTAssertEqual(tokenizer.decode([259]), "<|im_end|>")
    }
}

extension ChatTests {
    /// Streaming on the demo's byte-level tokenizer: a character split over two tokens waits for its
    /// second byte, and the text stops before a stop string.
    func testTextStreamWaitsForWholeCharactersAndCutsAtStopStrings() throws {
        let tokenizer = try Tokenizer(directory: try demoFolder())
        let ids = tokenizer.encode("né END x", addSpecialTokens: false)  // é is two bytes, so two tokens
        XCTAssertEqual(ids.count, 9)
        var stream = TextStream(tokenizer: tokenizer, stopStrings: [" END"])
        XCTAssertEqual(stream.advance(Array(ids.prefix(1)), final: false), "n")
        XCTAssertEqual(stream.advance(Array(ids.prefix(2)), final: false), "", "half of é is not printed")
        XCTAssertEqual(stream.advance(Array(ids.prefix(3)), final: false), "é")
        XCTAssertFalse(stream.reachedStop(Array(ids.prefix(5))))
        XCTAssertTrue(stream.reachedStop(Array(ids.prefix(7))))
        XCTAssertEqual(stream.advance(ids, final: true), "")
        XCTAssertEqual(stream.printed, "né")
        XCTAssertEqual(stream.text(of: ids), "né")
    }
}
