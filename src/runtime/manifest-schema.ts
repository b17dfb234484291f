// JSON Schema for manifest.json, format version 1 (docs/bundle-format.md, docs/exporting.md).
// Unknown fields are allowed so newer writers stay readable.

const tensorSpec = {
  type: 'object',
  required: ['name', 'dtype', 'shape'],
  properties: {
    name: { type: 'string', minLength: 1 },
    dtype: { enum: ['float32', 'int64'] },
    shape: { type: 'array', items: { type: 'integer', minimum: -1 } },
  },
} as const;

const sha256 = { type: 'string', pattern: '^[0-9a-f]{64}$' } as const;
const fileName = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' } as const;

const graph = (minInputs: number) => ({
  type: 'object',
  required: ['file', 'sha256', 'inputs', 'outputs'],
  properties: {
    file: fileName,
    sha256,
    inputs: { type: 'array', items: tensorSpec, minItems: minInputs },
    outputs: { type: 'array', items: tensorSpec, minItems: 1 },
  },
});

export const MANIFEST_SCHEMA = {
  type: 'object',
  required: ['format', 'format_version', 'name', 'task', 'graphs', 'state', 'solver', 'outputs'],
  properties: {
    format: { const: 'deq-bundle' },
    format_version: { const: 1 },
    name: { type: 'string', pattern: '^[a-z0-9][a-z0-9._-]{0,63}$' },
    version: { type: 'string' },
    task: { enum: ['image-classification', 'language-model', 'tensor'] },
    description: { type: 'string' },
    graphs: {
      type: 'object',
      // inject and head are optional (task "tensor"): the cell then takes the raw inputs, and
      // the outputs are z* or the slices listed in state_outputs.
      required: ['cell'],
      properties: { inject: graph(1), cell: graph(2), head: graph(1) },
    },
    state_outputs: {
      type: 'array', minItems: 1,
      items: {
        type: 'object',
        required: ['name', 'dtype', 'shape', 'offset'],
        properties: {
          name: { type: 'string', minLength: 1 },
          dtype: { const: 'float32' },
          shape: { type: 'array', items: { type: 'integer', minimum: -1 } },
          offset: { type: 'integer', minimum: 0 },
        },
      },
    },
    state: {
      type: 'object',
      required: ['shape'],
      properties: {
        shape: { type: 'array', minItems: 1, items: { type: 'integer', minimum: -1 } },
        // "right": the cell is causal along state axis 0, so right padding is exact (checked
        // against the shapes in bundle.ts; the causality itself is the exporter's to check).
        pad: { enum: ['right'] },
      },
    },
    solver: {
      type: 'object',
      required: ['method', 'tol', 'stop_mode', 'max_iter'],
      properties: {
        method: { enum: ['broyden', 'anderson', 'fixed-point'] },
        tol: { type: 'number', exclusiveMinimum: 0 },
        stop_mode: { enum: ['abs', 'rel'] },
        max_iter: { type: 'integer', minimum: 1 },
        history: { type: 'integer', minimum: 1 },
        anderson_lambda: { type: 'number', minimum: 0 },
        anderson_beta: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
        damping: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
        // The author's statement that float32 solver arithmetic keeps this model's answers (docs/bundle-format.md).
        precision: { enum: ['float64', 'float32'] },
      },
    },
    preprocess: {
      type: 'object',
      required: ['kind', 'width', 'height', 'channels', 'mean', 'std'],
      properties: {
        kind: { const: 'image' },
        width: { type: 'integer', minimum: 1, maximum: 4096 },
        height: { type: 'integer', minimum: 1, maximum: 4096 },
        channels: { enum: [1, 3] },
        mean: { type: 'array', items: { type: 'number' }, minItems: 1, maxItems: 3 },
        std: { type: 'array', items: { type: 'number', exclusiveMinimum: 0 }, minItems: 1, maxItems: 3 },
        invert: { type: 'boolean' },
        resize: { enum: ['contain', 'cover', 'fill'] },
      },
    },
    tokenizer: {
      type: 'object',
      required: ['kind', 'vocab_file', 'sha256', 'unk', 'bos', 'eos', 'context'],
      properties: {
        kind: { const: 'brown-words' },
        vocab_file: fileName,
        sha256,
        unk: { type: 'string' },
        bos: { type: 'string' },
        eos: { type: 'string' },
        lowercase: { type: 'boolean' },
        context: { type: 'integer', minimum: 2 },
        stride: { type: 'integer', minimum: 1 },
      },
    },
    labels: { type: 'array', items: { type: 'string' }, minItems: 1 },
    outputs: { type: 'object', additionalProperties: { type: 'string' }, minProperties: 1 },
    provenance: { type: 'object' },
    parity: {
      type: 'object',
      required: ['file', 'sha256', 'atol'],
      properties: { file: fileName, sha256, atol: { type: 'number', exclusiveMinimum: 0 } },
    },
  },
  allOf: [
    {
      if: { properties: { task: { const: 'image-classification' } } },
      then: { required: ['preprocess', 'labels'], properties: { graphs: { required: ['inject', 'cell', 'head'] } } },
    },
    {
      if: { properties: { task: { const: 'language-model' } } },
      then: { required: ['tokenizer'], properties: { graphs: { required: ['inject', 'cell', 'head'] } } },
    },
  ],
} as const;
