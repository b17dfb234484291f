// Issue #13 over HTTP, without PyTorch: the generic tensor task (/predict and v2 on the
// tiny-tensor fixture: f(z, x, ids) as one graph, no inject, no head), wrong-task errors,
// /classify logits, v2 versioned routes, and the binary tensor data extension with
// requests built byte for byte as the extension's specification lays them out.
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectClose } from '../helpers/float.js';
import { FIXTURES, postJson, startTestServer, type TestServer } from './helpers.js';

let s: TestServer;
let parity: { cases: { inputs: Record<string, { shape: number[]; data: number[] }>; outputs: Record<string, number[]> }[] };
let imageParity: { cases: { input: { data: number[] }; outputs: { logits: number[] } }[] };

beforeAll(async () => {
  s = await startTestServer({ maxBatch: 16 }, ['tiny-image', 'tiny-lm', 'tiny-tensor']);
  parity = JSON.parse(await readFile(join(FIXTURES, 'tiny-tensor', 'parity.json'), 'utf8'));
  imageParity = JSON.parse(await readFile(join(FIXTURES, 'tiny-image', 'parity.json'), 'utf8'));
});
afterAll(async () => {
  await s?.cleanup();
});

const json = (r: Response): Promise<any> => r.json();

/** A binary-extension request: `header` JSON, then the tensors' little-endian bytes. */
function binaryRequest(url: string, header: object, tensors: (Float32Array | BigInt64Array)[]): Promise<Response> {
  const head = Buffer.from(JSON.stringify(header), 'utf8');
  const body = Buffer.concat([head, ...tensors.map((t) => Buffer.from(t.buffer, t.byteOffset, t.byteLength))]);
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(head.length) },
    body,
  });
}

/** Splits a binary response into its JSON header and the bytes after it. */
async function readBinary(r: Response): Promise<{ header: any; tail: Buffer }> {
  const n = Number(r.headers.get('inference-header-content-length'));
  const body = Buffer.from(await r.arrayBuffer());
  expect(Number.isInteger(n) && n > 0 && n <= body.length).toBe(true);
  return { header: JSON.parse(body.subarray(0, n).toString('utf8')), tail: body.subarray(n) };
}

describe('tensor task', () => {
  it('/predict answers the exporter’s PyTorch fixed point for every parity case (several inputs, no inject, no head)', async () => {
    for (const c of parity.cases) {
      const r = await postJson(`${s.url}/v1/models/tiny-tensor/predict`, { inputs: { x: c.inputs.x.data, ids: c.inputs.ids.data } });
      expect(r.status).toBe(200);
      const body = await json(r);
      expect(body.shapes).toEqual({ a: [2], b: [2, 2] });
      expect(body.solver.converged).toBe(true);
      expectClose(body.outputs.a, c.outputs.a, 1e-4);
      expectClose((body.outputs.b as number[][]).flat(), c.outputs.b, 1e-4);
    }
  });

  it('v2 metadata and infer serve named float32 and int64 inputs, batched', async () => {
    const meta = await json(await fetch(`${s.url}/v2/models/tiny-tensor`));
    expect(meta.inputs).toEqual([{ name: 'x', datatype: 'FP32', shape: [-1, 3] }, { name: 'ids', datatype: 'INT64', shape: [-1, 2] }]);
    expect(meta.outputs).toEqual([{ name: 'a', datatype: 'FP32', shape: [-1, 2] }, { name: 'b', datatype: 'FP32', shape: [-1, 2, 2] }]);
    const cs = parity.cases;
    const r = await postJson(`${s.url}/v2/models/tiny-tensor/infer`, {
      inputs: [
        { name: 'ids', datatype: 'INT64', shape: [cs.length, 2], data: cs.map((c) => c.inputs.ids.data) },
        { name: 'x', datatype: 'FP32', shape: [cs.length, 3], data: cs.flatMap((c) => c.inputs.x.data) },
      ],
      outputs: [{ name: 'b' }],
    });
    expect(r.status).toBe(200);
    const body = await json(r);
    expect(body.outputs.map((o: any) => o.name)).toEqual(['b']);
    expect(body.outputs[0].shape).toEqual([cs.length, 2, 2]);
    expectClose(body.outputs[0].data, cs.flatMap((c) => c.outputs.b), 1e-4);
  });

  it('refuses malformed tensors with a 400 that names the input', async () => {
    const ragged = await postJson(`${s.url}/v1/models/tiny-tensor/predict`, { inputs: { x: [[1, 2, 3], [1, 2]], ids: [[0, 1], [1, 2]] } });
    expect(ragged.status).toBe(400);
    expect((await json(ragged)).error).toMatch(/x is ragged/);
    const mixed = await postJson(`${s.url}/v1/models/tiny-tensor/predict`, { inputs: { x: [1, 2, 3], ids: [[0, 1]] } });
    expect(mixed.status).toBe(400);
    const missing = await postJson(`${s.url}/v1/models/tiny-tensor/predict`, { inputs: { x: [1, 2, 3] } });
    expect((await json(missing)).error).toMatch(/missing input ids/);
    const unknownOut = await postJson(`${s.url}/v1/models/tiny-tensor/predict`, { inputs: { x: [1, 2, 3], ids: [0, 1] }, outputs: ['z'] });
    expect(unknownOut.status).toBe(400);
    const nan = await postJson(`${s.url}/v1/models/tiny-tensor/predict`, { inputs: { x: [1, 'a', 3], ids: [0, 1] } });
    expect(nan.status).toBe(400);
  });

  it('image and text routes refuse a tensor model with the wrong-task error naming /predict', async () => {
    const c = await fetch(`${s.url}/v1/models/tiny-tensor/classify`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array([1, 2, 3]) });
    expect(c.status).toBe(400);
    const ce = await json(c);
    expect(ce.code).toBe('DEQ_ERR_WRONG_TASK');
    expect(ce.error).toContain('/v1/models/tiny-tensor/predict');
    const sc = await postJson(`${s.url}/v1/models/tiny-tensor/score`, { text: 'the' });
    expect(sc.status).toBe(400);
    expect((await json(sc)).code).toBe('DEQ_ERR_WRONG_TASK');
  });

  it('/classify returns the logits on request, consistent with the probabilities', async () => {
    const sharp = (await import('sharp')).default;
    const img = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 10, g: 200, b: 30 } } }).png().toBuffer();
    const post = (q: string) => fetch(`${s.url}/v1/models/tiny-image/classify${q}`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: img });
    const plain = await json(await post(''));
    expect(plain.logits).toBeUndefined();
    const withLogits = await json(await post('?logits=true&top_k=3'));
    expect(withLogits.logits).toHaveLength(3);
    const max = Math.max(...withLogits.logits);
    const exps = withLogits.logits.map((v: number) => Math.exp(v - max));
    const sum = exps.reduce((a: number, b: number) => a + b, 0);
    for (const l of withLogits.labels) expect(l.probability).toBeCloseTo(exps[l.index] / sum, 6);
    expect((await post('?logits=maybe')).status).toBe(400);
  });
});

describe('v2 versioned routes', () => {
  it('serve metadata, readiness and inference under /versions/{version}', async () => {
    const plain = await json(await fetch(`${s.url}/v2/models/tiny-image`));
    const versioned = await fetch(`${s.url}/v2/models/tiny-image/versions/1`);
    expect(versioned.status).toBe(200);
    expect(await json(versioned)).toEqual(plain);
    expect((await fetch(`${s.url}/v2/models/tiny-image/versions/1/ready`)).status).toBe(200);
    const x = imageParity.cases[0].input.data;
    const r = await postJson(`${s.url}/v2/models/tiny-image/versions/1/infer`, { id: 'v1', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8], data: x }] });
    expect(r.status).toBe(200);
    const body = await json(r);
    expect(body).toMatchObject({ model_name: 'tiny-image', model_version: '1', id: 'v1' });
    expectClose(body.outputs[0].data, imageParity.cases[0].outputs.logits, 1e-3);
  });

  it('answer a version the model does not have with a 404 in the v2 error shape', async () => {
    for (const [method, path] of [['GET', '/versions/2'], ['GET', '/versions/2/ready'], ['POST', '/versions/0/infer']] as const) {
      const r = method === 'GET'
        ? await fetch(`${s.url}/v2/models/tiny-image${path}`)
        : await postJson(`${s.url}/v2/models/tiny-image${path}`, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8], data: Array(64).fill(0) }] });
      expect(r.status, path).toBe(404);
      const body = await json(r);
      expect(Object.keys(body), path).toEqual(['error']);
      expect(body.error).toMatch(/no version/);
    }
  });
});

describe('v2 binary tensor data extension', () => {
  it('is declared in /v2 extensions', async () => {
    expect((await json(await fetch(`${s.url}/v2`))).extensions).toContain('binary_tensor_data');
  });

  it('takes a binary FP32 input and returns a binary output, as the spec example lays them out', async () => {
    const x = Float32Array.from(imageParity.cases[0].input.data);
    const header = {
      inputs: [{ name: 'x', shape: [1, 1, 8, 8], datatype: 'FP32', parameters: { binary_data_size: 256 } }],
      outputs: [{ name: 'logits', parameters: { binary_data: true } }],
    };
    const r = await binaryRequest(`${s.url}/v2/models/tiny-image/infer`, header, [x]);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^application\/octet-stream/);
    const { header: h, tail } = await readBinary(r);
    expect(h.outputs).toEqual([{ name: 'logits', datatype: 'FP32', shape: [1, 3], parameters: { binary_data_size: 12 } }]);
    expect(tail.length).toBe(12);
    const logits = [0, 1, 2].map((i) => tail.readFloatLE(4 * i));
    // The same request as JSON gives the same numbers.
    const viaJson = await json(await postJson(`${s.url}/v2/models/tiny-image/infer`, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8], data: Array.from(x) }] }));
    expectClose(logits, viaJson.outputs[0].data, 1e-6);
    expectClose(logits, imageParity.cases[0].outputs.logits, 1e-3);
  });

  it('mixes a binary INT64 input with a JSON one, and binary_data_output returns every output as binary', async () => {
    const tokens = BigInt64Array.from([3n, 4n, 5n, 6n]);
    const header = {
      parameters: { binary_data_output: true },
      inputs: [
        { name: 'tokens', shape: [1, 4], datatype: 'INT64', parameters: { binary_data_size: 32 } },
        { name: 'targets', shape: [1, 4], datatype: 'INT64', data: [4, 5, 6, 7] },
      ],
      outputs: [{ name: 'target_logprobs' }, { name: 'topk_ids' }],
    };
    const r = await binaryRequest(`${s.url}/v2/models/tiny-lm/infer`, header, [tokens]);
    expect(r.status).toBe(200);
    const { header: h, tail } = await readBinary(r);
    expect(h.outputs.map((o: any) => [o.name, o.datatype, o.parameters.binary_data_size, o.data])).toEqual([
      ['target_logprobs', 'FP32', 16, undefined], ['topk_ids', 'INT64', 1 * 4 * 5 * 8, undefined],
    ]);
    expect(tail.length).toBe(16 + 160);
    const viaJson = await json(await postJson(`${s.url}/v2/models/tiny-lm/infer`, {
      inputs: [{ name: 'tokens', shape: [1, 4], datatype: 'INT64', data: [3, 4, 5, 6] }, header.inputs[1]],
      outputs: header.outputs,
    }));
    const lp = [0, 1, 2, 3].map((i) => tail.readFloatLE(4 * i));
    expectClose(lp, viaJson.outputs[0].data, 1e-6);
    const ids = Array.from({ length: 20 }, (_, i) => Number(tail.readBigInt64LE(16 + 8 * i)));
    expect(ids).toEqual(viaJson.outputs[1].data);
  });

  it('refuses inconsistent binary requests with a 400 and keeps serving', async () => {
    const x = new Float32Array(64);
    const url = `${s.url}/v2/models/tiny-image/infer`;
    const input = (size: number) => ({ inputs: [{ name: 'x', shape: [1, 1, 8, 8], datatype: 'FP32', parameters: { binary_data_size: size } }] });
    const wrongSize = await binaryRequest(url, input(128), [x]);
    expect(wrongSize.status).toBe(400);
    expect((await json(wrongSize)).error).toMatch(/binary_data_size 128/);
    const trailing = await binaryRequest(url, input(256), [x, new Float32Array(1)]);
    expect(trailing.status).toBe(400);
    expect((await json(trailing)).error).toMatch(/after the last binary input/);
    const short = await binaryRequest(url, input(256), [new Float32Array(10)]);
    expect(short.status).toBe(400);
    const tooLong = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': '99999' }, body: Buffer.from('{}') });
    expect(tooLong.status).toBe(400);
    const noHeader = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.from('{}') });
    expect(noHeader.status).toBe(415);
    expect((await json(noHeader)).error).toMatch(/Inference-Header-Content-Length header/);
    // tritonclient's HTTP client sends the binary form with no Content-Type at all
    const head = Buffer.from(JSON.stringify(input(256)));
    const untyped = await new Promise<number>((resolve, reject) => {
      const u = new URL(url);
      const body = Buffer.concat([head, Buffer.from(x.buffer)]);
      request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'inference-header-content-length': head.length, 'content-length': body.length } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      }).on('error', reject).end(body);
    });
    expect(untyped).toBe(200);
    // …and its all-JSON requests with neither a Content-Type nor the header length: JSON, as Triton takes them.
    const plain = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [1, 1, 8, 8], datatype: 'FP32', data: Array.from(x) }] }));
    const untypedJson = await new Promise<number>((resolve, reject) => {
      const u = new URL(url);
      request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'content-length': plain.length } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      }).on('error', reject).end(plain);
    });
    expect(untypedJson).toBe(200);
    const noData = await postJson(url, { inputs: [{ name: 'x', shape: [1, 1, 8, 8], datatype: 'FP32' }] });
    expect(noData.status).toBe(400);
    expect((await json(noData)).error).toMatch(/neither data nor/);
    expect((await binaryRequest(url, input(256), [x])).status).toBe(200);
  });
});
