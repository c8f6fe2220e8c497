/**
 * The one error type lmtune raises for anything a person can act on: bad input, bad flags, bad files,
 * numerical trouble. `code` is stable (scripts may match on it); `message` names the file, line, tensor
 * or flag; `hint` says what to do. The CLI prints message + hint and exits non-zero, without a stack trace.
 */
export type ErrorCode =
  | 'SHAPE' // a graph op received incompatible shapes
  | 'GRAPH' // a malformed graph (unknown value, bad attribute)
  | 'CHECKPOINT' // a checkpoint folder or tensor file is unreadable or inconsistent
  | 'TOKENIZER'
  | 'DATA' // a dataset row or file is malformed
  | 'CONFIG' // a config file or flag value is invalid
  | 'NUMERIC' // NaN/Inf loss, divergence
  | 'RUNTIME' // the execution backend failed
  | 'RESOURCE' // the work would not fit the available memory (refused before it starts)
  | 'UNSUPPORTED'
  | 'IO';

export class LmtuneError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  constructor(code: ErrorCode, message: string, hint?: string) {
    super(message);
    this.name = 'LmtuneError';
    this.code = code;
    this.hint = hint;
  }
}

export function fail(code: ErrorCode, message: string, hint?: string): never {
  throw new LmtuneError(code, message, hint);
}

export function assertThat(cond: unknown, code: ErrorCode, message: string, hint?: string): asserts cond {
  if (!cond) throw new LmtuneError(code, message, hint);
}
