import Foundation
import Testing

@testable import WSurgery

/// The hostile pickles of issue 24: each is decided within the interpreter's budget, none recurses.
@Suite("pickle interpreter: bounded time and memory")
struct PickleBudgetTests {
    func load(_ pickle: [UInt8], limits: PickleMachine.Limits = .init()) throws -> (PickleValue, PickleMachine) {
        var machine = PickleMachine()
        machine.limits = limits
        var input = PickleBytes(pickle)
        let value = try machine.load(&input)
        return (value, machine)
    }

    func refusal(_ pickle: [UInt8], limits: PickleMachine.Limits = .init()) -> String? {
        do {
            _ = try load(pickle, limits: limits)
            return nil
        } catch {
            return "\(error)"
        }
    }

    static func op(_ c: Unicode.Scalar) -> UInt8 { UInt8(ascii: c) }

    @Test("a tuple nested a million deep is built, refused when walked, and freed without recursion")
    func deepTuple() throws {
        let depth = 1_000_000
        let pickle = [Self.op(")")] + [UInt8](repeating: 0x85, count: depth) + [Self.op(".")]
        var (value, _) = try load(pickle)
        #expect(throws: PickleError.self) { try value.walk { _ in true } }
        value = .none  // frees the million levels: a recursion per level would overflow the stack here
        #expect(value.int == nil)
    }

    @Test("a deep value left on the stack before a bad opcode is freed")
    func deepThenBadOpcode() {
        let pickle = [Self.op(")")] + [UInt8](repeating: 0x85, count: 500_000) + [0xFF]
        #expect(refusal(pickle)?.contains("unknown or unsupported opcode") == true)
    }

    @Test("deep dictionaries and objects are freed without recursion")
    func deepDictsAndObjects() {
        // } (key N) nested: { 'a': { 'a': ... } } via MARK-less SETITEM chains, then a bad opcode.
        var pickle: [UInt8] = []
        for _ in 0..<300_000 { pickle += [Self.op("}"), 0x8C, 1, Self.op("a")] }
        pickle += [Self.op("N")]
        for _ in 0..<300_000 { pickle += [Self.op("s")] }
        // An inert object holding it as its argument.
        pickle += [Self.op("c")] + Array("x\ny\n".utf8) + [Self.op("("), Self.op("N"), Self.op("t"), Self.op("R"), 0xFF]
        #expect(refusal(pickle) != nil)
    }

    @Test("a DAG of 2^100 leaves in 203 bytes costs its size, not its expansion")
    func dag() throws {
        var pickle = [Self.op("N")]
        for _ in 0..<100 { pickle += [Self.op("2"), 0x86] }
        pickle.append(Self.op("."))
        let (value, _) = try load(pickle)
        var visits = 0
        try value.walk { _ in
            visits += 1
            return true
        }
        #expect(visits <= 201)
        let reached = try PickleValue.reach(from: [value, .int(1)]) { if case .none = $0 { return true } else { return false } }
        #expect(reached == [true, false])
    }

    @Test("reachability is carried through shared values and cycles")
    func reachShared() throws {
        // A list L memoised, holding None; two tuples (L,) and (L,); a cycle L -> L.
        // ] q0 N a h0 h0 a  (L holds None and itself)  h0 \x85 h0 \x85 \x86 .
        let pickle: [UInt8] = [
            Self.op("]"), Self.op("q"), 0, Self.op("N"), Self.op("a"), Self.op("h"), 0, Self.op("h"), 0, Self.op("a"), Self.op("0"),
            Self.op("h"), 0, 0x85, Self.op("h"), 0, 0x85, 0x86, Self.op("."),
        ]
        let (value, _) = try load(pickle)
        let roots = try #require(value.elements)
        let found = try PickleValue.reach(from: roots + [.tuple(of: [.int(3)])]) { if case .none = $0 { return true } else { return false } }
        #expect(found == [true, true, false])
        if case .tuple(let t) = roots[0], case .list(let list) = t.items[0] { list.items = [] }  // break the cycle
    }

    @Test("MARK counts against the stack limit")
    func marks() {
        var limits = PickleMachine.Limits()
        limits.stack = 1000
        #expect(refusal([UInt8](repeating: Self.op("("), count: 2000) + [Self.op(".")], limits: limits)?.contains("stack") == true)
    }

    @Test("a MEMOIZE flood stops at the memo limit")
    func memoFlood() {
        var limits = PickleMachine.Limits()
        limits.memo = 100_000
        let pickle = [Self.op("N")] + [UInt8](repeating: 0x94, count: 200_000) + [Self.op(".")]
        #expect(refusal(pickle, limits: limits)?.contains("memo") == true)
        // Under the limit it is a valid pickle.
        #expect(refusal([Self.op("N")] + [UInt8](repeating: 0x94, count: 50_000) + [Self.op(".")], limits: limits) == nil)
    }

    @Test("rebuilding a shared value over and over runs out of the budget, linear in the size")
    func quadraticRebuild() {
        // A list of 20,000 pairs, memoised, then given 20,000 times to OrderedDict: 4e8 copies from 100 KB.
        var pickle: [UInt8] = [Self.op("]"), Self.op("q"), 0, Self.op("(")]
        for _ in 0..<20_000 { pickle += [Self.op("N"), Self.op("N"), 0x86] }
        pickle += [Self.op("e"), Self.op("0")]
        for _ in 0..<20_000 {
            pickle += [Self.op("c")] + Array("collections\nOrderedDict\n".utf8) + [Self.op("h"), 0, 0x85, Self.op("R"), Self.op("0")]
        }
        pickle += [Self.op("N"), Self.op(".")]
        var machine = PickleMachine()
        machine.interpret = TorchCheckpointReader.interpret
        var input = PickleBytes(pickle)
        #expect(throws: PickleError.self) { _ = try machine.load(&input) }
    }

    @Test("100,000 distinct unknown globals are listed once each, in order")
    func manyGlobals() throws {
        var pickle: [UInt8] = []
        for i in 0..<100_000 { pickle += [Self.op("c")] + Array("mod\nname\(i)\n".utf8) + [Self.op(")"), Self.op("R"), Self.op("0")] }
        for i in 0..<10 { pickle += [Self.op("c")] + Array("mod\nname\(i)\n".utf8) + [Self.op(")"), Self.op("R"), Self.op("0")] }
        pickle += [Self.op("N"), Self.op(".")]
        let (_, machine) = try load(pickle)
        #expect(machine.unknownGlobals.count == 100_000)
        #expect(machine.unknownGlobals.first?.description == "mod.name0")
    }

    @Test("a rebuild nested in rebuilds is refused after a few levels")
    func nestedRebuild() {
        let rebuild = PickleGlobal(module: "torch._tensor", name: "_rebuild_from_type_v2")
        var args: [PickleValue] = [.global(rebuild), .none, .tuple(of: []), .none]
        for _ in 0..<50_000 { args = [.global(rebuild), .none, .tuple(of: args), .none] }
        #expect(throws: PickleError.self) { _ = try TorchCheckpointReader.interpret(rebuild, args) }
    }
}

extension PickleBudgetTests {
    @Test("a value takes at most 24 bytes on the stack and in the memo")
    func valueSize() {
        #expect(MemoryLayout<PickleValue>.stride <= 24)
    }
}
