import Synchronization

/// A value made on first need from its input, outside the lock (work nothing else should
/// wait on): two first callers at once each make it, and the first stored is kept. The input
/// is let go once the value is made.
final class MadeFrom<Input: Sendable, Value: Sendable>: Sendable {
    private enum State {
        case waiting(Input)
        case made(Value)
    }

    private let state: Mutex<State>

    init(_ input: Input) {
        state = Mutex(.waiting(input))
    }

    func get(_ make: (Input) -> Value) -> Value {
        let input: Input
        switch state.withLock({ $0 }) {
        case .made(let value): return value
        case .waiting(let waiting): input = waiting
        }
        let made = make(input)
        return state.withLock { state in
            if case .made(let first) = state { return first }
            state = .made(made)
            return made
        }
    }
}

/// A value made on first need from nothing kept (see `MadeFrom`).
typealias MadeOnce<Value: Sendable> = MadeFrom<Void, Value>

extension MadeFrom where Input == Void {
    convenience init() { self.init(()) }

    func get(_ make: () -> Value) -> Value { get { _ in make() } }
}
