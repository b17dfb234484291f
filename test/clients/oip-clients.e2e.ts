// Issue #26: the Python clients users have (tritonclient HTTP + gRPC, the KServe SDK, a client
// compiled from the vendored proto with grpcio-tools) against a live server with gRPC on. The
// Python suite (oip_clients.py) runs once; each of its tests is reported here by name, so a
// test that did not run fails rather than vanishes.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ROOT, startTestServer, type TestServer } from '../server/helpers.js';

const PYTHON_TESTS = [
  'test_health_and_metadata', 'test_image_outputs_bit_for_bit', 'test_language_model_int64', 'test_bad_input',
  'test_repository_api', 'test_rest_and_grpc_clients', 'test_every_rpc', 'test_typed_and_raw_contents',
];
const BODY_LIMIT = 256 << 10;

const KEY = 'oip-clients-repository-key';
let s: TestServer;
let repo: TestServer;
let results: Record<string, { ok: boolean; error?: string }> = {};
let output = '';

beforeAll(async () => {
  const venv = spawnSync('bash', [join(ROOT, 'test/clients/make-venv.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 900_000 });
  if (venv.status !== 0) throw new Error(`test/clients/make-venv.sh failed (status ${venv.status}): tritonclient and kserve come from PyPI`);
  const python = venv.stdout.trim().split('\n').pop()!;
  s = await startTestServer({ grpcPort: 0, bodyLimitBytes: BODY_LIMIT }, ['tiny-image', 'tiny-lm']);
  repo = await startTestServer({ modelControl: 'explicit', apiKeys: [KEY] }, ['tiny-image', 'tiny-lm']);
  const file = join(await mkdtemp(join(tmpdir(), 'deq-clients-')), 'results.json');
  const env = {
    ...process.env, DEQ_HTTP: `127.0.0.1:${s.port}`, DEQ_GRPC: `127.0.0.1:${s.grpcPort}`, DEQ_RESULTS: file,
    DEQ_PROTO: join(ROOT, 'vendor/open-inference-protocol/open_inference_grpc.proto'), DEQ_BODY_LIMIT: String(BODY_LIMIT),
    DEQ_REPO_HTTP: `127.0.0.1:${repo.port}`, DEQ_REPO_KEY: KEY,
  };
  // One process per client family (their protobuf registrations clash); asynchronous, as the
  // server under test lives in this process.
  for (const family of ['triton', 'kserve', 'proto']) {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(python, [join(ROOT, 'test/clients/oip_clients.py'), family], { env });
      child.stdout.on('data', (d) => (output += d));
      child.stderr.on('data', (d) => (output += d));
      const kill = setTimeout(() => child.kill('SIGKILL'), 240_000);
      child.on('error', reject);
      child.on('close', () => { clearTimeout(kill); resolve(); });
    });
    Object.assign(results, JSON.parse(await readFile(file, 'utf8').catch(() => '{}')));
  }
});
afterAll(async () => {
  await s?.cleanup();
  await repo?.cleanup();
});

it.each(PYTHON_TESTS)('%s', (name) => {
  const r = results[name];
  expect(r, `${name} did not run:\n${output.slice(-4000)}`).toBeDefined();
  expect(r.ok, r.error).toBe(true);
});

it('the Python suite ran nothing else unreported', () => {
  expect(Object.keys(results).sort()).toEqual([...PYTHON_TESTS].sort());
});
