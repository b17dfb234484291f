import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'node:http';
import { expectClose } from '../helpers/float.js';
import { lmInferBody, postJson, startTestServer, type TestServer } from './helpers.js';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer({ imageLimitBytes: 64 * 1024, maxImagePixels: 1_000_000, maxTextChars: 2000, maxBatch: 16 });
});
afterAll(async () => {
  await s?.cleanup();
});

// Response.json() is typed unknown; these tests read fields freely.
const json = (r: Response): Promise<any> => r.json();
const near = (a: number, b: number, atol: number, rtol: number) => expectClose([a], [b], atol, rtol);

/** GET with the path sent byte for byte (fetch would resolve `..` and `%2e%2e` itself). */
function rawGet(path: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const u = new URL(s.url);
    request({ host: u.hostname, port: u.port, path, method: 'GET' }, (res) => {
      let data = '';
      res.on('data', (c) => (data += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(data) }));
    }).on('error', reject).end();
  });
}

const get = (path: string, headers: Record<string, string> = {}) => fetch(s.url + path, { headers });

async function png(width = 8, height = 8, channels: 3 | 4 = 3): Promise<Buffer> {
  return sharp({ create: { width, height, channels, background: { r: 200, g: 30, b: 90, alpha: 1 } } }).png().toBuffer();
}

function classify(body: RequestInit['body'], type?: string, query = ''): Promise<Response> {
  return fetch(`${s.url}/v1/models/tiny-image/classify${query}`, { method: 'POST', headers: type ? { 'content-type': type } : {}, body });
}

async function expectError(res: Response, status: number, code: string): Promise<{ error: string; code?: string }> {
  const b = await json(res);
  expect({ status: res.status, code: b.code }).toEqual({ status, code });
  expect(typeof b.error).toBe('string');
  expect(JSON.stringify(b)).not.toMatch(/\bat .*\.(js|ts):\d+/); // no stack traces
  return b;
}

describe('health and metadata', () => {
  it('answers live and ready', async () => {
    expect((await get('/v2/health/live')).status).toBe(200);
    const r = await get('/v2/health/ready');
    expect(r.status).toBe(200);
    expect(await json(r)).toEqual({ ready: true });
  });

  it('serves v2 server and model metadata', async () => {
    expect(await json(await get('/v2'))).toMatchObject({ name: 'deq-serve', extensions: ['binary_tensor_data'] });
    const m = await json(await get('/v2/models/tiny-image'));
    expect(m).toMatchObject({ name: 'tiny-image', inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 1, 8, 8] }], outputs: [{ name: 'logits', datatype: 'FP32', shape: [-1, 3] }] });
    const lm = await json(await get('/v2/models/tiny-lm'));
    expect(lm.inputs.map((t: { name: string }) => t.name)).toEqual(['tokens', 'targets']);
    expect((await get('/v2/models/tiny-lm/ready')).status).toBe(200);
  });

  it('lists models with solver defaults, caps and provenance', async () => {
    const { models } = await json(await get('/v1/models'));
    expect(models.map((m: { name: string }) => m.name).sort()).toEqual(['tiny-image', 'tiny-lm']);
    const m = await json(await get('/v1/models/tiny-image'));
    expect(m).toMatchObject({ task: 'image-classification', labels: ['cat', 'dog', 'bird'], solver_defaults: { method: 'broyden', max_iter: 30 }, caps: { max_iter: [1, 500] } });
    expect(m.provenance.seed).toBe(1234);
    // npm test builds the wasm kernels, so the server reports them.
    expect(m.solver_kernel).toBe('wasm');
  });

  it('refuses unknown models and names built to escape the models folder', async () => {
    for (const name of ['nope', '..%2F..%2Fetc', '..%2f..%2fetc%2fpasswd', 'tiny-image%00', 'TINY-IMAGE', '.tiny-image', '%2e%2e%2f%2e%2e']) {
      await expectError(await get(`/v1/models/${name}`), 404, 'DEQ_ERR_MODEL_NOT_FOUND');
      const post = await fetch(`${s.url}/v1/models/${name}/classify`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: await png() });
      await expectError(post, 404, 'DEQ_ERR_MODEL_NOT_FOUND');
    }
    for (const path of ['/v1/models/..%2F..%2Fetc', '/v1/models/%2e%2e', '/v1/models/..', '/v1/models/../../etc/passwd', '/v1/models/tiny-image/../../../etc']) {
      const r = await rawGet(path);
      expect(r.status).toBe(404);
      expect(['DEQ_ERR_MODEL_NOT_FOUND', 'DEQ_ERR_NOT_FOUND']).toContain(r.body.code);
    }
    // The message lists what is loaded, so a typo is one look away from its fix.
    const unknown = await json(await get('/v1/models/tiny-imag'));
    expect(unknown.error).toMatch(/no model named "tiny-imag" \(loaded: .*tiny-image.*\)/);
    const v2 = await get('/v2/models/..%2F..%2Fetc');
    expect(v2.status).toBe(404);
    expect(await json(v2)).toEqual({ error: expect.any(String) });
    await expectError(await get('/v1/nothing-here'), 404, 'DEQ_ERR_NOT_FOUND');
  });

  it('echoes a valid x-request-id and replaces an invalid one', async () => {
    expect((await get('/v2/health/live', { 'x-request-id': 'gw-123.abc' })).headers.get('x-request-id')).toBe('gw-123.abc');
    const replaced = (await get('/v2/health/live', { 'x-request-id': 'bad id <script>' })).headers.get('x-request-id');
    expect(replaced).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('POST /v1/models/:name/classify', () => {
  it('classifies a raw PNG body and a multipart upload identically', async () => {
    const img = await png(20, 12, 4);
    const raw = await classify(img, 'image/png', '?top_k=3');
    expect(raw.status).toBe(200);
    const a = await json(raw);
    expect(a.labels).toHaveLength(3);
    const total = a.labels.reduce((t: number, l: { probability: number }) => t + l.probability, 0);
    near(total, 1, 1e-6, 0);
    expect(a.label).toBe(a.labels[0].label);
    expect(a.solver).toMatchObject({ method: 'broyden', tol: 0.001, max_iter: 30, stop_mode: 'rel', diverged: false, deadline_exceeded: false });
    expect(a.solver.iterations).toBeGreaterThan(0);

    const fd = new FormData();
    fd.append('image', new Blob([img], { type: 'image/png' }), 'x.png');
    const b = await json(await classify(fd));
    expect(b.labels[0]).toEqual(a.labels[0]);
  });

  it('accepts JPEG, WebP, GIF, TIFF and AVIF', async () => {
    const base = sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 10, g: 200, b: 10 } } });
    for (const [fmt, type] of [['jpeg', 'image/jpeg'], ['webp', 'image/webp'], ['gif', 'image/gif'], ['tiff', 'image/tiff'], ['avif', 'image/avif']] as const) {
      const res = await classify(await base.clone().toFormat(fmt).toBuffer(), type);
      expect({ fmt, status: res.status }).toEqual({ fmt, status: 200 });
    }
  });

  it('matches v2 infer on the same preprocessed tensor', async () => {
    // An 8×8 grayscale image needs no resize: the tensor is (v/255 − 0.5) / 0.5.
    const pixels = Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 37) % 256));
    const img = await sharp(pixels, { raw: { width: 8, height: 8, channels: 1 } }).png().toBuffer();
    const c = await json(await classify(img, 'image/png', '?top_k=3&tol=1e-5&max_iter=100'));
    const x = Array.from(pixels, (v) => (v / 255 - 0.5) / 0.5);
    const v = await json(await postJson(`${s.url}/v2/models/tiny-image/infer`, { parameters: { tol: 1e-5, max_iter: 100 }, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8], data: x }] }));
    const logits: number[] = v.outputs[0].data;
    const z = logits.map((l) => Math.exp(l - Math.max(...logits)));
    const sum = z.reduce((a, b) => a + b, 0);
    for (const l of c.labels) near(l.probability, z[l.index] / sum, 1e-5, 1e-4);
  });

  it('applies per-request solver settings and rejects out-of-range ones with the allowed range', async () => {
    const r = await json(await classify(await png(), 'image/png', '?solver=anderson&max_iter=3&stop_mode=abs&tol=0.5'));
    expect(r.solver).toMatchObject({ method: 'anderson', max_iter: 3, stop_mode: 'abs', tol: 0.5 });
    expect(r.solver.iterations).toBeLessThanOrEqual(3);
    for (const q of ['tol=0', 'tol=2', 'tol=abc', 'max_iter=0', 'max_iter=501', 'max_iter=2.5', 'solver=newton', 'stop_mode=max', 'deadline_ms=0', 'deadline_ms=999999999']) {
      const body = await expectError(await classify(await png(), 'image/png', `?${q}`), 400, 'DEQ_ERR_INVALID_SOLVER_OPTION');
      if (q.startsWith('max_iter')) expect(body.error).toContain('[1, 500]');
    }
  });

  it('refuses empty, corrupt and truncated images', async () => {
    await expectError(await classify(new Uint8Array(0), 'image/png'), 400, 'DEQ_ERR_IMAGE_DECODE');
    await expectError(await classify(Buffer.from('definitely not an image'), 'image/png'), 415, 'DEQ_ERR_UNSUPPORTED_MEDIA_TYPE');
    const full = await sharp({ create: { width: 64, height: 64, channels: 3, background: 'white' } }).jpeg().toBuffer();
    await expectError(await classify(full.subarray(0, Math.floor(full.length / 2)), 'image/jpeg'), 400, 'DEQ_ERR_IMAGE_DECODE');
    const p = await sharp({ create: { width: 64, height: 64, channels: 3, background: 'white' } }).png().toBuffer();
    const bad = await classify(p.subarray(0, p.length - 30), 'image/png');
    expect([400]).toContain(bad.status);
    expect((await json(bad)).code).toBe('DEQ_ERR_IMAGE_DECODE');
  });

  it('refuses SVG and other formats outside the allow-list', async () => {
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>');
    await expectError(await classify(svg, 'image/svg+xml'), 415, 'DEQ_ERR_UNSUPPORTED_MEDIA_TYPE');
    await expectError(await classify(svg, 'image/png'), 415, 'DEQ_ERR_UNSUPPORTED_MEDIA_TYPE');
    const ppm = Buffer.concat([Buffer.from('P6\n2 2\n255\n'), Buffer.alloc(12, 128)]);
    await expectError(await classify(ppm, 'image/x-portable-pixmap'), 415, 'DEQ_ERR_UNSUPPORTED_MEDIA_TYPE');
  });

  it('refuses a decompression bomb: a tiny PNG that declares 50000×50000 pixels', async () => {
    const bomb = await pngDeclaring(50_000, 50_000);
    expect(bomb.length).toBeLessThan(1024);
    await expectError(await classify(bomb, 'image/png'), 413, 'DEQ_ERR_PAYLOAD_TOO_LARGE');
  });

  it('refuses oversized uploads, raw and multipart', async () => {
    const big = Buffer.alloc(100 * 1024, 1);
    await expectError(await classify(big, 'image/png'), 413, 'DEQ_ERR_PAYLOAD_TOO_LARGE');
    const fd = new FormData();
    fd.append('image', new Blob([big], { type: 'image/png' }), 'big.png');
    await expectError(await classify(fd), 413, 'DEQ_ERR_PAYLOAD_TOO_LARGE');
  });

  it('refuses wrong content types and a wrong multipart field', async () => {
    await expectError(await classify(JSON.stringify({ image: 'x' }), 'application/json'), 415, 'DEQ_ERR_UNSUPPORTED_MEDIA_TYPE');
    await expectError(await classify('hello', 'text/plain'), 415, 'DEQ_ERR_UNSUPPORTED_MEDIA_TYPE');
    await expectError(await classify(await png(), 'application/octet-stream'), 415, 'DEQ_ERR_UNSUPPORTED_MEDIA_TYPE');
    const fd = new FormData();
    fd.append('picture', new Blob([await png()], { type: 'image/png' }), 'x.png');
    await expectError(await classify(fd), 400, 'DEQ_ERR_INVALID_INPUT');
  });

  it('refuses classify on a language model', async () => {
    const r = await fetch(`${s.url}/v1/models/tiny-lm/classify`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: await png() });
    await expectError(r, 400, 'DEQ_ERR_WRONG_TASK');
  });
});

describe('POST /v1/models/:name/score', () => {
  const score = (body: unknown, type = 'application/json') => postJson(`${s.url}/v1/models/tiny-lm/score`, body, { 'content-type': type });

  it('scores a text per token, consistent with v2 infer on the same ids', async () => {
    const res = await score({ text: 'the man said that it was in the house .' });
    expect(res.status).toBe(200);
    const { results, solver } = await json(res);
    expect(results).toHaveLength(1);
    const r = results[0];
    expect(r.tokens.length).toBe(r.token_count);
    expect(r.token_count).toBeGreaterThan(3);
    let total = 0;
    for (const t of r.tokens) {
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(typeof t.unk).toBe('boolean');
      total += t.logprob;
    }
    near(r.total_logprob, total, 1e-9, 1e-9);
    near(r.perplexity, Math.exp(-total / r.token_count), 1e-9, 1e-9);
    expect(solver).toMatchObject({ method: 'broyden', converged: true });
    expect(r.tokens.some((t: { unk: boolean; token: string }) => t.unk)).toBe(r.tokens.some((t: { token: string }) => t.token === 'house'));

    // The same ids through v2: bos + tokens → targets.
    const ids: number[] = r.tokens.map((t: { id: number }) => t.id);
    const input = [1, ...ids.slice(0, -1)];
    const v = await json(await postJson(`${s.url}/v2/models/tiny-lm/infer`, {
      inputs: [{ name: 'tokens', datatype: 'INT64', shape: [1, input.length], data: input }, { name: 'targets', datatype: 'INT64', shape: [1, ids.length], data: ids }],
      outputs: [{ name: 'target_logprobs' }],
    }));
    v.outputs[0].data.forEach((lp: number, i: number) => near(r.tokens[i].logprob, lp, 1e-4, 1e-4));
  });

  it('scores several texts, and texts longer than the context in sliding windows', async () => {
    const long = Array.from({ length: 40 }, (_, i) => ['the', 'of', 'and', 'to', 'a'][i % 5]).join(' ');
    const res = await score({ texts: ['the man said .', long], max_iter: 50 });
    expect(res.status).toBe(200);
    const { results } = await json(res);
    expect(results).toHaveLength(2);
    expect(results[1].token_count).toBeGreaterThanOrEqual(40);
    expect(results[1].windows).toBeGreaterThan(1);
    expect(results[0].windows).toBe(1);
    expect(results[1].solver.max_iter).toBe(50);
  });

  it('refuses empty, over-long, malformed and wrongly typed input', async () => {
    await expectError(await score({ text: '   ' }), 400, 'DEQ_ERR_TEXT_INVALID');
    await expectError(await score({ text: 'a'.repeat(2001) }), 413, 'DEQ_ERR_TEXT_TOO_LONG');
    await expectError(await score('{"text": "unterminated'), 400, 'DEQ_ERR_INVALID_INPUT');
    await expectError(await score({ text: 'a', texts: ['b'] }), 400, 'DEQ_ERR_INVALID_INPUT');
    await expectError(await score({ text: 42 }), 400, 'DEQ_ERR_INVALID_INPUT');
    await expectError(await score({}), 400, 'DEQ_ERR_INVALID_INPUT');
    await expectError(await score('the man', 'text/plain'), 415, 'DEQ_ERR_UNSUPPORTED_MEDIA_TYPE');
    await expectError(await score({ text: 'the', tol: -1 }), 400, 'DEQ_ERR_INVALID_SOLVER_OPTION');
    await expectError(await score({ text: 'bad \ud800 surrogate' }), 400, 'DEQ_ERR_TEXT_INVALID');
    await expectError(await postJson(`${s.url}/v1/models/tiny-image/score`, { text: 'the' }), 400, 'DEQ_ERR_WRONG_TASK');
  });
});

describe('POST /v2/models/:name/infer', () => {
  const infer = (body: unknown, model = 'tiny-image') => postJson(`${s.url}/v2/models/${model}/infer`, body);
  const x = (shape: number[], fill: unknown = 0.25, datatype = 'FP32') => ({ name: 'x', datatype, shape, data: new Array(shape.reduce((a, b) => a * b, 1)).fill(fill) });

  async function expectV2Error(res: Response, status: number): Promise<void> {
    expect(res.status).toBe(status);
    const b = await json(res);
    expect(Object.keys(b)).toEqual(['error']);
    expect(res.headers.get('x-deq-error-code')).toMatch(/^DEQ_ERR_/);
  }

  it('infers a batch with nested data, echoes the id, reports scalar solver stats in parameters and per-sample ones as outputs', async () => {
    const nested = [[Array.from({ length: 8 }, () => new Array(8).fill(0.1))], [Array.from({ length: 8 }, () => new Array(8).fill(-0.3))]];
    const input = { name: 'x', datatype: 'FP32', shape: [2, 1, 8, 8], data: nested };
    const res = await infer({ id: 'req-42', parameters: { solver: 'anderson', max_iter: 40 }, inputs: [input] });
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body).toMatchObject({ model_name: 'tiny-image', id: 'req-42', outputs: [{ name: 'logits', datatype: 'FP32', shape: [2, 3] }] });
    expect(body.outputs).toHaveLength(1);
    expect(body.outputs[0].data).toHaveLength(6);
    expect(body.parameters).toMatchObject({ solver: 'anderson', max_iter: 40 });
    // Every parameter is a scalar (the protocol's rule; gRPC's InferParameter has no arrays).
    for (const v of Object.values(body.parameters)) expect(['string', 'number', 'boolean']).toContain(typeof v);
    const names = ['logits', 'solver_iterations', 'solver_residual', 'solver_converged', 'solver_diverged', 'solver_stop_reason'];
    const full = await json(await infer({ parameters: { solver: 'anderson', max_iter: 40 }, inputs: [input], outputs: names.map((name) => ({ name })) }));
    expect(full.outputs.map((o: any) => [o.name, o.datatype, o.shape])).toEqual([
      ['logits', 'FP32', [2, 3]], ['solver_iterations', 'INT64', [2]], ['solver_residual', 'FP32', [2]],
      ['solver_converged', 'BOOL', [2]], ['solver_diverged', 'BOOL', [2]], ['solver_stop_reason', 'BYTES', [2]],
    ]);
    const [, its, res2, conv, div, why] = full.outputs.map((o: any) => o.data);
    expect(Math.max(...its)).toBe(body.parameters.iterations);
    expect(Math.max(...res2)).toBeCloseTo(body.parameters.residual, 6);
    expect(conv.every((c: boolean) => c === true)).toBe(body.parameters.converged);
    expect(div).toEqual([false, false]);
    for (let i = 0; i < 2; i++) expect(why[i]).toBe(conv[i] ? 'converged' : 'max_iter');
  });

  it('serves the language model with int64 tensors', async () => {
    const res = await infer(lmInferBody(2, 6), 'tiny-lm');
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body.outputs.find((o: { name: string }) => o.name === 'target_logprobs').shape).toEqual([2, 6]);
    expect(body.outputs.find((o: { name: string }) => o.name === 'topk_ids').datatype).toBe('INT64');
  });

  it('refuses wrong shapes, datatypes, NaN and unknown tensors with {error}', async () => {
    await expectV2Error(await infer({ inputs: [x([1, 1, 8, 7])] }), 400);
    await expectV2Error(await infer({ inputs: [x([1, 8, 8])] }), 400);
    await expectV2Error(await infer({ inputs: [{ ...x([1, 1, 8, 8]), data: [1, 2, 3] }] }), 400);
    await expectV2Error(await infer({ inputs: [x([1, 1, 8, 8], 1, 'FP64')] }), 400);
    await expectV2Error(await infer({ inputs: [x([1, 1, 8, 8], 1, 'INT64')] }), 400);
    await expectV2Error(await infer({ inputs: [x([1, 1, 8, 8], 'NaN')] }), 400);
    await expectV2Error(await infer({ inputs: [x([1, 1, 8, 8], null)] }), 400);
    await expectV2Error(await infer('{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1,8,8],"data":[NaN]}]}'), 400);
    await expectV2Error(await infer({ inputs: [{ ...x([1, 1, 8, 8]), name: 'y' }] }), 400);
    await expectV2Error(await infer({ inputs: [x([17, 1, 8, 8])] }), 400);
    await expectV2Error(await infer({ inputs: [x([0, 1, 8, 8])] }), 400);
    await expectV2Error(await infer({ inputs: [x([1, 1, 8, 8])], outputs: [{ name: 'z' }] }), 400);
    await expectV2Error(await infer({ inputs: [x([1, 1, 8, 8])], parameters: { max_iter: 10_000 } }), 400);
    await expectV2Error(await infer({ nope: [] }), 400);
    await expectV2Error(await infer('{"inputs": ['), 400);
    await expectV2Error(await infer({ inputs: [x([1, 1, 8, 8])] }, 'missing-model'), 404);
  });

  it('refuses token ids outside the vocabulary and mismatched sequence lengths', async () => {
    const body = lmInferBody(1, 4);
    body.inputs[0].data[2] = 20;
    await expectV2Error(await infer(body, 'tiny-lm'), 400);
    const uneven = lmInferBody(1, 4);
    uneven.inputs[1] = { ...uneven.inputs[1], shape: [1, 3], data: [1, 2, 3] };
    await expectV2Error(await infer(uneven, 'tiny-lm'), 400);
    const frac = lmInferBody(1, 4);
    frac.inputs[0].data[0] = 1.5;
    await expectV2Error(await infer(frac, 'tiny-lm'), 400);
  });
});

describe('GET /metrics', () => {
  it('exposes request, queue, solve, iteration and residual histograms, counters and gauges', async () => {
    await classify(await png(), 'image/png');
    await get('/v1/models/nope');
    const res = await get('/metrics');
    expect(res.status).toBe(200);
    const text = await res.text();
    for (const name of [
      'deq_request_duration_seconds_bucket', 'deq_queue_duration_seconds_bucket', 'deq_solve_duration_seconds_bucket',
      'deq_solver_iterations_bucket', 'deq_solver_final_residual_bucket', 'deq_solver_not_converged_total',
      'deq_solver_diverged_total', 'deq_inflight_requests', 'deq_queued_requests',
    ]) expect(text).toContain(name);
    expect(text).toMatch(/deq_errors_total\{code="DEQ_ERR_MODEL_NOT_FOUND"\} [1-9]/);
    expect(text).toMatch(/deq_request_duration_seconds_count\{method="POST",route="\/v1\/models\/:name\/classify",status="200"\} [1-9]/);
    expect(text).not.toContain('summary');
    const c = s.state.config;
    expect(text).toContain(`deq_server_info{workers="${c.workers}",intra_op_threads="${c.intraOpThreads}",batching="${c.batching}",solver_kernel="${c.solverKernel}",providers="${c.providers.join(',')}"} 1`);
  });
});

/** A valid, tiny PNG whose header declares width × height (the pixel data is one row of zeros). */
async function pngDeclaring(width: number, height: number): Promise<Buffer> {
  const { deflateSync, crc32 } = await import('node:zlib');
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0); ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; ihdr[9] = 0; // 8-bit grayscale
  const idat = deflateSync(Buffer.alloc(1 + Math.min(width, 1024)));
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', Buffer.alloc(0))]);
}
