import Testing

@testable import WSurgery

@Suite("JSON values keep order and number text")
struct JSONTests {
    @Test func keepsKeyOrderAndNumberText() throws {
        let text = #"{"b": 1.50, "a": [1e3, -0, true, null], "c": {"z": "\u00e9"}}"#
        let value = try JSONParser.parse(text)
        #expect(value.objectValue?.map(\.0) == ["b", "a", "c"])
        #expect(value["b"] == .number("1.50"))
        #expect(value.serialized(.python) == #"{"b": 1.50, "a": [1e3, -0, true, null], "c": {"z": "\u00e9"}}"#)
        #expect(value.serialized(.compact) == #"{"b":1.50,"a":[1e3,-0,true,null],"c":{"z":"é"}}"#)
    }

    @Test func rejectsDuplicateKeysOnlyWhenAsked() throws {
        let text = #"{"x": 1, "x": 2}"#
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text, rejectDuplicateKeys: true) }
        #expect(try JSONParser.parse(text).objectValue?.count == 2)
    }

    @Test(arguments: ["{", "[1,]", "{\"a\" 1}", "01", "\"unterminated", "{} x", "tru"])
    func rejectsMalformedDocuments(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
    }

    @Test func configDocumentKeepsOriginalTextUntilEdited() throws {
        var doc = try ConfigDocument(text: "{\"a\":   1}")
        #expect(doc.text(style: .python) == "{\"a\":   1}")
        doc.json.set("a", .int(2))
        #expect(doc.text(style: .python) == "{\"a\": 2}")
    }
}
