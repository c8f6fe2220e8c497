/** The task layer's public surface: what trainers, analyses and the CLI import. */
export type { CausalTemplate, Example, MaskedTemplate, MetricName, Task, TaskKind } from './task.ts';
export { candidateCount } from './task.ts';
export { readRecords, parseRecords, detectFormat, decodeText, type DataFormat, type RawRecord } from './readers.ts';
export { BUILTIN_TASKS, builtinTask, getBuiltinTask } from './builtin.ts';
export { loadTaskFile, parseTaskFile } from './custom-task.ts';
export { parseLmBffTemplate, renderMasked, encodeMasked, labelWordIds, type MaskedPart } from './masked-template.ts';
export {
  encodeCausal,
  encodeForMaskedLM,
  encodeForTraining,
  demoBlock,
  optionLength,
  specialPrefix,
  type CandidateSequence,
  type CausalEncodeOptions,
  type ChoiceEncoding,
  type GenerationEncoding,
  type MaskedEncoding,
  type TrainingEncoding,
} from './encode.ts';
export {
  LMBFF_SEEDS,
  kShotSplit,
  lmBffTestSet,
  mezoSplit,
  mezoTestSet,
  seededSubset,
  sampleDemos,
  sampleIndices,
  demoRng,
  type Split,
} from './sampling.ts';
export { accuracy, macroF1, squadF1, tokenF1, exactMatch, normalizeAnswer, recordScores, argmax } from './metrics.ts';
export { evaluate, cutAtStop, type EvalOptions, type EvalProgress, type EvalResult, type ExamplePrediction, type Scoring } from './evaluate.ts';
export { runEvaluation, resolveTask, loadExamples, type EvalRecord, type EvalRunOptions } from './run-eval.ts';
export {
  parseChatJsonl,
  chatRowFromValue,
  encodeChat,
  encodeChatRows,
  renderTulu,
  chatPrefix,
  eosText,
  type ChatRow,
  type ChatMessage,
  type ChatRole,
  type EncodedChat,
  type ParsedChat,
} from './chat.ts';
export { chatTask, isChatTask, isChatExample, loadChatExamples, type ChatExample } from './chat-task.ts';
export { evaluateChat, chatEvalItem } from './chat-eval.ts';
