import Foundation

/// A value built by `PickleMachine`. Pickles describe objects as calls of named functions; this tool
/// never calls anything: a call it understands (an `OrderedDict`, a tensor rebuild, a storage) becomes
/// data, any other one stays an inert `PickleObject` holding the name and its arguments.
indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int64)
    /// An integer past 64 bits, as its little-endian two's-complement bytes.
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    /// A reference to a module-level name (`GLOBAL`), never resolved.
    case global(PickleGlobal)
    /// A call the unpickler does not understand, kept as data.
    case object(PickleObject)
    /// A persistent id turned into a value by the reader (a PyTorch storage).
    case external(any PickleExternal)

    /// The integer, if this is one that fits 64 bits.
    var int: Int64? {
        switch self {
        case .int(let v): return v
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    /// The string, if this is one.
    var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The elements of a tuple or list.
    var elements: [PickleValue]? {
        switch self {
        case .tuple(let items): return items
        case .list(let list): return list.items
        default: return nil
        }
    }
}

/// A value a reader makes from a persistent id (`BINPERSID`).
protocol PickleExternal {}

/// `module.name`, as a pickle names a class or function.
struct PickleGlobal: Hashable, CustomStringConvertible {
    let module: String
    let name: String
    var description: String { module + "." + name }
}

/// A mutable list (pickles append to lists after they are memoised, so lists are shared by reference).
final class PickleList {
    var items: [PickleValue]
    init(_ items: [PickleValue] = []) { self.items = items }
}

/// A mutable dictionary in insertion order (an `OrderedDict` or a `dict`).
final class PickleDict {
    var entries: [(key: PickleValue, value: PickleValue)] = []
    /// The state a `BUILD` gave it (`OrderedDict._metadata` of a state dict).
    var state: PickleValue?
    init() {}
}

/// A call of a global the unpickler does not understand: never made, kept with its arguments.
final class PickleObject {
    let global: PickleGlobal
    var arguments: [PickleValue]
    var state: PickleValue?
    init(global: PickleGlobal, arguments: [PickleValue]) {
        self.global = global
        self.arguments = arguments
    }
}

/// What the machine reads from: bytes in order.
protocol PickleInput {
    /// The next `count` bytes; fewer means the input ended.
    mutating func read(_ count: Int) throws -> [UInt8]
    /// Bytes consumed so far.
    var position: UInt64 { get }
}

/// A pickle held in memory.
struct PickleBytes: PickleInput {
    let bytes: [UInt8]
    var offset = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    mutating func read(_ count: Int) throws -> [UInt8] {
        let end = min(bytes.count, offset + count)
        defer { offset = end }
        return Array(bytes[offset..<end])
    }
    var position: UInt64 { UInt64(offset) }
}

/// A pickle read from a file from `offset` on, a buffer at a time (the legacy `torch.save` format is
/// several pickles followed by the storages).
struct PickleFileInput: PickleInput {
    let file: InputFile
    private(set) var position: UInt64
    private var buffer: [UInt8] = []
    private var bufferStart: UInt64
    init(file: InputFile, offset: UInt64) {
        self.file = file
        self.position = offset
        self.bufferStart = offset
    }
    mutating func read(_ count: Int) throws -> [UInt8] {
        let available = file.size > position ? Int(min(UInt64(count), file.size - position)) : 0
        if position < bufferStart || position + UInt64(available) > bufferStart + UInt64(buffer.count) {
            bufferStart = position
            buffer = try file.read(count: Int(min(UInt64(max(available, 1 << 16)), file.size - position)), at: position)
        }
        let start = Int(position - bufferStart)
        position += UInt64(available)
        return Array(buffer[start..<start + available])
    }
}

/// Why a pickle was refused.
struct PickleError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A pickle interpreter that only builds data. It implements the opcodes of protocols 0 to 5 that
/// build values; `GLOBAL`/`STACK_GLOBAL` give a name that is never imported, and `REDUCE`/`NEWOBJ`/`BUILD`
/// on a name ask `interpret` what the call means as data, else keep it as an inert `PickleObject`.
struct PickleMachine {
    /// Limits past which a pickle is refused: they bound the memory and time a hostile pickle can take.
    struct Limits {
        /// Values on the stack (marks included).
        var stack = 20_000_000
        /// Memo entries.
        var memo = 20_000_000
        /// Bytes of one string or bytes value.
        var valueBytes = 1 << 30
        /// Opcodes executed.
        var operations = 500_000_000
    }

    /// What a call means as data, or nil to keep it as a `PickleObject`.
    var interpret: (PickleGlobal, [PickleValue]) throws -> PickleValue? = { _, _ in nil }
    /// Turns a persistent id into a value (PyTorch storages); nil refuses persistent ids.
    var persistentLoad: ((PickleValue) throws -> PickleValue)?
    var limits = Limits()
    /// The globals named by the pickle that were not understood, in first-use order.
    private(set) var unknownGlobals: [PickleGlobal] = []

    private var stack: [PickleValue?] = []  // nil is a MARK
    private var memo: [Int: PickleValue] = [:]

    /// Runs the pickle at the input's position to its `STOP` and returns the value it leaves.
    mutating func load<Input: PickleInput>(_ input: inout Input) throws -> PickleValue {
        stack = []
        memo = [:]
        var result: PickleValue?
        defer {
            // What is left (everything, after an error) is freed level by level, except what the result
            // holds: the caller frees that (`PickleValue.release`).
            PickleValue.release(stack.compactMap { $0 } + Array(memo.values), keeping: result.map(PickleValue.containers) ?? [])
            stack = []
            memo = [:]
        }
        var operations = 0
        func bytes(_ n: Int) throws -> [UInt8] {
            guard n >= 0, n <= limits.valueBytes else { throw PickleError("a value of \(n) bytes is past the limit") }
            let out = try input.read(n)
            guard out.count == n else { throw PickleError("the pickle ends inside an opcode") }
            return out
        }
        func uint(_ n: Int) throws -> UInt64 {
            try bytes(n).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        }
        func line() throws -> String {
            var out: [UInt8] = []
            while true {
                let b = try bytes(1)[0]
                if b == 0x0A { break }
                out.append(b)
                guard out.count <= 1 << 16 else { throw PickleError("a text argument longer than 64 KiB") }
            }
            return String(decoding: out, as: UTF8.self)
        }
        func utf8(_ b: [UInt8]) throws -> PickleValue {
            guard let s = String(validating: b, as: UTF8.self) else { throw PickleError("a string that is not UTF-8") }
            return .string(s)
        }
        func pop() throws -> PickleValue {
            guard let last = stack.popLast() else { throw PickleError("an opcode pops an empty stack") }
            guard let value = last else { throw PickleError("an opcode pops a mark") }
            return value
        }
        func popMark() throws -> [PickleValue] {
            guard let mark = stack.lastIndex(where: { $0 == nil }) else { throw PickleError("no mark on the stack") }
            let items = stack[(mark + 1)...].map { $0! }
            stack.removeSubrange(mark...)
            return items
        }
        func push(_ value: PickleValue) throws {
            guard stack.count < limits.stack else { throw PickleError("the stack passes \(limits.stack) values") }
            stack.append(value)
        }
        func top() throws -> PickleValue {
            guard let last = stack.last, let value = last else { throw PickleError("an opcode needs a value on the stack") }
            return value
        }
        func put(_ index: Int) throws {
            guard memo.count < limits.memo || memo[index] != nil else { throw PickleError("the memo passes \(limits.memo) entries") }
            memo[index] = try top()
        }
        func get(_ index: Int) throws -> PickleValue {
            guard let value = memo[index] else { throw PickleError("a memo reference to entry \(index), which was never stored") }
            return value
        }
        func setItems(_ items: [PickleValue]) throws {
            guard items.count % 2 == 0 else { throw PickleError("SETITEMS with an odd number of values") }
            guard case .dict(let dict) = try top() else {
                throw PickleError("SETITEM on a value that is not a dictionary")
            }
            for i in stride(from: 0, to: items.count, by: 2) { dict.entries.append((items[i], items[i + 1])) }
        }
        func call(_ callable: PickleValue, _ args: [PickleValue]) throws -> PickleValue {
            guard case .global(let global) = callable else {
                throw PickleError("a call of something that is not a global name")
            }
            if let value = try interpret(global, args) { return value }
            if !unknownGlobals.contains(global) { unknownGlobals.append(global) }
            return .object(PickleObject(global: global, arguments: args))
        }
        func long(_ b: [UInt8]) -> PickleValue {
            if b.isEmpty { return .int(0) }
            guard b.count <= 8 else { return .bigInt(b) }
            var v = UInt64(0)
            for (i, byte) in b.enumerated() { v |= UInt64(byte) << (8 * UInt64(i)) }
            if b.count < 8, b.last! & 0x80 != 0 { v |= ~UInt64(0) << (8 * UInt64(b.count)) }
            return .int(Int64(bitPattern: v))
        }

        while true {
            operations += 1
            guard operations <= limits.operations else { throw PickleError("more than \(limits.operations) opcodes") }
            let opcode = try bytes(1)[0]
            switch opcode {
            case 0x80: _ = try bytes(1)  // PROTO
            case 0x95: _ = try bytes(8)  // FRAME: framing only
            case UInt8(ascii: "."):  // STOP
                let value = try pop()
                result = value
                return value
            case UInt8(ascii: "("): stack.append(nil)  // MARK
            case UInt8(ascii: "0"): _ = try pop()  // POP
            case UInt8(ascii: "1"): _ = try popMark()  // POP_MARK
            case UInt8(ascii: "2"): try push(try top())  // DUP
            case UInt8(ascii: "N"): try push(.none)
            case 0x88: try push(.bool(true))
            case 0x89: try push(.bool(false))
            case UInt8(ascii: "J"): try push(.int(Int64(Int32(bitPattern: UInt32(try uint(4))))))
            case UInt8(ascii: "K"): try push(.int(Int64(try uint(1))))
            case UInt8(ascii: "M"): try push(.int(Int64(try uint(2))))
            case 0x8A: try push(long(try bytes(Int(try uint(1)))))  // LONG1
            case 0x8B:  // LONG4
                let n = Int32(bitPattern: UInt32(try uint(4)))
                guard n >= 0 else { throw PickleError("LONG4 with a negative length") }
                try push(long(try bytes(Int(n))))
            case UInt8(ascii: "I"):  // INT (text; "01"/"00" are True/False)
                let text = try line()
                if text == "01" || text == "00" {
                    try push(.bool(text == "01"))
                } else {
                    guard let v = Int64(text) else { throw PickleError("INT argument '\(text)' is not an integer") }
                    try push(.int(v))
                }
            case UInt8(ascii: "L"):  // LONG (text)
                var text = try line()
                if text.hasSuffix("L") { text.removeLast() }
                guard let v = Int64(text) else { throw PickleError("LONG argument '\(text)' is not a 64-bit integer") }
                try push(.int(v))
            case UInt8(ascii: "G"): try push(.float(Double(bitPattern: try bytes(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) })))
            case UInt8(ascii: "F"):
                let text = try line()
                guard let v = Double(text) else { throw PickleError("FLOAT argument '\(text)' is not a number") }
                try push(.float(v))
            case UInt8(ascii: "T"):  // BINSTRING
                let n = Int32(bitPattern: UInt32(try uint(4)))
                try push(.bytes(try bytes(Int(n))))
            case UInt8(ascii: "U"): try push(.bytes(try bytes(Int(try uint(1)))))  // SHORT_BINSTRING
            case UInt8(ascii: "X"): try push(try utf8(try bytes(Int(try uint(4)))))  // BINUNICODE
            case 0x8C: try push(try utf8(try bytes(Int(try uint(1)))))  // SHORT_BINUNICODE
            case 0x8D: try push(try utf8(try bytes(Int(clamping: try uint(8)))))  // BINUNICODE8
            case UInt8(ascii: "B"): try push(.bytes(try bytes(Int(try uint(4)))))  // BINBYTES
            case UInt8(ascii: "C"): try push(.bytes(try bytes(Int(try uint(1)))))  // SHORT_BINBYTES
            case 0x8E: try push(.bytes(try bytes(Int(clamping: try uint(8)))))  // BINBYTES8
            case 0x96: try push(.bytes(try bytes(Int(clamping: try uint(8)))))  // BYTEARRAY8
            case UInt8(ascii: "S"), UInt8(ascii: "V"):  // STRING, UNICODE (text)
                var text = try line()
                if opcode == UInt8(ascii: "S"), text.count >= 2, let q = text.first, q == "'" || q == "\"", text.last == q {
                    text = String(text.dropFirst().dropLast())
                }
                try push(.string(text))
            case UInt8(ascii: ")"): try push(.tuple([]))
            case UInt8(ascii: "t"): try push(.tuple(try popMark()))
            case 0x85: try push(.tuple([try pop()]))
            case 0x86:
                let b = try pop()
                try push(.tuple([try pop(), b]))
            case 0x87:
                let c = try pop()
                let b = try pop()
                try push(.tuple([try pop(), b, c]))
            case UInt8(ascii: "]"): try push(.list(PickleList()))
            case UInt8(ascii: "l"): try push(.list(PickleList(try popMark())))
            case UInt8(ascii: "a"):  // APPEND
                let value = try pop()
                guard case .list(let list) = try top() else { throw PickleError("APPEND to a value that is not a list") }
                list.items.append(value)
            case UInt8(ascii: "e"):  // APPENDS
                let values = try popMark()
                switch try top() {
                case .list(let list): list.items += values
                case .object: break  // appending to an inert object: nothing to keep
                default: throw PickleError("APPENDS to a value that is not a list")
                }
            case UInt8(ascii: "}"): try push(.dict(PickleDict()))
            case UInt8(ascii: "d"):
                let items = try popMark()
                try push(.dict(PickleDict()))
                try setItems(items)
            case UInt8(ascii: "s"):
                let value = try pop()
                let key = try pop()
                try setItems([key, value])
            case UInt8(ascii: "u"): try setItems(try popMark())
            case 0x8F: try push(.list(PickleList()))  // EMPTY_SET: kept as a list
            case 0x90:  // ADDITEMS
                let values = try popMark()
                guard case .list(let list) = try top() else { throw PickleError("ADDITEMS to a value that is not a set") }
                list.items += values
            case 0x91: try push(.list(PickleList(try popMark())))  // FROZENSET
            case UInt8(ascii: "c"):  // GLOBAL
                let module = try line()
                let name = try line()
                try push(.global(PickleGlobal(module: module, name: name)))
            case 0x93:  // STACK_GLOBAL
                let name = try pop()
                let module = try pop()
                guard let m = module.string, let n = name.string else { throw PickleError("STACK_GLOBAL on values that are not strings") }
                try push(.global(PickleGlobal(module: m, name: n)))
            case UInt8(ascii: "R"):  // REDUCE
                let args = try pop()
                let callable = try pop()
                guard let list = args.elements else { throw PickleError("REDUCE with arguments that are not a tuple") }
                try push(try call(callable, list))
            case 0x81:  // NEWOBJ
                let args = try pop()
                let cls = try pop()
                guard let list = args.elements else { throw PickleError("NEWOBJ with arguments that are not a tuple") }
                try push(try call(cls, list))
            case 0x92:  // NEWOBJ_EX
                _ = try pop()
                let args = try pop()
                let cls = try pop()
                guard let list = args.elements else { throw PickleError("NEWOBJ_EX with arguments that are not a tuple") }
                try push(try call(cls, list))
            case UInt8(ascii: "i"):  // INST (text)
                let global = PickleGlobal(module: try line(), name: try line())
                try push(try call(.global(global), try popMark()))
            case UInt8(ascii: "o"):  // OBJ
                var items = try popMark()
                guard !items.isEmpty else { throw PickleError("OBJ without a class") }
                let cls = items.removeFirst()
                try push(try call(cls, items))
            case UInt8(ascii: "b"):  // BUILD
                let state = try pop()
                switch try top() {
                case .dict(let dict): dict.state = state
                case .object(let object): object.state = state
                default: break  // the state of a rebuilt tensor (hooks, metadata): not needed
                }
            case UInt8(ascii: "q"): try put(Int(try uint(1)))  // BINPUT
            case UInt8(ascii: "r"): try put(Int(try uint(4)))  // LONG_BINPUT
            case 0x94: try put(memo.count)  // MEMOIZE
            case UInt8(ascii: "p"):  // PUT (text)
                guard let i = Int(try line()) else { throw PickleError("PUT with an index that is not an integer") }
                try put(i)
            case UInt8(ascii: "h"): try push(try get(Int(try uint(1))))  // BINGET
            case UInt8(ascii: "j"): try push(try get(Int(try uint(4))))  // LONG_BINGET
            case UInt8(ascii: "g"):  // GET (text)
                guard let i = Int(try line()) else { throw PickleError("GET with an index that is not an integer") }
                try push(try get(i))
            case UInt8(ascii: "Q"), UInt8(ascii: "P"):  // BINPERSID, PERSID
                let pid = opcode == UInt8(ascii: "Q") ? try pop() : .string(try line())
                guard let persistentLoad else { throw PickleError("a persistent id where none is expected") }
                try push(try persistentLoad(pid))
            default:
                let name = String(format: "0x%02x", opcode)
                throw PickleError("unknown or unsupported opcode \(name) at byte \(input.position - 1)")
            }
        }
    }
}

extension PickleValue {
    /// Releases `values` and everything they hold one level at a time: freeing a deeply nested value
    /// the ordinary way recurses once per level and can exhaust the stack; containers are emptied, so
    /// cycles are broken too.
    static func release(_ values: [PickleValue], keeping kept: Set<ObjectIdentifier> = []) {
        var pending = values
        while let value = pending.popLast() {
            if let id = value.containerID, kept.contains(id) { continue }
            switch value {
            case .tuple(let items): pending += items
            case .list(let list):
                pending += list.items
                list.items = []
            case .dict(let dict):
                for entry in dict.entries { pending += [entry.key, entry.value] }
                dict.entries = []
                if let state = dict.state { pending.append(state) }
                dict.state = nil
            case .object(let object):
                pending += object.arguments
                object.arguments = []
                if let state = object.state { pending.append(state) }
                object.state = nil
            default: break
            }
        }
    }

    /// The identity of a list, dictionary or object.
    var containerID: ObjectIdentifier? {
        switch self {
        case .list(let list): return ObjectIdentifier(list)
        case .dict(let dict): return ObjectIdentifier(dict)
        case .object(let object): return ObjectIdentifier(object)
        default: return nil
        }
    }

    /// The lists, dictionaries and objects reachable from `value` (iteratively; cycles allowed).
    static func containers(_ value: PickleValue) -> Set<ObjectIdentifier> {
        var seen = Set<ObjectIdentifier>()
        var pending = [value]
        while let next = pending.popLast() {
            if let id = next.containerID, !seen.insert(id).inserted { continue }
            switch next {
            case .tuple(let items): pending += items
            case .list(let list): pending += list.items
            case .dict(let dict):
                for entry in dict.entries { pending += [entry.key, entry.value] }
                if let state = dict.state { pending.append(state) }
            case .object(let object):
                pending += object.arguments
                if let state = object.state { pending.append(state) }
            default: break
            }
        }
        return seen
    }

    /// Every value reachable from this one, depth first, each container once (pickles can be cyclic).
    /// Refuses a nesting deeper than `maxDepth`.
    func walk(maxDepth: Int = 1000, _ visit: (_ path: [String], _ value: PickleValue) throws -> Bool) throws {
        var seen = Set<ObjectIdentifier>()
        var pending: [([String], PickleValue)] = [([], self)]
        while let (path, value) = pending.popLast() {
            guard path.count <= maxDepth else { throw PickleError("values nested deeper than \(maxDepth) levels") }
            guard try visit(path, value) else { continue }
            var children: [(String, PickleValue)] = []
            switch value {
            case .tuple(let items): children = items.enumerated().map { (String($0.offset), $0.element) }
            case .list(let list):
                guard seen.insert(ObjectIdentifier(list)).inserted else { continue }
                children = list.items.enumerated().map { (String($0.offset), $0.element) }
            case .dict(let dict):
                guard seen.insert(ObjectIdentifier(dict)).inserted else { continue }
                children = dict.entries.map { ($0.key.keyText, $0.value) }
            case .object(let object):
                guard seen.insert(ObjectIdentifier(object)).inserted else { continue }
                children = object.arguments.enumerated().map { (String($0.offset), $0.element) }
                if let state = object.state { children.append(("__state__", state)) }
            default: break
            }
            pending += children.reversed().map { (path + [$0.0], $0.1) }
        }
    }

    /// A dictionary key as text (state dict keys are strings).
    var keyText: String {
        switch self {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .bytes(let b): return String(decoding: b, as: UTF8.self)
        default: return "?"
        }
    }
}
