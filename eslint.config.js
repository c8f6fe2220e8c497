import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * The layers of docs/ARCHITECTURE.md, bottom to top: a file may import its own layer and the layers
 * below it, never one above. The core (util … optim) must also run in a browser: no `node:*`, no
 * onnxruntime-node, nothing from src/node/. Tests run in Node and may import anything. Written with
 * ESLint's own no-restricted-imports rather than a plugin: one table, no extra dependency.
 */
const LAYERS = [
  { name: 'util', files: ['src/util/**'], dirs: ['util'] },
  { name: 'engine', files: ['src/engine/**'], dirs: ['engine'] },
  { name: 'projection', files: ['src/projection/**'], dirs: ['projection'] },
  // the adapters' types and their forward math sit below the models that use them
  { name: 'adapter math', files: ['src/peft/spec.ts', 'src/peft/forward.ts'], paths: ['peft/spec.ts', 'peft/forward.ts'] },
  { name: 'models', files: ['src/models/**'], dirs: ['models'] },
  // heads and objectives on the models' body, and TransformerModel, which puts them behind one object
  { name: 'heads', files: ['src/heads/**'], dirs: ['heads'] },
  { name: 'tasks', files: ['src/tasks/**'], dirs: ['tasks'] },
  // attaching and initializing adapters on a loaded model
  { name: 'adapters', files: ['src/peft/**'], dirs: ['peft'] },
  // optimizers, and SVAG's gradient combination, which the training loop applies like an optimizer
  { name: 'optim', files: ['src/optim/**', 'src/scaling/config.ts', 'src/scaling/rules.ts', 'src/scaling/svag.ts'], dirs: ['optim'], paths: ['scaling/config.ts', 'scaling/rules.ts', 'scaling/svag.ts'] },
  // Node's side of the core's interfaces (files, the runtime's settings, worker threads): anything above the core may use it
  { name: 'node', files: ['src/node/**'], dirs: ['node'] },
  { name: 'report', files: ['src/report/**'], dirs: ['report'] },
  { name: 'train', files: ['src/train/**'], dirs: ['train'] },
  { name: 'methods', files: ['src/distributed/**', 'src/select/**', 'src/kernel/**', 'src/features/**', 'src/scaling/**', 'src/tint/**', 'src/pretrain/**', 'src/zo-bench/**'], dirs: ['distributed', 'select', 'kernel', 'features', 'scaling', 'tint', 'pretrain', 'zo-bench'] },
  { name: 'edges', files: ['src/serve/**', 'src/fuzz/**', 'src/cli/**'], dirs: ['serve', 'fuzz', 'cli'] },
];
const CORE = new Set(['util', 'engine', 'projection', 'adapter math', 'models', 'heads', 'tasks', 'adapters', 'optim']);
const TESTS = ['**/*.test.ts', '**/*.test-util.ts', '**/test-fixtures.ts', '**/test-helpers.ts'];

function layerRules(i) {
  const layer = LAYERS[i];
  const below = new Set(LAYERS.slice(0, i + 1).flatMap((l) => l.paths ?? []));
  const patterns = [];
  for (const up of LAYERS.slice(i + 1)) {
    const group = [...(up.dirs ?? []).map((d) => `**/${d}/**`), ...(up.paths ?? []).map((p) => `**/${p}`)];
    // a file listed by path in this layer or below may be imported even though its folder sits higher
    for (const p of below) group.push(`!**/${p}`);
    patterns.push({ group, message: `the ${layer.name} layer may not import from the ${up.name} layer above it (docs/ARCHITECTURE.md)` });
  }
  if (CORE.has(layer.name)) {
    patterns.push({ group: ['node:*', 'onnxruntime-node', '**/node/**'], message: 'the core runs in a browser too: Node-only code lives in src/node/ (docs/ARCHITECTURE.md)' });
  }
  return {
    files: layer.files,
    // a file placed in a lower layer by name is checked by that layer only
    ignores: [...TESTS, ...LAYERS.slice(0, i).flatMap((l) => l.files.filter((f) => !f.endsWith("**")))],
    rules: { 'no-restricted-imports': ['error', { patterns }] },
  };
}

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', 'runs/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  ...LAYERS.map((_, i) => layerRules(i)),
);
