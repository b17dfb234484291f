// The scheduler's narrow contract (issue #20): a SolvePlan is shape, settings, group key and
// padding, its tensors behind an opaque PreparedRef, and the scheduler's modules never touch
// an ONNX Runtime tensor. The type checks are compile-time: `npm test` type-checks test/ first.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { DeqModel } from '../../src/runtime/deq-model.js';
import type { Prepared } from '../../src/runtime/infer-types.js';
import type { Tensor } from '../../src/runtime/onnx.js';
import type { PreparedRef, SolvePlan } from '../../src/runtime/solve-plan.js';
import { TINY_IMAGE, TINY_LM } from '../helpers/fixtures.js';

/** true where T holds a Tensor anywhere (arrays and nested objects included), else false. */
type HoldsTensor<T> = T extends Tensor ? true
  : T extends readonly (infer E)[] ? HoldsTensor<E>
  : T extends (...args: never[]) => unknown ? false
  : T extends object ? { [K in keyof T]-?: HoldsTensor<NonNullable<T[K]>> }[keyof T] | false
  : false;

/** The scheduler side of the runtime: the modules that must see plans, never tensors. */
const SCHEDULER_MODULES = ['scheduler.ts', 'solve-group.ts', 'row-admission.ts', 'answer-jobs.ts', 'scheduler-options.ts'];
const RUNTIME = resolve(import.meta.dirname, '..', '..', 'src', 'runtime');

describe('SolvePlan types', () => {
  it('a plan and its reference carry no tensor; a Prepared does, and is a reference', () => {
    expectTypeOf<HoldsTensor<SolvePlan>>().toEqualTypeOf<false>();
    expectTypeOf<HoldsTensor<PreparedRef>>().toEqualTypeOf<false>();
    expectTypeOf<keyof PreparedRef>().not.toMatchTypeOf<string>();
    // The check itself sees tensors where they are: a Prepared's cell inputs and feeds.
    expectTypeOf<HoldsTensor<Prepared>>().toEqualTypeOf<boolean>();
    expectTypeOf<Prepared>().toMatchTypeOf<PreparedRef>();
    expectTypeOf<PreparedRef>().not.toMatchTypeOf<Prepared>();
  });

  it("the scheduler's modules import nothing from the ONNX adapter and name no tensor nor Prepared", () => {
    for (const file of SCHEDULER_MODULES) {
      const text = readFileSync(resolve(RUNTIME, file), 'utf8');
      expect(text, file).not.toMatch(/from\s+'\.\/onnx\.js'/);
      expect(text, file).not.toMatch(/\b(Tensor|Prepared|cellArgs|feeds)\b/);
    }
    // The contract itself stays off the adapter too (its types are checked above).
    expect(readFileSync(resolve(RUNTIME, 'solve-plan.ts'), 'utf8')).not.toMatch(/from\s+'\.\/onnx\.js'/);
  });
});

describe('DeqModel.plan', () => {
  let image: DeqModel, lm: DeqModel;
  beforeAll(async () => {
    [image, lm] = await Promise.all([DeqModel.load(TINY_IMAGE), DeqModel.load(TINY_LM)]);
  });
  afterAll(async () => {
    await Promise.all([image?.release(), lm?.release()]);
  });

  const pixels = (batch: number) => Float32Array.from({ length: 64 * batch }, (_, i) => Math.sin(i));
  const tokens = (length: number) => BigInt64Array.from({ length }, (_, i) => BigInt(i % 5));
  const window = (length: number) => ({ input: tokens(length), batch: 1, length, headInputs: { targets: tokens(length) } });

  it('has the shape and settings prepare() gives, and no padding for an unpadded model', async () => {
    const req = { input: pixels(3), batch: 3, solver: { tol: 1e-4 } };
    const [plan, prep] = await Promise.all([image.plan(req), image.prepare(req)]);
    expect({ batch: plan.batch, length: plan.length, n: plan.n, stateDims: plan.stateDims, options: plan.options })
      .toEqual({ batch: 3, length: undefined, n: prep.n, stateDims: prep.stateDims, options: prep.options });
    expect(plan.padding).toBeUndefined();
  });

  it('gives requests that can share a solve one key: batch and per-row stopping settings apart, method not', async () => {
    const [a, b, c, d] = await Promise.all([
      image.plan({ input: pixels(1), batch: 1 }),
      image.plan({ input: pixels(4), batch: 4, solver: { tol: 1e-2, maxIter: 7 } }),
      image.plan({ input: pixels(1), batch: 1, solver: { method: 'anderson' } }),
      image.plan({ input: pixels(1), batch: 1, solver: { history: image.solverDefaults.history + 1 } }),
    ]);
    expect(b.key).toBe(a.key);
    expect(c.key).not.toBe(a.key);
    expect(d.key).not.toBe(a.key);
  });

  it('tiny-lm: windows of any length are planned at the padded context, and share a key', async () => {
    const context = lm.manifest.tokenizer!.context;
    const plans = await Promise.all([3, 9, context].map((L) => lm.plan(window(L))));
    for (const [k, L] of [3, 9, context].entries()) {
      expect(plans[k].length).toBe(L);
      expect(plans[k].n).toBe(L * 16); // the window's own state, unpadded
      expect(plans[k].padding).toEqual({ length: context, args: [true] });
    }
    expect(new Set(plans.map((p) => p.key)).size).toBe(1);
  });

  it("hands its reference back to the model: a cell batch seats the request's rows", async () => {
    const plan = await lm.plan(window(5));
    const cells = lm.cellBatch(plan.prepared, 2, plan.padding);
    expect(cells.n).toBe(plan.padding!.length * 16);
    expect(() => cells.setRow(1, plan.prepared, 0, plan.length)).not.toThrow();
    expect(lm.canShareHead(plan.prepared)).toBe(false); // its head reads targets too
  });
});
