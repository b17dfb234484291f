// Issue #26, part 1: the Open Inference Protocol over gRPC, called with @grpc/grpc-js from the
// vendored proto: every RPC, typed and raw tensors compared bit for bit with REST's binary
// answers, bad input, the catalogue mapped to gRPC statuses, API keys in metadata, the
// gRPC deadline, client cancel, and metrics.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lmInferBody, NEVER_CONVERGES, poolEvent, postJson, ROOT, startTestServer, until, type TestServer } from './helpers.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
const PROTO = join(ROOT, 'vendor/open-inference-protocol/open_inference_grpc.proto');
const definition = protoLoader.loadSync(PROTO, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
const { inference } = grpc.loadPackageDefinition(definition) as any;

type Client = Record<string, (req: object, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: any) => void) => grpc.ClientUnaryCall>;

function client(port: number): Client {
  return new inference.GRPCInferenceService(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': -1 });
}

/** One RPC as a promise; `meta` adds metadata keys, `deadlineMs` a gRPC deadline. */
function call(c: Client, rpc: string, req: object, opts: { meta?: Record<string, string>; deadlineMs?: number } = {}): Promise<any> {
  const meta = new grpc.Metadata();
  for (const [k, v] of Object.entries(opts.meta ?? {})) meta.set(k, v);
  const callOpts: grpc.CallOptions = opts.deadlineMs ? { deadline: Date.now() + opts.deadlineMs } : {};
  return new Promise((resolve, reject) => c[rpc](req, meta, callOpts, (err, res) => (err ? reject(err) : resolve(res))));
}

async function failure(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('the call succeeded');
}

const bytes = (t: Float32Array | BigInt64Array) => Buffer.from(t.buffer, t.byteOffset, t.byteLength);
const pixels = (batch: number) => Float32Array.from({ length: batch * 64 }, (_, i) => Math.sin(i * 0.37) / 2);

/** REST binary answer for the same request: header + each output's bytes, by name. */
async function restBinary(s: TestServer, model: string, inputs: { name: string; datatype: string; shape: number[]; data: Float32Array | BigInt64Array }[], outputs: string[]): Promise<Record<string, Buffer>> {
  const head = Buffer.from(JSON.stringify({
    inputs: inputs.map(({ data, ...t }) => ({ ...t, parameters: { binary_data_size: data.byteLength } })),
    outputs: outputs.map((name) => ({ name, parameters: { binary_data: true } })),
  }));
  const r = await fetch(`${s.url}/v2/models/${model}/infer`, {
    method: 'POST', headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(head.length) },
    body: Buffer.concat([head, ...inputs.map((t) => bytes(t.data))]),
  });
  expect(r.status).toBe(200);
  const body = Buffer.from(await r.arrayBuffer());
  const n = Number(r.headers.get('inference-header-content-length'));
  const header = JSON.parse(body.subarray(0, n).toString());
  const out: Record<string, Buffer> = {};
  let at = n;
  for (const o of header.outputs) {
    out[o.name] = body.subarray(at, at + o.parameters.binary_data_size);
    at += o.parameters.binary_data_size;
  }
  return out;
}

describe('gRPC off by default', () => {
  it('starts no gRPC service unless --grpc-port is set', async () => {
    const s = await startTestServer({}, ['tiny-image']);
    try {
      expect(s.grpcPort).toBeUndefined();
    } finally {
      await s.cleanup();
    }
  });
});

describe('gRPC inference.GRPCInferenceService', () => {
  let s: TestServer;
  let c: Client;
  beforeAll(async () => {
    s = await startTestServer({ grpcPort: 0, bodyLimitBytes: 64 << 10, maxIterCap: 100_000 }, ['tiny-image', 'tiny-lm']);
    c = client(s.grpcPort!);
  });
  afterAll(async () => {
    (c as unknown as grpc.Client)?.close();
    await s?.cleanup();
  });

  it('answers ServerLive, ServerReady, ServerMetadata and ModelMetadata as REST does', async () => {
    expect(s.grpcPort).toBeGreaterThan(0);
    expect(await call(c, 'ServerLive', {})).toEqual({ live: true });
    expect(await call(c, 'ServerReady', {})).toEqual({ ready: true });
    expect(await call(c, 'ModelReady', { name: 'tiny-image', version: '' })).toEqual({ ready: true });
    const server = await call(c, 'ServerMetadata', {});
    expect(server).toEqual(await (await fetch(`${s.url}/v2`)).json());
    for (const model of ['tiny-image', 'tiny-lm']) {
      const meta = await call(c, 'ModelMetadata', { name: model, version: '' });
      const rest = await (await fetch(`${s.url}/v2/models/${model}`)).json() as any;
      const num = (ts: any[]) => ts.map((t) => ({ ...t, shape: t.shape.map(Number) }));
      expect({ name: meta.name, versions: meta.versions, platform: meta.platform, inputs: num(meta.inputs), outputs: num(meta.outputs) }).toEqual(rest);
    }
    const missing = await failure(call(c, 'ModelMetadata', { name: 'nope', version: '' }));
    expect(missing.code).toBe(grpc.status.NOT_FOUND);
    expect(missing.metadata.get('deq-error-code')).toEqual(['DEQ_ERR_MODEL_NOT_FOUND']);
    expect(await call(c, 'ModelReady', { name: 'tiny-image', version: '7' })).toEqual({ ready: false }); // as Triton answers
    expect(await call(c, 'ModelReady', { name: 'nope', version: '' })).toEqual({ ready: false });
  });

  it('ModelInfer with raw_input_contents answers raw_output_contents, bit for bit the REST binary answer', async () => {
    const x = pixels(3);
    const outputs = ['logits', 'solver_iterations', 'solver_residual', 'solver_converged', 'solver_stop_reason'];
    const res = await call(c, 'ModelInfer', {
      model_name: 'tiny-image', id: 'g-1', inputs: [{ name: 'x', datatype: 'FP32', shape: [3, 1, 8, 8] }],
      outputs: outputs.map((name) => ({ name })), raw_input_contents: [bytes(x)],
      parameters: { tol: { double_param: 1e-5 }, max_iter: { int64_param: 60 } },
    });
    expect(res.id).toBe('g-1');
    expect(res.outputs.map((o: any) => [o.name, o.datatype, o.shape.map(Number)])).toEqual([
      ['logits', 'FP32', [3, 3]], ['solver_iterations', 'INT64', [3]], ['solver_residual', 'FP32', [3]], ['solver_converged', 'BOOL', [3]], ['solver_stop_reason', 'BYTES', [3]],
    ]);
    const rest = await restBinary(s, 'tiny-image', [{ name: 'x', datatype: 'FP32', shape: [3, 1, 8, 8], data: x }], outputs);
    // The REST request carries no tol/max_iter: compare against one with the same settings.
    const restSame = await postJson(`${s.url}/v2/models/tiny-image/infer`, { parameters: { tol: 1e-5, max_iter: 60 }, inputs: [{ name: 'x', datatype: 'FP32', shape: [3, 1, 8, 8], data: Array.from(x) }], outputs: [{ name: 'logits', parameters: { binary_data: true } }] });
    const sameBody = Buffer.from(await restSame.arrayBuffer());
    const logitsRest = sameBody.subarray(Number(restSame.headers.get('inference-header-content-length')));
    expect(Buffer.compare(res.raw_output_contents[0], logitsRest)).toBe(0);
    expect(rest.logits.length).toBe(res.raw_output_contents[0].length);
    // Parameters are InferParameters: scalars with their types.
    expect(res.parameters.max_iter).toMatchObject({ parameter_choice: 'int64_param', int64_param: '60' });
    expect(res.parameters.tol).toMatchObject({ parameter_choice: 'double_param', double_param: 1e-5 });
    expect(res.parameters.converged.parameter_choice).toBe('bool_param');
    const iterations = new BigInt64Array(new Uint8Array(res.raw_output_contents[1]).buffer);
    expect(Math.max(...Array.from(iterations, Number))).toBe(Number(res.parameters.iterations.int64_param));
    // BYTES: 4-byte length, then the string.
    const why = res.raw_output_contents[4] as Buffer;
    expect(why.readUInt32LE(0)).toBeGreaterThan(0);
    expect(why.subarray(4, 4 + why.readUInt32LE(0)).toString()).toMatch(/^(converged|max_iter)$/);
  });

  it('ModelInfer with typed contents answers typed contents equal to the raw answer (INT64 tokens, the LM)', async () => {
    const body = lmInferBody(2, 5);
    const tokens = BigInt64Array.from(body.inputs[0].data, BigInt);
    const targets = BigInt64Array.from(body.inputs[1].data, BigInt);
    const typed = await call(c, 'ModelInfer', {
      model_name: 'tiny-lm', inputs: [
        { name: 'tokens', datatype: 'INT64', shape: [2, 5], contents: { int64_contents: Array.from(tokens, String) } },
        { name: 'targets', datatype: 'INT64', shape: [2, 5], contents: { int64_contents: Array.from(targets, String) } },
      ], outputs: [{ name: 'target_logprobs' }, { name: 'topk_ids' }],
    });
    expect(typed.raw_output_contents).toEqual([]);
    const rest = await restBinary(s, 'tiny-lm', [
      { name: 'tokens', datatype: 'INT64', shape: [2, 5], data: tokens }, { name: 'targets', datatype: 'INT64', shape: [2, 5], data: targets },
    ], ['target_logprobs', 'topk_ids']);
    expect(Buffer.compare(bytes(Float32Array.from(typed.outputs[0].contents.fp32_contents)), rest.target_logprobs)).toBe(0);
    expect(Buffer.compare(bytes(BigInt64Array.from(typed.outputs[1].contents.int64_contents, BigInt)), rest.topk_ids)).toBe(0);
    // With no outputs named, every model output comes back, as over REST.
    const all = await call(c, 'ModelInfer', { model_name: 'tiny-lm', inputs: [
      { name: 'tokens', datatype: 'INT64', shape: [2, 5], contents: { int64_contents: Array.from(tokens, String) } },
      { name: 'targets', datatype: 'INT64', shape: [2, 5], contents: { int64_contents: Array.from(targets, String) } },
    ] });
    expect(all.outputs.map((o: any) => o.name)).toEqual(['target_logprobs', 'topk_logprobs', 'topk_ids', 'logprobs']);
  });

  it('refuses bad input with INVALID_ARGUMENT and the catalogue code, as REST refuses it with 400', async () => {
    const x = pixels(1);
    const bad = [
      { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1, 8, 7] }], raw_input_contents: [bytes(x).subarray(0, 56 * 4)] }, // wrong shape
      { inputs: [{ name: 'x', datatype: 'INT64', shape: [1, 1, 8, 8] }], raw_input_contents: [Buffer.alloc(64 * 8)] }, // wrong datatype
      { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8] }], raw_input_contents: [bytes(x).subarray(0, 100)] }, // raw size ≠ shape
      { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8], contents: { fp32_contents: [1, 2, 3] } }] }, // contents ≠ shape
      { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8], contents: { int64_contents: ['1'] } }] }, // contents field ≠ datatype
      { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8] }], raw_input_contents: [bytes(x), bytes(x)] }, // raw count ≠ inputs
      { inputs: [{ name: 'y', datatype: 'FP32', shape: [1, 1, 8, 8] }], raw_input_contents: [bytes(x)] }, // unknown input
      { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8] }], raw_input_contents: [bytes(x)], parameters: { max_iter: { int64_param: '1000000' } } }, // over the cap
      { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8] }], raw_input_contents: [bytes(x)], outputs: [{ name: 'nope' }] }, // unknown output
    ];
    for (const req of bad) {
      const e = await failure(call(c, 'ModelInfer', { model_name: 'tiny-image', ...req }));
      expect(e.code, JSON.stringify(req).slice(0, 200)).toBe(grpc.status.INVALID_ARGUMENT);
      expect(String(e.metadata.get('deq-error-code')[0])).toMatch(/^DEQ_ERR_INVALID_(INPUT|SOLVER_OPTION)$/);
      expect(e.details).toMatch(/x|y|max_iter|nope|raw_input_contents/); // names what is wrong
    }
    const nan = Float32Array.from(x);
    nan[3] = NaN;
    expect((await failure(call(c, 'ModelInfer', { model_name: 'tiny-image', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8] }], raw_input_contents: [bytes(nan)] }))).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await failure(call(c, 'ModelInfer', { model_name: 'nope', inputs: [] }))).code).toBe(grpc.status.NOT_FOUND);
  });

  it('refuses a message over --body-limit with RESOURCE_EXHAUSTED, and keeps serving', async () => {
    const big = Buffer.alloc(80 << 10);
    const e = await failure(call(c, 'ModelInfer', { model_name: 'tiny-image', inputs: [{ name: 'x', datatype: 'FP32', shape: [320, 1, 8, 8] }], raw_input_contents: [big] }));
    expect(e.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(await call(c, 'ServerLive', {})).toEqual({ live: true });
  });

  it('the gRPC deadline ends a solve that would not converge: DEADLINE_EXCEEDED, promptly', async () => {
    const body = lmInferBody(1, 8);
    const t0 = Date.now();
    const e = await failure(call(c, 'ModelInfer', {
      model_name: 'tiny-lm', inputs: body.inputs.map((t) => ({ name: t.name, datatype: 'INT64', shape: t.shape, contents: { int64_contents: t.data.map(String) } })),
      parameters: { solver: { string_param: NEVER_CONVERGES.solver }, tol: { double_param: NEVER_CONVERGES.tol }, stop_mode: { string_param: 'abs' }, max_iter: { int64_param: String(NEVER_CONVERGES.max_iter) } },
    }, { deadlineMs: 400 }));
    expect(e.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(Date.now() - t0).toBeLessThan(10_000);
    // The server's solve stopped too: nothing left running for tiny-lm.
    await until(async () => s.state.pool.inFlight('tiny-lm') === 0, 10_000);
  });

  it('a client cancel frees the solve', async () => {
    const body = lmInferBody(1, 8);
    const dispatched = poolEvent(s, 'dispatch', 'tiny-lm');
    const meta = new grpc.Metadata();
    const pending = c.ModelInfer({
      model_name: 'tiny-lm', inputs: body.inputs.map((t) => ({ name: t.name, datatype: 'INT64', shape: t.shape, contents: { int64_contents: t.data.map(String) } })),
      parameters: { solver: { string_param: 'fixed-point' }, tol: { double_param: 1e-8 }, stop_mode: { string_param: 'abs' }, max_iter: { int64_param: '100000' }, deadline_ms: { int64_param: '25000' } },
    }, meta, {}, () => {});
    await dispatched;
    expect(s.state.pool.inFlight('tiny-lm')).toBe(1);
    pending.cancel();
    await until(async () => s.state.pool.inFlight('tiny-lm') === 0, 10_000);
  });

  it('counts gRPC calls in /metrics by RPC and status', async () => {
    const text = await (await fetch(`${s.url}/metrics`)).text();
    expect(text).toMatch(/deq_request_duration_seconds_count\{method="GRPC",route="\/inference.GRPCInferenceService\/ModelInfer",status="200"\} [1-9]/);
    expect(text).toMatch(/deq_request_duration_seconds_count\{method="GRPC",route="\/inference.GRPCInferenceService\/ModelInfer",status="400"\} [1-9]/);
    expect(text).toMatch(/deq_errors_total\{code="DEQ_ERR_INVALID_INPUT"\} [1-9]/);
  });
});

describe('gRPC with API keys', () => {
  const KEY = 'k'.repeat(24);
  let s: TestServer;
  let c: Client;
  beforeAll(async () => {
    s = await startTestServer({ grpcPort: 0, apiKeys: [KEY] }, ['tiny-image']);
    c = client(s.grpcPort!);
  });
  afterAll(async () => {
    (c as unknown as grpc.Client)?.close();
    await s?.cleanup();
  });

  it('needs the key in the authorization metadata key, except for health RPCs', async () => {
    const req = { model_name: 'tiny-image', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8] }], raw_input_contents: [bytes(pixels(1))] };
    const none = await failure(call(c, 'ModelInfer', req));
    expect(none.code).toBe(grpc.status.UNAUTHENTICATED);
    expect((await failure(call(c, 'ModelInfer', req, { meta: { authorization: `Bearer ${'x'.repeat(24)}` } }))).code).toBe(grpc.status.UNAUTHENTICATED);
    expect((await failure(call(c, 'ModelMetadata', { name: 'tiny-image' }))).code).toBe(grpc.status.UNAUTHENTICATED);
    const ok = await call(c, 'ModelInfer', req, { meta: { authorization: `Bearer ${KEY}` } });
    expect(ok.outputs[0].name).toBe('logits');
    expect(await call(c, 'ServerReady', {})).toEqual({ ready: true });
  });
});
