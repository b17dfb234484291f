// The request path's types at the worker boundary: an InferJob and an InferReply are the runtime's
// request and result, plain data (structured clone drops no hook, because there is none to drop).
// These are compile-time checks: `npm test` type-checks test/ before vitest runs, and fails on them.
import { describe, expectTypeOf, it } from 'vitest';
import type { ExecutorRequest, ExecutorResult } from '../../src/runtime/index.js';
import type { InferJob, InferReply } from '../../src/server/protocol.js';
import type { RequestControl } from '../../src/server/solver-options.js';
import type { SolverSettings } from '../../src/solver/index.js';

/** The keys of T whose values are functions (optional ones included). */
type FunctionKeys<T> = { [K in keyof T]-?: NonNullable<T[K]> extends (...args: never[]) => unknown ? K : never }[keyof T];

describe('protocol types', () => {
  it('an InferJob is plain data: no hook at its top level or in its solver settings', () => {
    expectTypeOf<FunctionKeys<InferJob>>().toBeNever();
    expectTypeOf<FunctionKeys<InferJob['solver']>>().toBeNever();
  });

  it('an InferReply is plain data: its settings carry no per-call hook', () => {
    expectTypeOf<FunctionKeys<InferReply>>().toBeNever();
    expectTypeOf<FunctionKeys<InferReply['options']>>().toBeNever();
  });

  it('a job is the executor request a worker submits, and a reply the executor result with its settings', () => {
    expectTypeOf<Omit<InferJob, 'stream' | 'cost'>>().toMatchTypeOf<ExecutorRequest>();
    expectTypeOf<InferReply>().toMatchTypeOf<Omit<ExecutorResult, 'options'>>();
  });

  it('the route resolves the same settings the job carries', () => {
    expectTypeOf<RequestControl['solver']>().toEqualTypeOf<SolverSettings>();
    expectTypeOf<InferJob['solver']>().toEqualTypeOf<SolverSettings>();
  });
});
