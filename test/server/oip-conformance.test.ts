// Issue #26, part 0: REST v2 against the Open Inference Protocol's own OpenAPI file
// (vendor/open-inference-protocol/open_inference_rest.yaml): every path it lists answers,
// every response validates against its schema, and what its prose adds (scalar parameters,
// all outputs when none are named) holds.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { lmInferBody, postJson, ROOT, startTestServer, type TestServer } from './helpers.js';

const SPEC = parse(readFileSync(join(ROOT, 'vendor/open-inference-protocol/open_inference_rest.yaml'), 'utf8'));

// The YAML's components as one JSON Schema document; each response is checked against its $ref.
const ajv = new Ajv({ strict: false, allErrors: true });
ajv.addSchema({ $id: 'oip', components: SPEC.components }, 'oip');
const check = (schema: string, value: unknown) => {
  const validate = ajv.getSchema(`oip#/components/schemas/${schema}`)!;
  const ok = validate(value);
  expect(ok, `${schema}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(value).slice(0, 400)}`).toBe(true);
};

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer({ maxOutputElements: 200 }, ['tiny-image', 'tiny-lm']);
});
afterAll(async () => {
  await s?.cleanup();
});

const get = (path: string) => fetch(`${s.url}${path}`);
const json = (r: Response): Promise<any> => r.json(); // eslint-disable-line @typescript-eslint/no-explicit-any
const image = (batch: number) => ({ name: 'x', datatype: 'FP32', shape: [batch, 1, 8, 8], data: Array.from({ length: batch * 64 }, (_, i) => Math.sin(i) / 2) });

describe('Open Inference Protocol REST, against the spec\'s OpenAPI file', () => {
  it('the validator can fail: a response without outputs, or an error whose `error` is not a string, is refused', () => {
    const bad = ajv.getSchema('oip#/components/schemas/inference_response')!;
    expect(bad({ model_name: 'm' })).toBe(false);
    expect(ajv.getSchema('oip#/components/schemas/inference_error_response')!({ error: 5 })).toBe(false);
  });

  it('answers every GET path the YAML lists, with and without /versions/{v}, in its schema', async () => {
    const gets = Object.entries(SPEC.paths as Record<string, Record<string, unknown>>).filter(([, ops]) => 'get' in ops).map(([p]) => p);
    expect(gets).toContain('/v2/');
    for (const template of gets) {
      const path = template.replace('${MODEL_NAME}', 'tiny-image').replace('${MODEL_VERSION}', '1');
      const r = await get(path);
      expect(r.status, path).toBe(200);
      const body = await json(r);
      if (path === '/v2/') check('metadata_server_response', body);
      else if (/\/v2\/models\/[^/]+(\/versions\/[^/]+)?$/.test(path)) check('metadata_model_response', body);
    }
  });

  it('GET /v2/ and /v2 are the same server metadata', async () => {
    expect(await json(await get('/v2/'))).toEqual(await json(await get('/v2')));
  });

  it('model metadata names a <framework>_<format> platform', async () => {
    const m = await json(await get('/v2/models/tiny-image'));
    expect(m.platform).toMatch(/^[a-z0-9]+_[a-z0-9]+$/);
  });

  it('infer responses (batch 1 and 3, the LM, binary-free JSON) validate, and every parameter is a scalar', async () => {
    const bodies = [
      ['tiny-image', { id: 'a', inputs: [image(1)] }],
      ['tiny-image', { inputs: [image(3)], outputs: [{ name: 'logits' }, { name: 'solver_iterations' }, { name: 'solver_converged' }, { name: 'solver_stop_reason' }] }],
      ['tiny-lm', { ...lmInferBody(2, 4), outputs: [{ name: 'target_logprobs' }, { name: 'solver_residual' }] }],
    ] as const;
    for (const [model, body] of bodies) {
      check('inference_request', body);
      for (const path of [`/v2/models/${model}/infer`, `/v2/models/${model}/versions/1/infer`]) {
        const r = await postJson(`${s.url}${path}`, body);
        expect(r.status, path).toBe(200);
        const out = await json(r);
        check('inference_response', out);
        // The spec's prose: a parameter value is a string, a number or a boolean.
        for (const [k, v] of Object.entries(out.parameters)) expect(['string', 'number', 'boolean'], k).toContain(typeof v);
      }
    }
  });

  it('errors validate as inference_error_response', async () => {
    const cases = [
      postJson(`${s.url}/v2/models/tiny-image/infer`, { inputs: [{ ...image(1), shape: [1, 1, 8, 7] }] }),
      postJson(`${s.url}/v2/models/nope/infer`, { inputs: [image(1)] }),
      postJson(`${s.url}/v2/models/tiny-image/infer`, { inputs: [{ ...image(1), datatype: 'INT64' }] }),
    ];
    for (const r of await Promise.all(cases)) {
      expect(r.status).toBeGreaterThanOrEqual(400);
      check('inference_error_response', await json(r));
    }
    check('metadata_model_error_response', await json(await get('/v2/models/nope')));
  });

  it('with no outputs named, returns every output the metadata lists', async () => {
    const meta = await json(await get('/v2/models/tiny-lm'));
    const r = await postJson(`${s.url}/v2/models/tiny-lm/infer`, lmInferBody(1, 3));
    expect(r.status).toBe(200);
    const out = await json(r);
    expect(out.outputs.map((o: { name: string }) => o.name)).toEqual(meta.outputs.map((o: { name: string }) => o.name));
    expect(out.outputs.map((o: { name: string }) => o.name)).toContain('logprobs');
  });

  it('past the output cap, all outputs by default answer 413 naming the `outputs` field; naming fewer succeeds', async () => {
    // tiny-lm at 2 × 6: logprobs alone is 2 × 6 × 20 = 240 values, over the 200 this server allows.
    const r = await postJson(`${s.url}/v2/models/tiny-lm/infer`, lmInferBody(2, 6));
    expect(r.status).toBe(413);
    const e = await json(r);
    expect(e.error).toMatch(/`outputs`/);
    check('inference_error_response', e);
    const ok = await postJson(`${s.url}/v2/models/tiny-lm/infer`, { ...lmInferBody(2, 6), outputs: [{ name: 'target_logprobs' }] });
    expect(ok.status).toBe(200);
  });
});
