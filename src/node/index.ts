/**
 * lmtune as a library in Node: registers Node as the core's host (files by path) and the runtime's
 * settings from the environment, then re-exports the core. In a browser, import the core modules
 * directly and pass `Folder`s (src/util/folder.ts) instead of paths.
 */
import { configureRuntimeFromEnv } from './runtime.ts';

configureRuntimeFromEnv();

export * as engine from '../engine/index.ts';
export { loadTransformer, loadModel, asLanguageModel, TransformerModel } from '../heads/model.ts';
export { saveAdapters, loadAdapters, WeightStore } from '../models/index.ts';
export { evaluate, getBuiltinTask, loadExamples, resolveTask } from '../tasks/index.ts';
export { MemoryFolder, type Folder } from '../util/folder.ts';
export { LmtuneError } from '../util/errors.ts';
