import Foundation

/// A value built by `PickleMachine`. Pickles describe objects as calls of named functions; this tool
/// never calls anything: a call it understands (an `OrderedDict`, a tensor rebuild, a storage) becomes
/// data, any other one stays an inert `PickleObject` holding the name and its arguments.
///
/// Every value that holds other values is a class (`PickleTuple`, `PickleList`, `PickleDict`,
/// `PickleObject`) whose `deinit` takes its children apart in a loop: a value nested a million levels
/// deep is freed without a recursion per level, and walks visit each container once, so a DAG (a value
/// shared by many parents) costs its size, not its expansion.
enum PickleValue {
    case none
    case bool(Bool)
    case int(Int64)
    /// An integer past 64 bits, as its little-endian two's-complement bytes.
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple(PickleTuple)
    case list(PickleList)
    case dict(PickleDict)
    /// A reference to a module-level name (`GLOBAL`), never resolved.
    case global(PickleGlobal)
    /// A call the unpickler does not understand, kept as data.
    case object(PickleObject)
    /// A persistent id turned into a value by the reader (a PyTorch storage).
    case external(any PickleExternal)

    /// A tuple of `items`.
    static func tuple(of items: [PickleValue]) -> PickleValue { .tuple(PickleTuple(items)) }

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
        case .tuple(let tuple): return tuple.items
        case .list(let list): return list.items
        default: return nil
        }
    }

    /// How much work copying or scanning this value's top level is: its element count, or its bytes
    /// over 16 for text (what `PickleMachine` charges against its budget).
    var shallowCost: Int {
        switch self {
        case .tuple(let tuple): return tuple.items.count
        case .list(let list): return list.items.count
        case .dict(let dict): return dict.entries.count
        case .object(let object): return object.arguments.count
        case .string(let s): return s.utf8.count / 16
        case .bytes(let b), .bigInt(let b): return b.count / 16
        default: return 0
        }
    }
}

/// A value a reader makes from a persistent id (`BINPERSID`). A class, like every payload of
/// `PickleValue` past 16 bytes, so that a value takes 17 bytes on the stack and in the memo.
protocol PickleExternal: AnyObject {}

/// `module.name`, as a pickle names a class or function (compared by value).
final class PickleGlobal: Hashable, CustomStringConvertible {
    let module: String
    let name: String
    init(module: String, name: String) {
        self.module = module
        self.name = name
    }
    var description: String { module + "." + name }
    static func == (a: PickleGlobal, b: PickleGlobal) -> Bool { a.module == b.module && a.name == b.name }
    func hash(into hasher: inout Hasher) {
        hasher.combine(module)
        hasher.combine(name)
    }
}

/// A tuple (immutable in Python; a class here so that freeing and walking it need no recursion).
final class PickleTuple {
    fileprivate(set) var items: [PickleValue]
    init(_ items: [PickleValue]) { self.items = items }
    deinit { PickleValue.dismantle(&items) }
}

/// A mutable list (pickles append to lists after they are memoised, so lists are shared by reference).
final class PickleList {
    var items: [PickleValue]
    init(_ items: [PickleValue] = []) { self.items = items }
    deinit { PickleValue.dismantle(&items) }
}

/// A mutable dictionary in insertion order (an `OrderedDict` or a `dict`).
final class PickleDict {
    var entries: [(key: PickleValue, value: PickleValue)] = []
    /// The state a `BUILD` gave it (`OrderedDict._metadata` of a state dict).
    var state: PickleValue?
    init() {}
    deinit {
        var pending = state.map { [$0] } ?? []
        state = nil
        pending.reserveCapacity(entries.count * 2 + pending.count)
        for entry in entries { pending += [entry.key, entry.value] }
        entries = []
        PickleValue.dismantle(&pending)
    }
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
    deinit {
        if let state { arguments.append(state) }
        state = nil
        PickleValue.dismantle(&arguments)
    }
}

extension PickleValue {
    /// Frees `values` and everything only they hold, one container at a time: a container this loop
    /// holds the last reference to is emptied into the loop before it goes, so its own `deinit` has
    /// nothing left to free and no freeing recurses. Containers still held elsewhere are left whole.
    static func dismantle(_ values: inout [PickleValue]) {
        guard !values.isEmpty else { return }
        var pending: [PickleValue] = []
        swap(&pending, &values)
        while var value = pending.popLast() {
            // The reference is taken out by an accessor and the value cleared, so no temporary of a
            // `switch` holds it while its uniqueness is asked (a held one would free it nested).
            if var tuple = value.tupleObject {
                value = .none
                if isKnownUniquelyReferenced(&tuple) {
                    pending += tuple.items
                    tuple.items = []
                }
            } else if var list = value.listObject {
                value = .none
                if isKnownUniquelyReferenced(&list) {
                    pending += list.items
                    list.items = []
                }
            } else if var dict = value.dictObject {
                value = .none
                if isKnownUniquelyReferenced(&dict) {
                    for entry in dict.entries { pending += [entry.key, entry.value] }
                    dict.entries = []
                    if let state = dict.state { pending.append(state) }
                    dict.state = nil
                }
            } else if var object = value.objectObject {
                value = .none
                if isKnownUniquelyReferenced(&object) {
                    pending += object.arguments
                    object.arguments = []
                    if let state = object.state { pending.append(state) }
                    object.state = nil
                }
            }
        }
    }

    private var tupleObject: PickleTuple? {
        if case .tuple(let tuple) = self { return tuple }
        return nil
    }
    private var listObject: PickleList? {
        if case .list(let list) = self { return list }
        return nil
    }
    private var dictObject: PickleDict? {
        if case .dict(let dict) = self { return dict }
        return nil
    }
    private var objectObject: PickleObject? {
        if case .object(let object) = self { return object }
        return nil
    }
}

/// What the machine reads from: bytes in order.
protocol PickleInput {
    /// The next `count` bytes; fewer means the input ended.
    mutating func read(_ count: Int) throws -> [UInt8]
    /// Bytes consumed so far.
    var position: UInt64 { get }
    /// Bytes left to read (what the work budget of a pickle is measured against).
    var remaining: UInt64 { get }
    /// The next byte, or nil at the end (the opcode fetch: no array per opcode).
    mutating func next() throws -> UInt8?
}

extension PickleInput {
    mutating func next() throws -> UInt8? { try read(1).first }
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
    var remaining: UInt64 { UInt64(bytes.count - offset) }
    mutating func next() throws -> UInt8? {
        guard offset < bytes.count else { return nil }
        defer { offset += 1 }
        return bytes[offset]
    }
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
    var remaining: UInt64 { file.size > position ? file.size - position : 0 }
    mutating func next() throws -> UInt8? {
        if position >= bufferStart, position < bufferStart + UInt64(buffer.count) {
            defer { position += 1 }
            return buffer[Int(position - bufferStart)]
        }
        return try read(1).first
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
    /// Each is checked when it is reached, so a refusal comes after at most that much work.
    ///
    /// The budget: a pickle of N bytes may do `workFloor + workPerByte * N` units of work (capped by
    /// `operations`), where an opcode is one unit and copying or scanning values costs one unit per
    /// element (per 16 bytes of text); every value it makes costs at least one unit, so both its time
    /// and its memory are linear in N. The stack and the memo hold at most 4 Mi entries each (17 and
    /// 17-48 bytes an entry), whatever the size.
    struct Limits {
        /// Values on the stack, marks included.
        var stack = 1 << 22
        /// Memo entries.
        var memo = 1 << 22
        /// Bytes of one string or bytes value.
        var valueBytes = 1 << 30
        /// Units of work at most, whatever the size of the pickle.
        var operations = 1 << 31
        /// Units of work every pickle may do.
        var workFloor = 1 << 20
        /// Units of work per byte of the pickle.
        var workPerByte = 16
    }

    /// What a call means as data, or nil to keep it as a `PickleObject`.
    var interpret: (PickleGlobal, [PickleValue]) throws -> PickleValue? = { _, _ in nil }
    /// Turns a persistent id into a value (PyTorch storages); nil refuses persistent ids.
    var persistentLoad: ((PickleValue) throws -> PickleValue)?
    var limits = Limits()
    /// The globals named by the pickle that were not understood, in first-use order.
    private(set) var unknownGlobals: [PickleGlobal] = []
    private var unknownSet = Set<PickleGlobal>()

    private var stack: [PickleValue?] = []  // nil is a MARK
    /// The memo: entries 0..<n stored in order (`MEMOIZE` and in-order `PUT`s) in an array, others apart.
    private var memoDense: [PickleValue] = []
    private var memoSparse: [Int: PickleValue] = [:]
    private var work = 0
    private var budget = 0

    /// Charges `units` of work against the budget of the running `load`.
    mutating func charge(_ units: Int) throws {
        work &+= units
        guard work <= budget else {
            throw PickleError("more work than \(budget) units (the budget of a pickle of its size): a value built over and over")
        }
    }

    /// Runs the pickle at the input's position to its `STOP` and returns the value it leaves.
    mutating func load<Input: PickleInput>(_ input: inout Input) throws -> PickleValue {
        stack = []
        memoDense = []
        memoSparse = [:]
        work = 0
        let (perByte, overflow) = Int(clamping: input.remaining).multipliedReportingOverflow(by: limits.workPerByte)
        budget = min(limits.operations, overflow ? Int.max : perByte &+ limits.workFloor)
        defer {
            // What is left (everything, after an error) is freed without recursion by the containers' deinit.
            stack = []
            memoDense = []
            memoSparse = [:]
        }
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
                guard let b = try input.next() else { throw PickleError("the pickle ends inside an opcode") }
                if b == 0x0A { break }
                out.append(b)
                guard out.count <= 1 << 16 else { throw PickleError("a text argument longer than 64 KiB") }
            }
            return String(decoding: out, as: UTF8.self)
        }
        func python2String(_ b: [UInt8]) -> PickleValue {
            String(validating: b, as: UTF8.self).map { .string($0) } ?? .bytes(b)
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
            try charge(stack.count - mark)
            let items = stack[(mark + 1)...].map { $0! }
            stack.removeSubrange(mark...)
            return items
        }
        func push(_ value: PickleValue?) throws {
            guard stack.count < limits.stack else { throw PickleError("the stack passes \(limits.stack) values (marks included)") }
            stack.append(value)
        }
        func top() throws -> PickleValue {
            guard let last = stack.last, let value = last else { throw PickleError("an opcode needs a value on the stack") }
            return value
        }
        func put(_ index: Int) throws {
            let value = try top()
            if index >= 0, index < memoDense.count {
                memoDense[index] = value
                return
            }
            guard memoDense.count + memoSparse.count < limits.memo || memoSparse[index] != nil else {
                throw PickleError("the memo passes \(limits.memo) entries")
            }
            if index == memoDense.count, memoSparse.isEmpty {
                memoDense.append(value)
            } else {
                memoSparse[index] = value
            }
        }
        func get(_ index: Int) throws -> PickleValue {
            if index >= 0, index < memoDense.count { return memoDense[index] }
            guard let value = memoSparse[index] else { throw PickleError("a memo reference to entry \(index), which was never stored") }
            return value
        }
        func setItems(_ items: [PickleValue]) throws {
            guard items.count % 2 == 0 else { throw PickleError("SETITEMS with an odd number of values") }
            guard case .dict(let dict) = try top() else {
                throw PickleError("SETITEM on a value that is not a dictionary")
            }
            try charge(items.count)
            for i in stride(from: 0, to: items.count, by: 2) { dict.entries.append((items[i], items[i + 1])) }
        }
        func call(_ callable: PickleValue, _ args: [PickleValue]) throws -> PickleValue {
            guard case .global(let global) = callable else {
                throw PickleError("a call of something that is not a global name")
            }
            // What `interpret` may scan of its arguments (an OrderedDict's pairs, a text to encode).
            try charge(args.count + args.reduce(0) { $0 &+ $1.shallowCost })
            if let value = try interpret(global, args) { return value }
            if unknownSet.insert(global).inserted { unknownGlobals.append(global) }
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
            try charge(1)
            guard let opcode = try input.next() else { throw PickleError("the pickle ends inside an opcode") }
            switch opcode {
            case 0x80: _ = try bytes(1)  // PROTO
            case 0x95: _ = try bytes(8)  // FRAME: framing only
            case UInt8(ascii: "."):  // STOP
                return try pop()
            case UInt8(ascii: "("): try push(nil)  // MARK
            case UInt8(ascii: "0"): _ = try pop()  // POP
            case UInt8(ascii: "1"): _ = try popMark()  // POP_MARK
            case UInt8(ascii: "2"): try push(try top())  // DUP
            case UInt8(ascii: "N"): try push(PickleValue.none)
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
            // BINSTRING, SHORT_BINSTRING: a Python 2 `str`, which torch.load decodes as UTF-8 (its default
            // encoding), so Python 2 era files name their keys and storages with text; not UTF-8: bytes.
            case UInt8(ascii: "T"):
                let n = Int32(bitPattern: UInt32(try uint(4)))
                try push(python2String(try bytes(Int(n))))
            case UInt8(ascii: "U"): try push(python2String(try bytes(Int(try uint(1)))))
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
            case UInt8(ascii: ")"): try push(.tuple(of: []))
            case UInt8(ascii: "t"): try push(.tuple(of: try popMark()))
            case 0x85: try push(.tuple(of: [try pop()]))
            case 0x86:
                let b = try pop()
                try push(.tuple(of: [try pop(), b]))
            case 0x87:
                let c = try pop()
                let b = try pop()
                try push(.tuple(of: [try pop(), b, c]))
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
            case 0x94: try put(memoDense.count + memoSparse.count)  // MEMOIZE
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
                try charge(1 + pid.shallowCost + (pid.elements?.reduce(0) { $0 &+ $1.shallowCost } ?? 0))
                try push(try persistentLoad(pid))
            default:
                let name = String(format: "0x%02x", opcode)
                throw PickleError("unknown or unsupported opcode \(name) at byte \(input.position - 1)")
            }
        }
    }
}

extension PickleValue {
    /// The identity of a tuple, list, dictionary or object.
    var containerID: ObjectIdentifier? {
        switch self {
        case .tuple(let tuple): return ObjectIdentifier(tuple)
        case .list(let list): return ObjectIdentifier(list)
        case .dict(let dict): return ObjectIdentifier(dict)
        case .object(let object): return ObjectIdentifier(object)
        default: return nil
        }
    }

    /// The values this one holds directly (an object's state last).
    var children: [PickleValue] {
        switch self {
        case .tuple(let tuple): return tuple.items
        case .list(let list): return list.items
        case .dict(let dict):
            var out: [PickleValue] = []
            out.reserveCapacity(dict.entries.count * 2 + 1)
            for entry in dict.entries { out += [entry.key, entry.value] }
            if let state = dict.state { out.append(state) }
            return out
        case .object(let object): return object.arguments + (object.state.map { [$0] } ?? [])
        default: return []
        }
    }

    /// The nesting past which a value is refused when walked.
    static let maxDepth = 1000

    /// Every value reachable from this one, depth first, each container once (pickles can be cyclic and
    /// share values, so a walk costs the number of distinct values, not their expansion); `visit`
    /// returns false to skip a value's children. Refuses a nesting deeper than `maxDepth`.
    func walk(maxDepth: Int = PickleValue.maxDepth, _ visit: (_ value: PickleValue) throws -> Bool) throws {
        var seen = Set<ObjectIdentifier>()
        var pending: [(depth: Int, value: PickleValue)] = [(0, self)]
        while let (depth, value) = pending.popLast() {
            guard depth <= maxDepth else { throw PickleError("values nested deeper than \(maxDepth) levels") }
            if let id = value.containerID, !seen.insert(id).inserted { continue }
            guard try visit(value) else { continue }
            for child in value.children.reversed() { pending.append((depth + 1, child)) }
        }
    }

    /// For each of `roots`, whether a value for which `isTarget` holds is reachable from it. One walk of
    /// the values shared by all roots (each container once), then reachability carried back along the
    /// reversed edges: linear in the number of values and edges, cycles included.
    static func reach(from roots: [PickleValue], maxDepth: Int = PickleValue.maxDepth, _ isTarget: (PickleValue) -> Bool) throws -> [Bool] {
        var index: [ObjectIdentifier: Int] = [:]
        var parents: [[Int]] = []
        var hit: [Bool] = []
        var pending: [(depth: Int, value: PickleValue, node: Int)] = []
        func node(of value: PickleValue, depth: Int) -> Int? {
            guard let id = value.containerID else { return nil }
            if let known = index[id] { return known }
            let n = parents.count
            index[id] = n
            parents.append([])
            hit.append(false)
            pending.append((depth, value, n))
            return n
        }
        for root in roots { _ = node(of: root, depth: 0) }
        while let (depth, value, n) = pending.popLast() {
            guard depth <= maxDepth else { throw PickleError("values nested deeper than \(maxDepth) levels") }
            for child in value.children {
                if isTarget(child) { hit[n] = true }
                if let c = node(of: child, depth: depth + 1) { parents[c].append(n) }
            }
        }
        var queue = hit.indices.filter { hit[$0] }
        while let n = queue.popLast() {
            for p in parents[n] where !hit[p] {
                hit[p] = true
                queue.append(p)
            }
        }
        return roots.map { root in isTarget(root) || (root.containerID.flatMap { index[$0] }.map { hit[$0] } ?? false) }
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
