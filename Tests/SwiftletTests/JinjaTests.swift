import Foundation
import XCTest
@testable import Swiftlet

/// Unit tests of the Jinja subset. Expected strings were checked against jinja2 3.1.6 with
/// transformers' environment (trim_blocks, lstrip_blocks).
final class JinjaTests: XCTestCase {
    private func r(_ src: String, _ vars: [String: JinjaValue] = [:], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        try ChatTemplate(source: src).render(messageValues: [], extra: vars)
    }

    private func assertError(_ src: String, _ vars: [String: JinjaValue] = [:], kind: ChatTemplateError.Kind,
                             contains: [String], file: StaticString = #filePath, line: UInt = #line) {
        do {
            let out = try ChatTemplate(source: src).render(messageValues: [], extra: vars)
            XCTFail("expected an error, rendered \(out.debugDescription)", file: file, line: line)
        } catch let e as ChatTemplateError {
            XCTAssertEqual(e.kind, kind, "\(e)", file: file, line: line)
            for s in contains { XCTAssertTrue("\(e)".contains(s), "'\(e)' lacks '\(s)'", file: file, line: line) }
        } catch {
            XCTFail("wrong error \(error)", file: file, line: line)
        }
    }

    func testWhitespaceControl() throws {
        XCTAssertEqual(try r("a  {{- 'b' -}}  c"), "abc")
        XCTAssertEqual(try r("a  {%- if true -%}  b  {%- endif -%}  c"), "abc")
        // trim_blocks: newline after a block tag goes; lstrip_blocks: indentation before it goes.
        XCTAssertEqual(try r("{% if true %}\n    x\n    {% endif %}\ny"), "    x\ny")
        XCTAssertEqual(try r("{{ 'a' }}\n{{ 'b' }}\n"), "a\nb")  // one trailing newline dropped
        XCTAssertEqual(try r("  {# c #}\nx"), "x")
        XCTAssertEqual(try r("a {%+ if true %}b{% endif %}"), "a b")
        XCTAssertEqual(try r("x {% if true %}y{% endif %}"), "x y")  // not at line start: kept
        XCTAssertEqual(try r("{% raw %}{{ x }}{% endraw %}"), "{{ x }}")
        XCTAssertEqual(try r("a\r\nb"), "a\nb")
    }

    func testLoops() throws {
        XCTAssertEqual(try r("{% for x in [1,2,3] %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}"),
                       "10TrueFalse3;21FalseFalse3;32FalseTrue3;")
        XCTAssertEqual(try r("{% for x in [1,2,3] %}{{ loop.previtem }}|{{ loop.nextitem }};{% endfor %}"), "|2;1|3;2|;")
        XCTAssertEqual(try r("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty")
        XCTAssertEqual(try r("{% for x in [1,2,3,4] if x is even %}{{ x }}/{{ loop.length }} {% endfor %}"), "2/2 4/2 ")
        XCTAssertEqual(try r("{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %}", ["d": ["b": 1, "a": 2]]), "b=1,a=2,")
        XCTAssertEqual(try r("{% for k, v in d | items %}{{ k }}{{ v }}{% endfor %}", ["d": ["x": "y"]]), "xy")
        XCTAssertEqual(try r("{% for x in range(5) %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 3 %}{% break %}{% endif %}{{ x }}{% endfor %}"), "02")
        XCTAssertEqual(try r("{% for x in 'ab' %}{{ x }}-{% endfor %}"), "a-b-")
        XCTAssertEqual(try r("{% for x in [1,2] %}{{ loop.cycle('o','e') }}{% endfor %}"), "oe")
        // A set inside a loop doesn't leak out or across iterations.
        XCTAssertEqual(try r("{% set x = 1 %}{% for i in [1,2] %}{{ x }}{% set x = x + 10 %}{{ x }};{% endfor %}{{ x }}"), "111;111;1")
    }

    func testNamespaceAndSet() throws {
        XCTAssertEqual(try r("{% set ns = namespace(n=0, s='') %}{% for i in [1,2,3] %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}"), "6")
        XCTAssertEqual(try r("{% set a, b = [1, 2] %}{{ b }}{{ a }}"), "21")
        XCTAssertEqual(try r("{% set x %}in{{ 1 }}{% endset %}[{{ x }}]"), "[in1]")
        XCTAssertEqual(try r("{% if true %}{% set y = 5 %}{% endif %}{{ y }}"), "5")
        assertError("{% set x = 1 %}{% set x.a = 2 %}", kind: .runtime, contains: ["namespace", "1:"])
    }

    func testExpressions() throws {
        XCTAssertEqual(try r("{{ 1 + 2 * 3 }} {{ 10 / 4 }} {{ 7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 'a' ~ 1 ~ none }}"), "7 2.5 3 2 1024 a1None")
        XCTAssertEqual(try r("{{ none }} {{ [1, 'a', none, true, 1.5] }} {{ {'a': 1} }} {{ 3.0 }} {{ 1e15 }} {{ 1e16 }} {{ 1e-5 }}"),
                       "None [1, 'a', None, True, 1.5] {'a': 1} 3.0 1000000000000000.0 1e+16 1e-05")
        XCTAssertEqual(try r(#"{{ "a\tb\n\\" }}|{{ 'it\'s' }}|{{ "x" "y" }}"#), "a\tb\n\\|it's|xy")
        XCTAssertEqual(try r("{{ 'yes' if x else 'no' }} {{ 'y' if not x }}|{{ x or 'd' }} {{ 0 and 1 }}"), "no y|d 0")
        XCTAssertEqual(try r("{{ 'b' in 'abc' }} {{ 2 in [1,2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1] }} {{ 1 < 2 < 3 }} {{ 1 == 1.0 }}"),
                       "True True True True True True")
        XCTAssertEqual(try r("{{ m['role'] }} {{ m.role }} {{ m.missing }}|{{ l[1:] }} {{ l[::-1] }} {{ l[-1] }} {{ 'hello'[1:3] }} {{ l[:-1] }}",
                             ["m": ["role": "user"], "l": [1, 2, 3]]), "user user |[2, 3] [3, 2, 1] 3 el [1, 2]")
        XCTAssertEqual(try r("{{ d.get('a') }} {{ d.get('z', 9) }} {{ d.get('z') }} {{ d.keys() | list }} {{ d.values() | list }}",
                             ["d": ["a": 1]]), "1 9 None ['a'] [1]")
    }

    func testTests() throws {
        XCTAssertEqual(try r("{{ x is defined }} {{ y is defined }} {{ y is undefined }} {{ none is none }} {{ x is not none }}", ["x": 1]),
                       "True False True True True")
        XCTAssertEqual(try r("{{ 'a' is string }} {{ {} is mapping }} {{ [] is iterable }} {{ 'a' is iterable }} {{ 1 is iterable }}"),
                       "True True True True False")
        XCTAssertEqual(try r("{{ 1 is number }} {{ 1.5 is number }} {{ 'a' is number }} {{ 3 is odd }} {{ 4 is divisibleby(2) }} {{ 'a' is equalto 'a' }}"),
                       "True True False True True True")
    }

    func testFilters() throws {
        XCTAssertEqual(try r("{{ '  a b  ' | trim }}|{{ 'abc' | length }}|{{ 'Ab' | upper }}{{ 'Ab' | lower }}|{{ 'hello world-foo(bar' | title }}|{{ 'hELLO' | capitalize }}"),
                       "a b|3|ABab|Hello World-Foo(Bar|Hello")
        XCTAssertEqual(try r("{{ [1,2] | join(', ') }}|{{ 'aXbX' | replace('X', '-') }}|{{ x | default('d') }}|{{ '' | default('d', true) }}|{{ [3,1,2] | first }}{{ [3,1,2] | last }}"),
                       "1, 2|a-b-|d|d|32")
        XCTAssertEqual(try r("{{ 5 | string }}{{ '42' | int + 1 }}{{ 'x' | int }}|{{ 'ab' | list }}|{{ [3,1,2] | sort }}|{{ [1,1,2] | unique | list }}|{{ [1,2] | reverse | list }}"),
                       "5430|['a', 'b']|[1, 2, 3]|[1, 2]|[2, 1]")
        XCTAssertEqual(try r("{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }}|{{ ['a','code','b'] | reject('equalto', 'code') | join(',') }}",
                             ["ms": [["role": "user", "content": "u1"], ["role": "assistant", "content": "a"], ["role": "user", "content": "u2"]]]),
                       "u1,u2|a,b")
        XCTAssertEqual(try r("{{ 'ab\ncd' | indent(2) }}|{{ 'ab\ncd' | indent(2, true) }}"), "ab\n  cd|  ab\n  cd")
    }

    func testToJSONMatchesPythonJSONDumps() throws {
        let v: JinjaValue = ["b": [1, 2.5, .none, true], "a": "é\"\n<>", "c": [:], "d": []]
        XCTAssertEqual(try r("{{ v | tojson }}", ["v": v]), #"{"b": [1, 2.5, null, true], "a": "é\"\n<>", "c": {}, "d": []}"#)
        XCTAssertEqual(try r("{{ v | tojson(indent=2) }}", ["v": ["a": [1, ["b": .none]]]]), "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ]\n}")
        XCTAssertEqual(try r("{{ v | tojson(separators=(',', ':'), sort_keys=true) }}", ["v": ["b": 1, "a": 2]]), #"{"a":2,"b":1}"#)
        XCTAssertEqual(try r("{{ 'é' | tojson(ensure_ascii=true) }}"), #""\u00e9""#)
    }

    func testStringMethods() throws {
        XCTAssertEqual(try r("{{ '  x  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '  x'.lstrip() }}|{{ 'x  '.rstrip() }}|{{ 'a b  c'.split() }}|{{ 'a,b'.split(',') }}"),
                       "x|a|x|x|['a', 'b', 'c']|['a', 'b']")
        XCTAssertEqual(try r("{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith('bc') }}|{{ 'ab'.upper() }}{{ 'AB'.lower() }}|{{ 'aXa'.replace('a', 'b') }}|{{ \"they're bill\".title() }}"),
                       "TrueTrue|ABab|bXb|They'Re Bill")
        XCTAssertEqual(try r("{{ '</think>x'.split('</think>')[-1] }}"), "x")
    }

    func testMacros() throws {
        XCTAssertEqual(try r("{% macro f(a, b=2) %}[{{ a }}{{ b }}]{% endmacro %}{{ f(1) }}{{ f(1, b=3) }}"), "[12][13]")
    }

    func testUndefinedBehavesLikeJinja2DefaultUndefined() throws {
        XCTAssertEqual(try r("[{{ nope }}]{% if nope %}x{% endif %}{% for i in nope %}y{% endfor %}{{ nope | length }}"), "[]0")
        assertError("{{ nope.attr }}", kind: .runtime, contains: ["'nope' is undefined", "1:8"])
        assertError("{{ nope + 'x' }}", kind: .runtime, contains: ["'nope' is undefined"])
        assertError("{{ 'a' + 1 }}", kind: .runtime, contains: ["can only concatenate str"])
        assertError("{{ nope | tojson }}", kind: .runtime, contains: ["not JSON serializable"])
    }

    func testRaiseException() {
        assertError("{{ raise_exception('Bad roles!') }}", kind: .raised, contains: ["Bad roles!", "1:"])
    }

    func testUnsupportedConstructsAreNamedWithPosition() {
        assertError("ok\n  {% include 'other.jinja' %}", kind: .unsupported, contains: ["include", "2:6"])
        assertError("{{ x | frobnicate }}", kind: .unsupported, contains: ["frobnicate", "1:6"])
        assertError("{% if x is prime %}{% endif %}", kind: .unsupported, contains: ["prime"])
        assertError("{% extends 'base' %}", kind: .unsupported, contains: ["extends"])
        assertError("{{ '%s' % x }}", ["x": 1], kind: .unsupported, contains: ["'%'"])
        assertError("{% if x %}", kind: .syntax, contains: ["endif"])
        assertError("{{ x ", kind: .syntax, contains: ["unterminated"])
    }
}
